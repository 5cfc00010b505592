import click

from .app import cli, echo_json
from .options import json_option, model_option


@cli.command("info")
@model_option
@json_option
def info_command(model, as_json):
    """Summarise the model's architecture and parameter counts."""
    from ..info import model_info

    info = model_info(model)
    if as_json:
        echo_json(info)
        return
    rows = [("model", info["model"]), ("type", f"{info['model_type']} ({info['architecture']})"),
            ("layers", info["num_hidden_layers"]), ("hidden size", info["hidden_size"]),
            ("attention heads", info["num_attention_heads"]),
            ("intermediate size", info["intermediate_size"]), ("vocab size", info["vocab_size"]),
            ("max positions", info["max_position_embeddings"]),
            ("hidden states", f"{info['num_hidden_states']} (embeddings + {info['num_hidden_layers']} layers)")]
    if info["num_labels"]:
        rows.append(("labels", ", ".join(info["id2label"].values())))
    for key, value in rows:
        click.echo(f"{key:<18} {value}")
    click.echo("\nparameters")
    for group, count in info["parameters"].items():
        click.echo(f"  {group:<18} {count:>12,}")
    click.echo(f"  {'total':<18} {info['num_parameters']:>12,}")
