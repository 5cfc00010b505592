"""Per-step curves (steps.csv, --log-steps), validation inside epochs (--eval-steps), the
learning-rate range test (--lr-find), the width rule of the default learning rate, and
refit on train + held-out for small sets; on the tiny random BERT."""

import csv
import json
import math
import os

import numpy as np
import pytest
from click.testing import CliRunner

from bertkit import Classifier
from bertkit.cli import cli
from bertkit.errors import InputError
from bertkit.lr_find import suggest
from bertkit.train_config import default_lr, lr_factor

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
TOPICS = os.path.join(FIX, "train_topics.csv")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def train_tiny(tiny_model_dir, out, **kw):
    settings = dict(model=tiny_model_dir, epochs=2, batch_size=8, lr=5e-3, precision="fp32",
                    device="cpu", verbose=False, refit=False)
    train = kw.pop("train", TOPICS)
    settings.update(kw)
    return Classifier.train(train, output=out, **settings)


def read_steps(folder):
    return list(csv.DictReader(open(os.path.join(folder, "steps.csv"), encoding="utf-8")))


def num(v):
    return float(v) if v not in ("", None) else None


# ---------------------------------------------------------------------------- steps.csv


def test_steps_csv_every_n_steps_with_loss_and_lr_and_plot(tiny_model_dir, tmp_path):
    out = tmp_path / "m"
    clf = train_tiny(tiny_model_dir, out, log_steps=3, val_split=0)  # 90 examples: 12 steps/epoch
    rows = read_steps(out)
    train_rows = [r for r in rows if r["train_loss"]]
    assert [int(r["step"]) for r in train_rows] == [3, 6, 9, 12, 15, 18, 21, 24]
    args = json.load(open(out / "training_args.json"))
    total, warmup = args["total_steps"], args["warmup_steps"]
    for r in train_rows:  # the rate of the row's own step (step s uses factor(s - 1))
        assert num(r["lr"]) == pytest.approx(5e-3 * lr_factor(int(r["step"]) - 1, warmup, total))
    assert num(rows[-1]["epoch"]) == 2.0
    assert open(out / "learning_curves.png", "rb").read(4) == b"\x89PNG"
    assert "steps.csv" in clf.training_result["files"]


def test_window_means_add_up_to_the_epoch_mean(tiny_model_dir, tmp_path):
    clf = train_tiny(tiny_model_dir, tmp_path / "m", log_steps=1, val_split=0, epochs=1)
    rows = read_steps(tmp_path / "m")
    assert len(rows) == 12  # one row per optimizer step
    # 11 full batches of 8 and one of 2: the epoch mean is the mean over batches
    assert np.mean([num(r["train_loss"]) for r in rows]) == pytest.approx(
        clf.training_result["history"][0]["train_loss"], rel=1e-6)


def test_log_steps_zero_and_bad_values(tiny_model_dir, tmp_path):
    train_tiny(tiny_model_dir, tmp_path / "m", log_steps=0, epochs=1)
    rows = read_steps(tmp_path / "m")
    assert rows and all(not r.get("train_loss") for r in rows)  # validation rows only
    for bad in (-1, 1.5, "3"):
        with pytest.raises(InputError, match="log_steps"):
            train_tiny(tiny_model_dir, tmp_path / "x", log_steps=bad)
    with pytest.raises(InputError, match="eval_steps"):
        train_tiny(tiny_model_dir, tmp_path / "x", eval_steps=0)


# ---------------------------------------------------------------------------- --eval-steps


def test_eval_steps_keep_the_best_validation_point(tiny_model_dir, tmp_path):
    import torch

    out = tmp_path / "m"
    clf = train_tiny(tiny_model_dir, out, epochs=3, eval_steps=4, log_steps=5, validation=TOPICS,
                     lr=2e-2)
    rows = [r for r in read_steps(out) if r["val_loss"]]
    steps = [int(r["step"]) for r in rows]
    assert steps == [4, 8, 12, 16, 20, 24, 28, 32, 36]  # every 4 steps and at epoch ends (12/epoch)
    result = clf.training_result
    best = max(rows, key=lambda r: (num(r["val_accuracy"]), -num(r["val_loss"])))  # first wins ties
    assert result["best_step"] == int(best["step"])
    assert result["best_epoch"] == math.ceil(int(best["step"]) / 12)
    # the exported weights are the ones validated at that step: same validation loss
    texts, labels = zip(*[(r["text"], r["label"]) for r in csv.DictReader(open(TOPICS))])
    p = clf.predict_proba(list(texts))
    y = [clf.label2id[x] for x in labels]
    loss = float(torch.nn.functional.nll_loss(torch.log(torch.tensor(p)), torch.tensor(y)))
    assert loss == pytest.approx(num(best["val_loss"]), abs=1e-4)
    assert json.load(open(out / "metrics.json"))["best_step"] == result["best_step"]


def test_resume_with_eval_and_log_steps_matches_uninterrupted(tiny_model_dir, tmp_path):
    kw = dict(epochs=2, eval_steps=4, log_steps=5, save_steps=5)
    whole = train_tiny(tiny_model_dir, tmp_path / "whole", **kw)
    out = tmp_path / "killed"

    def kill(state):
        if state.global_step == 13:  # after the step-12 epoch end, before the next log row
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_tiny(tiny_model_dir, out, on_step=kill, **kw)
    resumed = train_tiny(tiny_model_dir, out, resume=True, **kw)
    assert read_steps(out) == read_steps(tmp_path / "whole")
    for key in ("best_step", "best_epoch", "metrics"):
        assert resumed.training_result[key] == whole.training_result[key]
    numbers = lambda r: [{k: v for k, v in row.items() if "time" not in k and k != "examples_per_s"}  # noqa: E731
                         for row in r.training_result["history"]]
    assert numbers(resumed) == numbers(whole)


# ---------------------------------------------------------------------------- learning rate


def test_default_lr_follows_the_width():
    assert default_lr(384) == 1e-4  # the bundled model keeps what it was tuned at
    assert default_lr(768) == 3.5e-5 and default_lr(1024) == 2.3e-5
    assert default_lr(32) == 5e-4 and default_lr(100_000) == 1e-5  # clamped
    assert default_lr(None) == 1e-4


def test_run_uses_and_shows_the_width_default_unless_lr_given(tiny_model_dir, tmp_path, capsys):
    train_tiny(tiny_model_dir, tmp_path / "d", lr=None, epochs=1, verbose=True)
    # The data line comes first ("Training data: read ..."), then the run's settings line.
    data_line, first = capsys.readouterr().err.strip().splitlines()[:2]
    assert data_line.startswith("Training data: read 90 rows")
    assert "lr 0.0005 (default for width 32" in first and first.startswith("Training")
    assert json.load(open(tmp_path / "d" / "training_args.json"))["config"]["lr"] == 5e-4
    train_tiny(tiny_model_dir, tmp_path / "e", lr=1e-3, epochs=1, verbose=True)
    assert "lr 0.001 (--lr)" in capsys.readouterr().err.splitlines()[1]


def test_suggestion_rule():
    lrs = [1e-7 * 10 ** (i / 10) for i in range(60)]  # 1e-7 .. ~1e-1
    # flat, then falling fastest around index 35, lowest at index 45, then rising
    loss = [1.0 - 0.5 / (1 + math.exp(-(i - 35) / 2)) + (0.02 * (i - 45) ** 2 if i > 45 else 0) for i in range(60)]
    found = suggest(lrs, loss)
    assert found["min_loss_lr"] == lrs[45] and found["suggested_lr"] == float(f"{lrs[45] / 10:.2g}")
    assert found["steepest_lr"] in (lrs[34], lrs[35])


def test_lr_find_cli_prints_a_rate_writes_the_plot_and_no_model(tiny_model_dir, tmp_path):
    out = tmp_path / "lrf"
    result = CliRunner().invoke(cli, ["train", "--train", TOPICS, "--model", tiny_model_dir, "--output",
                                      str(out), "--lr-find", "--batch-size", "8", "--device", "cpu",
                                      "--precision", "fp32"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "suggested learning rate:" in result.stdout and "train with: --lr " in result.stdout
    rate = float(result.stdout.split("train with: --lr ")[1].split()[0])
    assert 1e-7 < rate < 1
    assert sorted(os.listdir(out)) == ["lr_find.png"]  # no model, no checkpoints
    assert open(out / "lr_find.png", "rb").read(4) == b"\x89PNG"


def test_lr_find_api_and_resume_error(tiny_model_dir, tmp_path):
    found = Classifier.lr_find(TOPICS, plot=tmp_path / "p" / "curve.png", model=tiny_model_dir,
                               batch_size=8, device="cpu", precision="fp32", num_steps=30, end_lr=10.0,
                               verbose=False)
    assert found["n_steps"] <= 30 and len(found["lrs"]) == found["n_steps"] == len(found["smoothed"])
    assert found["lrs"][0] == pytest.approx(1e-7) and found["default_lr"] == 5e-4
    assert found["suggested_lr"] == float(f"{found['min_loss_lr'] / 10:.2g}")
    assert os.listdir(tmp_path / "p") == ["curve.png"]
    result = CliRunner().invoke(cli, ["train", "--train", TOPICS, "--output", str(tmp_path / "o"),
                                      "--lr-find", "--resume"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --lr-find") and "--resume" in lines[0]
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------- refit


def test_refit_is_the_default_for_small_held_out_splits(tiny_model_dir, tmp_path):
    out = tmp_path / "m"
    clf = train_tiny(tiny_model_dir, out, refit=None, epochs=2)
    result = clf.training_result
    assert result["refit"]["n_train"] == 90 and result["refit"]["epochs"] == result["best_epoch"]
    assert len(result["history"]) == result["best_epoch"]  # pass 2: the chosen epochs
    args = json.load(open(out / "training_args.json"))
    assert args["n_train"] == 90 and args["n_validation"] == 0 and args["config"]["refit"] is False
    metrics = json.load(open(out / "metrics.json"))
    assert metrics["validation"]["n"] == 9 and metrics["refit"]["epochs"] == result["best_epoch"]
    sel = set(os.listdir(out / "selection"))
    assert "model.safetensors" not in sel and {"metrics.json", "stats.csv", "steps.csv"} <= sel
    assert (out / "confusion_matrix.png").is_file()
    single = train_tiny(tiny_model_dir, tmp_path / "single", refit=False, epochs=2)
    assert "refit" not in single.training_result and single.training_result["metrics"]["n"] == 9
    with pytest.raises(InputError, match="--refit needs"):
        train_tiny(tiny_model_dir, tmp_path / "x", refit=True, validation=TOPICS)


def test_refit_resumes_in_pass_two(tiny_model_dir, tmp_path):
    kw = dict(refit=None, epochs=2, save_steps=2)
    whole = train_tiny(tiny_model_dir, tmp_path / "whole", **kw)
    calls = {"n": 0}

    def kill(state):
        calls["n"] += 1
        if calls["n"] == 22 + 5:  # pass 1: 2 epochs of 11 steps; then step 5 of pass 2
            raise KeyboardInterrupt

    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        train_tiny(tiny_model_dir, out, on_step=kill, **kw)
    assert (out / "selection" / "metrics.json").is_file() and not (out / "metrics.json").exists()
    resumed = train_tiny(tiny_model_dir, out, resume=True, **kw)
    strip = lambda r: [{k: v for k, v in row.items() if "time" not in k and k != "examples_per_s"}  # noqa: E731
                       for row in r.training_result["history"]]
    assert strip(resumed) == strip(whole) and resumed.training_result["metrics"] == whole.training_result["metrics"]
    assert resumed.predict_proba(["the sun"]).tolist() == whole.predict_proba(["the sun"]).tolist()


def test_lr_find_runs_long_batches_in_parts_like_training(tiny_model_dir, tmp_path, monkeypatch):
    from bertkit import batching

    sizes = []
    real_split = batching.split_rows

    def counting_split(batch, max_tokens):
        parts = real_split(batch, max_tokens)
        sizes.append((max_tokens, len(parts)))
        return parts

    monkeypatch.setattr(batching, "split_rows", counting_split)
    found = Classifier.lr_find(TOPICS, plot=tmp_path / "lr.png", model=tiny_model_dir, batch_size=8,
                               device="cpu", precision="fp32", num_steps=12, chunk_tokens=20, verbose=False)
    assert sizes and all(budget == 20 for budget, _ in sizes) and max(n for _, n in sizes) >= 3
    assert found["n_steps"] == 12 and all(np.isfinite(found["losses"]))
    # the first steps barely move the weights (lr ~1e-7): the loss of an untrained 3-class head
    assert abs(found["losses"][0] - np.log(3)) < 0.3
