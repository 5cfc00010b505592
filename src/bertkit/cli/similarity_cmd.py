"""``bertkit similarity words|sentences``, ``bertkit search`` and ``bertkit attention``."""

from __future__ import annotations

import contextlib
import warnings

import click

from .app import cli, echo_json, runs_model, warn
from .options import (LAYER_AGGS, LONG_MODES, POOLINGS, SUBWORDS, aliased, backend_option,
                      batch_size_option, columns_option, device_option, input_option, json_option,
                      max_length_option, model_option, png_option, read_options, skip_empty_option,
                      text_column_option)

_INPUT_HELP = ("Read the texts from FILE (.txt: one a line; .csv/.tsv/.jsonl/.parquet: see "
               "--text-column).")
_MATRIX_PNG_HELP = "Also draw the matrix as an annotated heat-map PNG at FILE."


def sentence_options(f):
    """--pooling/--layers/--layer-agg/--exclude-special/--long, as in `bertkit embed`."""
    f = click.option("--long", type=click.Choice(LONG_MODES), default="truncate",
                     show_default=True, help="Texts over the model's limit: cut them, or cover "
                     "them whole with overlapping windows.")(f)
    f = click.option("--exclude-special", is_flag=True,
                     help="Leave [CLS]/[SEP] out of mean/max pooling.")(f)
    f = click.option("--layer-agg", type=click.Choice(LAYER_AGGS), default="concat",
                     show_default=True, help="How several layers combine.")(f)
    f = click.option("--layers", default="-1", show_default=True, metavar="SPEC",
                     help="Hidden states: -1 (last), -4: (last four), 0,3,6, all (0 = embeddings).")(f)
    f = click.option("--pooling", type=click.Choice(POOLINGS), default=None,
                     help="How token vectors become a sentence vector (default: the model folder's "
                          "pooling, else mean).")(f)
    return f


@contextlib.contextmanager
def _library_warnings(truncation: bool = True):
    """Show the library's warnings as one ``Warning: ...`` line each, without Python's
    file/line decoration. ``truncation=False`` leaves out the encoder's note on texts cut
    to the limit: the command reports the result's ``n_truncated`` itself."""
    import re

    from ..file_embedding import TRUNCATION_WARNING

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            yield
        finally:
            seen = set()
            for w in caught:
                text = str(w.message)
                if not truncation and re.match(TRUNCATION_WARNING, text):
                    continue
                if issubclass(w.category, UserWarning) and text not in seen:
                    seen.add(text)
                    warn(text)


def _load_encoder(model, device, backend="torch", max_length=None):
    from ..encoder import Encoder

    return Encoder(model, device=device, backend=backend, max_length=max_length)


def _read_texts(input_file, text_column, columns, skip_empty=False, read=None) -> list:
    """The texts of --input FILE through the one reader (empty rows: an error unless
    --skip-empty, then left out with a note)."""
    from ..texts import load_texts

    got = load_texts(input_file, text_column=text_column, columns=columns,
                     on_empty="skip" if skip_empty else "error", **(read or {}))
    if got.skipped:
        warn(got.scan.note())
    return got.texts


def _gather_texts(texts, input_file, text_column, columns, skip_empty=False, read=None) -> list:
    """TEXT arguments, then the texts of --input FILE; ``read``: quoting, encoding, format."""
    from ..errors import InputError

    texts = list(texts)
    if input_file:
        texts += _read_texts(input_file, text_column, columns, skip_empty, read)
    elif text_column or columns:
        raise InputError("--text-column and --columns apply to --input FILE; give --input too.")
    return texts


def _warn_truncated(result, encoder, n_texts: int) -> None:
    """The one warning line for texts cut to fit (from the result's ``n_truncated``)."""
    from ..file_embedding import truncation_message

    if result.n_truncated:
        warn(truncation_message(encoder, result.n_truncated, n_texts))


def _print_matrix(matrix, names, fmt="{:.3f}") -> None:
    width = max(6, *(len(n) for n in names)) + 1
    cell = max(len(fmt.format(-1.0)), *(len(n) for n in names)) + 1
    click.echo("cosine".ljust(width) + "".join(n.rjust(cell) for n in names))
    for name, row in zip(names, matrix):
        click.echo(name.ljust(width) + "".join(fmt.format(float(v)).rjust(cell) for v in row))


# ------------------------------------------------------------------------ similarity
@cli.group("similarity")
def similarity_group():
    """Compare texts: a word in its contexts, or whole sentences (cosine matrices).

    \b
    Examples:
      bertkit similarity words --word bank "the bank vault" "the river bank"
      bertkit similarity sentences "A man plays guitar." "Someone plays music."
    """


@similarity_group.command("words")
@click.argument("texts", nargs=-1)
@click.option("--word", "-w", required=True, help="The word to find (whole words, any case).")
@input_option("input_file", _INPUT_HELP)
@text_column_option
@columns_option
@read_options
@click.option("--layers", default="-4:", show_default=True, metavar="SPEC",
              help="Hidden states: -1 (last), -4: (last four), 0,3,6, all (0 = embeddings).")
@click.option("--layer-agg", type=click.Choice(LAYER_AGGS), default="sum", show_default=True,
              help="How several layers combine (the last four summed, the default, tells the "
                   "senses of a word apart best).")
@click.option("--subword", type=click.Choice(SUBWORDS), default="mean",
              show_default=True, help="How the WordPieces of a split word are pooled.")
@click.option("--case-sensitive", is_flag=True, help="Match the word's case exactly.")
@click.option("--context", type=click.IntRange(min=0), default=2, show_default=True,
              help="Words shown on each side of an occurrence in its label.")
@png_option(_MATRIX_PNG_HELP)
@model_option
@skip_empty_option
@device_option
@backend_option
@max_length_option
@json_option
@runs_model
def words_command(texts, word, input_file, text_column, columns, quoting, encoding, format,
                  layers, layer_agg, subword,
                  case_sensitive, context, png, skip_empty, model, device, backend, max_length,
                  as_json):
    """Compare the contextual vectors of every occurrence of --word in TEXT(s).

    Occurrences are compared within one text and across texts; each is labelled with the
    words around it ("[2] ..." tells the text when there are several).

    \b
    Example (three senses of "bank" in one sentence):
      bertkit similarity words --word bank "After stealing money from the bank vault,
        the bank robber was seen fishing on the Mississippi river bank." --png bank.png
    """
    from ..errors import InputError
    from ..similarity import word_similarity

    texts = _gather_texts(texts, input_file, text_column, columns, skip_empty,
                          dict(quoting=quoting, encoding=encoding, format=format))
    if not texts:
        raise InputError("Give at least one TEXT (or --input FILE) to look for the word in.")
    encoder = _load_encoder(model, device, backend, max_length)
    with _library_warnings(truncation=False):
        result = word_similarity(texts, word, encoder=encoder,
                                 layers=layers, layer_agg=layer_agg, subword=subword,
                                 case_sensitive=case_sensitive, context=context)
    _warn_truncated(result, encoder, len(texts))
    n = len(result.occurrences)
    if n == 1:
        warn(f"'{word}' occurs only once; there is nothing to compare it with.")
    if result.missing and len(texts) > 1:
        shown = ", ".join(str(t + 1) for t in result.missing[:10])
        warn(f"'{word}' does not occur in text(s) {shown}{' ...' if len(result.missing) > 10 else ''}.")
    if png:
        result.plot(png)
    if as_json:
        d = result.to_dict()
        d.pop("missing")
        d["missing_texts"] = [t + 1 for t in result.missing]
        if png:
            d["png"] = png
        echo_json(d)
    else:
        from ..similarity import _layers_phrase

        s = result.settings
        n_texts = len(texts)
        click.echo(f'"{result.word}": {n} occurrence{"s" if n != 1 else ""} in {n_texts} '
                   f'text{"s" if n_texts != 1 else ""} ({_layers_phrase(s["layers"], s["layer_agg"])}, '
                   f'subword {s["subword"]})')
        names = [f"#{i + 1}" for i in range(n)]
        for name, label in zip(names, result.labels):
            click.echo(f"  {name:<4} {label}")
        click.echo("")
        _print_matrix(result.matrix, names)
        pairs = result.pairs()
        if len(pairs) > 1:
            (a, b, hi), (c, d, lo) = pairs[0], pairs[-1]
            click.echo(f"\nmost similar: #{a + 1} ~ #{b + 1} ({hi:.3f}); "
                       f"least: #{c + 1} ~ #{d + 1} ({lo:.3f})")
    if png:
        click.echo(f"wrote {png}", err=True)


MAX_MATRIX_TEXTS = 2000


@similarity_group.command("sentences")
@click.argument("texts", nargs=-1)
@input_option("input_file", _INPUT_HELP)
@text_column_option
@columns_option
@read_options
@sentence_options
@batch_size_option
@max_length_option
@png_option(_MATRIX_PNG_HELP)
@model_option
@skip_empty_option
@device_option
@backend_option
@json_option
@runs_model
def sentences_command(texts, input_file, text_column, columns, quoting, encoding, format,
                      pooling, layers, layer_agg,
                      exclude_special, long, batch_size, max_length, png, skip_empty, model, device,
                      backend, as_json):
    """Cosine similarity matrix of the sentence vectors of TEXTs (or of --input FILE).

    \b
    Example:
      bertkit similarity sentences "A man plays guitar." "Someone plays music." \
        "A cat sleeps." --png sim.png
    """
    from ..errors import InputError
    from ..similarity import sentence_similarity

    texts = _gather_texts(texts, input_file, text_column, columns, skip_empty,
                          dict(quoting=quoting, encoding=encoding, format=format))
    if len(texts) < 2:
        raise InputError(f"Give at least two TEXTs (or --input FILE) to compare; got {len(texts)}.")
    if len(texts) > MAX_MATRIX_TEXTS:
        raise InputError(f"{len(texts)} texts make a {len(texts)}x{len(texts)} matrix; compare at "
                         f"most {MAX_MATRIX_TEXTS} at once, or use `bertkit search` to find the "
                         "nearest texts in a large corpus.")
    encoder = _load_encoder(model, device, backend, max_length)
    with _library_warnings(truncation=False):
        result = sentence_similarity(texts, encoder=encoder,
                                     pooling=pooling, layers=layers, layer_agg=layer_agg,
                                     exclude_special=exclude_special, long=long,
                                     batch_size=batch_size)
    _warn_truncated(result, encoder, len(texts))
    if png:
        if len(texts) > 60:
            warn(f"{len(texts)} texts make a heat-map whose labels are too small to read; "
                 "compare fewer at once for a readable picture.")
        result.plot(png)
    if as_json:
        d = result.to_dict()
        if png:
            d["png"] = png
        echo_json(d)
    else:
        n = len(texts)
        for i, text in enumerate(texts):
            flat = " ".join(text.split())
            click.echo(f"  [{i + 1}] {flat if len(flat) <= 100 else flat[:97] + '...'}")
        click.echo("")
        if n <= 12:
            _print_matrix(result.matrix, [f"[{i + 1}]" for i in range(n)], "{:.3f}")
        else:
            click.echo("most similar pairs (the full matrix: --json or --png):")
            for i, j, score in result.most_similar(10):
                click.echo(f"  {score:.3f}  [{i + 1}] ~ [{j + 1}]")
    if png:
        click.echo(f"wrote {png}", err=True)


# ------------------------------------------------------------------------ search
@cli.command("search")
@input_option("corpus", "Texts to search (.txt: one a line; .csv/.tsv/.jsonl/.parquet: see "
              "--text-column).", required=True, aliases=("--corpus",))
@text_column_option
@columns_option
@read_options
@click.option("--query", "-q", "queries", required=True, multiple=True, metavar="TEXT",
              help="What to look for (repeat for several queries).")
@click.option("-k", "--top-k", "k", type=click.IntRange(min=1), default=5, show_default=True,
              help="Hits per query.")
@click.option("--index", "index_path", type=click.Path(dir_okay=False), default=None,
              metavar="FILE", help="Index file to reuse or create (.npz) (default: a cache file "
              "per input file, column, model and settings under ~/.cache/bertkit/indexes, "
              "$BERTKIT_CACHE/indexes when set).")
@click.option("--rebuild", is_flag=True, help="Re-embed the corpus even if the index is up to date.")
@click.option("--skip-empty", is_flag=True,
              help="Leave empty corpus rows out of the index (and say how many) instead of "
                   "stopping, as in `bertkit embed`.")
@sentence_options
@batch_size_option
@max_length_option
@model_option
@device_option
@backend_option
@json_option
@runs_model
def search_command(corpus, text_column, columns, quoting, encoding, format, queries, k,
                   index_path, rebuild, skip_empty, pooling, layers, layer_agg, exclude_special, long, batch_size, max_length, model,
                   device, backend, as_json):
    """Find the texts of --input FILE closest in meaning to each --query.

    The file is embedded once and kept in an index file (vectors, texts, settings and the
    model's fingerprint); later searches reuse it, re-embed it when the file changed, and
    refuse an index made with other settings or another model.

    \b
    Example:
      bertkit search --input topics_unlabelled.csv --query "a goal in extra time" -k 3
    """
    from ..search import open_index
    from .app import stderr_is_terminal

    encoder = _load_encoder(model, device, backend, max_length)
    with _library_warnings():
        index, status = open_index(
            corpus, encoder=encoder, index_path=index_path, text_column=text_column,
            columns=columns, rebuild=rebuild, skip_empty=skip_empty, batch_size=batch_size,
            quoting=quoting, encoding=encoding, format=format,
            progress=stderr_is_terminal(), pooling=pooling, layers=layers,
            layer_agg=layer_agg, exclude_special=exclude_special, long=long)
    skipped = (index.corpus or {}).get("n_skipped", 0)  # > 0 only with --skip-empty
    if status.action == "reused":
        left_out = f", {skipped} empty row(s) left out" if skipped else ""
        click.echo(f"index: reused {status.path} ({len(index)} texts{left_out}, embedded "
                   f"{index.created} in {index.build_seconds:.1f} s; loaded in "
                   f"{status.seconds:.2f} s)", err=True)
    else:
        why = f" because {status.reason}" if status.reason else ""
        click.echo(f"index: {status.action} {status.path}{why} ({len(index)} texts embedded in "
                   f"{index.build_seconds:.1f} s)", err=True)
        if skipped:
            warn(f"skipped {skipped} empty row(s) of '{corpus}' (--skip-empty); the index has "
                 f"{len(index)} texts, not {len(index) + skipped}.")
    with _library_warnings():
        results = index.search(list(queries), k, encoder=encoder, batch_size=batch_size)
    if as_json:
        echo_json({"index": {"path": status.path, "action": status.action,
                             "seconds": round(status.seconds, 3), "n_texts": len(index),
                             "n_skipped": skipped,
                             "settings": index.settings, "model": index.model["name"]},
                   "results": [{"query": q, "hits": [h.to_dict() for h in hits]}
                               for q, hits in zip(queries, results)]})
        return
    for n, (q, hits) in enumerate(zip(queries, results)):
        if n:
            click.echo("")
        click.echo(f"query: {q}")
        click.echo(f"  {'rank':>4}  {'score':>6}  {'row':>6}  text")
        for h in hits:
            text = " ".join(h.text.split())
            text = text if len(text) <= 100 else text[:97] + "..."
            click.echo(f"  {h.rank:>4}  {h.score:>6.3f}  {h.row:>6}  {text}")


# ------------------------------------------------------------------------ attention
@cli.command("attention")
@click.argument("text")
@click.option("--pair", default=None, metavar="TEXT2", help="Second text of a pair (segment 1).")
@click.option("--layer", type=int, default=-1, show_default=True,
              help="Layer 1..N counted from 1, or -1 for the last (layer L produces hidden "
                   "state L).")
@click.option("--head", type=int, default=None,
              help="One attention head 1..H counted from 1, or -1 for the last (default: the "
                   "average over the layer's heads).")
@click.option("--all-heads", is_flag=True, help="A grid with one panel per head of the layer.")
@aliased("--exclude-special", aliases=("--no-special",), is_flag=True,
         help="Hide [CLS]/[SEP] rows and columns (rows then no longer sum to 1).")
@png_option("Write the token x token heat-map PNG to FILE.")
@model_option
@device_option
@max_length_option
@json_option
@runs_model
def attention_command(text, pair, layer, head, all_heads, exclude_special, png, model, device,
                      max_length, as_json):
    """Show how much each token attends to every other token, as a heat-map.

    One head (--head H), every head of the layer in a grid (--all-heads), or by default the
    average over heads. Layers and heads are both counted from 1, here and in the plot
    titles. The model runs with eager attention so the weights are returned.

    \b
    Example:
      bertkit attention "The cat sat on the mat." --layer 6 --head 1 --png attention.png
    """
    from ..attention import attention_weights
    from ..errors import InputError

    if head is not None and all_heads:
        raise InputError("--head and --all-heads exclude each other; give one (or neither for "
                         "the head average).")
    if not png and not as_json:
        raise InputError("Say where the heat-map goes with --png FILE (or print the weights "
                         "with --json).")
    att = attention_weights(text, pair, model=model, device=device, max_length=max_length)
    if att.n_truncated:
        warn(f"input cut by {att.n_truncated} tokens to fit the model's limit.")
    which = "all" if all_heads else ("mean" if head is None else head)
    data = att.to_dict(layer, which, exclude_special=exclude_special)  # validates layer/head
    if png:
        att.plot(png, layer=layer, head=which, exclude_special=exclude_special)
    if as_json:
        if png:
            data["png"] = png
        echo_json(data)
    else:
        heads = ("all heads" if which == "all" else
                 f"mean of {att.num_heads} heads" if which == "mean" else
                 f"head {data['head']} of {att.num_heads}")
        click.echo(f"layer {data['layer']} of {att.num_layers}, {heads}, "
                   f"{len(data['tokens'])} tokens")
        if which != "all":  # the token each token attends to most
            tokens = data["tokens"]
            width = max(len("token"), *(len(t) for t in tokens))
            click.echo(f"{'token':<{width}}  attends most to")
            for tok, row in zip(tokens, data["weights"]):
                j = max(range(len(row)), key=row.__getitem__)
                click.echo(f"{tok:<{width}}  {tokens[j]} ({row[j]:.2f})")
    if png:
        click.echo(f"wrote {png}", err=True)
