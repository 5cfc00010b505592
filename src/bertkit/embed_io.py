"""Streaming, resumable embedding output for ``bertkit embed``.

A run embeds its input chunk by chunk. Each finished chunk is saved in a folder beside the
output (``OUTPUT.partial/``: ``chunk_000000.npy`` with the vectors, ``chunk_000000.json``
with the texts and, for token/word level, the tokens/words and offsets) and recorded in
``manifest.json`` together with every setting that affects the numbers. When all chunks
are done the final file is assembled from them one chunk at a time (memory stays flat),
written atomically, and the folder is removed. ``--resume`` reuses the finished chunks of
an interrupted run (refusing if any setting or the input file changed), so the final file
is byte-for-byte what an uninterrupted run writes.

Crash safety: chunk files are flushed to disk (fsync) before they are renamed into place,
and the manifest records each file's size and SHA-256. On ``--resume`` every recorded
chunk is checked against them; a damaged or missing one (cut short by a crash or a full
disk) is dropped with a note and recomputed, instead of failing at assembly. The input is
identified by its size and the SHA-256 of its bytes (not its modification time), so an
edited file is noticed even with the same size and time, and a merely touched or copied
one can still be resumed.

Output formats, by extension:

========  ==========================================  ===========================================
format    sentence level                              token / word level
========  ==========================================  ===========================================
.npy      float32 ``[n_texts, dim]``                  (not available)
.npz      ``embeddings`` ``[n_texts, dim]``,          ``vectors`` ``[n_items, dim]``, ``text_index``
          ``texts`` ``[n_texts]`` (unicode)           ``[n_items]``, ``items`` (tokens or words),
                                                      ``offsets`` ``[n_items, 2]``, ``texts``
.parquet  ``text``, ``vector`` (fixed-size list)      one row per text: ``text``, ``tokens``/``words``,
                                                      ``offsets``, ``vectors``
.jsonl    ``{"text", "vector"}`` per line             ``{"text", "tokens"/"words", "offsets",
                                                      "vectors"}`` per line
========  ==========================================  ===========================================
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .io import atomic_path

SENTENCE_FORMATS = (".npy", ".npz", ".parquet", ".jsonl")
ITEM_FORMATS = (".npz", ".parquet", ".jsonl")


def output_format(path, level: str) -> str:
    """The output format of ``path`` from its extension, checked against ``level``."""
    name = str(path).lower()
    ext = next((e for e in SENTENCE_FORMATS if name.endswith(e)), None)
    if ext is None:
        raise InputError(
            f"Cannot tell the output format of '{path}'; use one of "
            f"{', '.join(SENTENCE_FORMATS)} as its extension.")
    if level != "sentence" and ext not in ITEM_FORMATS:
        raise InputError(
            f"--level {level} gives a different number of vectors per text, which a single .npy "
            f"array cannot hold; write {', '.join(ITEM_FORMATS)} instead.")
    return ext


def item_key(level: str) -> str:
    return "tokens" if level == "token" else "words"


@dataclass
class Chunk:
    """The embeddings of one chunk of input rows.

    ``vectors`` is ``[n_texts, dim]`` at sentence level and ``[n_items, dim]`` (every text's
    tokens or words, one after another) at token/word level, where ``items``/``offsets``
    hold per text the token or word strings and their ``[start, end]`` character spans.
    """

    texts: list
    vectors: np.ndarray
    items: list | None = None
    offsets: list | None = None
    n_truncated: int = 0
    n_skipped: int = 0

    @classmethod
    def from_results(cls, texts, result, level: str, n_truncated: int = 0, n_skipped: int = 0,
                     *, dim: int):
        if level == "sentence":
            vectors = np.asarray(result, dtype=np.float32).reshape(-1, dim)
            return cls(list(texts), np.ascontiguousarray(vectors), n_truncated=n_truncated,
                       n_skipped=n_skipped)
        key = item_key(level)
        items = [list(getattr(r, key)) for r in result]
        offsets = [[list(o) for o in r.offsets] for r in result]
        vectors = (np.concatenate([r.vectors for r in result], axis=0) if result
                   else np.zeros((0, dim), np.float32))
        return cls(list(texts), np.ascontiguousarray(vectors, dtype=np.float32), items, offsets,
                   n_truncated, n_skipped)

    def records(self, level: str):
        """Yield one JSON-ready dict per text."""
        if level == "sentence":
            for text, vec in zip(self.texts, self.vectors):
                yield {"text": text, "vector": vec.tolist()}
            return
        key, pos = item_key(level), 0
        for text, items, offs in zip(self.texts, self.items, self.offsets):
            vecs = self.vectors[pos: pos + len(items)]
            pos += len(items)
            yield {"text": text, key: items, "offsets": offs, "vectors": vecs.tolist()}


def partial_dir(output) -> Path:
    """The folder of finished chunks of a run writing ``output``: ``OUTPUT.partial/``."""
    output = Path(output)
    return output.with_name(output.name + ".partial")


class ChunkStore:
    """Finished chunks of one run, in ``OUTPUT.partial/`` with a manifest of its settings."""

    def __init__(self, output, settings: dict, resume: bool = False):
        self.output = Path(output)
        self.dir = partial_dir(self.output)
        self.manifest_path = self.dir / "manifest.json"
        self.settings = settings
        self.chunks: dict[int, dict] = {}
        self.resumed = 0
        self.damaged: dict[int, str] = {}  # chunk -> why it is recomputed (for a note on stderr)
        if self.dir.exists():
            manifest = self._read_manifest()
            done = {int(k): v for k, v in (manifest or {}).get("chunks", {}).items()}
            if done and not resume:
                raise InputError(
                    f"'{self.dir}' holds {len(done)} finished chunk(s) of an interrupted run; pass "
                    "--resume to continue it, or delete that folder to start over.")
            if done and manifest.get("settings") != settings:
                old = manifest.get("settings", {})
                diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
                raise InputError(
                    f"Cannot resume: '{self.dir}' was made with different settings or input "
                    f"(differs in: {', '.join(diff)}); rerun with the same options, or delete "
                    "that folder to start over.")
            for k, info in done.items():
                problem = self._chunk_problem(k, info)
                if problem is None:
                    self.chunks[k] = info
                else:
                    self.damaged[k] = problem
            self.resumed = len(self.chunks)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_manifest()

    # -- manifest
    def _read_manifest(self):
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _write_manifest(self) -> None:
        data = {"settings": self.settings, "chunks": {str(k): v for k, v in sorted(self.chunks.items())}}
        with atomic_path(self.manifest_path, fsync=True) as tmp:
            tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")

    def _paths(self, k: int):
        return self.dir / f"chunk_{k:06d}.npy", self.dir / f"chunk_{k:06d}.json"

    def _chunk_problem(self, k: int, info: dict) -> str | None:
        """Why chunk ``k``'s files do not match the manifest (None when they do)."""
        recorded = info.get("files")
        for path, key in zip(self._paths(k), ("npy", "json")):
            if not path.is_file():
                return f"{path.name} is missing"
            if not recorded:  # a manifest without checksums: a file that loads will do
                continue
            want = recorded[key]
            size = path.stat().st_size
            if size != want["size"]:
                return f"{path.name} has {size} bytes, not {want['size']}"
            if _sha256_file(path) != want["sha256"]:
                return f"{path.name} does not match its checksum"
        if not recorded:
            try:
                self.load(k, info)
            except (OSError, ValueError, KeyError) as e:
                return f"it cannot be read ({type(e).__name__})"
        return None

    # -- chunks
    def has(self, k: int) -> bool:
        return k in self.chunks

    def info(self, k: int) -> dict:
        return self.chunks[k]

    def save(self, k: int, chunk: Chunk) -> None:
        """Save chunk ``k`` (files first, flushed to disk, then the manifest entry with their
        sizes and checksums, each atomically)."""
        npy, meta = self._paths(k)
        buf = io.BytesIO()
        np.save(buf, chunk.vectors, allow_pickle=False)
        files = {}
        for path, key, data in (
            (npy, "npy", buf.getvalue()),
            (meta, "json", json.dumps({"texts": chunk.texts, "items": chunk.items,
                                       "offsets": chunk.offsets}, ensure_ascii=False).encode("utf-8")),
        ):
            with atomic_path(path, fsync=True) as tmp:
                tmp.write_bytes(data)
            files[key] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        self.chunks[k] = {
            "n_texts": len(chunk.texts), "n_items": int(chunk.vectors.shape[0]),
            "dim": int(chunk.vectors.shape[1]), "n_truncated": chunk.n_truncated,
            "n_skipped": chunk.n_skipped,
            "max_text": max((len(t) for t in chunk.texts), default=1),
            "max_item": max((len(s) for it in (chunk.items or []) for s in it), default=1),
            "files": files,
        }
        self._write_manifest()

    def load(self, k: int, info: dict | None = None) -> Chunk:
        npy, meta = self._paths(k)
        m = json.loads(meta.read_text(encoding="utf-8"))
        info = self.chunks[k] if info is None else info
        return Chunk(m["texts"], np.load(npy, allow_pickle=False), m["items"], m["offsets"],
                     info["n_truncated"], info["n_skipped"])

    def iter_chunks(self):
        for k in sorted(self.chunks):
            yield self.load(k)

    def totals(self) -> dict:
        infos = [self.chunks[k] for k in sorted(self.chunks)]
        return {
            "n_texts": sum(i["n_texts"] for i in infos), "n_items": sum(i["n_items"] for i in infos),
            "dim": infos[0]["dim"] if infos else 0,
            "n_truncated": sum(i["n_truncated"] for i in infos),
            "n_skipped": sum(i["n_skipped"] for i in infos),
            "max_text": max((i["max_text"] for i in infos), default=1),
            "max_item": max((i["max_item"] for i in infos), default=1),
        }

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- final files
def _npy_header(f, shape, dtype) -> None:
    np.lib.format.write_array_header_1_0(
        f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
            "shape": tuple(int(s) for s in shape)})


def _stream_npy(f, shape, dtype, parts) -> None:
    """Write an .npy of ``shape``/``dtype`` to the open binary ``f`` from array ``parts``."""
    _npy_header(f, shape, dtype)
    written = 0
    for part in parts:
        part = np.ascontiguousarray(part, dtype=dtype)
        f.write(part.tobytes())
        written += part.shape[0] if part.ndim else 1
    if written != (shape[0] if shape else 1):  # pragma: no cover - a bug, not user input
        raise RuntimeError(f"wrote {written} rows, expected {shape[0]}")


def assemble(store: ChunkStore, path, level: str) -> dict:
    """Write the final output from the store's chunks (one chunk in memory at a time).

    Returns the totals (``n_texts``, ``n_items``, ``dim``, ...).
    """
    fmt = output_format(path, level)
    t = store.totals()
    n, dim = t["n_texts"], t["dim"]
    with atomic_path(path) as tmp:
        if fmt == ".npy":
            with open(tmp, "wb") as f:
                _stream_npy(f, (n, dim), np.float32, (c.vectors for c in store.iter_chunks()))
        elif fmt == ".npz":
            _write_npz(tmp, store, level, t)
        elif fmt == ".parquet":
            _write_parquet(tmp, store, level, dim)
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                for chunk in store.iter_chunks():
                    for rec in chunk.records(level):
                        f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return t


def _write_npz(tmp, store: ChunkStore, level: str, t: dict) -> None:
    n, dim = t["n_texts"], t["dim"]
    text_dtype = f"<U{max(1, t['max_text'])}"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        def member(name, shape, dtype, parts):
            with zf.open(name + ".npy", "w", force_zip64=True) as f:
                _stream_npy(f, shape, dtype, parts)

        if level == "sentence":
            member("embeddings", (n, dim), np.float32, (c.vectors for c in store.iter_chunks()))
            member("texts", (n,), text_dtype, (np.array(c.texts, dtype=text_dtype) for c in store.iter_chunks()))
            return
        m = t["n_items"]
        member("vectors", (m, dim), np.float32, (c.vectors for c in store.iter_chunks()))

        def text_index():
            base = 0
            for c in store.iter_chunks():
                yield np.repeat(np.arange(base, base + len(c.texts), dtype=np.int64),
                                [len(it) for it in c.items])
                base += len(c.texts)

        member("text_index", (m,), np.int64, text_index())
        item_dtype = f"<U{max(1, t['max_item'])}"
        member("items", (m,), item_dtype,
               (np.array([s for it in c.items for s in it], dtype=item_dtype) for c in store.iter_chunks()))
        member("offsets", (m, 2), np.int64,
               (np.array([o for offs in c.offsets for o in offs], dtype=np.int64).reshape(-1, 2)
                for c in store.iter_chunks()))
        member("texts", (n,), text_dtype, (np.array(c.texts, dtype=text_dtype) for c in store.iter_chunks()))


def _write_parquet(tmp, store: ChunkStore, level: str, dim: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    vec_type = pa.list_(pa.float32(), dim)
    if level == "sentence":
        schema = pa.schema([("text", pa.string()), ("vector", vec_type)])
    else:
        schema = pa.schema([("text", pa.string()), (item_key(level), pa.list_(pa.string())),
                            ("offsets", pa.list_(pa.list_(pa.int64(), 2))),
                            ("vectors", pa.list_(vec_type))])
    with pq.ParquetWriter(str(tmp), schema) as writer:
        for c in store.iter_chunks():
            flat = pa.FixedSizeListArray.from_arrays(pa.array(c.vectors.reshape(-1), pa.float32()), dim)
            if level == "sentence":
                cols = [pa.array(c.texts, pa.string()), flat]
            else:
                bounds = np.concatenate([[0], np.cumsum([len(it) for it in c.items])]).astype(np.int32)
                offs = np.array([o for offs in c.offsets for o in offs], dtype=np.int64).reshape(-1)
                offs_arr = pa.FixedSizeListArray.from_arrays(pa.array(offs, pa.int64()), 2)
                cols = [pa.array(c.texts, pa.string()),
                        pa.array(c.items, pa.list_(pa.string())),
                        pa.ListArray.from_arrays(pa.array(bounds), offs_arr),
                        pa.ListArray.from_arrays(pa.array(bounds), flat)]
            writer.write_table(pa.Table.from_arrays(cols, schema=schema))


def input_fingerprint(path) -> dict:
    """Identify an input file for --resume: its path, size and the SHA-256 of its bytes.

    Decision: the content hash replaces the modification time, which misses an edit that
    keeps size and time and blocks a resume after a mere ``touch`` or copy.
    """
    if not os.path.isfile(path):  # a folder or a glob of shards (bertkit.formats)
        from .formats import fingerprint

        return fingerprint(path)
    return {"path": os.path.abspath(path), "size": os.stat(path).st_size,
            "sha256": _sha256_file(path)}


def _sha256_file(path, block: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks (memory stays flat)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(block):
            h.update(data)
    return h.hexdigest()
