"""Classification metrics in plain NumPy: accuracy, Matthews correlation, macro F1,
per-class precision/recall/F1 and the confusion matrix (checked against scikit-learn in
the tests).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

METRICS = ("accuracy", "mcc", "f1_macro")


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Counts of shape (n_classes, n_classes): rows are true classes, columns predictions."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def mcc_from_confusion(cm: np.ndarray) -> float:
    """Matthews correlation coefficient (multi-class form, Gorodkin 2004); 0.0 when undefined."""
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.sum()
    correct = np.trace(cm)
    t = cm.sum(axis=1)  # true counts per class
    p = cm.sum(axis=0)  # predicted counts per class
    cov_tp = correct * n - t @ p
    cov_pp = n * n - p @ p
    cov_tt = n * n - t @ t
    denom = np.sqrt(cov_tt * cov_pp)
    return float(cov_tp / denom) if denom > 0 else 0.0


def classification_metrics(y_true, y_pred, labels: Sequence[str]) -> dict:
    """All metrics for integer class ids ``y_true``/``y_pred`` (shape (n,)).

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n,)
        Class ids in ``range(len(labels))``.
    labels : sequence of str
        Class names, in id order.

    Returns
    -------
    dict
        ``accuracy``, ``mcc``, ``f1_macro`` (mean F1 over the classes present in
        ``y_true`` or ``y_pred``, as scikit-learn computes it), ``per_class`` (name ->
        precision, recall, f1, support), ``confusion_matrix`` (list of rows: true class,
        columns: predicted class, in ``labels`` order), ``labels`` and ``n``.
    """
    labels = [str(x) for x in labels]
    k = len(labels)
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    cm = confusion_matrix(y_true, y_pred, k)
    n = int(cm.sum())
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    tp = np.diag(cm).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        recall = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = (support > 0) | (predicted > 0)
    per_class = {
        labels[i]: {"precision": float(precision[i]), "recall": float(recall[i]),
                    "f1": float(f1[i]), "support": int(support[i])}
        for i in range(k)
    }
    return {
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "mcc": mcc_from_confusion(cm),
        "f1_macro": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "labels": labels,
        "n": n,
    }


def plot_confusion(metrics: dict, path, *, title: str = "Confusion matrix") -> str:
    """Draw ``metrics['confusion_matrix']`` (rows true, columns predicted) as an annotated
    PNG of counts at ``path``; returns the path."""
    from .plots import heatmap

    labels = metrics["labels"]
    return heatmap(np.asarray(metrics["confusion_matrix"]), labels, labels, path,
                   title=f"{title}\nn={metrics['n']}, accuracy {metrics['accuracy']:.3f}, "
                         f"MCC {metrics['mcc']:.3f}",
                   cmap="viridis", vmin=0, fmt="{:.0f}", xlabel="predicted", ylabel="true",
                   colorbar_label="examples")


def format_report(metrics: dict) -> str:
    """A plain-text report: headline metrics, then a per-class table."""
    lines = [f"n = {metrics['n']}",
             f"accuracy {metrics['accuracy']:.4f}   mcc {metrics['mcc']:.4f}   "
             f"f1_macro {metrics['f1_macro']:.4f}", ""]
    return "\n".join(lines + _score_table(metrics["per_class"], "class"))


def _score_table(scores: dict, heading: str) -> list:
    """Lines of a precision / recall / f1 / support table, one row per class or label."""
    width = max([5] + [len(str(name)) for name in scores])
    lines = [f"{heading:<{width}}  precision  recall      f1  support"]
    for name, m in scores.items():
        lines.append(f"{name:<{width}}  {m['precision']:9.4f}  {m['recall']:6.4f}  {m['f1']:6.4f}  "
                     f"{m['support']:7d}")
    return lines


# ------------------------------------------------------------------ multi-label, regression


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their positions), as scipy's rankdata."""
    import pandas as pd

    return pd.Series(x).rank(method="average").to_numpy(dtype=np.float64)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def regression_metrics(y_true, y_pred) -> dict:
    """``pearson``, ``spearman`` (Pearson of average ranks, as scipy.stats.spearmanr),
    ``mse``, ``mae`` and ``n`` for numbers ``y_true``/``y_pred`` of shape (n,); the
    correlations are 0.0 when either side is constant."""
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    err = y_pred - y_true
    return {"pearson": _pearson(y_true, y_pred), "spearman": _pearson(_ranks(y_true), _ranks(y_pred)),
            "mse": float((err ** 2).mean()) if err.size else 0.0,
            "mae": float(np.abs(err).mean()) if err.size else 0.0, "n": int(y_true.size)}


def multi_label_metrics(y_true, probs, labels: Sequence[str], threshold: float = 0.5) -> dict:
    """Metrics of label sets: ``y_true`` (n, K) 0/1, ``probs`` (n, K) sigmoid outputs,
    a label predicted where its probability is >= ``threshold``.

    Returns ``f1_micro`` (F1 over all (row, label) decisions pooled), ``precision_micro``,
    ``recall_micro``, ``f1_macro`` (mean per-label F1 over labels present in truth or
    prediction, as scikit-learn), ``subset_accuracy`` (rows whose set is exactly right),
    ``hamming_loss`` (share of wrong decisions), ``per_label`` (name -> precision, recall,
    f1, support), ``labels``, ``threshold`` and ``n``.
    """
    labels = [str(x) for x in labels]
    y = np.asarray(y_true, dtype=np.float64).reshape(-1, len(labels)) > 0.5
    pred = np.asarray(probs, dtype=np.float64).reshape(-1, len(labels)) >= threshold
    tp = (y & pred).sum(axis=0).astype(np.float64)  # (K,)
    support, predicted = y.sum(axis=0), pred.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        recall = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = (support > 0) | (predicted > 0)
    p_micro = tp.sum() / predicted.sum() if predicted.sum() else 0.0
    r_micro = tp.sum() / support.sum() if support.sum() else 0.0
    n = int(y.shape[0])
    return {
        "f1_micro": float(2 * p_micro * r_micro / (p_micro + r_micro)) if p_micro + r_micro else 0.0,
        "precision_micro": float(p_micro), "recall_micro": float(r_micro),
        "f1_macro": float(f1[present].mean()) if present.any() else 0.0,
        "subset_accuracy": float((y == pred).all(axis=1).mean()) if n else 0.0,
        "hamming_loss": float((y != pred).mean()) if n else 0.0,
        "per_label": {labels[j]: {"precision": float(precision[j]), "recall": float(recall[j]),
                                  "f1": float(f1[j]), "support": int(support[j])}
                      for j in range(len(labels))},
        "labels": labels, "threshold": float(threshold), "n": n,
    }


def tune_threshold(y_true, probs, labels: Sequence[str]) -> float:
    """The threshold in 0.05, 0.10, ..., 0.95 with the highest micro F1 on (``y_true``,
    ``probs``) (ties: the one nearest 0.5); one global threshold, not one per label, so a
    small validation set cannot over-fit it label by label."""
    grid = np.round(np.arange(0.05, 0.951, 0.05), 2)
    scores = [(multi_label_metrics(y_true, probs, labels, t)["f1_micro"], -abs(t - 0.5), t) for t in grid]
    return float(max(scores)[2])


def metrics_of_outputs(task: str, y_true, outputs, labels: Sequence[str], threshold=0.5) -> dict:
    """Metrics of model outputs (:func:`bertkit.predict.task_outputs`: probabilities, or
    numbers (n, 1)) for ``task`` (see bertkit.tasks): :func:`classification_metrics` of the
    argmax, :func:`multi_label_metrics` (``threshold="tune"`` picks it with
    :func:`tune_threshold`), or :func:`regression_metrics` of the single output."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if task == "regression":
        return regression_metrics(y_true, outputs.reshape(-1))
    if task == "multi-label":
        if threshold == "tune":
            threshold = tune_threshold(y_true, outputs, labels)
        return multi_label_metrics(y_true, outputs, labels, float(threshold))
    return classification_metrics(y_true, outputs.argmax(axis=1), labels)


def task_metrics(task: str, y_true, logits, labels: Sequence[str], threshold=0.5) -> dict:
    """:func:`metrics_of_outputs` of raw logits (n, K)."""
    from .predict import task_outputs

    return metrics_of_outputs(task, y_true, task_outputs(task, np.asarray(logits)), labels, threshold)


def format_task_report(metrics: dict) -> str:
    """:func:`format_report` for every task: regression numbers, or multi-label headline
    numbers and a per-label table."""
    if "pearson" in metrics:
        return (f"n = {metrics['n']}\npearson {metrics['pearson']:.4f}   spearman "
                f"{metrics['spearman']:.4f}   mse {metrics['mse']:.4f}   mae {metrics['mae']:.4f}")
    if "per_label" not in metrics:
        return format_report(metrics)
    lines = [f"n = {metrics['n']}   threshold {metrics['threshold']:g}",
             f"f1_micro {metrics['f1_micro']:.4f}   f1_macro {metrics['f1_macro']:.4f}   "
             f"subset_accuracy {metrics['subset_accuracy']:.4f}   hamming_loss "
             f"{metrics['hamming_loss']:.4f}", ""]
    return "\n".join(lines + _score_table(metrics["per_label"], "label"))
