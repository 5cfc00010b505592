"""Reading texts and labelled rows from .txt, .csv, .tsv, .jsonl and .parquet files.

All readers keep text exactly as written (no NA guessing: the string "NA" stays "NA"),
stream in chunks so memory stays flat on large files, and turn unreadable input into one
clear :class:`~bertkit.errors.DataError`.
"""

from __future__ import annotations

import csv
import os
from typing import Iterator, Sequence

from .errors import DataError

FORMATS = (".txt", ".csv", ".tsv", ".jsonl", ".json", ".parquet")


def file_format(path) -> str:
    """The format of ``path`` from its extension (``.gz`` allowed on text formats)."""
    name = str(path).lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for ext in FORMATS:
        if name.endswith(ext):
            return ".jsonl" if ext == ".json" else ext
    raise DataError(
        f"Cannot tell the format of '{path}'; use one of {', '.join(FORMATS)} as its extension."
    )


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


def iter_table(path, *, columns=None, chunk_size: int = 10_000) -> Iterator["pandas.DataFrame"]:
    """Yield ``path`` as pandas DataFrames of at most ``chunk_size`` rows.

    Parameters
    ----------
    path : str or PathLike
        A .txt (one text a line, column ``text``), .csv/.tsv (header row unless ``columns``
        is given; CSV quoting understood), .jsonl or .parquet file.
    columns : str or list of str or None, default=None
        Column names for a headerless .csv/.tsv (e.g. ``"source,label,mark,sentence"``).
    chunk_size : int, default=10000
        Rows per yielded frame.
    """
    import pandas as pd

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"File '{path}' does not exist; check the path.")
    fmt = file_format(path)
    names = parse_columns(columns)
    try:
        if fmt == ".txt":
            yield from _iter_txt(path, chunk_size)
        elif fmt in (".csv", ".tsv"):
            reader = pd.read_csv(
                path, sep="\t" if fmt == ".tsv" else ",", header=None if names else 0,
                names=names, dtype=str, keep_default_na=False, na_filter=False,
                quoting=csv.QUOTE_MINIMAL, chunksize=chunk_size, encoding="utf-8",
                encoding_errors="strict", engine="c",
            )
            for chunk in reader:
                yield chunk
        elif fmt == ".jsonl":
            for chunk in pd.read_json(path, lines=True, chunksize=chunk_size, dtype=False,
                                      encoding="utf-8"):
                if names:
                    chunk.columns = names[: len(chunk.columns)]
                yield chunk
        else:
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_size):
                frame = batch.to_pandas()
                if names:
                    frame.columns = names[: len(frame.columns)]
                yield frame
    except UnicodeDecodeError as e:
        raise DataError(
            f"'{path}' is not valid UTF-8 (byte {e.object[e.start:e.start + 1]!r} at offset "
            f"{e.start} of a block); re-save the file as UTF-8."
        ) from None
    except (pd.errors.ParserError, ValueError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"Could not parse '{path}' as {fmt}: {msg}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"'{path}' is empty.") from None
    except OSError as e:
        raise DataError(f"Could not read '{path}': {e}") from None


def _iter_txt(path: str, chunk_size: int):
    import pandas as pd

    with open(path, encoding="utf-8", errors="strict", newline=None) as f:
        rows = []
        for line in f:
            rows.append(line.rstrip("\n"))
            if len(rows) >= chunk_size:
                yield pd.DataFrame({"text": rows})
                rows = []
        if rows:
            yield pd.DataFrame({"text": rows})


def read_table(path, *, columns=None) -> "pandas.DataFrame":
    """Read the whole of ``path`` into one DataFrame (see :func:`iter_table`)."""
    import pandas as pd

    chunks = list(iter_table(path, columns=columns))
    if not chunks:
        raise DataError(f"'{path}' has no rows.")
    return pd.concat(chunks, ignore_index=True)


def require_columns(frame, wanted: dict, path) -> None:
    """Raise naming the flag and the columns present when a wanted column is missing.

    ``wanted`` maps a flag name (``"--text-column"``) to a column name or None.
    """
    have = [str(c) for c in frame.columns]
    for flag, col in wanted.items():
        if col is not None and col not in frame.columns:
            hint = " (a headerless file needs --columns a,b,c)" if flag != "--columns" else ""
            raise DataError(
                f"Column '{col}' ({flag}) is not in '{path}'; its columns are: {', '.join(have)}{hint}."
            )


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
