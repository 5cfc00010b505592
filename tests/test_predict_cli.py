"""``bertkit predict`` / ``evaluate`` refuse what they cannot do well, before any work
(issue 14, items 5-7): a model without a trained head, --max-length over the model's
limit, an --output that cannot be written or would be overwritten silently."""

import os

import pytest
from click.testing import CliRunner

from bertkit import Classifier
from bertkit.cli import cli
from bertkit.errors import InputError, ModelLoadError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LONG = " ".join(["the cat sat on the mat"] * 40)  # ~240 tokens; the tiny model takes 64


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_error_line(result, start):
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(start), result.stderr
    assert len(result.stderr.splitlines()) == 1 and "unexpected" not in result.stderr
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def hf_classifier(tmp_path_factory):
    """A sequence-classification folder trained "elsewhere": config with LABEL_0/LABEL_1,
    classifier weights in model.safetensors, no training_args.json."""
    from conftest import build_tiny_model

    folder = build_tiny_model(tmp_path_factory.mktemp("hf") / "clf", num_labels=2)
    assert not os.path.exists(os.path.join(folder, "training_args.json"))
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "data.csv"
    path.write_text("text,label\nthe cat sat,LABEL_0\na dog ran,LABEL_1\nthe sun,LABEL_0\n",
                    encoding="utf-8")
    return path


def test_model_without_trained_head_is_refused(tiny_model_dir, hf_classifier, data):
    # The plain encoder would get a random head: different probabilities on every run.
    for args in (["predict", "--model", tiny_model_dir, "the cat sat"],
                 ["evaluate", "--model", tiny_model_dir, "--input", data]):
        result = run(*args)
        one_error_line(result, f"Error: '{tiny_model_dir}' has no trained classification head")
        assert "bertkit train --train FILE" in result.stderr and "--output DIR" in result.stderr
    with pytest.raises(ModelLoadError, match="no trained classification head"):
        Classifier(tiny_model_dir, device="cpu")
    # A classifier trained elsewhere has its head weights: it loads, and is deterministic.
    first = run("predict", "--model", hf_classifier, "the cat sat")
    assert first.exit_code == 0, first.output
    assert run("predict", "--model", hf_classifier, "the cat sat").stdout == first.stdout
    assert run("evaluate", "--model", hf_classifier, "--input", data).exit_code == 0


@pytest.mark.integration
def test_bundled_encoder_is_refused_by_predict(default_model_dir):
    result = run("predict", "--model", default_model_dir, "hello")
    one_error_line(result, f"Error: '{default_model_dir}' has no trained classification head")


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_help_says_model_is_required(command):
    text = " ".join(run(command, "--help").stdout.split())
    assert "--model DIR Required: a trained classifier" in text
    assert "bundled" not in text  # the bundled encoder is not a default here


def test_max_length_over_the_model_limit(hf_classifier, data):
    one_error_line(run("predict", "--model", hf_classifier, "--max-length", "100000", LONG),
                   "Error: --max-length 100000 is over the model's limit of 64 tokens.")
    one_error_line(run("evaluate", "--model", hf_classifier, "--input", data, "--max-length", "65"),
                   "Error: --max-length 65 is over the model's limit of 64 tokens.")
    with pytest.raises(InputError, match="max_length=65 is over"):  # the library names its parameter
        Classifier(hf_classifier, device="cpu", max_length=65)
    assert Classifier(hf_classifier, device="cpu", max_length=64).max_length == 64


def test_unwritable_output_is_refused_before_any_work(tmp_path, data):
    # The model folder does not exist: an error about --output proves it came first.
    nomodel = tmp_path / "nomodel"
    (tmp_path / "out.csv").mkdir()
    predict = ["predict", "--model", nomodel, "--input", data, "--output"]
    one_error_line(run(*predict, tmp_path / "out.csv"),
                   f"Error: --output '{tmp_path / 'out.csv'}' is a folder")
    one_error_line(run(*predict, data / "pred.csv"),
                   f"Error: --output '{data / 'pred.csv'}' cannot be written: '{data}' is a file")
    one_error_line(run("evaluate", "--model", nomodel, "--input", data, "--png", data / "cm.png"),
                   f"Error: --png '{data / 'cm.png'}' cannot be written: '{data}' is a file")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_read_only_output_folder_is_refused_before_any_work(tmp_path, data):
    predict = ["predict", "--model", tmp_path / "nomodel", "--input", data, "--output"]
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        one_error_line(run(*predict, locked / "pred.csv"),
                       f"Error: --output '{locked / 'pred.csv'}' cannot be written: folder")
    finally:
        locked.chmod(0o755)


def test_existing_output_needs_overwrite(hf_classifier, data, tmp_path):
    out = tmp_path / "pred.csv"
    args = ["predict", "--model", hf_classifier, "--input", data, "--output", out]
    assert run(*args).exit_code == 0
    out.write_text("keep me\n", encoding="utf-8")
    one_error_line(run(*args), f"Error: --output '{out}' already exists; pass --overwrite")
    assert out.read_text(encoding="utf-8") == "keep me\n"
    with pytest.raises(InputError, match="already exists"):
        Classifier(hf_classifier, device="cpu").predict_file(data, out)
    result = run(*args, "--overwrite")
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8").startswith("text,label,prediction,prob_LABEL_0")
    assert "--overwrite" in run("predict", "--help").stdout
    assert run("predict", "--model", hf_classifier, "the cat", "--overwrite").exit_code == 2
