"""Semantic search: embed a corpus once, keep the vectors in an index file, query it.

An index file (``.npz``, read without pickle) holds the unit-length corpus vectors, the
texts and their row numbers, and a JSON header with the encoding settings, the model's
identity (name and a fingerprint of its configuration, vocabulary and weights) and the
corpus file's fingerprint (path, size, SHA-256, text column). Loading it for a search with
other settings or another model is refused; a corpus that changed is re-embedded.

>>> from bertkit import SearchIndex
>>> index = SearchIndex.build(["a cat sat on the mat", "stocks fell sharply", "a dog ran"])
>>> index.save("pets.npz")
>>> [(h.text, round(h.score, 2)) for h in SearchIndex.load("pets.npz").search("kitten", k=1)]
[('a cat sat on the mat', 0.39)]
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ._validate import check_positive_int, check_texts
from .errors import DataError, InputError

__all__ = ["SearchIndex", "SearchHit", "semantic_search", "model_fingerprint",
           "file_fingerprint", "default_index_path", "open_index"]

FORMAT = "bertkit-search-index"
FORMAT_VERSION = 1
#: Settings of :meth:`bertkit.Encoder.encode` that shape the vectors (and must match).
SETTING_KEYS = ("pooling", "layers", "layer_agg", "exclude_special", "long")
# pooling None: the encoder's default (the model folder's pooling, else mean), resolved
# before an index is built or compared, so an index always records what was used.
DEFAULT_SETTINGS = {"pooling": None, "layers": "-1", "layer_agg": "concat",
                    "exclude_special": False, "long": "truncate"}


@dataclass
class SearchHit:
    """One search result.

    Attributes
    ----------
    rank : int
        1 for the best hit.
    score : float
        Cosine similarity between the query and the text (-1..1).
    text : str
    index : int
        Position of the text in the index (0-based).
    row : int
        Row of the text in the corpus file (0-based, header not counted) or its position
        in the list the index was built from.
    """

    rank: int
    score: float
    text: str
    index: int
    row: int

    def to_dict(self) -> dict:
        return asdict(self)


def _sha256_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


_ARCH_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
              "intermediate_size", "vocab_size", "max_position_embeddings", "hidden_act",
              "layer_norm_eps", "type_vocab_size", "position_embedding_type")


def model_fingerprint(encoder) -> str:
    """A SHA-256 identifying what the encoder computes: its architecture, its tokenizer
    (vocabulary, normalisation, pre-tokenisation) and a sample of every weight tensor
    (64 values spread over each), so a fine-tuned copy of a model differs from the original
    while a moved or re-saved copy of the same model does not.
    """
    import torch

    h = hashlib.sha256()
    cfg = encoder.model.config
    h.update(_sha256_json({k: getattr(cfg, k, None) for k in _ARCH_KEYS}).encode())
    tok = encoder.tokenizer
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        h.update(_sha256_json({k: spec.get(k) for k in ("normalizer", "pre_tokenizer", "model")}).encode())
    else:  # pragma: no cover - slow tokenizers
        h.update(_sha256_json(sorted(tok.get_vocab().items())).encode())
    with torch.no_grad():
        for name, tensor in sorted(encoder.model.state_dict().items()):
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // 64)
            sample = flat[::step][:64].to("cpu", torch.float32).numpy()
            h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            h.update(sample.tobytes())
    return h.hexdigest()


def file_fingerprint(path) -> dict:
    """``{"path", "size", "sha256"}`` of a file (its content, not its timestamps)."""
    path = os.path.abspath(os.fspath(path))
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return {"path": path, "size": size, "sha256": h.hexdigest()}


def _check_settings(settings: dict, where: str = "SearchIndex") -> dict:
    unknown = sorted(set(settings) - set(SETTING_KEYS))
    if unknown:
        raise InputError(f"Unknown setting(s) {', '.join(unknown)} for {where}; valid ones are "
                         f"{', '.join(SETTING_KEYS)}.")
    out = dict(DEFAULT_SETTINGS)
    out.update(settings)
    out["layers"] = str(out["layers"])
    out["exclude_special"] = bool(out["exclude_special"])
    return out


def _resolve_settings(settings: dict, encoder) -> dict:
    out = dict(settings)
    if out.get("pooling") is None:
        out["pooling"] = getattr(encoder, "pooling", None) or "mean"
    return out


def _engine(encoder) -> dict:
    """What besides the weights decides the vectors: the back-end and the input limit."""
    return {"backend": getattr(encoder, "backend_name", "torch"),
            "max_length": getattr(encoder, "max_length", None)}


def _describe(settings: dict) -> str:
    return ", ".join(f"{k}={settings.get(k)}" for k in SETTING_KEYS)


class SearchIndex:
    """Unit-length vectors of a corpus, its texts, and how they were made.

    Build one with :meth:`build` (a list of texts) or :meth:`from_file` (a corpus file),
    keep it with :meth:`save`, reopen it with :meth:`load`, and query it with :meth:`search`.

    Attributes
    ----------
    vectors : ndarray of shape (n_texts, dim), float32
        L2-normalised, so a dot product is the cosine.
    texts : list of str, length n_texts
    rows : ndarray of shape (n_texts,), int64
        Row of each text in the corpus file (empty rows are skipped, so rows may jump).
    settings : dict
        ``pooling``, ``layers``, ``layer_agg``, ``exclude_special``, ``long``.
    model : dict
        ``name`` and ``fingerprint`` (see :func:`model_fingerprint`).
    corpus : dict or None
        ``path``, ``size``, ``sha256``, ``text_column`` of the corpus file, when built from one.
    created : str
        When the vectors were computed (UTC, ISO 8601).
    build_seconds : float
        How long computing them took.
    """

    def __init__(self, vectors, texts, *, settings: dict, model: dict, rows=None,
                 corpus: dict | None = None, created: str | None = None,
                 build_seconds: float = 0.0):
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.texts = list(texts)
        if self.vectors.ndim != 2 or len(self.vectors) != len(self.texts):
            raise DataError(f"SearchIndex needs one vector a text; got {self.vectors.shape} "
                            f"vectors for {len(self.texts)} texts.")
        self.rows = (np.arange(len(self.texts), dtype=np.int64) if rows is None
                     else np.asarray(rows, dtype=np.int64))
        self.settings = dict(settings)
        self.model = dict(model)
        self.corpus = dict(corpus) if corpus else None
        self.created = created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.build_seconds = float(build_seconds)
        self.path: str | None = None
        self._encoder = None

    def __len__(self) -> int:
        return len(self.texts)

    def __repr__(self) -> str:
        return (f"SearchIndex({len(self)} texts, dim={self.vectors.shape[1]}, "
                f"model={self.model.get('name')!r}, {_describe(self.settings)})")

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, texts, *, encoder=None, model=None, device=None, batch_size: int = 64,
              max_tokens: int | None = None, progress: bool | None = None, rows=None,
              corpus: dict | None = None, **settings) -> "SearchIndex":
        """Embed ``texts`` and return an index of them.

        Parameters
        ----------
        texts : list of str
            Non-empty texts.
        encoder : Encoder or None, default=None
            An already loaded :class:`bertkit.Encoder`; else one is loaded from ``model``.
        model : str, PathLike or None, default=None
            Model folder or Hugging Face id; None for the bundled default.
        device : str or None, default=None
        batch_size, max_tokens, progress :
            As in :meth:`bertkit.Encoder.encode` (speed only; the vectors do not change).
        rows : sequence of int or None, default=None
            Row numbers to report in hits (default: positions in ``texts``).
        corpus : dict or None, default=None
            Fingerprint of the corpus file (see :func:`file_fingerprint`), stored in the index.
        **settings :
            ``pooling`` (default "mean"), ``layers`` ("-1"), ``layer_agg`` ("concat"),
            ``exclude_special`` (False), ``long`` ("truncate"), as in ``encode``.
        """
        settings = _check_settings(settings, "SearchIndex.build")
        texts = check_texts(texts)
        if not texts:
            raise InputError("SearchIndex.build needs at least one text.")
        from .similarity import _encoder_for

        enc = _encoder_for(encoder, model, device)
        settings = _resolve_settings(settings, enc)
        t0 = time.perf_counter()
        vectors = enc.encode(texts, level="sentence", normalize=True, batch_size=batch_size,
                             max_tokens=max_tokens, progress=progress, **settings)
        seconds = time.perf_counter() - t0
        index = cls(vectors, texts, settings=settings, rows=rows, corpus=corpus,
                    model={"name": str(getattr(enc, "model_name", "")),
                           "fingerprint": model_fingerprint(enc), **_engine(enc)},
                    build_seconds=seconds)
        index._encoder = enc
        return index

    @classmethod
    def from_file(cls, path, *, text_column: str | None = None, columns=None,
                  skip_empty: bool = False, **kwargs) -> "SearchIndex":
        """Build an index of the texts in a corpus file (.txt, .csv, .tsv, .jsonl, .parquet).

        ``text_column`` names the column (default: ``text``, ``sentence`` or the only
        column); empty rows are an error unless ``skip_empty`` (default False; see
        :func:`read_corpus`). Other arguments as in :meth:`build`.
        """
        texts, rows, corpus = read_corpus(path, text_column=text_column, columns=columns,
                                          skip_empty=skip_empty)
        return cls.build(texts, rows=rows, corpus=corpus, **kwargs)

    # ------------------------------------------------------------------ files
    def header(self) -> dict:
        return {"format": FORMAT, "version": FORMAT_VERSION, "created": self.created,
                "build_seconds": round(self.build_seconds, 3), "n_texts": len(self),
                "dim": int(self.vectors.shape[1]), "settings": self.settings,
                "model": self.model, "corpus": self.corpus}

    def save(self, path) -> str:
        """Write the index to ``path`` (an ``.npz`` file; written atomically). Returns it."""
        from .io import atomic_path

        encoded = [t.encode("utf-8") for t in self.texts]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(b) for b in encoded])
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, vectors=self.vectors, rows=self.rows,
                     text_bytes=np.frombuffer(b"".join(encoded), dtype=np.uint8),
                     text_offsets=offsets,
                     header=np.frombuffer(json.dumps(self.header()).encode("utf-8"), dtype=np.uint8))
        self.path = str(path)
        return str(path)

    @classmethod
    def load(cls, path) -> "SearchIndex":
        """Read an index written by :meth:`save` (no pickle is ever loaded).

        Raises
        ------
        DataError
            One line telling apart a file that is not an index (e.g. an embeddings ``.npy``
            written by ``bertkit embed``), a damaged or old index (rebuild it) and one
            written by a newer bertkit.
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise DataError(f"Index file '{path}' does not exist.")
        header, arrays = _read_index_file(path)
        vectors, rows, blob, offsets = arrays
        texts = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(len(offsets) - 1)]
        index = cls(vectors, texts, settings=header["settings"], model=header["model"],
                    rows=rows, corpus=header.get("corpus"), created=header.get("created"),
                    build_seconds=header.get("build_seconds", 0.0))
        index.path = path
        return index

    # ------------------------------------------------------------------ checks
    def check_compatible(self, *, encoder=None, fingerprint: str | None = None,
                         settings: dict | None = None) -> None:
        """Raise :class:`~bertkit.errors.InputError` if the index was built with another
        model (fingerprint) or other settings than those given."""
        where = f"Index '{self.path}'" if self.path else "The index"
        if settings is not None:
            want = _check_settings(settings)
            if want.get("pooling") is None:  # the default: the encoder's (else as stored)
                want["pooling"] = getattr(encoder or self._encoder, "pooling", None) or self.settings.get("pooling")
            if want != self.settings:
                diff = [k for k in SETTING_KEYS if want.get(k) != self.settings.get(k)]
                raise InputError(
                    f"{where} was built with {', '.join(f'{k}={self.settings.get(k)}' for k in diff)}"
                    f", not {', '.join(f'{k}={want.get(k)}' for k in diff)}; search with the same "
                    "settings, pass another --index, or --rebuild to replace it.")
        if encoder is not None:
            stored = {k: self.model.get(k) for k in ("backend", "max_length") if k in self.model}
            now = {k: v for k, v in _engine(encoder).items() if k in stored}
            if stored != now:
                raise InputError(
                    f"{where} was built with {', '.join(f'{k}={v}' for k, v in stored.items())}, not "
                    f"{', '.join(f'{k}={v}' for k, v in now.items())}; its vectors differ. Use the same "
                    "--backend, another --index, or --rebuild to replace it.")
        if encoder is not None and fingerprint is None:
            fingerprint = model_fingerprint(encoder)
        if fingerprint is not None and fingerprint != self.model.get("fingerprint"):
            now = getattr(encoder, "model_name", "this model") if encoder is not None else "this model"
            raise InputError(
                f"{where} was built with another model ({self.model.get('name')}, fingerprint "
                f"{str(self.model.get('fingerprint'))[:12]}) than {now} (fingerprint "
                f"{fingerprint[:12]}); its vectors are not comparable. Use the same --model, "
                "another --index, or --rebuild to replace it.")

    # ------------------------------------------------------------------ search
    def search(self, queries, k: int = 5, *, encoder=None, batch_size: int = 64):
        """The ``k`` texts most similar to each query (cosine of the index's vectors).

        Parameters
        ----------
        queries : str or list of str
        k : int, default=5
            Hits per query (at most the number of texts).
        encoder : Encoder or None, default=None
            The encoder to embed queries with; it must be the model the index was built with
            (checked by fingerprint). Default: the one that built the index in this session,
            else the model named in the index.

        Returns
        -------
        list of SearchHit (best first) for a single query string; a list of such lists for
        a list of queries.
        """
        single = isinstance(queries, str)
        queries = check_texts(queries, "queries")
        check_positive_int("k", k, "search")
        enc = encoder or self._encoder
        if enc is None:
            from .encoder import Encoder

            enc = Encoder(self.model.get("name") or None)  # the default's name loads the bundled copy
        if enc is not self._encoder:
            self.check_compatible(encoder=enc)
            self._encoder = enc
        q = enc.encode(queries, level="sentence", normalize=True, batch_size=batch_size,
                       **self.settings)
        scores = np.asarray(q, np.float32) @ self.vectors.T  # (n_queries, n_texts)
        k = min(k, len(self))
        results = []
        for row in scores:
            top = np.argpartition(-row, k - 1)[:k] if k < len(row) else np.arange(len(row))
            top = top[np.lexsort((top, -row[top]))]  # by score, ties by position
            results.append([SearchHit(rank=r + 1, score=float(row[i]), text=self.texts[i],
                                      index=int(i), row=int(self.rows[i]))
                            for r, i in enumerate(top)])
        return results[0] if single else results


def _not_an_index(path, what: str) -> DataError:
    err = DataError(
        f"'{path}' is {what}, not a bertkit search index. Pass an index file to --index, or a "
        "new .npz name to build one there: bertkit search --corpus FILE --index NEW.npz -q TEXT.")
    err.is_index = False  # the user's own data: --rebuild must not overwrite it
    return err


def _damaged(path, why: str) -> DataError:
    return DataError(f"'{path}' is a damaged or old bertkit search index ({why}); rebuild it: "
                     "run the same search with --rebuild (or delete the file).")


def _read_index_file(path):
    """The header and (vectors, rows, text bytes, text offsets) of an index file, checked."""
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise _not_an_index(path, f"not an .npz file ({first[:100]})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):  # np.load gives a plain array for .npy
        raise _not_an_index(path, f"a single NumPy array of shape {tuple(z.shape)} "
                                  "(an embeddings file?)")
    with z:
        if "header" not in z.files:
            raise _not_an_index(path, f"an .npz file with arrays {', '.join(z.files[:5])}")
        try:
            header = json.loads(bytes(z["header"]).decode("utf-8"))
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            header = None  # e.g. a pickled object array: not ours either way
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise _not_an_index(path, f"an .npz file without a '{FORMAT}' header")
        try:
            arrays = (z["vectors"], z["rows"], bytes(z["text_bytes"]), z["text_offsets"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise _damaged(path, first[:120]) from None
    if header.get("version", 0) > FORMAT_VERSION:
        raise DataError(f"'{path}' was written by a newer bertkit (index format "
                        f"{header.get('version')}); upgrade bertkit or rebuild the index.")
    for key in ("settings", "model"):
        if not isinstance(header.get(key), dict):
            raise _damaged(path, f"its header has no '{key}'")
    try:
        header["settings"] = _check_settings(header["settings"])
    except InputError:
        raise _damaged(path, f"unknown settings {sorted(header['settings'])}") from None
    vectors, rows, _, offsets = arrays
    if vectors.ndim != 2 or not len(vectors) == len(rows) == len(offsets) - 1:
        raise _damaged(path, f"{len(vectors)} vectors, {len(rows)} rows and "
                             f"{len(offsets) - 1} texts do not match")
    return header, arrays


def read_corpus(path, *, text_column: str | None = None, columns=None,
                skip_empty: bool = False):
    """Texts of a corpus file, their row numbers (0-based) and its fingerprint.

    Empty rows (blank, missing) stop with a :class:`DataError` unless ``skip_empty``, as in
    ``bertkit embed``: a corpus with holes is usually a wrong --text-column or a broken
    file, and leaving rows out silently would hide that. Skipped rows are counted in the
    fingerprint (``n_skipped``) so the CLI can say how many. A non-text value (a number)
    is always an error naming its row.
    """
    import math

    from .data import default_text_column, read_table, require_columns

    frame = read_table(path, columns=columns)
    if text_column is None:
        text_column = default_text_column(frame, path)
    else:
        require_columns(frame, {"--text-column": text_column}, path)
    texts, rows, empty = [], [], []
    for i, value in enumerate(frame[text_column].tolist()):
        if isinstance(value, str) and value.strip():
            texts.append(value)
            rows.append(i)
        elif value is None or isinstance(value, str) or (isinstance(value, float) and math.isnan(value)):
            empty.append(i)
        else:
            raise DataError(f"Row {i + 1} of column '{text_column}' in '{path}' is "
                            f"{type(value).__name__} ({value!r:.40}), not text; fix that row or "
                            "pick another --text-column.")
    if not texts:
        raise DataError(f"'{path}' has no non-empty texts in column '{text_column}'.")
    if empty and not skip_empty:
        raise DataError(f"{len(empty)} of {len(frame)} rows of column '{text_column}' in '{path}' "
                        f"are empty (first: row {empty[0] + 1}); remove them, or pass --skip-empty "
                        "to leave them out of the index.")
    corpus = file_fingerprint(path)
    corpus["text_column"] = str(text_column)
    corpus["n_rows"] = len(frame)
    corpus["n_skipped"] = len(empty)
    return texts, rows, corpus


def cache_dir() -> Path:
    """Where indexes go when no path is given: ``$BERTKIT_CACHE/indexes``, else
    ``$XDG_CACHE_HOME/bertkit/indexes``, else ``~/.cache/bertkit/indexes``."""
    root = os.environ.get("BERTKIT_CACHE")
    if root:
        return Path(root).expanduser() / "indexes"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "bertkit" / "indexes"


def default_index_path(corpus_path, *, text_column: str | None, model_name: str,
                       settings: dict) -> Path:
    """The cache file for this corpus, column, model and settings:
    ``<cache>/<corpus name>-<12 hex digits>.npz`` (see :func:`cache_dir`). Different
    settings or models get different files, so they never overwrite each other."""
    key = _sha256_json({"path": os.path.abspath(os.fspath(corpus_path)), "column": text_column,
                        "model": model_name, "settings": _check_settings(settings)})
    stem = Path(corpus_path).name.replace(".", "_")
    return cache_dir() / f"{stem}-{key[:12]}.npz"


@dataclass
class IndexStatus:
    """What :func:`open_index` did: ``action`` is "built", "reused" or "rebuilt"."""

    action: str
    path: str
    seconds: float
    reason: str = ""
    extra: dict = field(default_factory=dict)


def open_index(corpus_path, *, encoder, index_path=None, text_column: str | None = None,
               columns=None, rebuild: bool = False, skip_empty: bool = False,
               batch_size: int = 64, progress: bool | None = None, **settings):
    """Reuse the index of ``corpus_path`` if it is up to date, else build (and save) it.

    The index is reused when its corpus fingerprint (content and text column) matches the
    file; it is rebuilt when the corpus changed (or ``rebuild``); an index file the caller
    named is refused with an :class:`~bertkit.errors.InputError` when it was built with other
    settings or another model (unless ``rebuild``). ``index_path`` None means the cache file
    of :func:`default_index_path`, which is simply rebuilt when the model changed in place.

    Returns
    -------
    (SearchIndex, IndexStatus)
    """
    settings = _resolve_settings(_check_settings(settings, "search"), encoder)
    t0 = time.perf_counter()
    if not os.path.isfile(os.fspath(corpus_path)):
        raise DataError(f"Corpus file '{corpus_path}' does not exist; check --corpus.")
    cached = index_path is None
    if cached:
        index_path = default_index_path(corpus_path, text_column=text_column,
                                        model_name=str(getattr(encoder, "model_name", "")),
                                        settings=settings)
    index_path = str(index_path)
    reason = ""
    if os.path.exists(index_path) and not rebuild:
        index = SearchIndex.load(index_path)
        try:
            index.check_compatible(encoder=encoder, settings=settings)
            compatible = True
        except InputError:
            if not cached:  # the user's own index file: refuse, do not overwrite it
                raise
            compatible = False  # bertkit's cache file: the model was changed in place
        now = file_fingerprint(corpus_path)
        stored = index.corpus or {}
        if not compatible:
            reason = "the model changed since the cached index was built"
        elif stored.get("sha256") != now["sha256"]:
            reason = "the corpus file changed since the index was built"
        elif text_column is not None and stored.get("text_column") != text_column:
            reason = (f"the index holds column '{stored.get('text_column')}', not "
                      f"'{text_column}'")
        else:
            index._encoder = encoder
            return index, IndexStatus("reused", index_path, time.perf_counter() - t0)
    elif rebuild and os.path.exists(index_path):
        if not cached and not _is_index_file(index_path):
            raise InputError(f"--rebuild replaces index files only, and '{index_path}' is not a "
                             "bertkit search index; pass a new --index name (or delete the file).")
        reason = "--rebuild was given"
    index = SearchIndex.from_file(corpus_path, text_column=text_column, columns=columns,
                                  skip_empty=skip_empty, encoder=encoder, batch_size=batch_size,
                                  progress=progress, **settings)
    index.save(index_path)
    action = "rebuilt" if reason else "built"
    return index, IndexStatus(action, index_path, time.perf_counter() - t0, reason)


def _is_index_file(path) -> bool:
    """Whether ``path`` is (or was) a bertkit index: a readable one, or a damaged/old one
    that still has our header. Anything else is the user's data and is never overwritten."""
    try:
        _read_index_file(path)
        return True
    except DataError as e:
        return getattr(e, "is_index", True)


def semantic_search(queries, corpus, k: int = 5, *, encoder=None, model=None, **settings):
    """Search ``corpus`` (a list of texts or a :class:`SearchIndex`) for ``queries``.

    A one-off convenience: a list of texts is embedded on every call; build a
    :class:`SearchIndex` once to search the same corpus repeatedly.

    Returns the hits of :meth:`SearchIndex.search`.
    """
    if isinstance(corpus, SearchIndex):
        if settings:
            corpus.check_compatible(settings={**corpus.settings, **settings})
        return corpus.search(queries, k, encoder=encoder)
    index = SearchIndex.build(corpus, encoder=encoder, model=model, **settings)
    return index.search(queries, k)
