"""Embed the texts of a file into an output file, chunk by chunk: :func:`embed_file`.

>>> from bertkit import embed_file
>>> embed_file("dev.tsv", "dev.npy", text_column="sentence")["shape"]
(872, 384)
>>> embed_file("big.csv", "big.parquet", resume=True)   # continue after Ctrl-C or a crash

The run: check the output can be written (before any work), read the file once to check
the text column and count its rows and empty rows (:func:`bertkit.data.scan_texts`), load
the model, then read, embed and save ``chunk_size`` rows at a time (memory stays flat)
into ``OUTPUT.partial/`` and assemble the output from the chunks at the end
(:mod:`bertkit.embed_io`: formats, resume, crash safety). ``bertkit embed --input`` is
this function.

(The module is not called ``embed_file``: importing it would replace the function
``bertkit.embed_file`` with the module.)
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings

from ._validate import check_choice, check_positive_int
from .errors import InputError

#: Matches the Encoder's per-call truncation warnings (its limit is "the model's limit",
#: "the model folder's max_seq_length" or "the max_length"); a file run filters them and
#: reports one total instead.
TRUNCATION_WARNING = r".*longer than the (model's limit|model folder's max_seq_length|max_length) of"


class EmbedInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`embed_file` with an output: the finished chunks are kept.

    Attributes: ``partial_dir`` (the folder holding them) and ``n_chunks``.
    """

    def __init__(self, partial_dir, n_chunks: int):
        self.partial_dir, self.n_chunks = str(partial_dir), n_chunks
        super().__init__(f"{n_chunks} finished chunk(s) are kept in {partial_dir}/; call again with "
                         "resume=True (on the command line: --resume) to continue.")


def check_output(output, input=None, *, resume: bool = False, overwrite: bool = False,
                 level: str = "sentence") -> str:
    """Refuse, before any work, an output that would destroy data or cannot be written.

    Returns the output format (".npy", ".npz", ".parquet" or ".jsonl").

    Decision: writing over the input is refused (not merged): the output holds only the
    texts and vectors, so the input's other columns would be lost. Paths are compared
    after resolving symlinks, ``./`` and hard links. An existing output needs
    ``overwrite`` unless ``resume`` continues the interrupted run that writes it.
    """
    from .embed_io import output_format, partial_dir
    from .io import check_writable, same_file

    fmt = output_format(output, level)
    if input is not None and same_file(input, output):
        raise InputError(
            f"--output '{output}' is the --input file; writing it would replace its other "
            "columns with the vectors. Choose another --output.")
    check_writable(output, "--output", kind="file")
    continuing = resume and partial_dir(output).is_dir()
    if os.path.exists(output) and not overwrite and not continuing:
        raise InputError(f"--output '{output}' already exists; pass --overwrite (overwrite=True) to "
                         "replace it, or choose another --output.")
    return fmt


def embed_file(input, output=None, *, text_column: str | None = None, columns=None,
               resume: bool = False, overwrite: bool = False, on_empty: str = "error",
               chunk_size: int = 4096, model=None, device=None, backend: str = "torch",
               max_length: int | None = None, encoder=None, progress: bool | None = None,
               verbose: bool = True, quoting: str | None = None, encoding: str | None = None,
               format: str | None = None, engine: str = "local", **encode_options) -> dict:
    """Embed every text of ``input`` and write them to ``output``.

    Parameters
    ----------
    input : str or PathLike
        A .txt (one text a line), .csv/.tsv, .jsonl or .parquet file (text formats may be
        gzipped); see :func:`bertkit.data.iter_table`.
    output : str, PathLike or None, default=None
        .npy, .npz, .parquet or .jsonl, by extension (layouts in :mod:`bertkit.embed_io`;
        .npy holds sentence vectors only). Written atomically at the end. None: JSON lines
        (``{"text", "vector"}``, ...) on stdout as chunks finish (no resume).
    text_column : str or None, default=None
        The text column; None picks ``text``, ``sentence`` or the only column.
    columns : str or list of str or None, default=None
        Column names for a headerless .csv/.tsv, e.g. ``"id,sentence"``.
    quoting, encoding, format : str or None, default=None
        How ``input`` is read (see :func:`bertkit.data.iter_table`): quotes in .csv/.tsv,
        its text encoding (utf-8), its format when the extension says nothing (also a
        fastText file, a folder, a ``save_to_disk`` dataset or parquet shards).
    resume : bool, default=False
        Continue an interrupted run of the same settings and input from its finished
        chunks (kept in ``OUTPUT.partial/``); damaged chunks are recomputed. The output is
        byte-for-byte what an uninterrupted run writes.
    overwrite : bool, default=False
        Replace an existing ``output`` (else an existing file is an error, unless
        ``resume`` continues the run writing it).
    on_empty : {"error", "skip"}, default="error"
        Empty rows: an error naming their count and first rows (before the model loads),
        or left out of the output and counted (``n_skipped``, and a note).
    chunk_size : int, default=4096
        Rows read, embedded and saved at a time (the unit of ``resume``).
    model, device, backend, max_length
        The :class:`~bertkit.Encoder` to load (after the input is checked); see its
        parameters. Not with ``encoder``.
    encoder : Encoder or None, default=None
        An encoder already loaded, used instead.
    progress : bool or None, default=None
        A progress bar over the file's rows, moving after every batch; None shows it when
        stderr is a terminal (and ``$CI`` is unset).
    verbose : bool, default=True
        Notes and warnings (resume, damaged chunks, skipped rows, truncation) on stderr.
        When False, truncation is still reported, as a ``UserWarning``.
    engine : {"local", "ray"}, default="local"
        "ray" runs :func:`bertkit.ray_engine.embed_files` instead: ``input`` may be a
        folder or glob, ``output`` is a folder of parquet shards, ``chunk_size`` rows make
        a shard, and ``num_workers``, ``num_gpus_per_worker``, ``ray_address`` and
        ``keep_text`` are accepted (not ``encoder`` or ``progress``).
    **encode_options
        :meth:`Encoder.encode` options: ``level``, ``pooling``, ``layers``, ``layer_agg``,
        ``subword``, ``exclude_special``, ``normalize``, ``batch_size``, ``max_tokens``,
        ``long``. ``pooling``/``normalize`` default to the model folder's settings.

    Returns
    -------
    dict
        ``output`` (None for stdout), ``format`` ("npy", "npz", "parquet", "jsonl"),
        ``n_rows`` (rows read), ``n_written`` (texts embedded), ``n_skipped`` (empty rows
        left out), ``n_truncated`` (texts cut to the model's limit), ``shape`` (of the
        vectors: ``(n_written, dim)``, or ``(n_items, dim)`` at token/word level),
        ``level``, ``n_items``, ``dim``, ``resumed_chunks``, ``model``, ``backend``,
        ``settings`` (the encode options used), ``description`` and ``seconds``.

    Raises
    ------
    InputError, DataError, ModelLoadError
        Bad arguments, output or input, before any embedding where it can be told then.
    EmbedInterrupted
        Ctrl-C with an ``output``: the finished chunks are kept for ``resume=True``.
    """
    check_choice("engine", engine, ("local", "ray"), "embed_file")
    if engine == "ray":
        if encoder is not None or output is None:
            raise InputError("embed_file(engine='ray') needs an 'output' folder and loads its own "
                             "encoders (no 'encoder').")
        from .ray_engine import embed_files

        return embed_files(input, output, text_column=text_column, columns=columns, model=model,
                           backend=backend, device=device, max_length=max_length, resume=resume,
                           overwrite=overwrite, on_empty=on_empty, shard_size=chunk_size,
                           verbose=verbose, quoting=quoting, encoding=encoding, format=format,
                           **encode_options)
    started = time.perf_counter()
    check_choice("on_empty", on_empty, ("error", "skip"), "embed_file")
    check_positive_int("chunk_size", chunk_size, "embed_file")
    if encoder is not None and (model, device, max_length, backend) != (None, None, None, "torch"):
        raise InputError("Give embed_file an 'encoder' or the model, device, backend and max_length "
                         "to load one, not both.")
    if resume and output is None:
        raise InputError("--resume needs --output: only a run that writes a file can be resumed.")
    fmt = ".jsonl"
    if output is not None:
        fmt = check_output(output, input, resume=resume, overwrite=overwrite,
                           level=encode_options.get("level", "sentence"))
    from .data import scan_texts

    read = dict(quoting=quoting, encoding=encoding, format=format)
    scan = scan_texts(input, text_column=text_column, columns=columns, on_empty=on_empty, **read)
    if encoder is None:
        from .encoder import Encoder

        encoder = Encoder(model, device, backend=backend, max_length=max_length)
    opts = encoder.resolve_options(**encode_options)
    dim = encoder.dimension(opts["layers"], opts["layer_agg"])
    log = _stderr if verbose else None
    store = None
    if output is not None:
        store = _open_store(encoder, input, scan.column, columns, opts, output, chunk_size, resume,
                            on_empty, log, read)
    counts = _embed_chunks(encoder, input, scan, columns, opts, dim, store, chunk_size, progress, read)
    _report(encoder, scan, counts, log)
    if store is not None:
        from .embed_io import assemble

        assemble(store, output, opts["level"])
        store.remove()
    n_vectors = counts["n_texts"] if opts["level"] == "sentence" else counts["n_items"]
    return {"output": None if output is None else str(output), "format": fmt.lstrip("."),
            "n_rows": scan.n_rows, "n_written": counts["n_texts"], "n_skipped": counts["n_skipped"],
            "n_truncated": counts["n_truncated"], "shape": (n_vectors, dim), "level": opts["level"],
            "n_items": counts["n_items"], "dim": dim,
            "resumed_chunks": store.resumed if store is not None else 0,
            "model": encoder.model_name, "backend": encoder.backend_name, "settings": opts,
            "description": describe(encoder, opts), "seconds": time.perf_counter() - started}


def _embed_chunks(encoder, input, scan, columns, opts, dim, store, chunk_size, progress, read) -> dict:
    """Embed chunk after chunk (finished ones of a resumed run are skipped); returns counts."""
    from .data import read_texts
    from .embed_io import Chunk

    level = opts["level"]
    counts = dict(n_texts=0, n_items=0, n_truncated=0, n_skipped=0)
    bar = _progress_bar(progress, scan.n_rows)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=TRUNCATION_WARNING)
            chunks = read_texts(input, text_column=scan.column, columns=columns,
                                on_empty=scan.on_empty, chunk_size=chunk_size, **read)
            for k, part in enumerate(chunks):
                if store is not None and store.has(k):
                    info = store.info(k)
                    for key in ("n_texts", "n_items", "n_truncated", "n_skipped"):
                        counts[key] += info[key]
                    if bar is not None:
                        bar.update(part.n_rows)
                    continue
                result = encoder.encode(part.texts, progress=bar if bar is not None else False, **opts)
                chunk = Chunk.from_results(part.texts, result, level, encoder.last_stats["n_truncated"],
                                           len(part.skipped), dim=dim)
                counts["n_texts"] += len(part.texts)
                counts["n_items"] += int(chunk.vectors.shape[0])
                counts["n_truncated"] += chunk.n_truncated
                counts["n_skipped"] += chunk.n_skipped
                if store is not None:
                    store.save(k, chunk)
                else:
                    sys.stdout.write("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                             for r in chunk.records(level)))
                    sys.stdout.flush()
                if bar is not None:
                    bar.update(len(part.skipped))
    except KeyboardInterrupt:
        if store is None:
            raise
        raise EmbedInterrupted(store.dir, len(store.chunks)) from None
    finally:
        if bar is not None:
            bar.close()
    return counts


def _open_store(encoder, input, column, columns, opts, output, chunk_size, resume, on_empty, log,
                read):
    """The chunk store of this run (every setting that affects the numbers is recorded)."""
    from . import __version__
    from .embed_io import ChunkStore, input_fingerprint

    settings = dict(opts, input=input_fingerprint(input), text_column=column, columns=columns,
                    chunk_size=chunk_size, on_empty=on_empty, model=encoder.model_name, **read,
                    model_path=str(getattr(encoder.config, "_name_or_path", "")),
                    backend=encoder.backend_name, max_length=encoder.max_length,
                    device=encoder.device.type, bertkit=__version__, output=str(output))
    store = ChunkStore(output, settings, resume=resume)
    if log is not None:
        for k, why in sorted(store.damaged.items()):
            log(f"Note: chunk {k} in {store.dir}/ is damaged ({why}); recomputing it.")
        if store.resumed:
            log(f"Resuming: {store.resumed} finished chunk(s) found in {store.dir}/.")
        elif resume:
            log(f"Nothing to resume in {store.dir}/; starting from the beginning.")
    return store


def _report(encoder, scan, counts, log) -> None:
    """Truncated texts and left-out rows, once for the whole file (never silent)."""
    if counts["n_truncated"]:
        message = truncation_message(encoder, counts["n_truncated"], counts["n_texts"])
        if log is not None:
            log(f"Warning: {message}")
        else:
            warnings.warn(message, UserWarning, stacklevel=3)
    if counts["n_skipped"] and log is not None:
        log(f"Warning: {scan.note()}; the output has {counts['n_texts']} rows, not {scan.n_rows}.")


def truncation_message(encoder, n_truncated: int, n_texts: int) -> str:
    """'3 of 100 texts were longer than the model's limit of 512 tokens and were cut; ...'."""
    limit = getattr(encoder, "_limit_name", "model's limit")
    return (f"{n_truncated} of {n_texts} texts were longer than the {limit} of {encoder.max_length} "
            "tokens and were cut; pass --long window (long='window') to cover them whole.")


def save_embeddings(output, texts, result, *, level: str, dim: int, n_truncated: int = 0) -> dict:
    """Write :meth:`Encoder.encode`'s ``result`` for ``texts`` to ``output`` (any format of
    :func:`embed_file`, atomically). Returns the totals (``n_texts``, ``n_items``, ``dim``)."""
    from .embed_io import Chunk, ChunkStore, assemble

    chunk = Chunk.from_results(texts, result, level, n_truncated, dim=dim)
    store = ChunkStore(output, {"arguments": True}, resume=False)
    try:
        store.save(0, chunk)
        return assemble(store, output, level)
    finally:
        store.remove()


def describe(encoder, opts: dict) -> str:
    """'mean pooling, layers -4:, concat, all-MiniLM-L6-v2': what the vectors are."""
    what = {"sentence": f"{opts['pooling']} pooling", "token": "token vectors",
            "word": f"word vectors ({opts['subword']} of pieces)"}[opts["level"]]
    layers = opts["layers"]
    several = encoder.dimension(layers, "concat") != encoder.hidden_size
    return f"{what}, layers {layers}{', ' + opts['layer_agg'] if several else ''}, {encoder.model_name}"


def _progress_bar(progress, total: int):
    show = progress if progress is not None else (sys.stderr.isatty() and not os.environ.get("CI"))
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="text", desc="embed", file=sys.stderr)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
