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
    width = max([5] + [len(str(name)) for name in metrics["per_class"]])
    lines.append(f"{'class':<{width}}  precision  recall      f1  support")
    for name, m in metrics["per_class"].items():
        lines.append(f"{name:<{width}}  {m['precision']:9.4f}  {m['recall']:6.4f}  {m['f1']:6.4f}  "
                     f"{m['support']:7d}")
    return "\n".join(lines)
