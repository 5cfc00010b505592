import click

from .app import cli, echo_json, warn
from .options import json_option, max_length_option, model_option


@cli.command("tokenize")
@click.argument("text")
@click.option("--pair", default=None, metavar="TEXT2", help="Second text of a pair (segment 1).")
@model_option
@max_length_option
@json_option
def tokenize_command(text, pair, model, max_length, as_json):
    """Show how the model tokenizes TEXT: tokens, ids, segments, mask, word index.

    Reads only the tokenizer (no weights are loaded).

    \b
    Examples:
      bertkit tokenize "granola bars"
      bertkit tokenize "The cat sat." --pair "It was tired." --max-length 8 --json
    """
    from ..tokenize import tokenize

    result = tokenize(text, pair, model=model, max_length=max_length)
    if result.n_truncated:
        warn(f"input has {len(result.input_ids) + result.n_truncated} tokens; cut "
             f"{result.n_truncated} to fit max_length {result.max_length}.")
    if as_json:
        d = result.to_dict()
        echo_json({k: d[k] for k in ("tokens", "input_ids", "token_type_ids", "attention_mask",
                                     "word_ids", "n_truncated")})
        return
    width = max(len("token"), *(len(t) for t in result.tokens))
    click.echo(f"{'pos':>4}  {'token':<{width}}  {'id':>6}  {'segment':>7}  {'mask':>4}  {'word':>4}")
    for i, (tok, tid, seg, mask, word) in enumerate(zip(
            result.tokens, result.input_ids, result.token_type_ids, result.attention_mask,
            result.word_ids)):
        click.echo(f"{i:>4}  {tok:<{width}}  {tid:>6}  {seg:>7}  {mask:>4}  "
                   f"{'-' if word is None else word:>4}")
    click.echo(f"{len(result.tokens)} tokens (max_length {result.max_length})", err=True)
