"""The output folder of a Ray run (:mod:`bertkit.ray_engine`): inputs, shards and manifest.

A run numbers every input row by its position (``id``: 0-based, across several input
files in sorted path order) and cuts the ids into **shards** of ``shard_size`` rows:
shard ``k`` holds ids ``[k * shard_size, (k + 1) * shard_size)``. Each shard is written,
atomically and flushed to disk, as ``part-00000k.parquet`` by the Ray worker that
computed it; then the driver records it (rows, size, SHA-256) in ``manifest.json``, also
atomically. ``--resume`` keeps every recorded shard whose file still matches and
recomputes the rest, so a job killed at any point (even ``kill -9``) ends with the same
files as an uninterrupted one. Nothing here imports Ray.

Shard columns: ``id`` (int64), ``text`` (with ``keep_text``), then ``vector``
(fixed-size list of float32) for embed, or ``label`` (string) and ``probabilities``
(fixed-size list of float32, in the manifest's ``labels`` order) for predict. Empty rows
left out with ``on_empty="skip"`` have no row; their ids are missing.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import DataError, InputError
from .io import atomic_path

MANIFEST = "manifest.json"
LAYOUT = "bertkit-ray-shards/1"


def shard_name(k: int) -> str:
    return f"part-{k:06d}.parquet"


def expand_inputs(spec, format: str | None = None, flag: str = "--input") -> list[str]:
    """The input files of ``spec``: a file, a folder (its files of a known format, not
    recursing) or a glob pattern; sorted by path, which fixes the row ids. With
    ``format`` (--format), files of any name."""
    from .data import FORMATS, file_format

    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    files: list[str] = []
    for one in specs:
        one = os.fspath(one)
        if os.path.isdir(one) and format is not None:
            raise InputError(f"{flag} '{one}' with --format: --engine ray reads files (a folder of "
                             "them, or a glob) by extension; use the local engine for a dataset folder.")
        if os.path.isdir(one):
            found = [os.path.join(one, n) for n in os.listdir(one)
                     if not n.startswith((".", "_")) and os.path.isfile(os.path.join(one, n))
                     and any(n.lower().removesuffix(".gz").endswith(e) for e in FORMATS)]
            if not found:
                raise InputError(f"{flag} folder '{one}' holds no {', '.join(FORMATS)} files.")
        elif glob.has_magic(one):
            found = [p for p in glob.glob(one) if os.path.isfile(p)]
            if not found:
                raise InputError(f"{flag} pattern '{one}' matches no files.")
        elif os.path.isfile(one):
            found = [one]
        else:
            raise InputError(f"{flag} '{one}' does not exist; give a file, a folder or a glob pattern.")
        files += found
    files = sorted(dict.fromkeys(os.path.abspath(f) for f in files))
    if format is None:
        for f in files:
            file_format(f)  # an unknown extension fails now, naming the file
    return files


def scan_inputs(files, *, text_column, columns, on_empty, **read) -> list:
    """:func:`bertkit.data.scan_texts` of every file (column, values, empty rows checked
    before any work); returns the scans, whose ``n_rows`` give the id offsets. ``read``:
    ``quoting``, ``encoding``, ``format`` (see :func:`bertkit.data.iter_table`)."""
    from .texts import scan_texts

    return [scan_texts(f, text_column=text_column, columns=columns, on_empty=on_empty, **read)
            for f in files]


def iter_shards(files, scans, *, columns, on_empty, shard_size: int, **read) -> Iterator[dict]:
    """Yield every shard in order: ``{"shard": k, "ids": [...], "texts": [...]}``.

    Texts are read with the local engine's reader (:func:`bertkit.texts.read_texts`), so
    both engines see exactly the same strings. A shard may span two files; one whose rows
    were all left out as empty is yielded with no texts."""
    from .texts import read_texts

    total = sum(s.n_rows for s in scans)
    k, ids, texts, offset = 0, [], [], 0
    for path, scan in zip(files, scans):
        for chunk in read_texts(path, text_column=scan.column, columns=columns, on_empty=on_empty,
                                chunk_size=shard_size, **read):
            for row, text in zip(chunk.rows, chunk.texts):
                i = offset + row - 1
                while i >= (k + 1) * shard_size:  # crossed into a later shard
                    yield {"shard": k, "ids": ids, "texts": texts}
                    k, ids, texts = k + 1, [], []
                ids.append(i)
                texts.append(text)
        offset += scan.n_rows
    n_shards = -(-total // shard_size)
    while k < n_shards:
        yield {"shard": k, "ids": ids, "texts": texts}
        k, ids, texts = k + 1, [], []


# ------------------------------------------------------------------ writing and reading


def write_shard(output, k: int, ids, columns: dict) -> dict:
    """Write shard ``k`` (``id`` then ``columns``, name -> list or 2-D float array)
    atomically and flushed; returns its manifest record."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays, names = [pa.array(np.asarray(ids, dtype=np.int64))], ["id"]
    for name, values in columns.items():
        if isinstance(values, np.ndarray) and values.ndim == 2:  # vectors -> fixed-size lists
            flat = pa.array(np.ascontiguousarray(values, dtype=np.float32).reshape(-1))
            values = pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
        else:
            values = pa.array(values, type=pa.string())
        arrays.append(values)
        names.append(name)
    path = Path(output) / shard_name(k)
    with atomic_path(path, fsync=True) as tmp:
        pq.write_table(pa.table(arrays, names=names), tmp)
    return {"file": path.name, "rows": len(ids), "bytes": path.stat().st_size, "sha256": sha256(path)}


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(1 << 20):
            h.update(data)
    return h.hexdigest()


def read_output(output, columns=None) -> "pandas.DataFrame":
    """The shards of a finished run, concatenated in id order (one DataFrame).

    ``vector``/``probabilities`` cells are float32 arrays; ``np.stack(df["vector"])``
    gives the ``(n, dim)`` matrix."""
    import pandas as pd
    import pyarrow.parquet as pq

    manifest = read_manifest(output)
    if manifest is None:
        raise InputError(f"'{output}' has no {MANIFEST}; it is not the output of a Ray run.")
    if not manifest.get("complete"):
        raise InputError(f"The run writing '{output}' has not finished; run it again with --resume.")
    names = [manifest["shards"][k]["file"] for k in sorted(manifest["shards"], key=int)]
    frames = [pq.read_table(Path(output) / n, columns=columns).to_pandas() for n in names]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# ---------------------------------------------------------------------------- manifest


def read_manifest(output) -> dict | None:
    path = Path(output) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"'{path}' is damaged ({e}); remove the folder, or pass --overwrite.") from None


def write_manifest(output, manifest: dict) -> None:
    with atomic_path(Path(output) / MANIFEST, fsync=True) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")


def open_output(output, settings: dict, *, resume: bool, overwrite: bool, log=None) -> dict:
    """Check the output folder and return its manifest, with the finished shards of an
    earlier run of the same settings when ``resume`` (damaged ones dropped, with a note).

    Decision: an existing run's folder is never merged into silently: without ``resume``
    it needs ``overwrite`` (its shards are then removed), and a resume with other
    settings or other input is refused."""
    from .io import check_writable

    out = Path(output)
    if out.exists() and not out.is_dir():
        raise InputError(f"--output '{output}' is a file; --engine ray writes a folder of shards.")
    check_writable(out / MANIFEST, "--output", kind="file")
    out.mkdir(parents=True, exist_ok=True)
    old = read_manifest(out)
    mine = [p for p in out.iterdir() if p.name == MANIFEST or p.name.startswith("part-")
            or p.name.startswith((".part-", f".{MANIFEST}."))]
    others = [p for p in out.iterdir() if p not in mine]
    if old is None and others:
        raise InputError(f"--output '{output}' is a folder with other files in it; choose an empty or "
                         "new folder.")
    if old is not None and not resume and not overwrite:
        raise InputError(f"--output '{output}' already holds a run's shards; pass --resume to continue "
                         "it, --overwrite to replace it, or choose another folder.")
    if old is not None and resume and old.get("settings") != settings:
        changed = sorted(k for k in set(settings) | set(old.get("settings", {}))
                         if settings.get(k) != old.get("settings", {}).get(k))
        raise InputError(f"--resume: '{output}' was written with other settings or input "
                         f"({', '.join(changed)}); run the same command, or pass --overwrite.")
    shards = {}
    if old is not None and resume:
        shards = _still_good(out, old.get("shards", {}), log)
    for p in mine:  # leftovers: temporary files of a killed run, unrecorded or replaced shards
        if p.name != MANIFEST and p.name not in {s["file"] for s in shards.values()}:
            p.unlink(missing_ok=True)
    manifest = {"layout": LAYOUT, "settings": settings, "shards": shards, "complete": False}
    write_manifest(out, manifest)
    return manifest


def _still_good(out: Path, recorded: dict, log) -> dict:
    good = {}
    for key, rec in recorded.items():
        path = out / rec["file"]
        why = None
        if not path.is_file():
            why = "missing"
        elif path.stat().st_size != rec["bytes"] or sha256(path) != rec["sha256"]:
            why = "its size or checksum changed"
        if why:
            if log is not None:
                log(f"Note: shard {rec['file']} in {out}/ is {why}; recomputing it.")
            continue
        good[key] = rec
    return good
