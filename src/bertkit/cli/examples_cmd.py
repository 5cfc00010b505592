"""``bertkit examples DIR``: copy the example data files shipped in the package out."""

import click

from .app import cli


@cli.command("examples")
@click.argument("folder", metavar="DIR", type=click.Path(file_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace files of the same name already in DIR.")
def examples_command(folder, overwrite):
    """Copy the example data shipped with bertkit into DIR, to try every command on.

    The README's commands run as written inside DIR: labelled topics (text,label) with an
    easy 3-topic task, product reviews (positive / negative / mixed) whose mixed reviews
    the model confuses, sentence pairs (first, second, label) and unlabelled texts.

    \b
    Example:
      bertkit examples data && cd data && bertkit train --train reviews_train.csv --output reviews-model
    """
    import os
    import shutil
    from pathlib import Path

    from ..errors import InputError
    from ..labelled import example_data

    source = Path(example_data())
    names = sorted(p.name for p in source.iterdir()
                   if p.is_file() and not p.name.startswith(("_", ".")))
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise InputError(f"DIR '{folder}' is a file; give a folder (it is created if missing).")
    clash = [n for n in names if (out / n).exists()]
    if clash and not overwrite:
        raise InputError(f"'{folder}' already has {', '.join(clash)}; pass --overwrite to "
                         "replace them, or give another DIR.")
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(source / name, out / name)
        click.echo(f"{os.path.join(folder, name):<40} {_rows(out / name):>5} rows")
    click.echo(f"\nTry: cd {folder} && bertkit train --train reviews_train.csv --output "
               "reviews-model", err=True)


def _rows(path) -> int:
    with open(path, encoding="utf-8") as f:
        return max(0, sum(1 for _ in f) - 1)  # minus the header line
