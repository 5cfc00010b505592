"""The three kinds of target a classifier folder can be trained for (``--task``).

``single-label`` (default)
    One class per row; softmax outputs and cross-entropy (Hugging Face's
    ``problem_type="single_label_classification"``).
``multi-label`` (``--multi-label`` is the short form)
    Any number of classes per row, joined by ``--label-sep`` (default ``|``) in the label
    column (``sports|politics``); one sigmoid output per label, binary cross-entropy, and a
    decision threshold (``--threshold``, default 0.5, or ``tune``: the value that
    maximises micro F1 on the validation set). HF ``problem_type="multi_label_classification"``.
``regression``
    One number per row; one output, mean squared error, Pearson/Spearman/MSE/MAE. HF
    ``problem_type="regression"``.

Why one ``--task`` option (and not three flags): the loss, the output layer's width, the
metrics and Hugging Face's ``problem_type`` all follow from this one choice, and a single
option cannot be given twice in contradiction. ``--multi-label`` stays as the short
spelling users look for first.

Here: reading the labels of each kind (:func:`prepare_labels`), turning them into training
targets (:func:`targets`), the loss (:func:`loss`) and the split of a training file when
the labels are not single classes (:func:`random_split`). Metrics are in
:mod:`bertkit.evaluate`.
"""

from __future__ import annotations

import math

from .errors import DataError, InputError

TASKS = ("single-label", "multi-label", "regression")
PROBLEM_TYPES = {"single-label": "single_label_classification",
                 "multi-label": "multi_label_classification", "regression": "regression"}
# the main metric (picks the kept epoch) each task allows; the first is the default
TASK_METRICS = {"single-label": ("accuracy", "mcc", "f1_macro"),
                "multi-label": ("f1_micro", "f1_macro", "subset_accuracy"),
                "regression": ("spearman", "pearson")}
# the validation numbers kept per epoch (stats.csv columns val_<name>)
EPOCH_METRICS = {"single-label": ("accuracy", "mcc", "f1_macro"),
                 "multi-label": ("f1_micro", "f1_macro", "subset_accuracy"),
                 "regression": ("pearson", "spearman", "mse")}


def task_of_config(config) -> str:
    """The task of a loaded Hugging Face config: its ``problem_type``; without one, as
    transformers decides the loss, regression for one output, else single-label."""
    kind = getattr(config, "problem_type", None)
    if kind is None:
        return "regression" if getattr(config, "num_labels", 2) == 1 else "single-label"
    return {v: k for k, v in PROBLEM_TYPES.items()}.get(kind, "single-label")


def check_threshold(threshold):
    """``threshold`` as a float in (0, 1), or the string "tune"; else an InputError."""
    if isinstance(threshold, str):
        if threshold.strip().lower() == "tune":
            return "tune"
        try:
            threshold = float(threshold)
        except ValueError:
            threshold = None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        raise InputError(f"--threshold must be a number between 0 and 1 (exclusive) or 'tune'; "
                         f"got {threshold!r}.")
    return float(threshold)


# ---------------------------------------------------------------------------------- labels


def split_labels(value: str, sep: str) -> list[str]:
    """The distinct labels of one multi-label cell, in first-seen order ("b| a|b" -> b, a)."""
    return list(dict.fromkeys(p.strip() for p in str(value).split(sep) if p.strip()))


def prepare_labels(data, task: str, *, sep: str = "|", strict: bool = False):
    """Check and normalise ``data.labels`` (a :class:`bertkit.labelled.LabelledSet`) for
    ``task``; returns the (possibly smaller) set.

    multi-label: each cell becomes its distinct labels joined by ``sep``; a row whose cell
    holds only separators (an empty label set) is skipped and counted as "empty label set"
    like other bad rows, or with ``strict`` is an error naming the row.
    regression: every label must be a finite number; the first that is not is an error
    naming its row and column (a skipped row there would silently change the targets).
    """
    if task == "single-label" or data.labels is None:
        return data
    if task == "regression":
        for label, row in zip(data.labels, data.rows):
            _number(label, row, data)
        return data
    if not sep:
        raise InputError("--label-sep must not be empty.")
    keep, joined = [], []
    for i, (label, row) in enumerate(zip(data.labels, data.rows)):
        names = split_labels(label, sep)
        if not names:
            if strict:
                raise DataError(
                    f"Row {row} of '{data.source}' has an empty label set: column "
                    f"'{data.label_column}' (--label-column) holds {label!r}, no label between the "
                    f"separators {sep!r}. Fix or remove the row, or leave out --strict to skip "
                    "and count bad rows.")
            data.skipped.setdefault("empty label set", []).append(row)
            continue
        keep.append(i)
        joined.append(sep.join(names))
    out = data.subset(keep)
    out.labels = joined
    if not out.texts:
        raise DataError(f"'{data.source}' has no row with a label (every label set is empty); "
                        "check --label-column and --label-sep.")
    return out


def _number(label, row, data) -> float:
    try:
        value = float(label)
    except (TypeError, ValueError):
        value = None
    if value is None or not math.isfinite(value):
        raise DataError(
            f"Row {row} of '{data.source}': column '{data.label_column}' (--label-column) holds "
            f"{label!r}, not a number; --task regression needs numeric labels. Fix the row, or "
            "use --task single-label for class names.")
    return value


def label_names(labels, task: str, *, sep: str = "|", label_column: str | None = None) -> list[str]:
    """The output names in id order: the classes (single-label), every label seen in any
    set (multi-label, sorted as :func:`bertkit.labelled.label_names` sorts), or one name,
    the label column's, for regression's single output."""
    from .labelled import label_names as class_names

    if task == "regression":
        return [label_column or "score"]
    if task == "multi-label":
        return class_names({name for cell in labels for name in split_labels(cell, sep)})
    return class_names(labels)


def targets(data, task: str, label2id: dict, *, sep: str = "|", flag: str = "--label-column") -> list:
    """Training targets of ``data``: class ids (single-label, length N), multi-hot rows of
    0.0/1.0 (multi-label, N x K) or floats (regression, length N). A label the model never
    saw is an error naming its row."""
    from .labelled import encode_labels

    if task == "single-label":
        return encode_labels(data, label2id, flag=flag)
    if task == "regression":
        return [_number(label, row, data) for label, row in zip(data.labels, data.rows)]
    out, k = [], len(label2id)
    for cell, row in zip(data.labels, data.rows):
        hot = [0.0] * k
        for name in split_labels(cell, sep):
            if name not in label2id:
                known = ", ".join(map(repr, label2id))
                raise DataError(f"Label {name!r} (row {row} of '{data.source}', {flag}) was not seen "
                                f"in training; the model knows {known}. Map it to a training label "
                                "or check --label-sep.")
            hot[label2id[name]] = 1.0
        out.append(hot)
    return out


def label_counts(y: list, labels: list, task: str) -> dict:
    """Examples per class (single-label), rows carrying each label (multi-label), or the
    targets' n/min/max/mean/std (regression: saved instead of a label set)."""
    import numpy as np

    if task == "regression":
        a = np.asarray(y, dtype=np.float64)
        return {"n": int(a.size), "min": float(a.min()), "max": float(a.max()),
                "mean": float(a.mean()), "std": float(a.std())}
    if task == "multi-label":
        sums = np.asarray(y, dtype=np.float64).sum(axis=0)
        return {name: int(sums[j]) for j, name in enumerate(labels)}
    counts = {name: 0 for name in labels}
    for i in y:
        counts[labels[i]] += 1
    return counts


def random_split(n: int, fraction: float, seed: int):
    """Seeded (train, validation) positions, both sorted: for label sets and numbers, which
    a per-class stratified split cannot keep apart. ``round(fraction * n)`` (at least 1)
    go to validation."""
    import numpy as np

    if not (0.0 < fraction < 1.0):
        raise InputError(f"--val-split must be between 0 and 1 (exclusive), got {fraction!r}.")
    if n < 2:
        return list(range(n)), []
    n_val = min(max(1, int(round(fraction * n))), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return sorted(perm[n_val:].tolist()), sorted(perm[:n_val].tolist())


# ------------------------------------------------------------------------------------ loss


def loss(task: str, logits, labels, *, weight=None, reduction: str = "mean"):
    """The training loss of ``logits`` (B, K) against ``labels``.

    single-label: cross-entropy over class ids (B,), ``weight`` (K,) per class;
    multi-label: binary cross-entropy with logits over multi-hot (B, K), ``weight`` (K,)
    as ``pos_weight``, averaged over the K labels; regression: squared error of the one
    output (B, 1) against (B,) numbers. ``reduction="none"`` gives one value per example.
    """
    import torch.nn.functional as F

    logits = logits.float()
    if task == "regression":
        out = F.mse_loss(logits.squeeze(-1), labels.float(), reduction="none")  # (B,)
    elif task == "multi-label":
        out = F.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=weight,
                                                 reduction="none").mean(dim=-1)  # (B,)
    else:
        return F.cross_entropy(logits, labels, weight=weight, reduction=reduction)
    return out.mean() if reduction == "mean" else out


def class_weight(task: str, counts: dict, labels: list, n: int):
    """``--class-weights auto``: inverse class frequency (single-label, mean 1 over the
    examples) or, for multi-label, each label's negatives over positives as BCE's
    ``pos_weight``; regression has none (an InputError). float32 (K,)."""
    import torch

    if task == "regression":
        raise InputError("--class-weights auto has no meaning for --task regression; leave it out.")
    if task == "multi-label":
        return torch.tensor([(n - counts[name]) / max(counts[name], 1) for name in labels],
                            dtype=torch.float32)
    return torch.tensor([n / (len(labels) * counts[name]) for name in labels], dtype=torch.float32)


def main_metric(task: str, metric: str, counts: dict) -> str:
    """The metric that picks the kept epoch: ``metric`` if it fits ``task`` (else an
    InputError), ``auto`` -> mcc/accuracy (single-label, see
    :func:`bertkit.train_config.main_metric`), f1_micro (multi-label), spearman
    (regression: a ranking measure, the one STS-B reports)."""
    from .train_config import main_metric as single_label_metric

    allowed = TASK_METRICS[task]
    if metric == "auto":
        return single_label_metric(metric, counts) if task == "single-label" else allowed[0]
    if metric not in allowed:
        raise InputError(f"--metric {metric} does not fit --task {task}; choose one of "
                         f"{', '.join(('auto',) + allowed)}.")
    return metric
