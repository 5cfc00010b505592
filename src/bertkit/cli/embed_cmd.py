"""``bertkit embed``: sentence, token or word embeddings for texts or a file."""

from __future__ import annotations

import time
import warnings

import click

from .app import cli, echo_json, runs_model, stderr_is_terminal, warn
from .options import (LAYER_AGGS, LEVELS, LONG_MODES, POOLINGS, SUBWORDS, backend_option,
                      batch_size_option, columns_option, device_option, exclude_special_option,
                      input_option, max_length_option, model_option, read_options,
                      skip_empty_option, text_column_option)
from .ray_cmd import check_engine, engine_options, run_embed


@cli.command("embed")
@click.argument("texts", nargs=-1)
@input_option("input_path", "Read texts from FILE: .txt (one a line), .csv/.tsv, .jsonl or .parquet.")
@text_column_option
@columns_option
@read_options
@click.option("--output", "-o", default=None, metavar="FILE",
              help="Write to FILE: .npy, .npz, .parquet or .jsonl (by extension) (default: JSON "
                   "on stdout, JSON lines for --input).")
@model_option
@device_option
@backend_option
@click.option("--level", type=click.Choice(LEVELS), default="sentence", show_default=True,
              help="One vector per text, per WordPiece token, or per word.")
@click.option("--pooling", type=click.Choice(POOLINGS), default=None,
              help="Sentence vector from token vectors (mask-aware mean/max, [CLS], or the pooler) "
                   "(default: the model folder's, else mean).")
@click.option("--layers", default="-1", show_default=True, metavar="SPEC",
              help="Hidden states: -1 (last layer), -4: (last four), 0,3,6, all. 0 = embeddings.")
@click.option("--layer-agg", type=click.Choice(LAYER_AGGS), default="concat", show_default=True,
              help="How several layers combine: concat (wider vectors), sum or mean.")
@click.option("--subword", type=click.Choice(SUBWORDS), default="mean", show_default=True,
              help="How a word's WordPiece pieces combine (--level word).")
@exclude_special_option
@click.option("--normalize/--no-normalize", default=None,
              help="Scale vectors to unit length, or not (default: the model folder's setting, "
                   "on for the bundled model, else off).")
@batch_size_option
@max_length_option
@click.option("--max-tokens", type=click.IntRange(min=1), default=None,
              help="Also cap a batch at this many padded tokens.")
@click.option("--long", "long_mode", type=click.Choice(LONG_MODES), default="truncate",
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
@skip_empty_option
@engine_options
@runs_model
def embed_command(texts, input_path, text_column, columns, quoting, encoding, format, output,
                  model, device, backend, level,
                  pooling, layers, layer_agg, subword, exclude_special, normalize, batch_size,
                  max_length, max_tokens, long_mode, chunk_size, resume, overwrite, skip_empty, engine,
                  **engine_values):
    """Embed TEXT arguments or the rows of --input FILE.

    \b
    Examples:
      bertkit embed "a cat" "a dog"
      bertkit embed --input topics_test.csv --text-column text --output topics.npy
      bertkit embed --input topics_test.csv --layers -4: --layer-agg concat --output topics4.npy
      bertkit embed "the river bank" --level word --layers -4: --layer-agg sum
      bertkit embed --engine ray --input 'texts/*.jsonl' --output vectors/ --num-workers 8
    """
    from ..errors import InputError

    if texts and input_path:
        raise InputError("Give texts as arguments or --input FILE, not both.")
    if not texts and not input_path:
        raise InputError("Nothing to embed: give TEXT arguments or --input FILE (see bertkit embed --help).")
    if resume and not output:
        raise InputError("--resume needs --output: only a run that writes a file can be resumed.")
    if (text_column or columns or quoting or encoding or format) and not input_path:
        raise InputError("--text-column, --columns, --quoting, --encoding and --format apply to "
                         "--input files only.")
    opts = dict(level=level, pooling=pooling, layers=layers, layer_agg=layer_agg, subword=subword,
                exclude_special=exclude_special, normalize=normalize, batch_size=batch_size,
                max_tokens=max_tokens, long=long_mode)
    check_engine(engine, engine_values,
                 texts=bool(texts) and "--engine ray embeds files: give --input FILE, not TEXT arguments.",
                 output=not output and "--engine ray needs --output DIR (a folder for the parquet shards).",
                 level=level != "sentence" and "--engine ray writes sentence vectors only; leave out --level.")
    if engine == "ray":
        run_embed(input_path, output, text_column=text_column, columns=columns, model=model,
                  device=device, backend=backend, max_length=max_length, opts=opts,
                  chunk_size=chunk_size, resume=resume, overwrite=overwrite, skip_empty=skip_empty,
                  read=dict(quoting=quoting, encoding=encoding, format=format),
                  engine_values=engine_values)
        return
    if not input_path:
        _embed_arguments(list(texts), opts, output, overwrite, model, device, backend, max_length)
        return
    from ..file_embedding import EmbedInterrupted, embed_file

    try:
        summary = embed_file(input_path, output, text_column=text_column, columns=columns,
                             resume=resume, overwrite=overwrite,
                             on_empty="skip" if skip_empty else "error", chunk_size=chunk_size,
                             model=model, device=device, backend=backend, max_length=max_length,
                             progress=stderr_is_terminal(), quoting=quoting, encoding=encoding,
                             format=format, **opts)
    except EmbedInterrupted as e:  # say how to continue: the finished chunks are kept
        click.echo(f"Interrupted. {e.n_chunks} finished chunk(s) are kept in {e.partial_dir}/; "
                   "run the same command with --resume to continue.", err=True)
        raise click.exceptions.Exit(130)
    if output is None:
        click.echo(f"Embedded {summary['n_written']} texts ({summary['description']}) in "
                   f"{summary['seconds']:.1f} s.", err=True)
    else:
        _wrote(output, summary["n_written"], summary["n_items"], summary["dim"], level,
               summary["description"], summary["seconds"])


def _embed_arguments(texts, opts, output, overwrite, model, device, backend, max_length) -> None:
    """TEXT arguments: embed them at once; JSON on stdout, or --output."""
    from .._validate import check_texts
    from ..embed_io import Chunk
    from ..encoder import Encoder
    from ..file_embedding import (TRUNCATION_WARNING, check_output, describe, save_embeddings,
                                  truncation_message)

    started = time.perf_counter()
    check_texts(texts, name="TEXT")
    if output:
        check_output(output, resume=False, overwrite=overwrite, level=opts["level"])
    encoder = Encoder(model, device, backend=backend, max_length=max_length)
    opts = encoder.resolve_options(**opts)  # every option checked before any work
    dim = encoder.dimension(opts["layers"], opts["layer_agg"])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=TRUNCATION_WARNING)
        result = encoder.encode(texts, progress=False, **opts)
    n_truncated = encoder.last_stats["n_truncated"]
    if n_truncated:
        warn(truncation_message(encoder, n_truncated, len(texts)))
    if output is None:
        chunk = Chunk.from_results(texts, result, opts["level"], n_truncated, dim=dim)
        echo_json(list(chunk.records(opts["level"])))
        return
    totals = save_embeddings(output, texts, result, level=opts["level"], dim=dim, n_truncated=n_truncated)
    _wrote(output, totals["n_texts"], totals["n_items"], dim, opts["level"], describe(encoder, opts),
           time.perf_counter() - started)


def _wrote(output, n_texts, n_items, dim, level, description, seconds) -> None:
    if level == "sentence":
        shape = f"({n_texts}, {dim}) float32"
    else:
        shape = f"{n_texts} texts, {n_items} {level} vectors of {dim} float32"
    click.echo(f"Wrote {output}: {shape} ({description}) in {seconds:.1f} s.", err=True)
