"""`bertkit similarity words|sentences`, `search` and `attention` through click's runner."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from bertkit.cli import cli

SEED = ("After stealing money from the bank vault, the bank robber was seen fishing on the "
        "Mississippi river bank.")


@pytest.fixture
def run(monkeypatch, tmp_path):
    monkeypatch.setenv("BERTKIT_CACHE", str(tmp_path / "cache"))
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(cli, [str(a) for a in args])

    return invoke


def _no_trace(result):
    assert "Traceback" not in result.output


def test_help_lists_the_commands(run):
    result = run("--help")
    for command in ("similarity", "search", "attention"):
        assert command in result.stdout
    assert "words" in run("similarity", "--help").stdout


def test_words_table_json_and_png(run, tiny_model_dir, tmp_path):
    result = run("similarity", "words", "--word", "bank", SEED, "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith('"bank": 3 occurrences in 1 text (layers -4: summed')
    assert "#2   ...vault, the bank robber was..." in result.stdout
    assert "most similar:" in result.stdout

    png = tmp_path / "bank.png"
    result = run("similarity", "words", "-w", "Bank", SEED, "the bank", "--model", tiny_model_dir,
                 "--layers", "-1", "--layer-agg", "concat", "--png", png, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["occurrences"]) == 4 and data["labels"][3] == "[2] the bank"
    assert data["settings"]["layers"] == "-1" and len(data["matrix"]) == 4
    assert data["png"] == str(png) and png.read_bytes()[:4] == b"\x89PNG"


def test_words_absent_word_is_one_error_line(run, tiny_model_dir):
    result = run("similarity", "words", "--word", "vault", "the river", "the cat",
                 "--model", tiny_model_dir)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("Error: 'vault' does not occur in any of the 2 texts")
    assert result.stderr.count("\n") == 1
    _no_trace(result)
    result = run("similarity", "words", "--word", "bank", "--model", tiny_model_dir)
    assert result.exit_code == 1 and "at least one TEXT" in result.stderr


def test_words_warns_on_single_occurrence_and_missing_text(run, tiny_model_dir):
    result = run("similarity", "words", "--word", "bank", "the bank", "the cat",
                 "--model", tiny_model_dir)
    assert result.exit_code == 0
    assert "occurs only once" in result.stderr and "does not occur in text(s) 2" in result.stderr


def test_sentences_from_args_and_file(run, tiny_model_dir, tmp_path):
    result = run("similarity", "sentences", "a cat sat", "a dog sat", "stocks fell",
                 "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    assert "[1] a cat sat" in result.stdout and "cosine" in result.stdout
    path = tmp_path / "s.tsv"
    path.write_text("text\tlabel\na cat sat\t1\na dog sat\t0\n\t0\n", encoding="utf-8")
    png = tmp_path / "s.png"
    result = run("similarity", "sentences", "--input", path, "--model", tiny_model_dir, "--json")
    assert result.exit_code == 1 and "is empty (row 3)" in result.stderr  # the one reader's policy
    result = run("similarity", "sentences", "--input", path, "--model", tiny_model_dir,
                 "--pooling", "max", "--png", png, "--json", "--skip-empty")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["texts"] == ["a cat sat", "a dog sat"] and data["settings"]["pooling"] == "max"
    assert "left out 1 empty row" in result.stderr and png.stat().st_size > 5_000
    result = run("similarity", "sentences", "just one", "--model", tiny_model_dir)
    assert result.exit_code == 1 and "at least two" in result.stderr


def test_search_builds_then_reuses(run, tiny_model_dir, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat\na dog ran in the park\nstock market price fell\n"
                      "\nthe team won the game\n", encoding="utf-8")
    stopped = run("search", "--input", corpus, "--query", "a cat", "--model", tiny_model_dir)
    assert stopped.exit_code == 1  # as `bertkit embed`: empty rows are not dropped silently
    assert stopped.stderr.startswith("Error: 1 of 5 rows") and "--skip-empty" in stopped.stderr
    _no_trace(stopped)
    first = run("search", "--input", corpus, "--query", "a cat", "-k", "2",
                "--model", tiny_model_dir, "--skip-empty")
    assert first.exit_code == 0, first.output
    assert first.stderr.startswith("index: built ") and "(4 texts embedded in" in first.stderr
    assert "Warning: skipped 1 empty row(s)" in first.stderr
    assert str(tmp_path / "cache" / "indexes") in first.stderr
    assert first.stdout.splitlines()[0] == "query: a cat"
    assert len(first.stdout.splitlines()) == 2 + 2

    second = run("search", "--input", corpus, "-q", "a cat", "-q", "the market", "-k", "2",
                 "--model", tiny_model_dir, "--json")
    assert second.exit_code == 0, second.output
    assert second.stderr.startswith("index: reused ") and "1 empty row(s) left out" in second.stderr
    data = json.loads(second.stdout)
    assert data["index"]["action"] == "reused" and data["index"]["n_texts"] == 4
    assert data["index"]["n_skipped"] == 1
    assert [r["query"] for r in data["results"]] == ["a cat", "the market"]
    hits = data["results"][0]["hits"]
    assert [h["rank"] for h in hits] == [1, 2] and hits[0]["score"] >= hits[1]["score"]
    assert {h["row"] for h in data["results"][1]["hits"]} <= {0, 1, 2, 4}  # row 3 was empty


def test_search_explicit_index_refuses_other_settings(run, tiny_model_dir, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat\na dog ran\n", encoding="utf-8")
    index = tmp_path / "my.npz"
    assert run("search", "--input", corpus, "-q", "cat", "--index", index,
               "--model", tiny_model_dir).exit_code == 0
    result = run("search", "--input", corpus, "-q", "cat", "--index", index, "--pooling", "cls",
                 "--model", tiny_model_dir)
    assert result.exit_code == 1
    assert "built with --pooling mean, not --pooling cls" in result.stderr  # flags on the CLI
    _no_trace(result)
    result = run("search", "--input", tmp_path / "nope.txt", "-q", "cat",
                 "--model", tiny_model_dir)
    assert result.exit_code == 1 and "does not exist" in result.stderr


def test_search_index_that_is_not_an_index_is_one_error_line(run, tiny_model_dir, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat\na dog ran\n", encoding="utf-8")
    ref = tmp_path / "ref.npy"
    assert run("embed", "the cat", "a dog", "--model", tiny_model_dir, "--output", ref).exit_code == 0
    before = ref.read_bytes()
    result = run("search", "--input", corpus, "-q", "cat", "--index", ref, "--model", tiny_model_dir)
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"Error: '{ref}' is a single NumPy array of shape (2, 32)")
    assert "not a bertkit search index" in result.stderr and "--index NEW.npz" in result.stderr
    assert "unexpected" not in result.stderr
    result = run("search", "--input", corpus, "-q", "cat", "--index", ref, "--rebuild",
                 "--model", tiny_model_dir)
    assert result.exit_code == 1 and "--rebuild replaces index files only" in result.stderr
    assert ref.read_bytes() == before  # the embeddings were not overwritten


def test_attention_png_json_and_option_errors(run, tiny_model_dir, tmp_path):
    png = tmp_path / "att.png"
    result = run("attention", "the cat sat", "--pair", "the dog", "--png", png,
                 "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("layer 2 of 2, mean of 4 heads, 8 tokens")
    assert png.read_bytes()[:4] == b"\x89PNG"
    result = run("attention", "the cat sat", "--layer", "1", "--head", "2", "--exclude-special",
                 "--json", "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["tokens"] == ["the", "cat", "sat"] and data["layer"] == 1 and data["head"] == 2
    from bertkit.attention import attention_weights

    w = attention_weights("the cat sat", model=tiny_model_dir).weights[0, 1]  # head 2 = index 1
    np.testing.assert_allclose(data["weights"], w[1:4, 1:4], atol=1e-5)
    assert run("attention", "the cat sat", "--no-special", "--json", "--model",
               tiny_model_dir).exit_code == 0  # the old spelling, for one release
    grid = tmp_path / "grid.png"
    result = run("attention", "the cat sat", "--all-heads", "--png", grid, "--model",
                 tiny_model_dir)
    assert result.exit_code == 0 and grid.stat().st_size > 20_000
    for args, msg in ((("--head", "1", "--all-heads", "--png", png), "exclude each other"),
                      ((), "--png FILE"),
                      (("--layer", "0", "--json"), "layer 0 is the embedding output")):
        result = run("attention", "the cat sat", *args,
                     "--model", tiny_model_dir)
        assert result.exit_code == 1 and msg in result.stderr, result.output
        _no_trace(result)


@pytest.mark.integration
def test_bank_must_show_via_cli(run, tmp_path):
    png = tmp_path / "bank.png"
    result = run("similarity", "words", "--word", "bank", SEED, "--json", "--png", png)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["occurrences"]) == 3
    m = data["matrix"]
    vault_robber, vault_river, robber_river = m[0][1], m[0][2], m[1][2]
    assert vault_robber > vault_river and vault_robber > robber_river
    assert "vault" in data["labels"][0] and "robber" in data["labels"][1]
    assert "river" in data["labels"][2]
    assert png.stat().st_size > 20_000


def test_library_warnings_are_one_line(run, tiny_model_dir):
    long_text = "the cat sat on the mat " * 20  # over the tiny model's 64 tokens
    result = run("similarity", "sentences", long_text, "a dog", "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    assert "Warning: 1 of 2 texts were longer than the model's limit" in result.stderr
    assert "UserWarning" not in result.stderr
    result = run("similarity", "sentences", long_text, "a dog", "--long", "window",
                 "--model", tiny_model_dir)
    assert result.exit_code == 0 and "Warning" not in result.stderr
