"""The texts of a file: one reader with one empty-row policy (see :mod:`bertkit.data`).

Used by embed, similarity, search, predict and train through :mod:`bertkit.data`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from .data import default_text_column, iter_table, not_text_error, require_columns, text_kind
from .errors import DataError

#: What an empty row of a text column does: stop with an error, or be left out and counted.
ON_EMPTY = ("error", "skip")


class TextScan:
    """The rows and empty rows of one text column, and the empty-row policy applied to them.

    What :func:`scan_texts` returns, and the one place the policy's error and note are
    worded (see the module docstring). Only the first :attr:`SHOWN` empty row numbers are
    kept, so memory stays flat.

    Attributes
    ----------
    path, column : str
    on_empty : {"error", "skip"}
    n_rows : int
        Rows read (empty ones included).
    n_empty : int
        Empty rows among them.
    first_empty : list of int
        1-based numbers of the first empty rows.
    """

    SHOWN = 5

    def __init__(self, path, column, on_empty: str = "error", *, where: str = "read_texts"):
        from ._validate import check_choice

        self.on_empty = check_choice("on_empty", on_empty, ON_EMPTY, where)
        self.path, self.column = str(path), column
        self.n_rows = self.n_empty = 0
        self.first_empty: list[int] = []

    def __repr__(self) -> str:
        return (f"TextScan(path={self.path!r}, column={self.column!r}, n_rows={self.n_rows}, "
                f"n_empty={self.n_empty})")

    @property
    def n_texts(self) -> int:
        return self.n_rows - self.n_empty

    def add_empty(self, row: int) -> None:
        self.n_empty += 1
        if len(self.first_empty) < self.SHOWN:
            self.first_empty.append(row)

    def rows_text(self) -> str:
        """'row 2', 'rows 2, 5' or 'first rows 2, 5, 7, 9, 12' (when more are empty)."""
        shown = ", ".join(map(str, self.first_empty))
        if self.n_empty > len(self.first_empty):
            return f"first rows {shown}"
        return f"row{'s' if self.n_empty > 1 else ''} {shown}"

    def error(self) -> DataError:
        """The error for empty rows under ``on_empty="error"``."""
        verb = "is" if self.n_empty == 1 else "are"
        return DataError(
            f"{self.n_empty} of {self.n_rows} rows of column '{self.column}' in '{self.path}' {verb} "
            f"empty ({self.rows_text()}); remove them, or pass --skip-empty (on_empty='skip') to "
            "leave them out and count them.")

    def note(self) -> str:
        """The note for rows left out under ``on_empty="skip"`` ('' when none were)."""
        if not self.n_empty:
            return ""
        return (f"left out {self.n_empty} empty row(s) of column '{self.column}' in '{self.path}' "
                f"({self.rows_text()}; --skip-empty)")


@dataclass
class TextChunk:
    """Texts of consecutive rows of a file (one chunk of :func:`read_texts`, or all of
    :func:`load_texts`).

    Attributes
    ----------
    texts : list of str
        The non-empty texts, in file order.
    rows : list of int
        1-based data-row number of each text (``len(rows) == len(texts)``).
    skipped : list of int
        1-based rows left out as empty (``on_empty="skip"``).
    start : int
        0-based position in the file of the chunk's first row.
    n_rows : int
        Rows in the chunk, kept and skipped.
    column : str
        The text column.
    scan : TextScan or None
        From :func:`load_texts`: the counts of the whole file and :meth:`TextScan.note`.
    """

    texts: list
    rows: list
    skipped: list
    start: int
    n_rows: int
    column: str
    scan: "TextScan | None" = None


def read_texts(path, *, text_column: str | None = None, columns=None, on_empty: str = "error",
               chunk_size: int = 10_000, flag: str = "--text-column", quoting: str | None = None,
               encoding: str | None = None, format: str | None = None) -> Iterator[TextChunk]:
    """The texts of ``path``: an iterator of :class:`TextChunk` s of ``chunk_size`` rows.

    Parameters
    ----------
    path : str or PathLike
        A .txt, .csv, .tsv, .jsonl or .parquet file (see :func:`iter_table`).
    text_column : str or None, default=None
        The column with the text; None picks ``text``, ``sentence`` or the only column.
    columns : str or list of str or None, default=None
        Names for the columns of a headerless .csv/.tsv (see :func:`iter_table`).
    on_empty : {"error", "skip"}, default="error"
        Empty rows: an error (raised before the chunk holding the first one is yielded,
        after counting the rest of the file for the message), or left out and listed in
        ``TextChunk.skipped``. See the module docstring for the policy.
    chunk_size : int, default=10000
        Rows per chunk (the last may be shorter; a chunk may hold no texts when all its
        rows were skipped). Chunk ``k`` always starts at row ``k * chunk_size``.
    flag : str, default="--text-column"
        The option named in errors about the column.
    quoting, encoding, format : str or None, default=None
        How the file is read (see :func:`bertkit.data.iter_table`): quotes in .csv/.tsv,
        the text encoding (utf-8), and the format when the extension says nothing.

    Raises
    ------
    DataError
        Unreadable file, missing column, a non-text value, empty rows (``on_empty="error"``),
        a file without rows, or one whose rows are all empty.
    """
    scan = TextScan(path, text_column, on_empty)  # checks on_empty now, not at the first chunk
    frames = iter_table(path, columns=columns, chunk_size=chunk_size, quoting=quoting,
                        encoding=encoding, format=format)
    return _read_texts(scan, frames, flag)


def _read_texts(scan: TextScan, frames, flag: str) -> Iterator[TextChunk]:
    path, col, on_empty = scan.path, scan.column, scan.on_empty
    for frame in frames:
        if col is None:
            col = scan.column = default_text_column(frame, path)
        require_columns(frame, {flag: col}, path)
        texts, rows, skipped, start = [], [], [], scan.n_rows
        for row, value in enumerate(frame[col].tolist(), start + 1):
            kind = text_kind(value)
            if kind == "text":
                texts.append(value)
                rows.append(row)
            elif kind == "empty":
                skipped.append(row)
                scan.add_empty(row)
            else:
                raise not_text_error(value, row, col, path, flag)
        scan.n_rows += len(frame)
        if skipped and on_empty == "error":
            for rest in frames:  # count the rest, so the message says how many rows to fix
                for row, value in enumerate(rest[col].tolist(), scan.n_rows + 1):
                    if text_kind(value) == "empty":
                        scan.add_empty(row)
                scan.n_rows += len(rest)
            raise scan.error()
        yield TextChunk(texts, rows, skipped, start, len(frame), col)
    if scan.n_rows == 0:
        raise DataError(f"'{path}' has no rows of text.")
    if scan.n_empty == scan.n_rows:
        raise DataError(f"All {scan.n_rows} rows of column '{col}' in '{path}' are empty; there is "
                        "no text to read.")


def scan_texts(path, *, text_column: str | None = None, columns=None, on_empty: str = "error",
               chunk_size: int = 50_000, flag: str = "--text-column", **read) -> TextScan:
    """Check the texts of ``path`` in one streaming pass, keeping none: the column, the
    values and the empty-row policy, as :func:`read_texts` does. Returns the
    :class:`TextScan` (row counts, e.g. for a progress bar, and the note to show).
    ``read``: ``quoting``, ``encoding``, ``format`` as in :func:`read_texts`."""
    scan = TextScan(path, text_column, on_empty, where="scan_texts")
    for chunk in read_texts(path, text_column=text_column, columns=columns, on_empty=on_empty,
                            chunk_size=chunk_size, flag=flag, **read):
        scan.n_rows += chunk.n_rows
        scan.column = chunk.column
        for row in chunk.skipped:
            scan.add_empty(row)
    return scan


def load_texts(path, *, text_column: str | None = None, columns=None, on_empty: str = "error",
               flag: str = "--text-column", **read) -> TextChunk:
    """All the texts of ``path`` in one :class:`TextChunk` (see :func:`read_texts`);
    ``skipped`` lists every row left out under ``on_empty="skip"`` and ``scan.note()``
    words the note to show about them. ``read``: ``quoting``, ``encoding``, ``format`` as
    in :func:`read_texts`."""
    out = TextChunk([], [], [], 0, 0, text_column, TextScan(path, text_column, on_empty, where="load_texts"))
    for chunk in read_texts(path, text_column=text_column, columns=columns, on_empty=on_empty,
                            flag=flag, **read):
        out.texts += chunk.texts
        out.rows += chunk.rows
        out.skipped += chunk.skipped
        out.n_rows = out.scan.n_rows = out.n_rows + chunk.n_rows
        out.column = out.scan.column = chunk.column
        for row in chunk.skipped:
            out.scan.add_empty(row)
    return out
