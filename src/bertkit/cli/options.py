"""Options shared by several commands, so that one concept has one flag everywhere.

The vocabulary (README, "One name per concept"): ``--input`` is the file a command reads
(``train`` names its two by role: ``--train`` and ``--validation``), ``--output`` what it
writes, ``--png`` a picture, ``--max-length`` the longest input in tokens,
``--exclude-special`` leaves [CLS]/[SEP] out, ``--head-type`` is a classifier head's shape and
``--head`` an attention head. Old spellings stay for one release as hidden aliases
(:class:`AliasedOption`: they work with a one-line note naming the new flag, and
``--help`` does not show them).

Choices come from the library's constants, so the CLI cannot drift from what the library
accepts. Defaults are shown one way: ``[default: X]`` (click's ``show_default``), or in the
help text as "(default: ...)" when the default depends on the model or the data.
"""

import click

from ..backends import BACKENDS
from ..encoder import LEVELS
from ..features import LONG_MODES
from ..pooling import LAYER_AGGS, POOLINGS, SUBWORDS

__all__ = ["AliasedOption", "BACKENDS", "LAYER_AGGS", "LEVELS", "LONG_MODES", "POOLINGS",
           "SUBWORDS", "aliased"]


class AliasedOption(click.Option):
    """An option with old names that still work but are left out of ``--help``."""

    def __init__(self, *args, aliases=(), **kwargs):
        self.aliases = tuple(aliases)
        super().__init__(*args, **kwargs)

    def get_error_hint(self, ctx):
        return " / ".join(f"'{o}'" for o in self.opts if o not in self.aliases)

    def get_help_record(self, ctx):
        shown, secondary = self.opts, self.secondary_opts
        self.opts = [o for o in shown if o not in self.aliases]
        self.secondary_opts = [o for o in secondary if o not in self.aliases]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts, self.secondary_opts = shown, secondary


def aliased(*names, aliases=(), **kwargs):
    """``click.option(*names, *aliases, ...)`` with the aliases hidden from ``--help``."""
    decls = [n for n in names if n.startswith("-")]
    dest = [n for n in names if not n.startswith("-")]
    return click.option(*decls, *aliases, *dest, cls=AliasedOption, aliases=aliases, **kwargs)


model_option = click.option(
    "--model", "-m", default=None, metavar="MODEL",
    help="Model folder or Hugging Face id (default: the bundled all-MiniLM-L6-v2).")
device_option = click.option(
    "--device", default=None, metavar="DEVICE",
    help="auto, cpu, cuda, cuda:N or mps (default: auto, i.e. cuda > mps > cpu).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
max_length_option = click.option(
    "--max-length", type=click.IntRange(min=1), default=None,
    help="Longest input in tokens, specials included (default: the model's limit). Longer "
         "input is cut and counted.")
columns_option = click.option(
    "--columns", default=None, metavar="A,B,C",
    help="Column names for a headerless .csv/.tsv file, e.g. source,label,mark,sentence.")
text_column_option = click.option(
    "--text-column", default=None, metavar="COL",
    help="Column holding the text (default: 'text' or 'sentence' or the only column).")
backend_option = click.option(
    "--backend", type=click.Choice(BACKENDS), default="torch", show_default=True,
    help="What runs the model: torch, or ONNX Runtime in fp32 or int8 (pip install 'bertkit[onnx]'; "
         "the export is made once and cached).")
skip_empty_option = click.option(
    "--skip-empty", is_flag=True,
    help="Leave out empty rows of --input (and say how many) instead of stopping.")
batch_size_option = click.option(
    "--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
    help="Most texts per forward pass.")
exclude_special_option = click.option(
    "--exclude-special", is_flag=True,
    help="Leave [CLS]/[SEP] out of mean/max pooling and token output.")


def input_option(dest: str, help: str, *, required: bool = False, aliases=()):
    """``--input FILE`` (``-i``): the file a command reads; ``aliases`` are old names."""
    return aliased("--input", "-i", dest, aliases=aliases, required=required, default=None,
                   metavar="FILE", help=help)


def png_option(help: str = "Also draw it as a PNG heat-map at FILE.", aliases=(), **kwargs):
    """``--png FILE``: where a command draws its picture."""
    return aliased("--png", "png", aliases=aliases, type=click.Path(dir_okay=False),
                   default=None, metavar="FILE", help=help, **kwargs)

# How input files are read: one set of options on every command that reads a data file.
#: bertkit.data.QUOTING and bertkit.formats.FORMAT_NAMES, spelled out so that --help does not
#: import the library (a test checks that they agree).
QUOTINGS = ("none", "csv")
FORMAT_NAMES = ("csv", "tsv", "jsonl", "parquet", "txt", "fasttext", "label-first", "folder", "hf")
quoting_option = click.option(
    "--quoting", type=click.Choice(QUOTINGS), default=None,
    help="How '\"' is read in .csv/.tsv: none (quotes are text, one line is one row; default "
         "for .tsv, as GLUE files need) or csv (quoted fields; default for .csv).")
encoding_option = click.option(
    "--encoding", default=None, metavar="NAME",
    help="Text encoding of the input file, e.g. latin-1 or cp1252 (default: utf-8).")
format_option = click.option(
    "--format", "format", type=click.Choice(FORMAT_NAMES), default=None,
    help="Input format when the extension says nothing (e.g. train_5500.label): csv, tsv, "
         "jsonl, parquet, txt; fasttext ('__label__pos text' lines); label-first ('LABEL text' "
         "lines, as TREC's); folder (class "
         "sub-folders, or one file per class); hf (Dataset.save_to_disk folder). A save_to_disk "
         "folder and a folder of parquet shards are recognised without it.")


def read_options(f):
    """--quoting, --encoding and --format (how input files are read)."""
    return quoting_option(encoding_option(format_option(f)))
