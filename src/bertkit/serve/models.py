"""The loaded models of a server and the blocking work on them (run in threads).

Every call that touches a model or its tokenizer holds that model's lock: a Hugging Face
fast tokenizer raises "Already borrowed" when two threads call it at once, and
:func:`bertkit.attention_weights` switches the model's attention implementation for its
call. Token counting uses a copy of the tokenizer with its own lock, so requests can be
counted while the model runs.
"""

from __future__ import annotations

import base64
import copy
import os
import threading

import numpy as np


class Served:
    """One model (an Encoder or a Classifier) with its locks and counting tokenizer."""

    def __init__(self, obj, max_length: int):
        self.obj = obj
        self.max_length = int(max_length)
        self.lock = threading.Lock()
        self.count_lock = threading.Lock()
        self.counter = copy.deepcopy(obj.tokenizer)

    def count(self, texts: list, pairs: list | None = None) -> list:
        """Tokens of each text (pair) before truncation, specials included."""
        with self.count_lock:
            ids = self.counter(texts, pairs, truncation=False, verbose=False)["input_ids"]
        return [len(x) for x in ids]


def load_encoder(model, backend: str, device=None):
    """An :class:`bertkit.Encoder` (``model`` may already be one)."""
    from ..encoder import Encoder

    if isinstance(model, Encoder):
        return model
    return Encoder(model, device=device, backend=backend)


def load_classifiers(classifiers, backend: str, device=None) -> dict:
    """``{name: Classifier}`` from ``{name: folder or Classifier}`` (or a list of folders,
    named by their folder names)."""
    from ..classifier import Classifier

    if classifiers is None:
        return {}
    if not isinstance(classifiers, dict):
        classifiers = {os.path.basename(os.path.normpath(str(c))): c for c in classifiers}
    return {str(name): c if isinstance(c, Classifier) else Classifier(c, device=device, backend=backend)
            for name, c in classifiers.items()}


def model_names(enc) -> set:
    """Names a request's ``model`` field may use for the loaded encoder."""
    name = str(enc.model_name)
    return {name, os.path.basename(os.path.normpath(name))}


def encode_rows(enc, key: tuple, texts: list) -> np.ndarray:
    """Run one merged batch: ``key`` is (pooling, layers, normalize), already resolved."""
    import warnings

    pooling, layers, normalize = key
    with warnings.catch_warnings():
        # truncation is reported per request in "truncated", not as a log line per batch
        warnings.simplefilter("ignore", UserWarning)
        out = enc.encode(texts, pooling=pooling, layers=layers, normalize=normalize, progress=False)
    return np.asarray(out, dtype=np.float32)


def classify_rows(clf, key: bool, rows: list) -> np.ndarray:
    """Run one merged batch of (text, pair) rows; ``key`` says whether pairs are given."""
    texts = [r[0] for r in rows]
    pairs = [r[1] for r in rows] if key else None
    return clf.predict_proba(texts, pairs)


def embedding_json(vec: np.ndarray, fmt: str):
    """One vector as a list of floats, or base64 of its little-endian float32 bytes."""
    if fmt == "base64":
        return base64.b64encode(np.ascontiguousarray(vec, dtype="<f4").tobytes()).decode("ascii")
    return vec.astype(float).tolist()
