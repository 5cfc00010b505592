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
        # The Rust tokenizer behind a fast tokenizer counts ~2x cheaper than the Hugging Face
        # call, whose Python conversion of each encoding is most of a short text's cost. Its
        # own copy, never truncating or padding (the HF call re-sets those on every call).
        backend = getattr(obj.tokenizer, "backend_tokenizer", None)
        self._rust = None
        if backend is not None and hasattr(backend, "encode_batch"):
            self._rust = copy.deepcopy(backend)
            self._rust.no_truncation()
            self._rust.no_padding()

    def count(self, texts: list, pairs: list | None = None) -> list:
        """Tokens of each text (pair) before truncation, specials included (as the tokenizer's
        ``tokenizer(texts, pairs, truncation=False)["input_ids"]`` lengths)."""
        with self.count_lock:
            if self._rust is not None and len(texts) == 1:  # no hand-off to the Rust thread pool
                return [len(self._rust.encode(texts[0], pairs[0] if pairs else None).ids)]
            if self._rust is not None:
                rows = texts if pairs is None else list(zip(texts, pairs))
                return [len(e.ids) for e in self._rust.encode_batch(rows, add_special_tokens=True)]
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
    """Run one merged batch of (text, pair) rows; ``key`` says whether pairs are given.
    Returns the task's outputs (:meth:`bertkit.Classifier.predict_outputs`): class
    probabilities, per-label probabilities (multi-label) or numbers (regression)."""
    texts = [r[0] for r in rows]
    pairs = [r[1] for r in rows] if key else None
    return clf.predict_outputs(texts, pairs)


try:  # optional (in the serve extra): writes float32 arrays ~20x faster than json + tolist
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None


def embedding_json(vec: np.ndarray, fmt: str):
    """One vector for :func:`dumps`: the float32 array itself (written as JSON floats that
    read back as the same float32 values), or base64 of its little-endian float32 bytes."""
    if fmt == "base64":
        return base64.b64encode(np.ascontiguousarray(vec, dtype="<f4").tobytes()).decode("ascii")
    return np.ascontiguousarray(vec, dtype=np.float32)


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.astype(float).tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(payload: dict) -> bytes:
    """``payload`` as compact JSON bytes; numpy arrays become lists of floats.

    With orjson a float32 becomes its shortest decimal form (0.1 for float32(0.1)), else
    the standard library writes the float64 of each value (0.10000000149011612); both read
    back as the same float32.
    """
    if orjson is not None:
        return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    import json

    return json.dumps(payload, separators=(",", ":"), default=_plain).encode("utf-8")
