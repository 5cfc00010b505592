"""Labelled data for fine-tuning: columns, sentence pairs, label maps, bad rows, splits.

A :class:`LabelledSet` holds the texts (and optional second texts of pairs) and labels of
one file, as strings, with every skipped row counted by reason. Labels are kept as
strings ("1" and 1 are the same label), so a CSV file and a Parquet file of the same data
agree; the label <-> id map is built from training data with :func:`label_names`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field

from .errors import DataError, InputError

_INT = re.compile(r"^[+-]?\d+$")


@dataclass
class LabelledSet:
    """Examples read from one file.

    Attributes
    ----------
    texts : list of str, length n
    pairs : list of str or None
        Second texts of sentence pairs (``--pair-column``), else None.
    labels : list of str or None
        Label of each example as a string; None when the file has no label column and
        labels were not required (prediction).
    rows : list of int
        1-based data-row number in the file of each kept example.
    source : str
        The file (or "<dataframe>").
    n_rows : int
        Rows read, including skipped ones.
    skipped : dict of str -> list of int
        Reason ("missing text", "missing pair text", "missing label") -> row numbers.
    """

    texts: list
    pairs: list | None
    labels: list | None
    rows: list
    source: str
    n_rows: int
    skipped: dict = field(default_factory=dict)
    text_column: str | None = None
    pair_column: str | None = None
    label_column: str | None = None

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def n_skipped(self) -> int:
        return len({r for rows in self.skipped.values() for r in rows})

    def skipped_summary(self) -> str:
        """'12 of 500 rows skipped in FILE: 10 missing text (rows 3, 9, ...), 2 missing label'."""
        if not self.skipped:
            return ""
        parts = []
        for reason, rows in self.skipped.items():
            shown = ", ".join(map(str, rows[:5])) + (", ..." if len(rows) > 5 else "")
            parts.append(f"{len(rows)} {reason} (row{'s' if len(rows) > 1 else ''} {shown})")
        return (f"{self.n_skipped} of {self.n_rows} rows skipped in '{self.source}': "
                + "; ".join(parts))

    def subset(self, index) -> "LabelledSet":
        """The examples at positions ``index`` (keeps the skipped-row record)."""
        pick = lambda xs: None if xs is None else [xs[i] for i in index]  # noqa: E731
        return dataclasses.replace(self, texts=pick(self.texts), pairs=pick(self.pairs),
                                   labels=pick(self.labels), rows=pick(self.rows),
                                   skipped=dict(self.skipped))


def _missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(value, str) and not value.strip()


def label_string(value) -> str | None:
    """A label as a string: ``1``, ``1.0``, ``"1"`` and ``" 1 "`` all become ``"1"``;
    missing values become None."""
    if _missing(value):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalar
        return label_string(value.item())
    return str(value).strip()


def load_labelled(data, *, text_column: str | None = None, pair_column: str | None = None,
                  label_column: str | None = "label", columns=None, strict: bool = False,
                  require_labels: bool = True, on_empty: str | None = None,
                  quoting: str | None = None, encoding: str | None = None,
                  format: str | None = None) -> LabelledSet:
    """Read labelled (or, with ``require_labels=False``, possibly unlabelled) examples.

    Parameters
    ----------
    data : str, PathLike or pandas.DataFrame
        A .csv, .tsv, .jsonl or .parquet file (see :func:`bertkit.data.iter_table`), or a
        DataFrame already in memory.
    text_column : str or None, default=None
        Column with the text; None picks ``text`` or ``sentence`` (or the only column).
    pair_column : str or None, default=None
        Column with the second text of a sentence pair (packed after ``[SEP]``).
    label_column : str or None, default="label"
        Column with the labels (strings or integers).
    columns : str or list of str or None, default=None
        Names for the columns of a headerless .csv/.tsv file.
    strict : bool, default=False
        Raise on the first bad row (missing text, pair text or label) instead of
        skipping and counting it.
    require_labels : bool, default=True
        When False, a file without ``label_column`` loads with ``labels=None``.
    on_empty : {"error", "skip"} or None, default=None
        Rows whose text or pair text is empty, by the policy of :mod:`bertkit.data`:
        "error" stops (naming how many and the first rows) before anything is used;
        "skip" leaves them out and counts them in ``skipped`` even with ``strict``. None
        keeps train's own rule: skipped and counted, or with ``strict`` an error at the
        first one. Missing labels always follow ``strict``.
    quoting : {"none", "csv"} or None, default=None
        How quotes are read in .csv/.tsv files (see :func:`bertkit.data.iter_table`; None:
        CSV quoting for .csv, none for .tsv).
    encoding : str or None, default=None (utf-8)
        The text encoding of the file (e.g. "latin-1").
    format : str or None, default=None
        The format when the extension says nothing (see :mod:`bertkit.formats`): e.g.
        "fasttext" (labels in the lines), "folder" (labels from folder or file names).

    Raises
    ------
    DataError
        A column is missing, no usable row is left, or (``strict``) a row is bad.
    """
    import pandas as pd

    from ._validate import check_choice
    from .data import (ON_EMPTY, default_text_column, not_text_error, read_table,
                       require_columns, text_kind)

    if on_empty is not None:
        check_choice("on_empty", on_empty, ON_EMPTY, "load_labelled")

    if isinstance(data, pd.DataFrame):
        frame, source = data, "<dataframe>"
        if columns is not None:
            from .data import _check_field_count, parse_columns

            names = parse_columns(columns)
            _check_field_count(frame, names, source)
            frame = frame.copy()
            frame.columns = names
    else:
        source = os.fspath(data)
        frame = read_table(source, columns=columns, quoting=quoting, encoding=encoding,
                           format=format)
    if text_column is None:
        text_column = default_text_column(frame, source)
    has_labels = label_column is not None and label_column in frame.columns
    if require_labels and not has_labels:
        require_columns(frame, {"--label-column": label_column or "label"}, source)
    require_columns(frame, {"--text-column": text_column, "--pair-column": pair_column}, source)

    texts_in = frame[text_column].tolist()
    pairs_in = frame[pair_column].tolist() if pair_column is not None else None
    labels_in = frame[label_column].tolist() if has_labels else None
    if on_empty == "error":
        _refuse_empty(source, (text_column, texts_in), (pair_column, pairs_in))
    texts, pairs, labels, rows = [], [] if pairs_in is not None else None, [] if has_labels else None, []
    skipped: dict[str, list[int]] = {}
    for i in range(len(texts_in)):
        row = i + 1
        reasons = []
        text = texts_in[i]
        pair = pairs_in[i] if pairs_in is not None else None
        # A number where text belongs is refused, as `embed` does (see data.text_kind).
        for value, col, flag in ((text, text_column, "--text-column"), (pair, pair_column, "--pair-column")):
            if col is not None and text_kind(value) == "other":
                raise not_text_error(value, row, col, source, flag)
        if text_kind(text) == "empty":
            reasons.append(("missing text", text_column, "--text-column"))
        if pairs_in is not None and text_kind(pair) == "empty":
            reasons.append(("missing pair text", pair_column, "--pair-column"))
        label = label_string(labels_in[i]) if has_labels else None
        if has_labels and label is None:
            reasons.append(("missing label", label_column, "--label-column"))
        if reasons:
            fatal = [r for r in reasons if strict and (on_empty is None or r[0] == "missing label")]
            if fatal:
                reason, col, flag = fatal[0]
                raise DataError(
                    f"Row {row} of '{source}' has no {reason.split(' ', 1)[1]}: column '{col}' "
                    f"({flag}) is empty. Fix or remove the row, or leave out --strict to skip "
                    "and count bad rows.")
            for reason, _, _ in reasons:
                skipped.setdefault(reason, []).append(row)
            continue
        texts.append(str(text))
        if pairs is not None:
            pairs.append(str(pair))
        if labels is not None:
            labels.append(label)
        rows.append(row)
    if not texts:
        detail = f" ({'; '.join(f'{len(v)} {k}' for k, v in skipped.items())})" if skipped else ""
        raise DataError(f"'{source}' has no usable rows{detail}; check --text-column, "
                        "--pair-column, --label-column and --columns.")
    return LabelledSet(texts, pairs, labels, rows, source, len(texts_in), skipped,
                       text_column=text_column, pair_column=pair_column,
                       label_column=label_column if has_labels else None)


def _refuse_empty(source, *columns) -> None:
    """Raise the shared empty-row error (bertkit.data.TextScan) for the first text column
    of ``(name, values)`` pairs that has empty rows."""
    from .data import TextScan, text_kind

    for name, values in columns:
        if values is None:
            continue
        scan = TextScan(source, name, "error", where="load_labelled")
        scan.n_rows = len(values)
        for row, value in enumerate(values, 1):
            if text_kind(value) == "empty":
                scan.add_empty(row)
        if scan.n_empty:
            raise scan.error()


def label_names(labels) -> list[str]:
    """The sorted distinct labels, which become class ids 0, 1, ...

    Integer-looking labels sort numerically ("2" before "10"); others alphabetically.
    """
    distinct = {str(x) for x in labels}
    if distinct and all(_INT.match(x) for x in distinct):
        return sorted(distinct, key=lambda x: (int(x), x))
    return sorted(distinct)


def encode_labels(data: LabelledSet, label2id: dict, *, flag: str = "--label-column") -> list[int]:
    """Class ids of ``data.labels``; a label the model never saw is a clear error."""
    ids = []
    for label, row in zip(data.labels, data.rows):
        try:
            ids.append(label2id[label])
        except KeyError:
            unseen = sorted({x for x in data.labels if x not in label2id})
            known = ", ".join(map(repr, label2id))
            raise DataError(
                f"Label {label!r} (row {row} of '{data.source}', {flag}) was not seen in "
                f"training; the model knows {known}. Unseen labels: "
                f"{', '.join(map(repr, unseen[:10]))}{' ...' if len(unseen) > 10 else ''}. "
                "Map them to the training labels or pick the right --label-column."
            ) from None
    return ids


def stratified_split(labels, fraction: float, seed: int):
    """Split positions into (train, validation) keeping each label's share.

    Each label with at least 2 examples puts ``round(fraction * count)`` of them (at least
    1, never all) into validation, drawn with ``numpy.random.default_rng(seed)``. Both
    index lists come back sorted.
    """
    import numpy as np

    if not (0.0 < fraction < 1.0):
        raise InputError(f"The 'val_split' parameter must be between 0 and 1 (exclusive). Got {fraction!r} instead.")
    rng = np.random.default_rng(seed)
    labels = [str(x) for x in labels]
    by_label: dict[str, list[int]] = {}
    for i, y in enumerate(labels):
        by_label.setdefault(y, []).append(i)
    val = []
    for y in label_names(by_label):
        idx = np.array(by_label[y])
        if len(idx) < 2:
            continue
        n_val = min(max(1, int(round(fraction * len(idx)))), len(idx) - 1)
        val.extend(rng.permutation(idx)[:n_val].tolist())
    val_set = set(val)
    train = [i for i in range(len(labels)) if i not in val_set]
    return train, sorted(val)


def example_data(name: str = "") -> str:
    """Path of a small labelled example set shipped with bertkit (``bertkit/data``).

    Without ``name`` returns the folder.
    """
    from importlib.resources import files

    folder = files("bertkit") / "data"
    path = folder / name if name else folder
    if name and not path.is_file():
        have = sorted(p.name for p in folder.iterdir() if not p.name.startswith(("_", ".")))
        raise InputError(f"No example data file {name!r}; bertkit ships: {', '.join(have)}.")
    return str(path)
