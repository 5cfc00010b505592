import click

from .app import cli, echo_json, warn
from .options import json_option, model_option


@cli.command("info")
@model_option
@json_option
def info_command(model, as_json):
    """Summarise the model's architecture and parameter counts.

    Reads config.json and the weights file's header only (no weights are loaded).

    \b
    Examples:
      bertkit info
      bertkit info --model topics-model --json
    """
    from ..info import model_info

    info = model_info(model)
    if as_json:
        for problem in info["folder_settings"]["problems"]:
            warn(f"{problem}; ignored (bertkit's own defaults apply).")
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
    rows += _folder_rows(info["folder_settings"])
    for problem in info["folder_settings"]["problems"]:
        warn(f"{problem}; ignored (bertkit's own defaults apply).")
    for key, value in rows:
        click.echo(f"{key:<18} {value}")
    click.echo("\nparameters")
    for group, count in info["parameters"].items():
        click.echo(f"  {group:<18} {count:>12,}")
    click.echo(f"  {'total':<18} {info['num_parameters']:>12,}")


def _folder_rows(fs: dict) -> list:
    """Table rows for what the folder's sentence-transformers config sets."""
    if fs["source"] is None:
        return [("folder settings", "none (no sentence-transformers config; bertkit defaults: "
                 "mean pooling, no normalizing, the model's max positions)")]
    rows = []
    for key, label in (("max_length", "folder max_length"), ("pooling", "folder pooling"),
                       ("normalize", "folder normalize")):
        value = fs[key]
        if value is None:
            rows.append((label, "not set (bertkit's default applies)"))
            continue
        shown = ("yes" if value else "no") if isinstance(value, bool) else value
        rows.append((label, f"{shown} ({fs['source']}: {fs['files'].get(key, 'modules.json')})"))
    if fs["unsupported"]:
        rows.append(("not reproduced", "; ".join(fs["unsupported"])
                     + " (bertkit's vectors will differ from sentence-transformers')"))
    return rows
