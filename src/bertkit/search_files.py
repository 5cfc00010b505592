"""Search index files and the corpus they index: reading an index file (checked, no
pickle), reading a corpus file's texts, the cache location, and :func:`open_index`, which
builds, reuses or rebuilds the index of a corpus file (see :mod:`bertkit.search`)."""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DataError, InputError

FORMAT = "bertkit-search-index"
FORMAT_VERSION = 1
#: Settings of :meth:`bertkit.Encoder.encode` that shape the vectors (and must match).
SETTING_KEYS = ("pooling", "layers", "layer_agg", "exclude_special", "long")
# pooling None: the encoder's default (the model folder's pooling, else mean), resolved
# before an index is built or compared, so an index always records what was used.
DEFAULT_SETTINGS = {"pooling": None, "layers": "-1", "layer_agg": "concat",
                    "exclude_special": False, "long": "truncate"}


def _sha256_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def file_fingerprint(path) -> dict:
    """``{"path", "size", "sha256"}`` of a file (its content, not its timestamps), or of a
    folder's or glob's files (:func:`bertkit.formats.fingerprint`)."""
    if not os.path.isfile(os.fspath(path)):
        from .formats import fingerprint

        return fingerprint(path)
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


def _not_an_index(path, what: str) -> DataError:
    err = DataError(
        f"'{path}' is {what}, not a bertkit search index. Pass an index file to --index, or a "
        "new .npz name to build one there: bertkit search --input FILE --index NEW.npz -q TEXT.")
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
                skip_empty: bool = False, quoting: str | None = None, encoding: str | None = None,
                format: str | None = None):
    """Texts of a corpus file, their row numbers (0-based) and its fingerprint.

    Empty rows (blank, missing) stop with a :class:`DataError` unless ``skip_empty``, as in
    ``bertkit embed``: a corpus with holes is usually a wrong --text-column or a broken
    file, and leaving rows out silently would hide that. Skipped rows are counted in the
    fingerprint (``n_skipped``) so the CLI can say how many. A non-text value (a number)
    is always an error naming its row. ``quoting``, ``encoding`` and ``format``: how the
    file is read (:func:`bertkit.data.iter_table`); they are kept in the fingerprint.
    """
    from .texts import load_texts

    read = dict(quoting=quoting, encoding=encoding, format=format)
    got = load_texts(path, text_column=text_column, columns=columns,
                     on_empty="skip" if skip_empty else "error", **read)
    if not got.texts:
        raise DataError(f"'{path}' has no non-empty texts in column '{got.column}'.")
    texts, rows = got.texts, [r - 1 for r in got.rows]  # the reader counts rows from 1
    corpus = file_fingerprint(path)
    corpus["text_column"] = str(got.column)
    corpus["n_rows"] = got.n_rows
    corpus["n_skipped"] = len(got.skipped)
    if any(v is not None for v in read.values()):  # only then: older indexes stay reusable
        corpus["read"] = read
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
               batch_size: int = 64, progress: bool | None = None, quoting: str | None = None,
               encoding: str | None = None, format: str | None = None, **settings):
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
    from .search import SearchIndex  # the index class; this module holds its files

    settings = _resolve_settings(_check_settings(settings, "search"), encoder)
    t0 = time.perf_counter()
    from .formats import resolve_format

    read = dict(quoting=quoting, encoding=encoding, format=format)
    resolve_format(os.fspath(corpus_path), format, flag="--input")  # exists, and readable as what
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
        elif stored.get("read", {}) != ({k: v for k, v in read.items()}
                                        if any(v is not None for v in read.values()) else {}):
            reason = "the corpus is read with other --quoting/--encoding/--format settings"
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
    index = SearchIndex.from_file(corpus_path, text_column=text_column, columns=columns, **read,
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
