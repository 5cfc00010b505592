"""``bertkit embed``: sentence, token or word embeddings for texts or a file."""

from __future__ import annotations

import sys
import time
import warnings

import click

from .app import cli, echo_json, stderr_is_terminal, warn
from .options import columns_option, device_option, model_option, text_column_option

_LEVELS = ("sentence", "token", "word")
_POOLINGS = ("mean", "cls", "max", "pooler")
_AGGS = ("concat", "sum", "mean")
_SUBWORDS = ("mean", "first", "last")
_TRUNCATION_WARNING = r".*longer than the model's limit"


@cli.command("embed")
@click.argument("texts", nargs=-1)
@click.option("--input", "-i", "input_path", default=None, metavar="FILE",
              help="Read texts from FILE: .txt (one a line), .csv/.tsv, .jsonl or .parquet.")
@text_column_option
@columns_option
@click.option("--output", "-o", default=None, metavar="FILE",
              help="Write to FILE: .npy, .npz, .parquet or .jsonl (by extension). "
                   "Default: JSON on stdout (JSON lines for --input).")
@model_option
@device_option
@click.option("--level", type=click.Choice(_LEVELS), default="sentence", show_default=True,
              help="One vector per text, per WordPiece token, or per word.")
@click.option("--pooling", type=click.Choice(_POOLINGS), default="mean", show_default=True,
              help="Sentence vector from token vectors (mask-aware mean/max, [CLS], or the pooler).")
@click.option("--layers", default="-1", show_default=True, metavar="SPEC",
              help="Hidden states: -1 (last layer), -4: (last four), 0,3,6, all. 0 = embeddings.")
@click.option("--layer-agg", type=click.Choice(_AGGS), default="concat", show_default=True,
              help="How several layers combine: concat (wider vectors), sum or mean.")
@click.option("--subword", type=click.Choice(_SUBWORDS), default="mean", show_default=True,
              help="How a word's WordPiece pieces combine (--level word).")
@click.option("--exclude-special", is_flag=True,
              help="Leave [CLS]/[SEP] out of mean/max pooling and token output.")
@click.option("--normalize", is_flag=True, help="Scale vectors to unit length.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Most texts per forward pass.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None,
              help="Also cap a batch at this many padded tokens.")
@click.option("--long", "long_mode", type=click.Choice(("truncate", "window")), default="truncate",
              show_default=True,
              help="Texts over the model's limit: cut (counted and reported) or cover with "
                   "overlapping windows.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=4096, show_default=True,
              help="Rows read, embedded and saved at a time (the unit of --resume).")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted run of the same command from its finished chunks.")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing --output file (without it, an existing file is an error "
                   "unless --resume continues an interrupted run).")
@click.option("--skip-empty", is_flag=True,
              help="Leave out empty rows (and say how many) instead of stopping.")
def embed_command(texts, input_path, text_column, columns, output, model, device, level, pooling,
                  layers, layer_agg, subword, exclude_special, normalize, batch_size, max_tokens,
                  long_mode, chunk_size, resume, overwrite, skip_empty):
    """Embed TEXT arguments or the rows of --input FILE.

    \b
    Examples:
      bertkit embed "a cat" "a dog"
      bertkit embed --input dev.tsv --text-column sentence --output dev.npy
      bertkit embed --input dev.tsv --layers -4: --layer-agg concat --output dev4.npy
      bertkit embed "the river bank" --level word --layers -4: --layer-agg sum
    """
    from ..embed_io import output_format
    from ..errors import InputError

    if texts and input_path:
        raise InputError("Give texts as arguments or --input FILE, not both.")
    if not texts and not input_path:
        raise InputError("Nothing to embed: give TEXT arguments or --input FILE (see bertkit embed --help).")
    if resume and not output:
        raise InputError("--resume needs --output: only a run that writes a file can be resumed.")
    if (text_column or columns) and not input_path:
        raise InputError("--text-column and --columns apply to --input files only.")
    if output:
        output_format(output, level)
        _check_output(output, input_path, resume, overwrite)

    opts = dict(level=level, pooling=pooling, layers=layers, layer_agg=layer_agg, subword=subword,
                exclude_special=exclude_special, normalize=normalize, batch_size=batch_size,
                max_tokens=max_tokens, long=long_mode)
    started = time.perf_counter()
    if input_path:
        n_rows, col = _scan(input_path, text_column, columns, skip_empty)
    encoder = _load_encoder(model, device)
    dim = encoder.dimension(layers, layer_agg)  # checks --layers before any work

    if not input_path:
        _embed_arguments(encoder, list(texts), opts, output, dim, started)
        return
    _embed_file(encoder, input_path, col, columns, n_rows, opts, output, dim, chunk_size, resume,
                skip_empty, started)


def _check_output(output, input_path, resume, overwrite) -> None:
    """Refuse, before any work, an output that would destroy data or cannot be written.

    Decision: writing over the input is refused (not merged): the output holds only the
    texts and vectors, so the input's other columns would be lost. Paths are compared
    after resolving symlinks, ``./`` and hard links.
    """
    import os

    from ..embed_io import partial_dir
    from ..errors import InputError
    from ..io import check_writable, same_file

    if input_path and same_file(input_path, output):
        raise InputError(
            f"--output '{output}' is the --input file; writing it would replace its other "
            "columns with the vectors. Choose another --output.")
    check_writable(output, "--output", kind="file")
    continuing = resume and partial_dir(output).is_dir()
    if os.path.exists(output) and not overwrite and not continuing:
        raise InputError(f"--output '{output}' already exists; pass --overwrite to replace it, "
                         "or choose another --output.")


def _load_encoder(model, device):
    from ..encoder import Encoder
    from ..models import set_threads

    set_threads()
    return Encoder(model=model, device=device)


def _describe(encoder, opts, dim) -> str:
    what = {"sentence": f"{opts['pooling']} pooling", "token": "token vectors",
            "word": f"word vectors ({opts['subword']} of pieces)"}[opts["level"]]
    layers = opts["layers"]
    agg = f", {opts['layer_agg']}" if encoder.dimension(layers, "concat") != encoder.hidden_size else ""
    return f"{what}, layers {layers}{agg}, {encoder.model_name}"


def _truncation_warning(n_truncated: int, n_texts: int, limit: int) -> None:
    if n_truncated:
        warn(f"{n_truncated} of {n_texts} texts were longer than the model's limit of {limit} "
             "tokens and were cut; pass --long window to cover them whole.")


def _embed_arguments(encoder, texts, opts, output, dim, started) -> None:
    from .._validate import check_texts
    from ..embed_io import Chunk, ChunkStore, assemble

    check_texts(texts, name="TEXT")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_TRUNCATION_WARNING)
        result = encoder.encode(texts, progress=False, **opts)
    stats = encoder.last_stats
    chunk = Chunk.from_results(texts, result, opts["level"], stats["n_truncated"], dim=dim)
    _truncation_warning(stats["n_truncated"], len(texts), encoder.max_length)
    if output is None:
        echo_json(list(chunk.records(opts["level"])))
        return
    store = ChunkStore(output, {"arguments": True}, resume=False)
    try:
        store.save(0, chunk)
        totals = assemble(store, output, opts["level"])
    finally:
        store.remove()
    _summary(output, totals, opts, encoder, dim, started)


def _scan(path, text_column, columns, skip_empty):
    """Count rows and check the text column before any model work; returns (rows, column)."""
    from ..data import default_text_column, iter_table, not_text_error, require_columns, text_kind
    from ..errors import InputError

    n_rows = n_empty = 0
    first_empty = None
    col = text_column
    for frame in iter_table(path, columns=columns, chunk_size=50_000):
        if col is None:
            col = default_text_column(frame, path)
        require_columns(frame, {"--text-column": col}, path)
        for i, value in enumerate(frame[col].tolist()):
            kind = text_kind(value)
            if kind == "empty":
                n_empty += 1
                if first_empty is None:
                    first_empty = n_rows + i
            elif kind != "text":  # the same policy as train/evaluate/predict (data.text_kind)
                raise not_text_error(value, n_rows + i + 1, col, path)
        n_rows += len(frame)
    if n_rows == 0:
        raise InputError(f"'{path}' has no rows to embed.")
    if n_empty and not skip_empty:
        raise InputError(
            f"{n_empty} of {n_rows} rows of column '{col}' in '{path}' are empty (first: row "
            f"{first_empty + 1}); remove them, or pass --skip-empty to leave them out of the output.")
    if n_empty == n_rows:
        raise InputError(f"All {n_rows} rows of column '{col}' in '{path}' are empty; nothing to embed.")
    return n_rows, col


def _embed_file(encoder, path, col, columns, n_rows, opts, output, dim, chunk_size, resume,
                skip_empty, started) -> None:
    from ..data import iter_table, text_kind
    from ..embed_io import Chunk, assemble

    level = opts["level"]
    store = None
    if output:
        store = _open_store(encoder, path, col, columns, opts, output, chunk_size, resume, skip_empty)

    bar = None
    if stderr_is_terminal():
        from tqdm.auto import tqdm

        bar = tqdm(total=n_rows, unit="text", desc="embed", file=sys.stderr)
    n_texts = n_truncated = n_skipped = 0
    interrupted = False
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_TRUNCATION_WARNING)
            for k, frame in enumerate(iter_table(path, columns=columns, chunk_size=chunk_size)):
                if store is not None and store.has(k):
                    info = store.info(k)
                    n_texts += info["n_texts"]
                    n_truncated += info["n_truncated"]
                    n_skipped += info["n_skipped"]
                    if bar is not None:
                        bar.update(len(frame))
                    continue
                values = frame[col].tolist()
                texts = [v for v in values if text_kind(v) == "text"]
                skipped = len(values) - len(texts)
                result = encoder.encode(texts, progress=False, **opts)
                stats = encoder.last_stats
                chunk = Chunk.from_results(texts, result, level, stats["n_truncated"], skipped, dim=dim)
                n_texts += len(texts)
                n_truncated += stats["n_truncated"]
                n_skipped += skipped
                if store is not None:
                    store.save(k, chunk)
                else:
                    for rec in chunk.records(level):
                        click.echo(_dumps(rec))
                if bar is not None:
                    bar.update(len(values))
    except KeyboardInterrupt:
        if store is None:
            raise
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
    if interrupted:  # say how to continue: the finished chunks are kept
        click.echo(f"Interrupted. {len(store.chunks)} finished chunk(s) are kept in {store.dir}/; "
                   "run the same command with --resume to continue.", err=True)
        raise click.exceptions.Exit(130)

    _truncation_warning(n_truncated, n_texts, encoder.max_length)
    if n_skipped:
        warn(f"left out {n_skipped} empty row(s) of '{path}' (--skip-empty); the output has "
             f"{n_texts} rows, not {n_texts + n_skipped}.")
    if store is None:
        click.echo(f"Embedded {n_texts} texts ({_describe(encoder, opts, dim)}) in "
                   f"{time.perf_counter() - started:.1f} s.", err=True)
        return
    totals = assemble(store, output, level)
    store.remove()
    _summary(output, totals, opts, encoder, dim, started)


def _open_store(encoder, path, col, columns, opts, output, chunk_size, resume, skip_empty):
    """The chunk store of this run (every setting that affects the numbers is recorded)."""
    from .. import __version__
    from ..embed_io import ChunkStore, input_fingerprint

    settings = dict(opts, input=input_fingerprint(path), text_column=col, columns=columns,
                    chunk_size=chunk_size, skip_empty=skip_empty, model=encoder.model_name,
                    model_path=str(getattr(encoder.config, "_name_or_path", "")),
                    device=encoder.device.type, bertkit=__version__, output=output)
    store = ChunkStore(output, settings, resume=resume)
    for k, why in sorted(store.damaged.items()):
        click.echo(f"Note: chunk {k} in {store.dir}/ is damaged ({why}); recomputing it.", err=True)
    if store.resumed:
        click.echo(f"Resuming: {store.resumed} finished chunk(s) found in {store.dir}/.", err=True)
    elif resume:
        click.echo(f"Nothing to resume in {store.dir}/; starting from the beginning.", err=True)
    return store


def _dumps(obj) -> str:
    import json

    return json.dumps(obj, ensure_ascii=False)


def _summary(output, totals, opts, encoder, dim, started) -> None:
    if opts["level"] == "sentence":
        shape = f"({totals['n_texts']}, {dim}) float32"
    else:
        shape = f"{totals['n_texts']} texts, {totals['n_items']} {opts['level']} vectors of {dim} float32"
    click.echo(f"Wrote {output}: {shape} ({_describe(encoder, opts, dim)}) in "
               f"{time.perf_counter() - started:.1f} s.", err=True)
