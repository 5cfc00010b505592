"""Multi-label and regression (``--task``) on a tiny random BERT, with data the tests build:
label sets and numbers a small model can learn, so that a broken loss, target, metric or
threshold shows as a model that does no better than a trivial baseline."""

import csv
import json
import random

import numpy as np
import pytest
from click.testing import CliRunner

from bertkit import Classifier
from bertkit.cli import cli
from bertkit.errors import DataError, InputError, ModelLoadError
from bertkit.evaluate import multi_label_metrics, regression_metrics, tune_threshold

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOPIC_WORDS = {"sport": ["team", "won", "match", "game", "lost"],
               "food": ["eat", "food", "sweet", "ate", "bars"],
               "sky": ["sky", "blue", "sun", "rain", "night"]}
FILLER = ["the", "a", "and", "of", "it", "was", "very", "this", "that", "with"]
VALUE = {"sport": 0.0, "food": 1.0, "sky": 2.0}
FAST = ["--model", None, "--batch-size", "8", "--lr", "5e-3", "--precision", "fp32", "--device", "cpu"]


def multi_label_rows(n, seed):
    """Texts with two topic words per label; 1 to 3 labels per text, joined by '|'."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        labels = rng.sample(list(TOPIC_WORDS), rng.choice([1, 1, 2, 2, 3]))
        words = [rng.choice(FILLER) for _ in range(3)]
        for name in labels:
            words += rng.sample(TOPIC_WORDS[name], 2)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": "|".join(labels)})
    return rows


def regression_rows(n, seed):
    """Sentence pairs whose score is the sum of the two topics' values, plus noise."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.choice(list(TOPIC_WORDS)), rng.choice(list(TOPIC_WORDS))
        s1 = " ".join(rng.sample(TOPIC_WORDS[a], 2) + [rng.choice(FILLER)])
        s2 = " ".join(rng.sample(TOPIC_WORDS[b], 2) + [rng.choice(FILLER)])
        rows.append({"s1": s1, "s2": s2, "score": round(VALUE[a] + VALUE[b] + rng.uniform(-0.3, 0.3), 2)})
    return rows


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return str(path)


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def fast(model):
    return [model if a is None else a for a in FAST]


@pytest.fixture(scope="module")
def ml_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ml-data")
    return write_csv(d / "train.csv", multi_label_rows(150, 0)), write_csv(d / "test.csv", multi_label_rows(60, 1))


@pytest.fixture(scope="module")
def ml_model(tiny_model_dir, ml_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("ml") / "model"
    result = run("train", "--train", ml_files[0], "--multi-label", "--output", out, "--epochs", "8",
                 "--val-split", "0.2", *fast(tiny_model_dir))
    assert result.exit_code == 0, result.output
    assert "best validation f1_micro" in result.stdout
    return out


@pytest.fixture(scope="module")
def reg_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("reg-data")
    return write_csv(d / "train.csv", regression_rows(200, 0)), write_csv(d / "test.csv", regression_rows(60, 1))


@pytest.fixture(scope="module")
def reg_model(tiny_model_dir, reg_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("reg") / "model"
    result = run("train", "--train", reg_files[0], "--task", "regression", "--text-column", "s1",
                 "--pair-column", "s2", "--label-column", "score", "--output", out, "--epochs", "8",
                 *fast(tiny_model_dir))
    assert result.exit_code == 0, result.output
    assert "best validation spearman" in result.stdout
    return out


# ------------------------------------------------------------------------------ multi-label


def test_multi_label_trains_evaluates_and_beats_the_baseline(ml_model, ml_files):
    result = run("evaluate", "--model", ml_model, "--input", ml_files[1], "--json")
    assert result.exit_code == 0, result.output
    m = json.loads(result.stdout)
    assert {"f1_micro", "f1_macro", "per_label", "subset_accuracy", "hamming_loss"} <= set(m)
    assert set(m["per_label"]) == {"food", "sky", "sport"} and m["n"] == 60
    assert set(m["per_label"]["sky"]) == {"precision", "recall", "f1", "support"}
    # trivial baseline: predict every label for every text
    truth = [r["label"].split("|") for r in multi_label_rows(60, 1)]
    y = np.array([[name in t for name in ("food", "sky", "sport")] for t in truth], dtype=float)
    everything = multi_label_metrics(y, np.ones_like(y), ["food", "sky", "sport"])
    assert m["f1_micro"] > everything["f1_micro"] + 0.1 and m["f1_micro"] > 0.9
    assert m["subset_accuracy"] > 0.6 and m["subset_accuracy"] > everything["subset_accuracy"] + 0.3
    text = run("evaluate", "--model", ml_model, "--input", ml_files[1])
    assert text.exit_code == 0 and "f1_micro" in text.stdout and "confusion" not in text.stdout


def test_multi_label_predicts_several_labels(ml_model, tmp_path):
    result = run("predict", "--model", ml_model, "the team won the match and we eat sweet food", "--json")
    assert result.exit_code == 0, result.output
    p = json.loads(result.stdout)
    assert set(p["labels"]) == {"sport", "food"} and set(p["probabilities"]) == {"food", "sky", "sport"}
    assert p["probabilities"]["sky"] < 0.5 <= min(p["probabilities"]["sport"], p["probabilities"]["food"])
    text = run("predict", "--model", ml_model, "blue sky and sun")
    assert text.stdout.splitlines()[0] == "sky"
    clf = Classifier(ml_model)
    probs = clf.predict_proba(["the team won", "rain at night", "eat sweet bars"])
    assert probs.shape == (3, 3) and not np.allclose(probs.sum(axis=1), 1.0)  # independent sigmoids
    src = write_csv(tmp_path / "in.csv", [{"text": "team won the game under blue sky"}, {"text": ""},
                                          {"text": "eat food"}])
    out = tmp_path / "out.csv"
    result = run("predict", "--model", ml_model, "--input", src, "--output", out, "--json")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(out, encoding="utf-8")))
    assert set(rows[0]["prediction"].split("|")) == {"sport", "sky"} and rows[1]["prediction"] == ""
    assert rows[2]["prediction"] == "food" and "prob_sky" in rows[0]
    assert json.loads(result.stdout)["counts"]["food"] == 1


def test_multi_label_folder_loads_in_transformers(ml_model):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    hf = AutoModelForSequenceClassification.from_pretrained(ml_model)
    assert hf.config.problem_type == "multi_label_classification"
    args = json.load(open(ml_model / "training_args.json"))
    assert args["task"] == "multi-label" and args["labels"] == ["food", "sky", "sport"]
    assert args["threshold"] == 0.5 and args["label_counts"]["sky"] > 0
    tok = AutoTokenizer.from_pretrained(ml_model)
    with torch.no_grad():
        logits = hf(**tok(["eat sweet food"], return_tensors="pt")).logits
    ours = Classifier(ml_model).predict_proba("eat sweet food")
    assert np.allclose(torch.sigmoid(logits).numpy(), ours, atol=1e-5)


def test_multi_label_set_is_checked(ml_model, tmp_path):
    bad = write_csv(tmp_path / "bad.csv", [{"text": "the team won", "label": "sport|weather"}])
    result = run("evaluate", "--model", ml_model, "--input", bad)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "'weather'" in result.stderr and "row 1" in result.stderr
    tampered = tmp_path / "tampered"
    import shutil

    shutil.copytree(ml_model, tampered)
    args = json.load(open(tampered / "training_args.json"))
    args["labels"] = ["food", "sport", "sky"]
    json.dump(args, open(tampered / "training_args.json", "w"))
    with pytest.raises(ModelLoadError, match="does not match training_args.json"):
        Classifier(tampered)


def test_empty_label_sets_are_counted_or_refused(tiny_model_dir, tmp_path):
    rows = multi_label_rows(40, 2)
    rows[3]["label"] = "|"
    rows[7]["label"] = " | "
    src = write_csv(tmp_path / "t.csv", rows)
    result = run("train", "--train", src, "--multi-label", "--output", tmp_path / "m", "--epochs", "1",
                 "--val-split", "0", *fast(tiny_model_dir))
    assert result.exit_code == 0, result.output
    assert "2 of 40 rows skipped" in result.stderr and "2 empty label set (rows 4, 8)" in result.stderr
    args = json.load(open(tmp_path / "m" / "training_args.json"))
    assert args["data"]["skipped"]["train"] == {"empty label set": 2} and args["n_train"] == 38
    result = run("train", "--train", src, "--multi-label", "--output", tmp_path / "m2", "--strict",
                 *fast(tiny_model_dir))
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("Error: Row 4 of") and "empty label set" in result.stderr


def test_threshold_tune_and_custom_separator(tiny_model_dir, tmp_path):
    rows = [{"text": r["text"], "label": r["label"].replace("|", ";")} for r in multi_label_rows(60, 3)]
    src = write_csv(tmp_path / "t.csv", rows)
    result = run("train", "--train", src, "--task", "multi-label", "--label-sep", ";", "--threshold", "tune",
                 "--output", tmp_path / "m", "--epochs", "2", "--json", *fast(tiny_model_dir))
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    args = json.load(open(tmp_path / "m" / "training_args.json"))
    assert args["config"]["threshold"] == "tune" and args["labels"] == ["food", "sky", "sport"]
    assert 0.05 <= args["threshold"] <= 0.95 and out["metrics"]["threshold"] == args["threshold"]
    assert Classifier(tmp_path / "m").threshold == args["threshold"]


# ------------------------------------------------------------------------------- regression


def test_regression_pairs_train_evaluate_and_beat_the_baseline(reg_model, reg_files):
    result = run("evaluate", "--model", reg_model, "--input", reg_files[1], "--json")
    assert result.exit_code == 0, result.output
    m = json.loads(result.stdout)
    assert {"pearson", "spearman", "mse", "mae", "n"} <= set(m) and m["n"] == 60
    y = np.array([r["score"] for r in regression_rows(60, 1)])
    assert m["spearman"] > 0.8 and m["pearson"] > 0.8
    assert m["mse"] < 0.5 * float(((y - y.mean()) ** 2).mean())  # beats predicting the mean
    text = run("evaluate", "--model", reg_model, "--input", reg_files[1])
    assert "spearman" in text.stdout and "pearson" in text.stdout


def test_regression_predicts_a_number(reg_model, tmp_path):
    from transformers import AutoModelForSequenceClassification

    hf = AutoModelForSequenceClassification.from_pretrained(reg_model)
    assert hf.config.problem_type == "regression" and hf.config.num_labels == 1
    clf = Classifier(reg_model)
    low, high = clf.predict(["team won match", "sky blue sun"], ["game lost the", "rain night sun"])
    assert isinstance(low, float) and high - low > 2.0  # 0 + 0 against 2 + 2
    assert clf.predict_outputs("team won", "game lost").shape == (1, 1)
    with pytest.raises(InputError, match="regression model"):
        clf.predict_proba("team won")
    result = run("predict", "--model", reg_model, "sky blue sun", "--pair", "rain night", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["prediction"] > 2.5
    src = write_csv(tmp_path / "in.csv", [{"s1": "eat food", "s2": "eat sweet"}, {"s1": "sun", "s2": "sky"}])
    result = run("predict", "--model", reg_model, "--input", src, "--output", tmp_path / "o.csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(tmp_path / "o.csv", encoding="utf-8")))
    assert float(rows[1]["prediction"]) > float(rows[0]["prediction"]) and "prob_score" not in rows[0]
    args = json.load(open(reg_model / "training_args.json"))
    assert args["task"] == "regression" and "label_counts" not in args
    assert args["target_stats"]["min"] >= -0.3 and args["target_stats"]["max"] <= 4.3
    assert args["metric"] == "spearman"


def test_non_numeric_regression_label_is_one_line(tiny_model_dir, tmp_path):
    rows = regression_rows(20, 4)
    rows[5]["score"] = "high"
    src = write_csv(tmp_path / "t.csv", rows)
    result = run("train", "--train", src, "--task", "regression", "--text-column", "s1", "--pair-column",
                 "s2", "--label-column", "score", "--output", tmp_path / "m", *fast(tiny_model_dir))
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert result.stderr.startswith("Error: Row 6 of") and "'score'" in result.stderr
    assert "'high'" in result.stderr and "not a number" in result.stderr and "Traceback" not in result.output


def test_task_options_are_checked(tiny_model_dir, tmp_path, ml_files):
    result = run("train", "--train", ml_files[0], "--multi-label", "--task", "regression",
                 "--output", tmp_path / "m", *fast(tiny_model_dir))
    assert result.exit_code == 2 and "--multi-label contradicts --task regression" in result.output
    for extra, message in ((["--threshold", "1.5"], "--threshold must be"),
                           (["--metric", "spearman"], "--metric spearman does not fit --task multi-label")):
        result = run("train", "--train", ml_files[0], "--multi-label", "--output", tmp_path / "m",
                     *extra, *fast(tiny_model_dir))
        assert result.exit_code == 1 and message in result.stderr, result.output
    result = run("train", "--train", ml_files[0], "--task", "regression", "--output", tmp_path / "m",
                 *fast(tiny_model_dir))
    assert result.exit_code == 1 and "Row 1 of" in result.stderr and "not a number" in result.stderr


# ---------------------------------------------------------------------------------- metrics


def test_regression_metrics_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 6, 200).astype(float)  # many ties, as STS-B's scores
    p = y + rng.normal(0, 1.5, 200)
    m = regression_metrics(y, p)
    assert m["spearman"] == pytest.approx(stats.spearmanr(y, p).statistic, abs=1e-9)
    assert m["pearson"] == pytest.approx(stats.pearsonr(y, p).statistic, abs=1e-9)
    assert m["mse"] == pytest.approx(((y - p) ** 2).mean()) and m["mae"] == pytest.approx(np.abs(y - p).mean())
    assert regression_metrics(y, np.ones_like(y))["spearman"] == 0.0


def test_multi_label_metrics_match_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    y = rng.random((100, 4)) < 0.4
    probs = np.clip(y * 0.6 + rng.random((100, 4)) * 0.5, 0, 1)
    m = multi_label_metrics(y, probs, list("abcd"), threshold=0.5)
    pred = probs >= 0.5
    assert m["f1_micro"] == pytest.approx(metrics.f1_score(y, pred, average="micro"))
    assert m["f1_macro"] == pytest.approx(metrics.f1_score(y, pred, average="macro"))
    assert m["subset_accuracy"] == pytest.approx(metrics.accuracy_score(y, pred))
    assert m["hamming_loss"] == pytest.approx(metrics.hamming_loss(y, pred))
    assert m["per_label"]["c"]["recall"] == pytest.approx(metrics.recall_score(y[:, 2], pred[:, 2]))
    best = tune_threshold(y, probs, list("abcd"))
    f1 = lambda t: multi_label_metrics(y, probs, list("abcd"), t)["f1_micro"]  # noqa: E731
    assert all(f1(best) >= f1(t) for t in np.arange(0.05, 0.96, 0.05))


def test_prepare_labels_unit():
    from bertkit.labelled import LabelledSet
    from bertkit.tasks import prepare_labels, random_split, targets

    data = LabelledSet(["a", "b", "c"], None, ["x| y|x", "|", "y"], [1, 2, 3], "f.csv", 3,
                       label_column="label")
    out = prepare_labels(data, "multi-label", sep="|")
    assert out.labels == ["x|y", "y"] and out.rows == [1, 3] and out.skipped == {"empty label set": [2]}
    assert targets(out, "multi-label", {"x": 0, "y": 1}) == [[1.0, 1.0], [0.0, 1.0]]
    with pytest.raises(DataError, match="Row 2 of 'f.csv' has an empty label set"):
        prepare_labels(LabelledSet(["a", "b"], None, ["x", "|"], [1, 2], "f.csv", 2, label_column="label"),
                       "multi-label", strict=True)
    train, val = random_split(100, 0.1, 0)
    assert len(val) == 10 and sorted(train + val) == list(range(100)) and random_split(100, 0.1, 0)[1] == val


def test_regression_output_starts_at_the_target_mean(tiny_model_dir, reg_files, tmp_path):
    from bertkit.heads import output_layer

    clf = Classifier.train(reg_files[0], output=tmp_path / "m", task="regression", text_column="s1",
                           pair_column="s2", label_column="score", model=tiny_model_dir, epochs=1,
                           lr=1e-9, batch_size=16, precision="fp32", device="cpu", verbose=False)
    mean = clf.training_args["target_stats"]["mean"]
    assert mean > 1.5  # the data's scale, so a bias left at 0 would show
    assert float(output_layer(clf.model).bias.detach()) == pytest.approx(mean, abs=1e-3)
    preds = np.array(clf.predict(["team won", "sky blue"], ["eat food", "rain night"]))
    assert np.abs(preds - mean).max() < 0.5
