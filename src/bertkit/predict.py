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


OUTPUT_FORMATS = (".csv", ".tsv", ".jsonl", ".parquet")


def write_predictions(frame, probs: np.ndarray, labels, path, *, kept=None,
                      overwrite: bool = False) -> str:
    """Write ``frame`` plus ``prediction`` and one ``prob_<label>`` column per class to
    ``path`` (.csv, .tsv, .jsonl or .parquet), atomically. Returns the path.

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
    pred = np.where(predicted, np.nan_to_num(probs, nan=-1.0).argmax(axis=1), -1)
    name = "prediction"
    while name in out.columns:
        name = "_" + name
    out[name] = [labels[i] if i >= 0 else None for i in pred]
    for j, label in enumerate(labels):
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
