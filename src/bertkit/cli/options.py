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
