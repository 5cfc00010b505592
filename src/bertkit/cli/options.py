"""Options shared by several commands, so they read the same everywhere."""

import click

model_option = click.option(
    "--model", "-m", default=None, metavar="MODEL",
    help="Model folder or Hugging Face id. Default: the bundled all-MiniLM-L6-v2.")
device_option = click.option(
    "--device", default=None, metavar="DEVICE",
    help="auto (default: cuda > mps > cpu), cpu, cuda, cuda:N or mps.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
max_length_option = click.option(
    "--max-length", type=click.IntRange(min=1), default=None,
    help="Longest input in tokens (default: the model's limit). Longer input is cut and counted.")
columns_option = click.option(
    "--columns", default=None, metavar="A,B,C",
    help="Column names for a headerless .csv/.tsv file, e.g. source,label,mark,sentence.")
text_column_option = click.option(
    "--text-column", default=None, metavar="COL",
    help="Column holding the text (default: 'text' or 'sentence' or the only column).")
#: bertkit.backends.BACKENDS, spelled out so that --help does not import the library (a test
#: checks that the two agree).
BACKENDS = ("torch", "onnx", "onnx-int8")
backend_option = click.option(
    "--backend", type=click.Choice(BACKENDS), default="torch", show_default=True,
    help="What runs the model: torch, or ONNX Runtime in fp32 or int8 (pip install 'bertkit[onnx]'; "
         "the export is made once and cached).")
skip_empty_option = click.option(
    "--skip-empty", is_flag=True,
    help="Leave out empty rows of --input (and say how many) instead of stopping.")

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
    help="Text encoding of the input file (default utf-8), e.g. latin-1 or cp1252.")
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
