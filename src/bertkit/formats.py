"""Which format a data path is in, and the formats whose labels live outside a table.

:func:`bertkit.data.iter_table` reads every input through here: :func:`resolve_format`
tells the format of a path (its extension, a folder's layout, or the ``format`` the user
named), and :func:`iter_special` reads the formats that are not one table file, yielding
the same pandas chunks (columns ``text`` and ``label``, plus ``file`` for folders) so that
everything downstream is unchanged:

* ``fasttext``: lines ``__label__pos __label__x some text``; several labels are joined
  with ``|`` (the multi-label convention), a line without one gets an empty label;
* ``label-first``: lines ``LABEL some text``, the first word the label (TREC's
  ``train_5500.label``: ``DESC:manner How did serfdom develop ?``);
* ``folder`` (only when named: any folder with sub-folders would look like one): a
  folder of class sub-folders, each file one text (aclImdb's ``pos/`` and
  ``neg/``), or a folder of one file per class, each line one text, the label being the
  file name, or its extension when every file shares one name (``rt-polarity.pos``,
  ``rt-polarity.neg``);
* ``hf``: a Hugging Face dataset saved with ``Dataset.save_to_disk`` (Arrow files and
  ``state.json``; recognised by them), read with pyarrow; ClassLabel ids become their names;
* ``parquet`` given a folder (or a glob such as ``data/train-*.parquet``): its shards in
  name order.
"""

from __future__ import annotations

import codecs
import glob
import gzip
import json
import os
from pathlib import Path

from .errors import DataError

#: The names ``format`` (``--format``) accepts.
FORMAT_NAMES = ("csv", "tsv", "jsonl", "parquet", "txt", "fasttext", "label-first", "folder", "hf")
#: Formats that are read from a folder.
FOLDER_FORMATS = ("folder", "hf", "parquet")
#: Table files: never read line by line as a folder of classes.
_TABLE_EXTS = (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".arrow")

DIRECTORY_HELP = (
    "A folder can be read as: class sub-folders with one text per file (aclImdb's pos/ and "
    "neg/; --format folder), one file per class with one text per line (rt-polarity.pos and "
    "rt-polarity.neg; --format folder), a Hugging Face dataset saved with save_to_disk "
    "(--format hf), or parquet shards (--format parquet)")


def _visible(folder: str) -> list[str]:
    return sorted(n for n in os.listdir(folder) if not n.startswith((".", "_")))


def _is_glob(path: str) -> bool:
    return any(c in path for c in "*?[") and not os.path.exists(path)


def parquet_shards(path: str) -> list[str]:
    """The parquet files of a folder or a glob, in name order; refuses mixed splits."""
    import re

    files = sorted(glob.glob(path)) if _is_glob(path) else [
        os.path.join(path, n) for n in _visible(path) if n.endswith(".parquet")]
    files = [f for f in files if os.path.isfile(f)]
    if not files:
        raise DataError(f"No parquet files match '{path}'.")
    splits = {m.group(1) for f in files
              if (m := re.match(r"(.+?)-\d+-of-\d+\.parquet$", os.path.basename(f)))}
    if len(splits) > 1:
        one = min(splits)
        raise DataError(
            f"'{path}' holds parquet shards of several splits ({', '.join(sorted(splits))}); "
            f"name one with a glob, e.g. '{os.path.join(path, one)}-*.parquet'.")
    return files


def detect_folder(path: str) -> str | None:
    """``"hf"`` or ``"parquet"`` for a folder laid out as one, else None.

    Decision: a folder of classes is read only when asked for (``format="folder"``): any
    folder with sub-folders looks like one (a mistyped ``--input .`` would read a project's
    files as texts), while save_to_disk's state.json and parquet files cannot be mistaken."""
    names = _visible(path)
    if "dataset_dict.json" in names:
        splits = [n for n in names if os.path.isdir(os.path.join(path, n))]
        raise DataError(
            f"'{path}' is a Hugging Face DatasetDict with splits {', '.join(splits)}; give one "
            f"split's folder, e.g. '{os.path.join(path, splits[0] if splits else 'train')}'.")
    if "state.json" in names or any(n.endswith(".arrow") for n in names):
        return "hf"
    if any(n.endswith(".parquet") for n in names):
        return "parquet"
    return None


def _visible_files(folder: str) -> list[str]:
    return [n for n in _visible(folder) if os.path.isfile(os.path.join(folder, n))]


def resolve_format(path: str, format: str | None = None, *, flag: str | None = None) -> str:
    """The format of ``path``: ``.txt``, ``.csv``, ``.tsv``, ``.jsonl``, ``.parquet`` (one
    file), or ``fasttext``, ``folder``, ``hf``, ``parquet-shards``.

    ``format`` (one of :data:`FORMAT_NAMES`) overrides the extension; a folder's format is
    told from its layout. Raises a :class:`DataError` naming ``--format`` when it cannot be
    told, and one that says a folder is a folder when its layout is none of those.
    """
    from .data import check_input_file, file_format

    if format is not None and format not in FORMAT_NAMES:
        raise DataError(f"format (--format) must be one of {', '.join(FORMAT_NAMES)}, got {format!r}.")
    if _is_glob(path):
        if format not in (None, "parquet"):
            raise DataError(f"'{path}' is a glob pattern; only parquet shards are read that way.")
        return "parquet-shards"
    where = f" ({flag})" if flag else ""
    if os.path.isdir(path):
        found = detect_folder(path) if format is None else format
        if found is None:
            subdirs = [n for n in _visible(path) if os.path.isdir(os.path.join(path, n))]
            held = (f" It holds sub-folders {', '.join(subdirs[:5])}{', ...' if len(subdirs) > 5 else ''}"
                    "; if they are the classes, pass --format folder." if subdirs else "")
            raise DataError(f"'{path}'{where} is a folder, not a file. {DIRECTORY_HELP}; or give "
                            f"one file.{held}")
        if found not in FOLDER_FORMATS:
            raise DataError(f"'{path}'{where} is a folder, but --format {found} reads a file. "
                            f"{DIRECTORY_HELP}.")
        return "parquet-shards" if found == "parquet" else found
    check_input_file(path, flag)
    if format in ("folder", "hf"):
        raise DataError(f"--format {format} reads a folder, but '{path}' is a file.")
    if format in ("fasttext", "label-first"):
        return format
    if format is not None:
        return "." + format
    return file_format(path)


def check_encoding(encoding: str | None) -> str:
    """The codec name of ``encoding`` (default utf-8); an unknown one names --encoding."""
    encoding = encoding or "utf-8"
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DataError(f"Unknown encoding {encoding!r} (--encoding); use e.g. utf-8, latin-1, "
                        "cp1252 or utf-16.") from None
    return encoding


def reading_encoding(encoding: str) -> str:
    """The codec to read with: a UTF-8 byte-order mark is never text, so utf-8 drops it."""
    return "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding


def _open_binary(path: str):
    return gzip.open(path, "rb") if path.lower().endswith(".gz") else open(path, "rb")


def decode_error(path: str, encoding: str) -> DataError:
    """The error for a file that is not valid ``encoding``: the line and the byte offset in
    the file of the first bad byte, and what to do (found by decoding the file again)."""
    decoder = codecs.getincrementaldecoder(reading_encoding(encoding))("strict")
    offset = 0
    where = "somewhere"
    try:
        with _open_binary(path) as f:
            for n, line in enumerate(f, 1):
                try:
                    decoder.decode(line)
                except UnicodeDecodeError as e:
                    start = max(0, min(len(line) - 1, e.start - (len(e.object) - len(line))))
                    where = (f"byte {line[start:start + 1]!r} on line {n} (byte offset "
                             f"{offset + start} of the file)")
                    break
                offset += len(line)
    except OSError:  # pragma: no cover - the caller's read failed first
        pass
    hint = ("pass its encoding with --encoding (e.g. --encoding latin-1 or cp1252), or re-save it "
            "as UTF-8" if codecs.lookup(encoding).name == "utf-8"
            else "pass the right --encoding")
    name = "UTF-8" if codecs.lookup(encoding).name == "utf-8" else encoding
    return DataError(f"'{path}' is not valid {name} (--encoding {encoding}): {where}; {hint}.")


def _read_text_file(path: str, encoding: str) -> str:
    try:
        with open(path, encoding=reading_encoding(encoding), newline=None) as f:
            return f.read()
    except UnicodeDecodeError:
        raise decode_error(path, encoding) from None


def _iter_lines(path: str, encoding: str):
    """Lines of a (possibly gzipped) text file without their line ends."""
    opener = gzip.open if path.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding=reading_encoding(encoding), newline=None) as f:
            for line in f:
                yield line.rstrip("\n")
    except UnicodeDecodeError:
        raise decode_error(path, encoding) from None


def _frames(records, chunk_size: int, columns: tuple):
    """Pandas frames of ``chunk_size`` rows from an iterable of tuples."""
    import pandas as pd

    rows = []
    for record in records:
        rows.append(record)
        if len(rows) >= chunk_size:
            yield pd.DataFrame(rows, columns=list(columns))
            rows = []
    if rows:
        yield pd.DataFrame(rows, columns=list(columns))


LABEL_PREFIX = "__label__"


def parse_fasttext(line: str) -> tuple[str, str]:
    """``"__label__a __label__b some text"`` -> ``("some text", "a|b")`` (labels joined
    with ``|``; ``""`` when the line has none)."""
    labels, rest = [], line.lstrip()
    while rest.startswith(LABEL_PREFIX):
        word, _, rest = rest.partition(" ")
        labels.append(word[len(LABEL_PREFIX):])
        rest = rest.lstrip()
    return rest, "|".join(labels)


def _label_first(line: str) -> tuple[str, str]:
    """``"DESC:manner How did it go ?"`` -> ``("How did it go ?", "DESC:manner")``."""
    label, _, text = line.strip().partition(" ")
    return text.strip(), label


def _class_files(path: str) -> list[tuple[str, str]]:
    """(label, file) of a folder of one file per class: the label is the file name without
    its extension, or the extension when every file has the same name (rt-polarity.pos)."""
    files = _visible_files(path)
    if not files:
        raise DataError(f"'{path}' holds no files. {DIRECTORY_HELP}.")
    tables = [f for f in files if f.lower().endswith(_TABLE_EXTS)]
    if tables:  # data tables are not lists of texts: reading their lines would mangle them
        raise DataError(f"'{path}' holds data tables ({', '.join(tables[:3])}); --format folder "
                        "reads text files of one class each. Give a table file itself instead.")
    stems = {os.path.splitext(f)[0] for f in files}
    if len(stems) == 1 and len(files) > 1:
        return [(os.path.splitext(f)[1].lstrip("."), f) for f in files]
    labels = [os.path.splitext(f)[0] for f in files]
    if len(set(labels)) != len(labels):
        raise DataError(f"'{path}': files {', '.join(files)} would give the same label twice.")
    return list(zip(labels, files))


def _iter_folder(path: str, chunk_size: int, encoding: str):
    subdirs = [d for d in _visible(path) if os.path.isdir(os.path.join(path, d))]
    if subdirs:  # class sub-folders: one text per file
        def records():
            for label in subdirs:
                folder = os.path.join(path, label)
                for name in _visible_files(folder):
                    text = _read_text_file(os.path.join(folder, name), encoding)
                    yield text[:-1] if text.endswith("\n") else text, label, f"{label}/{name}"
    else:  # one file per class: one text per line
        def records():
            for label, name in _class_files(path):
                for line in _iter_lines(os.path.join(path, name), encoding):
                    yield line, label, name
    return _frames(records(), chunk_size, ("text", "label", "file"))


def _hf_files(path: str) -> list[str]:
    state = os.path.join(path, "state.json")
    if os.path.isfile(state):
        with open(state, encoding="utf-8") as f:
            names = [d["filename"] for d in json.load(f).get("_data_files", [])]
    else:
        names = [n for n in _visible(path) if n.endswith(".arrow")]
    if not names:
        raise DataError(f"'{path}' has no Arrow data files; is it a folder written by "
                        "Dataset.save_to_disk?")
    return [os.path.join(path, n) for n in names]


def _class_names(path: str) -> dict:
    """Column -> ClassLabel names (also for a sequence of ClassLabel) from dataset_info.json."""
    info = os.path.join(path, "dataset_info.json")
    if not os.path.isfile(info):
        return {}
    with open(info, encoding="utf-8") as f:
        features = json.load(f).get("features") or {}
    out = {}
    for name, feat in features.items():
        inner = feat.get("feature") if isinstance(feat, dict) and feat.get("_type") in ("Sequence", "List") else None
        for f_ in (feat, inner):
            if isinstance(f_, dict) and f_.get("_type") == "ClassLabel" and f_.get("names"):
                out[name] = list(f_["names"])
    return out


def _read_arrow(file: str):
    import pyarrow as pa

    try:
        with pa.memory_map(file) as source:
            try:
                return pa.ipc.open_stream(source).read_all()  # what save_to_disk writes
            except pa.ArrowInvalid:
                source.seek(0)
                return pa.ipc.open_file(source).read_all()
    except pa.ArrowInvalid as e:
        raise DataError(f"Could not read '{file}' as an Arrow file: {e}") from None


def _iter_hf(path: str, chunk_size: int):
    names = _class_names(path)

    def frames():
        for file in _hf_files(path):
            table = _read_arrow(file)
            for start in range(0, table.num_rows, chunk_size):
                frame = table.slice(start, chunk_size).to_pandas()
                for col, classes in names.items():
                    if col in frame.columns:
                        frame[col] = [_class_name(v, classes) for v in frame[col].tolist()]
                yield frame

    return rechunk(frames(), chunk_size)


def _class_name(value, classes):
    """ClassLabel id -> name; a list of ids (multi-label) -> names joined with "|"."""
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return "|".join(str(_class_name(v, classes)) for v in value)
    if value is None or not isinstance(value, int) or not 0 <= value < len(classes):
        return value  # -1 (no label) and missing values stay as they are
    return classes[value]


def _iter_shards(path: str, chunk_size: int):
    from .data import _iter_parquet

    def frames():
        columns = None
        for file in parquet_shards(path):
            for frame in _iter_parquet(file, chunk_size):
                if columns is None:
                    columns = list(frame.columns)
                elif list(frame.columns) != columns:
                    raise DataError(f"Parquet shard '{file}' has columns {list(frame.columns)}, "
                                    f"not {columns} as the first shard.")
                yield frame

    return rechunk(frames(), chunk_size)


def rechunk(frames, chunk_size: int):
    """Frames of exactly ``chunk_size`` rows (the last may be shorter) from any frames, so
    that chunk ``k`` starts at row ``k * chunk_size`` (embed's --resume relies on it)."""
    import pandas as pd

    pending = []
    n = 0
    for frame in frames:
        pending.append(frame)
        n += len(frame)
        while n >= chunk_size:
            whole = pd.concat(pending, ignore_index=True)
            yield whole.iloc[:chunk_size].reset_index(drop=True)
            rest = whole.iloc[chunk_size:].reset_index(drop=True)
            pending, n = [rest], len(rest)
    if n:
        yield pd.concat(pending, ignore_index=True)


def iter_special(path: str, fmt: str, chunk_size: int, encoding: str):
    """Frames of a fasttext file, a folder, a save_to_disk dataset or parquet shards."""
    if fmt == "fasttext":
        records = (parse_fasttext(line) for line in _iter_lines(path, encoding))
        return _frames(records, chunk_size, ("text", "label"))
    if fmt == "label-first":
        records = (_label_first(line) for line in _iter_lines(path, encoding))
        return _frames(records, chunk_size, ("text", "label"))
    if fmt == "folder":
        return _iter_folder(path, chunk_size, encoding)
    if fmt == "hf":
        return _iter_hf(path, chunk_size)
    return _iter_shards(path, chunk_size)


def fingerprint(path) -> dict:
    """``{"path", "size", "sha256"}`` of a file, or of every file of a folder (names and
    contents) or a glob: what --resume and the search index compare."""
    import hashlib

    path = os.fspath(path)
    if os.path.isfile(path):
        files, root = [path], None
    else:
        root = None if _is_glob(path) else path
        files = (sorted(glob.glob(path)) if root is None else
                 sorted(str(p) for p in Path(path).rglob("*") if p.is_file()))
    h, size = hashlib.sha256(), 0
    for file in files:
        if root is not None:
            h.update(os.path.relpath(file, root).encode("utf-8") + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
                size += len(block)
    return {"path": os.path.abspath(path), "size": size, "sha256": h.hexdigest()}
