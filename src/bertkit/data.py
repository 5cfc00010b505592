"""Reading texts and labelled rows from .txt, .csv, .tsv, .jsonl and .parquet files.

All readers keep text exactly as written (no NA guessing: the string "NA" stays "NA"),
stream in chunks so memory stays flat on large files, and turn unreadable input into one
clear :class:`~bertkit.errors.DataError`.

Texts of a file are read with :func:`read_texts` (chunks, for streaming), :func:`scan_texts`
(a checking pass: rows and empty rows counted, nothing kept) or :func:`load_texts` (all at
once). They share one policy for the text column:

* a string with some non-blank character is a text, kept exactly as written;
* an **empty row** (an empty or blank string, None, NaN, NA) is an error by default
  (``on_empty="error"``), raised before the first chunk that holds one is returned, and
  naming how many rows of the file are empty, the first of them, and ``--skip-empty``
  (``on_empty="skip"``) to leave them out; with ``on_empty="skip"`` they are left out and
  counted (:attr:`TextScan.n_empty`; :meth:`TextScan.note` words the note to show);
* anything else (a number, a bool, a list in a .jsonl/.parquet column) is an error naming
  the row and column: it usually means the wrong column was picked (:func:`text_kind`).

Row numbers are 1-based data rows: the first row after a header is row 1.
"""

from __future__ import annotations

import csv
import gzip
import math
import os
from typing import Iterator, Sequence

from .errors import DataError

FORMATS = (".txt", ".csv", ".tsv", ".jsonl", ".json", ".parquet")


def file_format(path) -> str:
    """The format of ``path`` from its extension (``.gz`` allowed on text formats)."""
    name = str(path).lower()
    gz = name.endswith(".gz")
    if gz:
        name = name[:-3]
    for ext in FORMATS:
        if name.endswith(ext):
            if gz and ext == ".parquet":  # parquet compresses inside; a gzipped one can't be read
                raise DataError(f"'{path}': Parquet files are compressed inside; give the .parquet "
                                "file itself, not a .gz of it.")
            return ".jsonl" if ext == ".json" else ext
    raise DataError(
        f"Cannot tell the format of '{path}' from its extension; name it with --format "
        "(csv, tsv, jsonl, parquet, txt, fasttext or label-first), or use one of "
        f"{', '.join(FORMATS)} as its extension.")


def parse_columns(columns: str | Sequence[str] | None) -> list[str] | None:
    """``"a,b,c"`` -> ``["a", "b", "c"]`` (names for a headerless file)."""
    if columns is None:
        return None
    if isinstance(columns, str):
        columns = [c.strip() for c in columns.split(",")]
    columns = list(columns)
    if not columns or any(not c for c in columns) or len(set(columns)) != len(columns):
        raise DataError(f"--columns must be distinct comma-separated names, got {columns!r}.")
    return columns


QUOTING = ("none", "csv")


def iter_table(path, *, columns=None, chunk_size: int = 10_000, quoting: str | None = None,
               encoding: str | None = None, format: str | None = None) -> Iterator["pandas.DataFrame"]:
    """Yield ``path`` as pandas DataFrames of at most ``chunk_size`` rows.

    Parameters
    ----------
    path : str or PathLike
        A .txt (one text a line, column ``text``), .csv/.tsv (header row unless ``columns``
        is given), .jsonl or .parquet file. Text formats may be gzipped (``.txt.gz``,
        ``.csv.gz``, ``.tsv.gz``, ``.jsonl.gz``). Also a fastText file, a folder of classes,
        a Hugging Face ``save_to_disk`` folder or parquet shards (columns ``text`` and
        ``label``; see :mod:`bertkit.formats`).
    columns : str or list of str or None, default=None
        Column names for a headerless .csv/.tsv (e.g. ``"source,label,mark,sentence"``), or
        new names for the columns of any other format. There must be exactly one name per
        field: a shorter list would silently shift the columns.
    quoting : {"none", "csv"} or None, default=None
        How ``"`` is read in .csv/.tsv files. ``"csv"``: a field may be quoted (and then hold
        tabs, commas or line breaks); ``"none"``: quotes are ordinary characters and every
        line is one row. None means ``"csv"`` for .csv and ``"none"`` for .tsv, the TSV
        convention (GLUE's files hold unbalanced quotes inside texts). A .tsv read with
        ``"csv"`` is checked line against row: quotes that join lines raise an error.
    encoding : str or None, default=None (utf-8)
        The text encoding of text formats (e.g. ``"latin-1"``, ``"cp1252"``). A UTF-8
        byte-order mark is dropped.
    format : str or None, default=None
        One of :data:`bertkit.formats.FORMAT_NAMES`, for a file whose extension says
        nothing (``train_5500.label``); None tells it from the extension or the folder.
    chunk_size : int, default=10000
        Rows per yielded frame.

    Raises
    ------
    DataError
        The file is missing, unreadable, not valid ``encoding`` (naming the line and the
        byte offset), in no format bertkit reads, or ``columns`` does not match its fields.
    """
    import pandas as pd

    from .formats import check_encoding, iter_special, reading_encoding, resolve_format

    path = os.fspath(path)
    fmt = resolve_format(path, format)
    encoding = check_encoding(encoding)
    names = parse_columns(columns)
    try:
        if not fmt.startswith("."):
            frames = iter_special(path, fmt, chunk_size, encoding)
        elif fmt == ".txt":
            frames = _iter_txt(path, chunk_size, encoding)
        elif fmt in (".csv", ".tsv"):
            frames = _iter_delimited(path, fmt, names is not None, chunk_size,
                                     _resolve_quoting(quoting, fmt), encoding)
        elif fmt == ".jsonl":
            frames = pd.read_json(path, lines=True, chunksize=chunk_size, dtype=False,
                                  encoding=reading_encoding(encoding))
        else:
            frames = _iter_parquet(path, chunk_size)
        for frame in frames:
            if names:
                _check_field_count(frame, names, path)
                frame.columns = names
            frame.attrs["bertkit_format"] = fmt  # for the missing-column hint
            yield frame
    except UnicodeDecodeError:
        from .formats import decode_error

        raise decode_error(path, encoding) from None
    except pd.errors.EmptyDataError:  # before ValueError, of which it is a subclass
        raise DataError(f"'{path}' is empty.") from None
    except (pd.errors.ParserError, ValueError) as e:
        if isinstance(e, DataError):  # our own (a DataError is a ValueError too)
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"Could not parse '{path}' as {fmt}: {msg}") from None
    except (OSError, EOFError) as e:  # EOFError: a gzip file cut short
        raise DataError(f"Could not read '{path}': {e}") from None


def check_input_file(path, flag: str | None = None) -> None:
    """Raise a :class:`DataError` unless ``path`` is an existing file (a folder is named as such)."""
    where = f" ({flag})" if flag else ""
    if os.path.isdir(path):
        raise DataError(f"'{path}'{where} is a folder; give a file.")
    if not os.path.isfile(path):
        raise DataError(f"File '{path}'{where} does not exist; check the path.")


def _resolve_quoting(quoting: str | None, fmt: str) -> str:
    if quoting is None:
        return "none" if fmt == ".tsv" else "csv"
    if quoting not in QUOTING:
        raise DataError(f"quoting must be one of {', '.join(QUOTING)}, got {quoting!r}.")
    return quoting


def _iter_delimited(path: str, fmt: str, headerless: bool, chunk_size: int, quoting: str,
                    encoding: str = "utf-8"):
    """CSV/TSV chunks. Headerless files get integer column names (renamed by the caller)."""
    import pandas as pd

    from .formats import reading_encoding

    reader = pd.read_csv(
        path, sep="\t" if fmt == ".tsv" else ",", header=None if headerless else 0,
        dtype=str, keep_default_na=False, na_filter=False,
        quoting=csv.QUOTE_NONE if quoting == "none" else csv.QUOTE_MINIMAL,
        chunksize=chunk_size, encoding=reading_encoding(encoding), encoding_errors="strict",
        engine="c",
        compression="infer",
    )
    # A quoted TSV may hide merged rows: quotes that open in one line and close lines later
    # swallow the rows between. Compare rows read with physical lines so that can't pass.
    expected = _count_lines(path) - (0 if headerless else 1) if (
        fmt == ".tsv" and quoting == "csv") else None
    n_rows = 0
    for chunk in reader:
        n_rows += len(chunk)
        # Rows with more fields than the header: pandas would silently turn the extra leading
        # fields into the index and shift every column; refuse instead.
        if not isinstance(chunk.index, pd.RangeIndex):
            n_extra = chunk.index.nlevels
            raise DataError(
                f"'{path}' has {len(chunk.columns) + n_extra} fields a row but its header names "
                f"{len(chunk.columns)} columns; fix the header, or pass --columns with one name "
                "per field for a headerless file.")
        yield chunk
    if expected is not None and n_rows != expected:
        raise DataError(
            f"'{path}' has {expected} data lines but quoting joined them into {n_rows} rows: "
            "quote characters span lines. If quotes are part of the texts, read it with "
            "quoting 'none' (--quoting none, the default for .tsv).")


def _count_lines(path: str) -> int:
    """Non-blank lines of a (possibly gzipped) file: pandas skips blank lines too."""
    opener = gzip.open if path.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def _iter_parquet(path: str, chunk_size: int):
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_size):
        yield batch.to_pandas()


def _check_field_count(frame, names: list, path) -> None:
    """Decision: --columns must name every field, no fewer and no more (no guessing)."""
    if len(frame.columns) != len(names):
        raise DataError(
            f"--columns gives {len(names)} name{'s' if len(names) != 1 else ''} but '{path}' has "
            f"{len(frame.columns)} field{'s' if len(frame.columns) != 1 else ''} a row; give one "
            "name per field.")


def _iter_txt(path: str, chunk_size: int, encoding: str = "utf-8"):
    from .formats import _frames, _iter_lines

    # .txt.gz is decompressed like .csv.gz/.tsv.gz/.jsonl.gz (pandas infers those from the name).
    return _frames(((line,) for line in _iter_lines(path, encoding)), chunk_size, ("text",))


def read_table(path, *, columns=None, quoting: str | None = None, encoding: str | None = None,
               format: str | None = None) -> "pandas.DataFrame":
    """Read the whole of ``path`` into one DataFrame (see :func:`iter_table`)."""
    import pandas as pd

    chunks = list(iter_table(path, columns=columns, quoting=quoting, encoding=encoding,
                             format=format))
    if not chunks:
        raise DataError(f"'{path}' has no rows.")
    frame = pd.concat(chunks, ignore_index=True)
    frame.attrs["bertkit_format"] = chunks[0].attrs.get("bertkit_format")
    return frame


def require_columns(frame, wanted: dict, path) -> None:
    """Raise naming the flag and the columns present when a wanted column is missing.

    ``wanted`` maps a flag name (``"--text-column"``) to a column name or None.
    """
    have = [str(c) for c in frame.columns]
    for flag, col in wanted.items():
        if col is not None and col not in frame.columns:
            hint = _missing_column_hint(frame, path) if flag != "--columns" else ""
            raise DataError(
                f"Column '{col}' ({flag}) is not in '{path}'; its columns are: {', '.join(have)}{hint}."
            )


def _missing_column_hint(frame, path) -> str:
    """What to do when a column is missing, by the format the frame was read as."""
    fmt = frame.attrs.get("bertkit_format")
    if fmt is None:
        name = str(path).lower().removesuffix(".gz")
        fmt = os.path.splitext(name)[1]
    if fmt == ".txt":
        return (" (a .txt file is one text a line, in column 'text'; for labelled lines "
                "'__label__pos some text' use --format fasttext, or use a .tsv/.csv with a header)")
    if fmt in (".csv", ".tsv"):
        return " (a headerless file needs --columns a,b,c)"
    return ""


def default_text_column(frame, path) -> str:
    """The text column when none was named: ``text`` or ``sentence`` or the only column."""
    for name in ("text", "sentence"):
        if name in frame.columns:
            return name
    if len(frame.columns) == 1:
        return frame.columns[0]
    raise DataError(
        f"'{path}' has several columns ({', '.join(map(str, frame.columns))}); "
        "say which holds the text with --text-column."
    )


def text_kind(value) -> str:
    """``"text"``, ``"empty"`` (None, NaN, NA or a blank string) or ``"other"`` (a number,
    bool, list, ...).

    Decision (one policy for embed, train, evaluate and predict): a text column must hold
    strings. A number in a .jsonl/.parquet text column usually means the wrong column was
    picked, so it is refused with the row and column named, never turned into "5" silently.
    (CSV/TSV fields are always strings, so "5" there is text.)
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "empty"
    if isinstance(value, str):
        return "text" if value.strip() else "empty"
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return "empty"
    except ImportError:  # pragma: no cover
        pass
    return "other"


def not_text_error(value, row: int, column, path, flag: str = "--text-column") -> DataError:
    """The error for a non-string value in a text column (``row`` is 1-based)."""
    return DataError(
        f"Row {row} of column '{column}' ({flag}) in '{path}' is {type(value).__name__} "
        f"({value!r:.40}), not text; fix that row or pick another {flag}.")


# The texts of a file (one policy for empty rows) live in bertkit.texts; re-exported here
# lazily, as that module builds on this one.
_TEXTS = ("ON_EMPTY", "TextChunk", "TextScan", "load_texts", "read_texts", "scan_texts")


def __getattr__(name):
    if name in _TEXTS:
        from . import texts

        return getattr(texts, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
