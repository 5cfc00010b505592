"""``bertkit train / evaluate / predict`` through click's runner (exit codes, output, one-line
errors), and a real kill -9 in the middle of an epoch followed by ``--resume``."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from bertkit.cli import cli

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
TOPICS = os.path.join(FIX, "train_topics.csv")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result


def tiny_train_args(model, out, *extra):
    return ["train", "--train", TOPICS, "--model", model, "--output", out, "--epochs", "2",
            "--batch-size", "8", "--lr", "1e-3", "--precision", "fp32", "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "model"
    result = run(*tiny_train_args(tiny_model_dir, out))
    assert result.exit_code == 0, result.output
    assert "train_loss" in result.stdout and "kept epoch" in result.stdout
    assert "learning_curves.png" in result.stdout and str(out) in result.stdout
    assert "epoch 2/2" in result.stderr  # per-epoch lines go to stderr
    return out


def test_train_json(tiny_model_dir, tmp_path):
    result = run(*tiny_train_args(tiny_model_dir, tmp_path / "m", "--json", "--epochs", "1",
                                  "--head", "linear", "--seed", "3"))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["metric"] == "accuracy" and len(data["history"]) == 1
    assert set(data["files"]) >= {"stats.csv", "learning_curves.png", "confusion_matrix.png", "metrics.json"}
    args = json.load(open(tmp_path / "m" / "training_args.json"))["config"]
    assert args["head"] == "linear" and args["seed"] == 3 and args["epochs"] == 1


def test_evaluate_json_and_text(model_dir, tmp_path):
    result = run("evaluate", "--model", model_dir, "--input", TOPICS, "--json")
    assert result.exit_code == 0, result.output
    m = json.loads(result.stdout)
    assert {"accuracy", "mcc", "f1_macro", "per_class", "confusion_matrix", "n"} <= set(m)
    assert m["n"] == 90
    png = tmp_path / "cm.png"
    result = run("evaluate", "--model", model_dir, "--input", TOPICS, "--png", png)
    assert result.exit_code == 0 and "confusion matrix" in result.stdout and png.exists()
    assert "precision" in result.stdout and "sport" in result.stdout


def test_evaluate_headerless_columns(model_dir):
    result = run("evaluate", "--model", model_dir, "--input", os.path.join(FIX, "train_cola_like.tsv"),
                 "--columns", "source,label,mark,sentence", "--text-column", "sentence")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: Label '1'") and "not seen in training" in result.stderr
    assert "Traceback" not in result.output


def test_predict_text_and_file(model_dir, tmp_path):
    result = run("predict", "--model", model_dir, "the team won the match")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] in ("food", "sky", "sport") and len(lines) == 4
    result = run("predict", "--model", model_dir, "the team won", "--json")
    data = json.loads(result.stdout)
    assert set(data["probabilities"]) == {"food", "sky", "sport"}
    out = tmp_path / "pred.jsonl"
    result = run("predict", "--model", model_dir, "--input", os.path.join(FIX, "train_bad_rows.csv"),
                 "--output", out)
    assert result.exit_code == 0, result.output
    assert "wrote 4 predictions" in result.stdout and "2 rows had no text" in result.stderr
    rows = [json.loads(line) for line in open(out)]
    assert len(rows) == 6 and {"prediction", "prob_food", "prob_sky", "prob_sport"} <= set(rows[0])


@pytest.mark.parametrize("args,code,message", [
    (["train", "--train", TOPICS], 1, "Error: No output folder"),
    (["train", "--train", TOPICS, "--output", "{tmp}/o", "--text-column", "body"], 1,
     "Error: Column 'body' (--text-column) is not in"),
    (["train", "--train", "{tmp}/missing.csv", "--output", "{tmp}/o"], 1, "Error: File"),
    (["train", "--train", TOPICS, "--output", "{tmp}/o", "--head", "deep"], 2, "Invalid value for '--head-type'"),
    (["train", "--output", "{tmp}/o", "--config", "{tmp}/nope.yaml"], 1, "Error: --config file"),
    (["predict", "--model", "{model}"], 2, "Give either TEXT or --input"),
    (["predict", "--model", "{model}", "--input", TOPICS], 2, "--input needs --output"),
    (["predict", "--model", "{model}", "--input", TOPICS, "--output", "{tmp}/x.txt"], 1,
     "Error: --output must end in"),
    (["evaluate", "--input", TOPICS], 2, "evaluate needs --model"),
    (["evaluate", "--model", "{tmp}/nomodel", "--input", TOPICS], 1, "Error: Model folder"),
])
def test_errors_are_one_line(model_dir, tmp_path, args, code, message):
    args = [a.format(tmp=tmp_path, model=model_dir) for a in args]
    result = run(*args)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_config_file_and_flag_precedence(tiny_model_dir, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"train: {TOPICS}\nmodel: {tiny_model_dir}\nepochs: 3\nlr: 0.002\n"
                   "batch-size: 8\nprecision: fp32\ndevice: cpu\nval-split: 0.2\n")
    result = run("train", "--config", cfg, "--output", tmp_path / "o", "--epochs", "1", "--json")
    assert result.exit_code == 0, result.output
    args = json.load(open(tmp_path / "o" / "training_args.json"))
    assert args["config"]["epochs"] == 1 and args["config"]["lr"] == 0.002
    assert args["data"]["split"]["val_split"] == 0.2


@pytest.mark.slow  # a long end-to-end run; `make test` runs it, -m 'not slow' skips it
def test_kill_mid_epoch_then_resume_matches(tiny_model_dir, tmp_path):
    """A real kill -9 while training, then --resume: same final metrics as a clean run."""
    common = ["--train", TOPICS, "--model", tiny_model_dir, "--epochs", "3", "--batch-size", "4",
              "--precision", "fp32", "--device", "cpu", "--save-steps", "3", "--json"]
    clean = run("train", *common, "--output", tmp_path / "clean")
    assert clean.exit_code == 0, clean.output

    out = tmp_path / "killed"
    env = dict(os.environ, BERTKIT_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-c", "from bertkit.cli import main; main()", "train", *common,
           "--output", str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = out / "checkpoints" / "last"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert ckpt.exists() and not (out / "metrics.json").exists()

    resumed = run("train", *common, "--output", out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "Resuming from" in resumed.stderr
    a, b = json.loads(clean.stdout), json.loads(resumed.stdout)
    strip = lambda hist: [{k: v for k, v in r.items() if "time" not in k and "per_s" not in k} for r in hist]  # noqa: E731
    assert strip(b["history"]) == strip(a["history"])
    assert b["metrics"] == a["metrics"]


def test_evaluate_reuses_the_training_columns(tiny_model_dir, tmp_path):
    """A model trained on a headerless file evaluates another headerless file without
    --columns (training_args.json has them); a file with that header is read as such."""
    cola = os.path.join(FIX, "train_cola_like.tsv")
    out = tmp_path / "cola"
    result = run("train", "--train", cola, "--columns", "source,label,mark,sentence",
                 "--text-column", "sentence", "--label-column", "label", "--val-split", "0",
                 "--model", tiny_model_dir, "--output", out, "--epochs", "1", "--batch-size", "4",
                 "--precision", "fp32", "--device", "cpu")
    assert result.exit_code == 0, result.output
    result = run("evaluate", "--model", out, "--input", cola, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 10  # every row, none read as a header
    with_header = tmp_path / "with_header.tsv"
    with_header.write_text("source\tlabel\tmark\tsentence\n" + open(cola, encoding="utf-8").read(),
                           encoding="utf-8")
    result = run("evaluate", "--model", out, "--input", with_header, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 10
    predictions = tmp_path / "p.csv"
    result = run("predict", "--model", out, "--input", cola, "--output", predictions)
    assert result.exit_code == 0, result.output
    assert "wrote 10 predictions" in result.stdout


# ---------------------------------------------------------------- data files as they are
MRPC_LIKE = os.path.join(FIX, "mrpc_like.tsv")


def small_train(model, data, out, *extra):
    return ["train", "--train", data, "--model", model, "--output", out, "--epochs", "1",
            "--batch-size", "4", "--lr", "1e-3", "--precision", "fp32", "--device", "cpu", *extra]


def test_glue_tsv_with_bom_and_quotes_trains_and_evaluates(tiny_model_dir, tmp_path):
    # MRPC as distributed: a BOM before the header, unbalanced quotes inside texts, no
    # quoting. Read with CSV quoting it would lose a row (tests/test_data.py); here every
    # one of its 12 rows is read, and the run says so in its first lines.
    out = tmp_path / "mrpc"
    result = run(*small_train(tiny_model_dir, MRPC_LIKE, out, "--text-column", "#1 String",
                              "--pair-column", "#2 String", "--label-column", "Quality"))
    assert result.exit_code == 0, result.output
    first = result.stderr.splitlines()[0]
    assert first == (f"Training data: read 12 rows of '{MRPC_LIKE}', using 12, skipped 0; "
                     "validation: 2 of them held out (--val-split 0.1), 10 to train on.")
    args = json.load(open(out / "training_args.json"))["data"]
    assert args["pair_column"] == "#2 String" and args["quoting"] is None
    result = run("evaluate", "--model", out, "--input", MRPC_LIKE, "--json")
    assert result.exit_code == 0, result.output
    m = json.loads(result.stdout)
    assert m["n"] == 12 and m["n_skipped"] == 0
    # --quoting csv is stored and reused by evaluate: the merged rows are refused there too.
    result = run("evaluate", "--model", out, "--input", MRPC_LIKE, "--quoting", "csv")
    assert result.exit_code == 1 and "quoting joined them into 11 rows" in result.stderr


def test_train_prints_skipped_rows_and_validation_file(tiny_model_dir, tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "".join(f"row {i},{'ab'[i % 2]}\n" for i in range(8))
                    + "no label,\n")
    result = run(*small_train(tiny_model_dir, data, tmp_path / "m", "--validation", data))
    assert result.exit_code == 0, result.output
    assert (f"Training data: read 9 rows of '{data}', using 8, skipped 1; validation: 8 rows "
            f"of '{data}'.") in result.stderr


def test_fasttext_file_trains_and_predicts(tiny_model_dir, tmp_path):
    train = tmp_path / "train.txt"
    train.write_text("".join(f"__label__{'pos' if i % 2 else 'neg'} text number {i}\n"
                             for i in range(10)))
    out = tmp_path / "ft"
    result = run(*small_train(tiny_model_dir, train, out, "--format", "fasttext", "--val-split", "0"))
    assert result.exit_code == 0, result.output
    assert json.load(open(out / "training_args.json"))["data"]["format"] == "fasttext"
    test = tmp_path / "test.txt"
    test.write_text("__label__pos one more\n__label__neg and another\n")
    # The training format is reused for a .txt file: the labels are not read as text.
    preds = tmp_path / "p.csv"
    result = run("predict", "--model", out, "--input", test, "--output", preds)
    assert result.exit_code == 0, result.output
    import pandas as pd

    frame = pd.read_csv(preds)
    assert frame["text"].tolist() == ["one more", "and another"]
    assert frame["label"].tolist() == ["pos", "neg"]
    assert set(frame["prediction"]) <= {"pos", "neg"}
    result = run("evaluate", "--model", out, "--input", test, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["n"] == 2


def test_class_folder_trains_and_predicts(tiny_model_dir, tmp_path):
    data = tmp_path / "imdb"
    for label in ("pos", "neg"):
        (data / label).mkdir(parents=True)
        for i in range(5):
            (data / label / f"{i}.txt").write_text(f"a {label} review number {i}\n")
    out = tmp_path / "folder-model"
    result = run(*small_train(tiny_model_dir, data, out, "--val-split", "0", "--format", "folder"))
    assert result.exit_code == 0, result.output
    assert f"read 10 rows of '{data}', using 10" in result.stderr
    # predict reuses --format folder from training.
    preds = tmp_path / "p.jsonl"
    result = run("predict", "--model", out, "--input", data, "--output", preds, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_predicted"] == 10
    rows = [json.loads(line) for line in open(preds)]
    assert rows[0]["file"] == "neg/0.txt" and rows[0]["label"] == "neg"


def test_encoding_flag_and_utf8_error_on_the_command_line(tiny_model_dir, tmp_path):
    f = tmp_path / "latin.csv"
    f.write_bytes("text\ncaf\xe9\nna\xefve\n".encode("latin-1"))
    result = run("embed", "--input", f, "--model", tiny_model_dir, "--output", tmp_path / "v.jsonl")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: '{f}' is not valid UTF-8 (--encoding utf-8): byte b'\\xe9' on line 2 (byte "
        "offset 8 of the file); pass its encoding with --encoding (e.g. --encoding latin-1 or "
        "cp1252), or re-save it as UTF-8.")
    result = run("embed", "--input", f, "--model", tiny_model_dir, "--output", tmp_path / "v.jsonl",
                 "--encoding", "latin-1")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["text"] for line in open(tmp_path / "v.jsonl")] == ["caf\xe9", "na\xefve"]


def test_trained_encoding_is_reused_and_said(tiny_model_dir, tmp_path):
    f = tmp_path / "latin.csv"
    f.write_bytes(("text,label\n" + "".join(f"caf\xe9 {i},{'ab'[i % 2]}\n" for i in range(6)))
                  .encode("latin-1"))
    out = tmp_path / "m"
    result = run(*small_train(tiny_model_dir, f, out, "--encoding", "latin-1", "--val-split", "0"))
    assert result.exit_code == 0, result.output
    result = run("evaluate", "--model", out, "--input", f, "--json")
    assert result.exit_code == 0, result.output
    assert "Note: reading with --encoding latin-1, as in training" in result.stderr
    assert json.loads(result.stdout)["n"] == 6
