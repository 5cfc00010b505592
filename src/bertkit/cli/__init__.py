"""The ``bertkit`` command line: one module per command group, registered on import."""

from importlib import import_module

from .app import cli

# Each module adds its commands to ``cli`` when imported.
_COMMAND_MODULES = [
    "tokenize_cmd",
    "info_cmd",
    "embed_cmd",
    "similarity_cmd",
    "train_cmd",
    "serve_cmd",
    "examples_cmd",
]
for _name in _COMMAND_MODULES:
    import_module(f".{_name}", __name__)


def main():
    cli(prog_name="bertkit")
