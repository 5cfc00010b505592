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
from dataclasses import asdict, dataclass

import numpy as np

from ._validate import check_positive_int, check_texts
from .errors import DataError, InputError

from .search_files import (DEFAULT_SETTINGS, FORMAT, FORMAT_VERSION, SETTING_KEYS,  # noqa: F401
                           IndexStatus, _check_settings, _read_index_file, _resolve_settings,
                           _sha256_json, cache_dir, default_index_path, file_fingerprint,
                           open_index, read_corpus)

__all__ = ["SearchIndex", "SearchHit", "semantic_search", "model_fingerprint",
           "file_fingerprint", "default_index_path", "open_index"]

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
                  skip_empty: bool = False, quoting: str | None = None,
                  encoding: str | None = None, format: str | None = None,
                  **kwargs) -> "SearchIndex":
        """Build an index of the texts in a corpus file (.txt, .csv, .tsv, .jsonl, .parquet).

        ``text_column`` names the column (default: ``text``, ``sentence`` or the only
        column); empty rows are an error unless ``skip_empty`` (default False; see
        :func:`read_corpus`); ``quoting``, ``encoding`` and ``format`` say how the file
        is read (:func:`bertkit.data.iter_table`). Other arguments as in :meth:`build`.
        """
        texts, rows, corpus = read_corpus(path, text_column=text_column, columns=columns,
                                          skip_empty=skip_empty, quoting=quoting,
                                          encoding=encoding, format=format)
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
