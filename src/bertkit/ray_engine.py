"""Bulk embedding and prediction on Ray Data (``bertkit embed/predict --engine ray``).

>>> from bertkit.ray_engine import embed_files, read_output
>>> embed_files("texts/*.jsonl", "vectors/", num_workers=8)["n_written"]
>>> vectors = read_output("vectors/")          # id, vector; in id order

One process (the driver) reads the input files with the local engine's reader
(:func:`bertkit.texts.read_texts`: same texts, same empty-row policy, same errors),
checks them all before any work, and cuts the rows into shards of ``shard_size`` ids
(:mod:`bertkit.ray_shards`). Ray Data then runs ``map_batches`` over the shards on a
pool of actors (``concurrency=num_workers``): each actor loads one
:class:`~bertkit.Encoder` (or :class:`~bertkit.Classifier`) once, on one torch thread
on a CPU or on ``num_gpus_per_worker`` GPUs, embeds a whole shard per call and writes
it, atomically, as one parquet file of the output folder; the driver records each
finished shard in ``manifest.json``. The vectors equal the local engine's (the same
encoder on the same texts; cos >= 0.99999).

On a cluster, bertkit (and the model, unless it is the bundled one) must be installed on
every node and ``output`` must be a folder every node sees at the same path (a shared
file system), as the workers write the shards. ``pip install 'bertkit[ray]'``.

For pipelines of your own, :func:`embed_dataset` adds a ``vector`` column to any Ray
Dataset with the same actors.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from ._validate import check_choice, check_positive_int
from .errors import BertkitError, InputError

RAY_INSTALL = "pip install 'bertkit[ray]'"
#: Seconds to wait for ``ray.init`` on a ``--ray-address`` before giving up (one line, no hang).
CONNECT_TIMEOUT = 15.0
#: Shards handed to Ray Data at a time: bounds the texts the driver and the object store
#: hold (a wave restarts the actor pool, a few seconds, so waves are long).
WAVE_SHARDS = 256


def require_ray():
    """Import ray and ray.data, or raise the one-line install hint."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise InputError(f"--engine ray needs Ray Data, which is not installed; run: {RAY_INSTALL}") from None
    return ray


# ------------------------------------------------------------------------- public API


def embed_files(input, output, *, text_column: str | None = None, columns=None, model=None,
                backend: str = "torch", device=None, max_length: int | None = None,
                num_workers: int = 1, num_gpus_per_worker: float = 0, ray_address: str | None = None,
                keep_text: bool = False, resume: bool = False, overwrite: bool = False,
                on_empty: str = "error", shard_size: int = 4096, verbose: bool = True,
                quoting: str | None = None, encoding: str | None = None, format: str | None = None,
                **encode_options) -> dict:
    """Embed every row of ``input`` on Ray Data into parquet shards in folder ``output``.

    Parameters
    ----------
    input : str, PathLike or list
        A file, a folder (its .txt/.csv/.tsv/.jsonl/.parquet files) or a glob pattern.
        Row ids count rows across the files in sorted path order, from 0.
    output : str or PathLike
        A new or empty folder (or this run's folder with ``resume``/``overwrite``).
    text_column, columns, on_empty, model, backend, max_length, quoting, encoding, format
        As for :func:`bertkit.embed_file` (``format`` for files only, not dataset folders).
    num_workers : int, default=1
        Ray actors, each holding one encoder (one torch thread on a CPU).
    num_gpus_per_worker : float, default=0
        GPUs per actor; > 0 runs the encoders on CUDA (``device`` defaults to "cuda").
    ray_address : str or None, default=None
        A running cluster ("auto", "HOST:6379", "ray://HOST:10001"); None starts Ray on
        this machine (or uses the Ray already started in this process).
    keep_text : bool, default=False
        Add a ``text`` column to the shards.
    resume, overwrite : bool, default=False
        Continue an interrupted run from its finished shards / replace an earlier run.
    shard_size : int, default=4096
        Ids per shard (the unit of work, output file and ``resume``).
    **encode_options
        Sentence-level :meth:`Encoder.encode` options (``pooling``, ``layers``,
        ``layer_agg``, ``exclude_special``, ``normalize``, ``batch_size``, ``max_tokens``,
        ``long``).

    Returns
    -------
    dict
        ``output``, ``n_rows``, ``n_written``, ``n_skipped``, ``n_truncated``, ``dim``,
        ``n_shards``, ``resumed_shards``, ``settings``, ``model``, ``seconds``.
    """
    from .encoder import Encoder

    if encode_options.get("level", "sentence") != "sentence":
        raise InputError("--engine ray writes sentence vectors only; leave out --level, or use the "
                         "local engine for token or word vectors.")
    encode_options.pop("level", None)
    check_choice("backend", backend, ("torch", "onnx", "onnx-int8"), "embed_files")
    require_ray()
    # The driver loads the model on the CPU once, to check it and the options before any work.
    encoder = Encoder(model, "cpu", max_length=max_length)
    opts = encoder.resolve_options(**encode_options)
    dim = encoder.dimension(opts["layers"], opts["layer_agg"])
    settings = dict(opts, kind="embed", model=encoder.model_name, backend=backend,
                    max_length=encoder.max_length, dim=dim)
    worker = dict(kind="embed", model=model, backend=backend, max_length=max_length, opts=opts, dim=dim)
    del encoder
    summary = _run(worker, settings, input, output, text_column=text_column, columns=columns,
                   on_empty=on_empty, shard_size=shard_size, num_workers=num_workers,
                   num_gpus_per_worker=num_gpus_per_worker, device=device, ray_address=ray_address,
                   keep_text=keep_text, resume=resume, overwrite=overwrite, verbose=verbose,
                   read=dict(quoting=quoting, encoding=encoding, format=format))
    return dict(summary, dim=dim)


def predict_files(input, output, *, model, text_column: str | None = None, columns=None,
                  backend: str = "torch", device=None, max_length: int | None = None,
                  batch_size: int = 64, num_workers: int = 1, num_gpus_per_worker: float = 0,
                  ray_address: str | None = None, keep_text: bool = False, resume: bool = False,
                  overwrite: bool = False, on_empty: str = "error", shard_size: int = 4096,
                  verbose: bool = True, quoting: str | None = None, encoding: str | None = None,
                  format: str | None = None) -> dict:
    """Predict every row of ``input`` with the classifier in ``model`` on Ray Data, into
    parquet shards (``id``, ``label``, ``probabilities`` in ``labels`` order) in folder
    ``output``. Parameters as for :func:`embed_files`; ``text_column`` defaults to the
    training column. Returns the same summary plus ``labels`` and ``counts``."""
    from .classifier import Classifier

    check_positive_int("batch_size", batch_size, "predict_files")
    require_ray()
    clf = Classifier(model, device="cpu", max_length=max_length)
    trained = clf.training_args.get("data", {})
    if trained.get("pair_column"):
        raise InputError(f"--engine ray predicts single texts; this model was trained on sentence "
                         f"pairs (column '{trained['pair_column']}'): use the local engine.")
    name = os.path.abspath(model) if os.path.isdir(str(model)) else str(model)  # folder or Hub id
    settings = dict(kind="predict", model=name, backend=backend,
                    max_length=clf.max_length, labels=clf.labels, batch_size=batch_size)
    worker = dict(kind="predict", model=str(model), backend=backend, max_length=max_length,
                  batch_size=batch_size, labels=clf.labels)
    labels = clf.labels
    del clf
    summary = _run(worker, settings, input, output, text_column=text_column or trained.get("text_column"),
                   columns=columns, on_empty=on_empty, shard_size=shard_size, num_workers=num_workers,
                   num_gpus_per_worker=num_gpus_per_worker, device=device, ray_address=ray_address,
                   keep_text=keep_text, resume=resume, overwrite=overwrite, verbose=verbose,
                   read=dict(quoting=quoting, encoding=encoding or trained.get("encoding"), format=format))
    counts = dict.fromkeys(labels, 0)
    for label in _read_labels(output):
        counts[label] += 1
    return dict(summary, labels=labels, counts=counts)


def embed_dataset(ds, *, text_column: str = "text", output_column: str = "vector", model=None,
                  backend: str = "torch", max_length: int | None = None, num_workers: int = 1,
                  num_gpus_per_worker: float = 0, batch_size: int = 1024, **encode_options):
    """Add ``output_column`` (float32 sentence vectors) to Ray Dataset ``ds``, lazily.

    For pipelines of your own: ``ds.map_batches`` on ``num_workers`` actors, each holding
    one :class:`~bertkit.Encoder` (one torch thread on a CPU, or ``num_gpus_per_worker``
    GPUs), ``batch_size`` rows per call. ``text_column`` must hold non-empty strings.
    The rows keep their order only with Ray Data's ``preserve_order``; carry an id column.

    >>> ds = ray.data.read_parquet("s3://bucket/texts/")
    >>> embed_dataset(ds, num_workers=4).write_parquet("s3://bucket/vectors/")
    """
    check_positive_int("num_workers", num_workers, "embed_dataset")
    check_positive_int("batch_size", batch_size, "embed_dataset")
    require_ray()
    job = dict(kind="embed", model=model, backend=backend, max_length=max_length,
               opts=dict(encode_options), text_column=text_column, output_column=output_column)
    config = dict(job=job, device=_device(None, num_gpus_per_worker))
    return ds.map_batches(BatchEmbedder, batch_size=batch_size, batch_format="pandas",
                          fn_constructor_kwargs=config, **_actor_resources(num_workers, num_gpus_per_worker))


# --------------------------------------------------------------------------- the actors


def _load(job: dict, device: str):
    """The encoder or classifier of an actor: on a CPU, one thread (ONNX Runtime too)."""
    if device == "cpu":
        import torch

        os.environ["BERTKIT_THREADS"] = "1"  # read by the ONNX back-end
        torch.set_num_threads(1)
    if job["kind"] == "embed":
        from .encoder import Encoder

        return Encoder(job["model"], device, backend=job["backend"], max_length=job["max_length"],
                       workers=1 if device == "cpu" else None)
    from .classifier import Classifier

    return Classifier(job["model"], device=device, backend=job["backend"], max_length=job["max_length"])


class ShardWorker:
    """A Ray Data actor: one shard per call (``batch_size=1``), written to ``output``;
    returns the shard's manifest record (JSON) and counts."""

    def __init__(self, job: dict, output: str, keep_text: bool, device: str):
        self.job, self.output, self.keep_text = job, output, keep_text
        self.model = _load(job, device)

    def __call__(self, batch):
        from .ray_shards import write_shard

        started = time.perf_counter()
        k = int(batch.column("shard")[0].as_py())
        ids = batch.column("ids")[0].as_py()
        texts = batch.column("texts")[0].as_py()
        columns, n_truncated = {"text": texts} if self.keep_text else {}, 0
        if self.job["kind"] == "embed":
            vectors = np.zeros((0, self.job["dim"]), np.float32)
            if texts:
                import warnings

                with warnings.catch_warnings():  # counted and reported once by the driver
                    warnings.simplefilter("ignore", UserWarning)
                    vectors = self.model.encode(texts, progress=False, **self.job["opts"])
                n_truncated = self.model.last_stats["n_truncated"]
            columns["vector"] = np.asarray(vectors, np.float32).reshape(-1, self.job["dim"])
        else:
            probs = np.zeros((0, len(self.job["labels"])), np.float32)
            if texts:
                probs = self.model.predict_proba(texts, batch_size=self.job["batch_size"])
                n_truncated = self.model.last_n_truncated
            columns["label"] = [self.job["labels"][i] for i in probs.argmax(axis=1)]
            columns["probabilities"] = probs.astype(np.float32)
        record = write_shard(self.output, k, ids, columns)
        record.update(n_truncated=int(n_truncated), seconds=round(time.perf_counter() - started, 3),
                      pid=os.getpid())
        return {"shard": np.array([k]), "record": np.array([json.dumps(record)])}


class BatchEmbedder:
    """A Ray Data actor for :func:`embed_dataset`: adds the vectors of a pandas batch."""

    def __init__(self, job: dict, device: str):
        self.job = job
        self.encoder = _load(job, device)

    def __call__(self, frame):
        texts = frame[self.job["text_column"]].tolist()
        vectors = self.encoder.encode(texts, progress=False, **self.job["opts"]) if texts else []
        frame[self.job["output_column"]] = list(np.asarray(vectors, np.float32))
        return frame


# ------------------------------------------------------------------------- the driver


def _run(worker, settings, input, output, *, text_column, columns, on_empty, shard_size, num_workers,
         num_gpus_per_worker, device, ray_address, keep_text, resume, overwrite, verbose,
         read: dict) -> dict:
    """Check, read and shard the input, then run the waves of shards on Ray Data."""
    from . import __version__
    from .embed_io import input_fingerprint
    from .ray_connect import ray_session
    from .ray_shards import expand_inputs, iter_shards, open_output, scan_inputs

    started = time.perf_counter()
    check_choice("on_empty", on_empty, ("error", "skip"), "embed_files")
    check_positive_int("shard_size", shard_size, "embed_files")
    check_positive_int("num_workers", num_workers, "embed_files")
    if not isinstance(num_gpus_per_worker, (int, float)) or num_gpus_per_worker < 0:
        raise InputError(f"--num-gpus-per-worker must be 0 or more; got {num_gpus_per_worker!r}.")
    device = _device(device, num_gpus_per_worker)
    read = {k: v for k, v in read.items() if v is not None}  # quoting, encoding, format
    files = expand_inputs(input, read.get("format"))
    scans = scan_inputs(files, text_column=text_column, columns=columns, on_empty=on_empty, **read)
    log = _stderr if verbose else None
    settings = dict(settings, inputs=[input_fingerprint(f) for f in files],
                    text_columns=[s.column for s in scans], columns=columns, on_empty=on_empty, read=read,
                    shard_size=shard_size, keep_text=keep_text, device=device.split(":")[0],
                    bertkit=__version__)
    # Ray first: a cluster that cannot be reached leaves no output folder behind.
    with ray_session(ray_address, num_workers=num_workers, num_gpus_per_worker=num_gpus_per_worker,
                     timeout=CONNECT_TIMEOUT) as ray:
        manifest = open_output(output, settings, resume=resume, overwrite=overwrite, log=log)
        resumed = len(manifest["shards"])
        if resumed and log is not None:
            log(f"Resuming: {resumed} finished shard(s) found in {output}/.")
        shards = iter_shards(files, scans, columns=columns, on_empty=on_empty, shard_size=shard_size,
                             **read)
        todo = (s for s in shards if str(s["shard"]) not in manifest["shards"])
        while wave := _take(todo, WAVE_SHARDS):
            _run_wave(ray, wave, worker, manifest, output, keep_text, device, num_workers,
                      num_gpus_per_worker)
    return _finish(manifest, output, scans, resumed, started, log)


def _run_wave(ray, wave, worker, manifest, output, keep_text, device, num_workers, num_gpus) -> None:
    from .ray_shards import write_manifest

    ds = ray.data.from_items(wave, override_num_blocks=len(wave))
    config = dict(job=worker, output=os.path.abspath(output), keep_text=keep_text, device=device)
    ds = ds.map_batches(ShardWorker, batch_size=1, batch_format="pyarrow", fn_constructor_kwargs=config,
                        **_actor_resources(min(num_workers, len(wave)), num_gpus))
    try:
        for row in ds.iter_rows():
            record = json.loads(row["record"])
            manifest["shards"][str(int(row["shard"]))] = record
            write_manifest(output, manifest)  # after the shard's file: a crash loses no record
    except Exception as e:
        raise _worker_error(e) from None


def _finish(manifest, output, scans, resumed, started, log) -> dict:
    from .ray_shards import write_manifest

    n_rows = sum(s.n_rows for s in scans)
    records = manifest["shards"].values()
    n_written = sum(r["rows"] for r in records)
    n_truncated = sum(r.get("n_truncated", 0) for r in records)
    manifest.update(complete=True, n_rows=n_rows, n_written=n_written, n_shards=len(manifest["shards"]),
                    n_truncated=n_truncated)
    write_manifest(output, manifest)
    if log is not None and n_truncated:
        log(f"Warning: {n_truncated} of {n_written} texts were longer than the model's limit of "
            f"{manifest['settings']['max_length']} tokens and were cut; pass --long window to cover them.")
    if log is not None and n_rows > n_written:
        notes = "; ".join(s.note() for s in scans if s.note())
        log(f"Warning: {notes}; the output has {n_written} rows, not {n_rows}.")
    return {"output": str(output), "n_rows": n_rows, "n_written": n_written,
            "n_skipped": n_rows - n_written, "n_truncated": n_truncated,
            "n_shards": len(manifest["shards"]), "resumed_shards": resumed,
            "settings": manifest["settings"], "model": manifest["settings"]["model"],
            "seconds": time.perf_counter() - started}


def _read_labels(output):
    from .ray_shards import read_output

    return read_output(output, columns=["label"])["label"].tolist()


def _take(iterator, n: int) -> list:
    out = []
    for item in iterator:
        out.append(item)
        if len(out) == n:
            break
    return out


def _device(device, num_gpus) -> str:
    if device not in (None, "auto"):
        return str(device)
    return "cuda" if num_gpus else "cpu"


def _actor_resources(num_workers: int, num_gpus: float) -> dict:
    """map_batches arguments of an actor pool: a fixed size, 1 CPU (+ GPUs) an actor."""
    from ray.data import ActorPoolStrategy

    out = dict(compute=ActorPoolStrategy(size=num_workers), num_cpus=1)
    if num_gpus:
        out["num_gpus"] = num_gpus
    return out


def _worker_error(e: Exception) -> Exception:
    """A bertkit error raised in an actor comes back as itself (one line), not Ray's trace."""
    seen = e
    while seen is not None:
        if isinstance(seen, BertkitError):
            return seen
        cause = getattr(seen, "cause", None)
        seen = cause if isinstance(cause, BaseException) else seen.__cause__
    return e


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
