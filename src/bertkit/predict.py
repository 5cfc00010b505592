"""Inference for sequence classifiers: tokenize once, length-sorted batches, softmax,
input order restored; and writing a file of predictions.

Featurizing (:func:`bertkit.features.encode_examples`) and batching (:mod:`bertkit.batching`)
are shared with the training loop, so training and prediction see exactly the same inputs;
the model runs through a back-end (:mod:`bertkit.backends`: torch, onnx, onnx-int8).
"""

from __future__ import annotations

import os

import numpy as np

from .batching import length_sorted_batches, model_inputs, pad, pad_batch  # noqa: F401 (re-exported)
from .errors import DataError, InputError
from .features import Encoded, encode_examples  # noqa: F401 (re-exported)


def predict_logits(backend, encoded: Encoded, *, pad_id: int, batch_size: int = 64,
                   progress: bool = False, desc: str = "predict") -> np.ndarray:
    """Logits of shape (n, n_classes), float32, in input order.

    ``backend`` is a classifier back-end (:func:`bertkit.backends.load_backend` with
    ``kind="classifier"``); examples run in length-sorted batches padded to their longest.
    """
    from tqdm.auto import tqdm

    n = len(encoded)
    out = None
    batches = length_sorted_batches(encoded.lengths, batch_size)
    for idx in tqdm(batches, desc=desc, unit="batch", disable=not progress, leave=False):
        types = [encoded.token_type_ids[i] for i in idx] if encoded.token_type_ids is not None else None
        arrays = pad([encoded.input_ids[i] for i in idx], pad_id, types)
        logits = backend.forward(arrays["input_ids"], arrays["attention_mask"],
                                 arrays.get("token_type_ids")).float().cpu().numpy()  # (B, K)
        if out is None:
            out = np.empty((n, logits.shape[1]), dtype=np.float32)
        out[idx] = logits
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def task_outputs(task: str, logits: np.ndarray) -> np.ndarray:
    """Logits (n, K) -> softmax probabilities (single-label), independent sigmoid
    probabilities (multi-label) or the numbers themselves (regression, (n, 1))."""
    if task == "regression":
        return logits.astype(np.float32)
    if task == "multi-label":
        return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)
    return softmax(logits)


def prediction(task: str, row: np.ndarray, labels, threshold: float = 0.5):
    """One example's prediction from its outputs ``row`` (K,): see
    :meth:`bertkit.Classifier.predict`."""
    if task == "regression":
        return float(row[0])
    probabilities = {name: float(row[j]) for j, name in enumerate(labels)}
    if task == "multi-label":
        order = np.argsort(-row, kind="stable")
        return {"labels": [labels[j] for j in order if row[j] >= threshold],
                "probabilities": probabilities}
    return {"label": labels[int(row.argmax())], "probabilities": probabilities}


def prediction_counts(task: str, outputs: np.ndarray, labels, threshold: float = 0.5) -> dict:
    """Rows predicted with each label (single- and multi-label), or n/min/mean/max of the
    predicted numbers (regression)."""
    if task == "regression":
        v = outputs.reshape(-1).astype(np.float64)
        return {"n": int(v.size), "min": float(v.min()) if v.size else None,
                "mean": float(v.mean()) if v.size else None, "max": float(v.max()) if v.size else None}
    if task == "multi-label":
        hits = (outputs >= threshold).sum(axis=0)
        return {name: int(hits[j]) for j, name in enumerate(labels)}
    pred = outputs.argmax(axis=1)
    return {name: int((pred == j).sum()) for j, name in enumerate(labels)}


OUTPUT_FORMATS = (".csv", ".tsv", ".jsonl", ".parquet")


def write_predictions(frame, probs: np.ndarray, labels, path, *, kept=None,
                      overwrite: bool = False, task: str = "single-label", threshold: float = 0.5,
                      sep: str = "|") -> str:
    """Write ``frame`` plus ``prediction`` and one ``prob_<label>`` column per class to
    ``path`` (.csv, .tsv, .jsonl or .parquet), atomically. Returns the path.

    ``probs`` (n, K) are the outputs of :func:`task_outputs`. multi-label: ``prediction``
    holds the labels with probability >= ``threshold`` joined by ``sep`` (most probable
    first; empty when none is); regression: the number, and no ``prob_`` columns.
    ``kept`` (row positions) marks the rows that were predicted; the others get an empty
    prediction and missing probabilities. An existing ``path`` is replaced only with
    ``overwrite``."""
    from .data import file_format
    from .io import atomic_path

    check_output_path(path, overwrite=overwrite)
    fmt = file_format(path)
    out = frame.copy()
    predicted = np.zeros(len(out), dtype=bool)
    predicted[np.arange(len(out)) if kept is None else np.asarray(kept, dtype=np.int64)] = True
    name = "prediction"
    while name in out.columns:
        name = "_" + name
    if task == "single-label":
        pred = np.where(predicted, np.nan_to_num(probs, nan=-1.0).argmax(axis=1), -1)
        out[name] = [labels[i] if i >= 0 else None for i in pred]
    elif task == "multi-label":
        out[name] = [sep.join(prediction(task, row, labels, threshold)["labels"]) if ok else None
                     for row, ok in zip(probs, predicted)]
    else:
        out[name] = [float(row[0]) if ok else None for row, ok in zip(probs, predicted)]
    for j, label in enumerate(labels if task != "regression" else []):
        col = f"prob_{label}"
        while col in out.columns:
            col = "_" + col
        out[col] = probs[:, j].astype(np.float64).round(6)
    with atomic_path(path) as tmp:
        if fmt == ".csv":
            out.to_csv(tmp, index=False)
        elif fmt == ".tsv":
            out.to_csv(tmp, sep="\t", index=False)
        elif fmt == ".jsonl":
            out.to_json(tmp, orient="records", lines=True, force_ascii=False)
        else:
            out.columns = [str(c) for c in out.columns]
            out.to_parquet(tmp, index=False)
    return os.fspath(path)


def check_output_path(path, *, overwrite: bool = False, flag: str = "--output") -> None:
    """Fail early (before any compute) on an output file that cannot or may not be written.

    Checks the format, that ``path`` is not a folder, that it does not exist yet unless
    ``overwrite`` (replacing earlier predictions is never silent), and that its folder
    exists and can be written (see :func:`bertkit.io.check_writable`).
    """
    from .data import file_format

    try:
        fmt = file_format(path)
    except DataError:
        fmt = None
    if fmt not in OUTPUT_FORMATS or str(path).lower().endswith(".gz"):
        raise InputError(f"{flag} must end in one of {', '.join(OUTPUT_FORMATS)}; got '{path}'.")
    from .io import check_writable

    check_writable(path, flag, kind="file")
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise InputError(f"The folder of {flag} '{path}' does not exist; create it first.")
    if os.path.exists(path) and not overwrite:
        raise InputError(f"{flag} '{path}' already exists; pass --overwrite to replace it, or "
                         "choose another file name.")
