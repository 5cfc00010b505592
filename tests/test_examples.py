"""`bertkit examples DIR` and the README's commands, which run on the files it copies."""

import re
from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from bertkit.cli import cli
from bertkit.labelled import example_data

README = Path(__file__).resolve().parent.parent / "README.md"


def test_examples_copies_the_shipped_files(tmp_path):
    out = tmp_path / "data"
    result = CliRunner().invoke(cli, ["examples", str(out)])
    assert result.exit_code == 0, result.output
    shipped = sorted(p.name for p in Path(example_data()).iterdir() if p.suffix in (".csv", ".tsv"))
    assert sorted(p.name for p in out.iterdir()) == shipped
    assert (out / "reviews_train.csv").read_bytes() == Path(example_data("reviews_train.csv")).read_bytes()
    again = CliRunner().invoke(cli, ["examples", str(out)])
    assert again.exit_code == 1 and "--overwrite" in again.stderr  # nothing replaced silently
    assert CliRunner().invoke(cli, ["examples", str(out), "--overwrite"]).exit_code == 0


def test_readme_usage_reads_only_shipped_files():
    """Every file a README usage command reads is one `bertkit examples` copies out, or
    one an earlier README command wrote; a block that opens with "# with your own files"
    shows public data sets a user downloads, and is said to be so."""
    text = README.read_text(encoding="utf-8")
    usage = text[text.index("## Usage"):text.index("## Performance")]
    blocks = [b for b in re.findall(r"```bash\n(.*?)```", usage, re.S)
              if not b.startswith("# with your own files")]
    shipped = {p.name for p in Path(example_data()).iterdir()}
    written = set()
    commands = [c for b in blocks for c in b.replace("\\\n", " ").splitlines()
                if c.strip().startswith("bertkit ")]
    assert len(commands) >= 15
    for command in commands:
        for flag, name in re.findall(r"(--input|--train|--validation|--model|--classifier) (\S+)", command):
            assert name in shipped or name in written, (flag, name, command)
        written.update(re.findall(r"--(?:output|png) (\S+)", command))


def test_reviews_task_is_not_trivially_separable():
    """The reviews set has labels no template decides alone: each label has texts that
    name a good and a bad thing, and some labels are a neighbouring class."""
    train = pd.read_csv(example_data("reviews_train.csv"))
    assert sorted(train["label"].unique()) == ["mixed", "negative", "positive"]
    assert len(train) == 360 and len(pd.read_csv(example_data("reviews_test.csv"))) == 120
    both = train["text"].str.contains(r",? but |although|though|yet| true that |wish I could", regex=True)
    assert set(train.loc[both, "label"]) == {"mixed", "negative", "positive"}
