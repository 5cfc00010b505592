"""Metrics checked against scikit-learn (the reference implementation)."""

import numpy as np
import pytest

from bertkit.evaluate import classification_metrics, confusion_matrix, format_report, plot_confusion

import sklearn.metrics as sk  # noqa: E402  (scikit-learn is in the dev extras: never skipped)


@pytest.mark.parametrize("k,n,seed", [(2, 200, 0), (3, 150, 1), (4, 97, 2), (5, 40, 3)])
def test_metrics_match_sklearn(k, n, seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, n)
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, k, n))
    labels = [f"c{i}" for i in range(k)]
    m = classification_metrics(y_true, y_pred, labels)
    assert m["n"] == n
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y_true, y_pred))
    assert m["mcc"] == pytest.approx(sk.matthews_corrcoef(y_true, y_pred))
    assert m["f1_macro"] == pytest.approx(sk.f1_score(y_true, y_pred, average="macro"))
    assert m["confusion_matrix"] == sk.confusion_matrix(y_true, y_pred, labels=range(k)).tolist()
    p, r, f, s = sk.precision_recall_fscore_support(y_true, y_pred, labels=range(k), zero_division=0)
    for i, name in enumerate(labels):
        assert m["per_class"][name]["precision"] == pytest.approx(p[i])
        assert m["per_class"][name]["recall"] == pytest.approx(r[i])
        assert m["per_class"][name]["f1"] == pytest.approx(f[i])
        assert m["per_class"][name]["support"] == s[i]


def test_absent_class_and_degenerate_cases():
    # class 2 never occurs: macro F1 averages over the classes present, as sklearn does
    y_true, y_pred = [0, 0, 1, 1, 1], [0, 1, 1, 1, 0]
    m = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert m["f1_macro"] == pytest.approx(sk.f1_score(y_true, y_pred, average="macro"))
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # a constant prediction has no correlation: MCC is 0, not NaN
    m = classification_metrics([0, 1, 1, 0], [1, 1, 1, 1], ["a", "b"])
    assert m["mcc"] == 0.0 and m["accuracy"] == 0.5
    m = classification_metrics([1, 1], [1, 1], ["a", "b"])
    assert m["mcc"] == 0.0 and m["accuracy"] == 1.0


def test_json_keys_and_types():
    m = classification_metrics(np.array([0, 1, 2]), np.array([0, 2, 2]), ["x", "y", "z"])
    for key in ("accuracy", "mcc", "f1_macro", "per_class", "confusion_matrix", "n", "labels"):
        assert key in m
    import json

    json.dumps(m)  # plain Python types only
    assert confusion_matrix([0, 1], [1, 1], 2).tolist() == [[0, 1], [0, 1]]


def test_plot_and_report(tmp_path):
    m = classification_metrics([0, 1, 1, 2, 2, 2], [0, 1, 2, 2, 2, 0], ["cooking", "sports", "tech"])
    path = plot_confusion(m, tmp_path / "cm.png")
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    report = format_report(m)
    assert "sports" in report and "accuracy 0.6667" in report
