"""The CLI's shared behaviour, driven through click's runner: exit codes and output."""

import json

import pytest
from click.testing import CliRunner

from bertkit.cli import cli


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(cli, list(args))

    return invoke


def test_help_lists_commands(run):
    result = run("--help")
    assert result.exit_code == 0
    for command in ("tokenize", "info"):
        assert command in result.output


def test_tokenize_json(run, tiny_model_dir):
    result = run("tokenize", "granola bars", "--model", tiny_model_dir, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["tokens"] == ["[CLS]", "gran", "##ola", "bars", "[SEP]"]
    assert set(data) >= {"tokens", "input_ids", "token_type_ids", "attention_mask", "word_ids"}


def test_tokenize_table_and_truncation_warning(run, tiny_model_dir):
    result = run("tokenize", "the cat sat on the mat", "--pair", "the dog", "--model",
                 tiny_model_dir, "--max-length", "6")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["pos", "token", "id", "segment", "mask", "word"]
    assert len(lines) == 1 + 6
    assert "input has 11 tokens; cut 5" in result.stderr


def test_missing_model_folder_is_one_line(run):
    result = run("tokenize", "hello", "--model", "/nonexistent/folder")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("Error: Model folder '/nonexistent/folder' does not exist")
    assert "Traceback" not in result.output


def test_empty_text_is_an_error(run, tiny_model_dir):
    result = run("tokenize", "  ", "--model", tiny_model_dir)
    assert result.exit_code == 1
    assert "Error: 'text' is empty" in result.stderr


def test_debug_variable_shows_traceback(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("BERTKIT_DEBUG", "1")
    result = CliRunner().invoke(cli, ["tokenize", "x", "--model", "/nonexistent/folder"])
    assert result.exit_code == 1
    assert type(result.exception).__name__ == "ModelLoadError"


def test_info_json_on_tiny_model(run, tiny_model_dir):
    result = run("info", "--model", tiny_model_dir, "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["num_hidden_layers"] == 2 and data["hidden_size"] == 32
    assert data["num_parameters"] == sum(data["parameters"].values())


def test_info_table(run, tiny_model_dir):
    result = run("info", "--model", tiny_model_dir)
    assert result.exit_code == 0
    assert "hidden states      3 (embeddings + 2 layers)" in result.stdout
    assert "encoder.layer.1" in result.stdout


@pytest.mark.integration
def test_default_model_cli(run):
    result = run("tokenize", "granola bars", "--json")
    assert json.loads(result.stdout)["input_ids"] == [101, 12604, 6030, 6963, 102]
    info = json.loads(run("info", "--json").stdout)
    assert (info["num_hidden_layers"], info["hidden_size"], info["num_hidden_states"]) == (6, 384, 7)
