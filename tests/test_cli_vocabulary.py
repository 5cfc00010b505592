"""One vocabulary across the CLI: every command walked, not a sample of them.

The README's usage table ("One name per concept") lists each concept's flag and Python
parameter; these tests check the commands against it and against the library's constants.
"""

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bertkit.cli import cli

README = Path(__file__).resolve().parent.parent / "README.md"
# Old spellings: still accepted for one release, never shown.
OLD = {"--plot": "--png", "--data": "--input", "--corpus": "--input", "--no-special": "--exclude-special"}
NO_MODEL = {"tokenize", "info", "examples"}  # commands that run no model


def commands(group=cli, prefix=()):
    """(path, command) of every command, sub-groups included."""
    for name, cmd in sorted(group.commands.items()):
        path = (*prefix, name)
        if isinstance(cmd, click.Group):
            yield path, cmd
            yield from commands(cmd, path)
        else:
            yield path, cmd


LEAVES = [(" ".join(p), c) for p, c in commands() if not isinstance(c, click.Group)]
ALL = [("", cli)] + [(" ".join(p), c) for p, c in commands()]


def visible_opts(cmd) -> set:
    """Flags ``--help`` shows (aliases hidden)."""
    out = set()
    for p in cmd.params:
        if not isinstance(p, click.Option) or p.hidden:
            continue
        aliases = getattr(p, "aliases", ())
        out |= {o for o in p.opts + p.secondary_opts if o not in aliases}
    return out


def help_text(path: str) -> str:
    result = CliRunner().invoke(cli, [*path.split(), "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_is_walked():
    names = {p for p, _ in LEAVES}
    assert {"tokenize", "info", "embed", "similarity words", "similarity sentences", "search",
            "attention", "train", "evaluate", "predict", "serve", "examples"} <= names


@pytest.mark.parametrize("path", [p for p, _ in ALL], ids=lambda p: p or "bertkit")
def test_every_help_has_an_example_and_no_project_history(path):
    text = help_text(path)
    assert re.search(r"^\s*Examples?\b.*:", text, re.M), f"`bertkit {path} --help` has no example"
    assert re.search(r"^\s+bertkit ", text, re.M)
    for word in ("seed 00", "seeds do", "the issue"):
        assert word not in text


@pytest.mark.parametrize("path,cmd", LEAVES, ids=[p for p, _ in LEAVES])
def test_every_option_is_described_in_one_default_style(path, cmd):
    for p in cmd.params:
        if isinstance(p, click.Option) and not p.hidden and p.name != "help":
            assert p.help and p.help.strip(), f"{path} {p.opts[0]} has no description"
            # defaults read "(default: X)" or click's "[default: X]", never "(default X)"
            assert not re.search(r"\(default [^:]|Default:|default name", p.help), (path, p.opts[0], p.help)


@pytest.mark.parametrize("path,cmd", LEAVES, ids=[p for p, _ in LEAVES])
def test_no_visible_old_spelling(path, cmd):
    shown = visible_opts(cmd)
    assert not shown & set(OLD), (path, shown & set(OLD))
    if path == "train":
        assert "--head" not in shown and "--head-type" in shown  # --head is an attention head
    if path in ("embed", "similarity sentences", "search", "attention"):
        assert "--exclude-special" in shown


@pytest.mark.parametrize("path,cmd", LEAVES, ids=[p for p, _ in LEAVES])
def test_every_model_command_takes_max_length_and_is_marked(path, cmd):
    runs = getattr(cmd.callback, "runs_model", False)
    assert runs == (path not in NO_MODEL), path
    if runs:
        assert "--max-length" in visible_opts(cmd), path


@pytest.mark.parametrize("path,args,name,value", [
    ("evaluate", ["--plot", "x.png", "--data", "d.csv"], "png", "x.png"),
    ("evaluate", ["--data", "d.csv"], "data", "d.csv"),
    ("search", ["--corpus", "c.txt", "-q", "x"], "corpus", "c.txt"),
    ("attention", ["t", "--no-special"], "exclude_special", True),
    ("train", ["--head", "mlp"], "head", "mlp"),
    ("train", ["--input", "t.csv"], "train", "t.csv"),
])
def test_old_spellings_still_work(path, args, name, value):
    cmd = dict(LEAVES)[path]
    with cmd.make_context(path, list(args)) as ctx:
        assert ctx.params[name] == value


def test_aliases_are_hidden_in_help():
    text = help_text("evaluate")
    assert "--png" in text and "--plot" not in text and "--data" not in text
    assert "--no-special" not in help_text("attention")
    assert "--corpus" not in help_text("search")


def test_choices_come_from_the_library():
    from bertkit.backends import BACKENDS
    from bertkit.encoder import LEVELS
    from bertkit.features import LONG_MODES
    from bertkit.heads import HEADS
    from bertkit.pooling import LAYER_AGGS, POOLINGS, SUBWORDS
    from bertkit.train_config import CLASS_WEIGHTS, METRIC_CHOICES, PRECISIONS

    expected = {"--backend": BACKENDS, "--level": LEVELS, "--long": LONG_MODES, "--pooling": POOLINGS,
                "--layer-agg": LAYER_AGGS, "--subword": SUBWORDS, "--head-type": HEADS,
                "--class-weights": CLASS_WEIGHTS, "--metric": METRIC_CHOICES, "--precision": PRECISIONS}
    seen = set()
    for path, cmd in LEAVES:
        for p in cmd.params:
            if isinstance(p, click.Option) and p.opts[0] in expected:
                assert tuple(p.type.choices) == tuple(expected[p.opts[0]]), (path, p.opts[0])
                seen.add(p.opts[0])
    assert seen == set(expected)


def readme_table() -> list:
    """Rows of the README's "One name per concept" table: (concept, flags, parameters)."""
    text = README.read_text(encoding="utf-8")
    start = text.index("One name per concept")
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|") and not set(line) <= set("|-: "):
            rows.append([c.strip() for c in line.strip("|").split("|")])
        elif rows and not line.startswith("|"):
            break
    return rows[1:]  # without the header


def test_readme_table_matches_the_commands():
    rows = readme_table()
    assert len(rows) >= 12
    every_flag = set().union(*(visible_opts(c) for _, c in LEAVES))
    for concept, flags, *_ in rows:
        for flag in re.findall(r"`(--[a-z-]+)", flags):
            assert flag in every_flag, (concept, flag)
            assert flag not in OLD


def test_library_errors_name_flags_on_the_command_line(tiny_model_dir):
    result = CliRunner().invoke(cli, ["attention", "the cat", "--head", "9", "--json",
                                      "--model", tiny_model_dir])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: --head must be an integer 1..4"), result.stderr


def test_to_flags_rewrites_only_the_commands_parameters():
    from bertkit.cli.app import to_flags

    params = dict(LEAVES)["train"].params
    assert to_flags("The 'head' parameter of train must be one of linear, mlp.", params) \
        == "--head-type must be one of linear, mlp."
    assert to_flags("head='linear' needs a BERT head; use head='mlp'.", params) \
        == "--head-type linear needs a BERT head; use --head-type mlp."
    assert to_flags("max_length=600 is over the model's limit", params) == "--max-length 600 is over the model's limit"
    assert to_flags("Column 'label' is missing; window=3", params) == "Column 'label' is missing; window=3"


def test_library_messages_name_python_parameters():
    from bertkit.errors import InputError
    from bertkit.heads import apply_head
    from bertkit.labelled import stratified_split
    from bertkit.train_config import TrainConfig

    with pytest.raises(InputError, match=r"^The 'head' parameter"):
        apply_head(object(), "deep")
    with pytest.raises(InputError, match=r"^The 'val_split' parameter"):
        stratified_split(["a", "b"], 1.5, seed=0)
    with pytest.raises(InputError, match=r"^The 'save_steps' parameter"):
        TrainConfig(save_steps=-1).check()
    with pytest.raises(InputError, match=r"^The 'warmup_ratio' parameter"):
        TrainConfig(warmup_ratio=2.0).check()


LONG = "the cat sat on the mat " * 20  # 120 words: over the tiny model's 64 tokens


def test_truncation_is_a_field_on_results_and_one_cli_line(tiny_model_dir, tmp_path):
    from conftest import build_tiny_model

    from bertkit import Classifier, sentence_similarity, word_similarity
    from bertkit.attention import attention_weights
    from bertkit.tokenize import tokenize

    assert sentence_similarity([LONG, "a dog"], model=tiny_model_dir).n_truncated == 1
    assert sentence_similarity([LONG, "a dog"], model=tiny_model_dir, long="window").n_truncated == 0
    assert word_similarity([LONG, "a cat"], "cat", model=tiny_model_dir, long="truncate").n_truncated == 1
    assert tokenize(LONG, model=tiny_model_dir).n_truncated > 0
    assert attention_weights(LONG, model=tiny_model_dir).n_truncated > 0
    clf = Classifier(build_tiny_model(tmp_path / "clf", num_labels=2), device="cpu")
    got = clf.predict([LONG, "a cat"])
    assert [g["truncated"] for g in got] == [True, False]
    result = CliRunner().invoke(cli, ["similarity", "sentences", LONG, "a dog", "--model", tiny_model_dir])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1 and warnings[0].startswith("Warning: 1 of 2 texts were longer than")


def test_an_old_spelling_says_its_new_name(tiny_model_dir):
    result = CliRunner().invoke(cli, ["attention", "the cat", "--no-special", "--json",
                                      "--model", tiny_model_dir])
    assert result.exit_code == 0, result.output
    assert "Warning: --no-special is now --exclude-special" in result.stderr
    assert '"exclude_special": true' in result.stdout


@pytest.mark.parametrize("args", [["similarity", "sentences", "a cat", "a dog"],
                                  ["search", "--input", "{corpus}", "-q", "cat"],
                                  ["attention", "a cat", "--json"]])
def test_bertkit_threads_is_honoured_by_model_commands(args, tiny_model_dir, tmp_path, monkeypatch):
    import torch

    corpus = tmp_path / "c.txt"
    corpus.write_text("a cat\na dog\n", encoding="utf-8")
    monkeypatch.setenv("BERTKIT_CACHE", str(tmp_path / "cache"))
    args = [a.format(corpus=corpus) for a in args] + ["--model", tiny_model_dir]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        result = CliRunner().invoke(cli, args, env={"BERTKIT_THREADS": "1"})
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1
        bad = CliRunner().invoke(cli, args, env={"BERTKIT_THREADS": "many"})
        assert bad.exit_code == 1 and bad.stderr.startswith("Error: BERTKIT_THREADS must be")
    finally:
        torch.set_num_threads(before)
