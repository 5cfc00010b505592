"""Inference back-ends: token ids in, hidden states (or classifier logits) out.

A back-end does one job: run a model on a padded batch of token ids. Tokenizing,
windowing, pooling and softmax stay with the callers (:class:`bertkit.Encoder`,
:mod:`bertkit.predict`), so every back-end gives them the same tensors::

    backend = load_backend(None, backend="onnx")      # the default model, ONNX Runtime
    states = backend.forward(ids, mask, all_states=True)  # (S, B, T, H) float32 tensor

Back-ends (``backend=``)
------------------------
``"torch"``
    The Hugging Face model itself (``model(..., output_hidden_states=True)``), on
    ``device``.
``"onnx"``
    ONNX Runtime, float32, on the CPU. The model is exported once with
    ``torch.onnx.export`` and cached under the bertkit cache (see
    :mod:`bertkit.backends.export`).
``"onnx-int8"``
    The ``"onnx"`` export with its weights quantized to int8
    (``onnxruntime.quantization.quantize_dynamic``, per channel): smaller and usually
    faster on CPUs with VNNI, at a small cost in accuracy. Measured on all-MiniLM-L6-v2,
    2,000 SST-2 sentences, 2 AMD EPYC threads: 747 texts/s against 330 (onnx), 323
    (bertkit's torch fast path) and 273 (the plain Hugging Face forward); mean-pooled
    sentence vectors keep a cosine of 0.991 on average (min 0.966) to float32.

Interface (:class:`Backend`)
----------------------------
Attributes: ``name`` (one of :data:`BACKENDS`), ``kind`` ("encoder" or "classifier"),
``num_hidden_states`` (S = layers + 1), ``hidden_size`` (H), ``num_labels`` (K, None for
an encoder), ``uses_token_type_ids`` (False for DistilBERT and other models without
segment embeddings), ``device`` (a ``torch.device``: where the outputs are), ``config``
(the model's ``PretrainedConfig``).

``forward(input_ids, attention_mask=None, token_type_ids=None, *, all_states=False)``
    ``input_ids``, ``attention_mask``, ``token_type_ids``: (B, T) integer numpy arrays or
    torch tensors; ``attention_mask`` 1 for tokens, 0 for padding (None: all tokens);
    ``token_type_ids`` None means all zeros and is ignored by models without them.
    Returns a float32 ``torch.Tensor`` on ``backend.device``:

    * encoder, ``all_states=False``: the last hidden state, (B, T, H);
    * encoder, ``all_states=True``: every hidden state stacked, (S, B, T, H), the
      embeddings first and the last hidden state last;
    * classifier: the logits, (B, K) (``all_states`` must be False).

    Padded positions hold whatever the model computes there, as with the model itself.

ONNX back-ends also have ``prepare(*, all_states=False)``: export (or find in the cache)
and open the graph ``forward`` would use now, so its one-off cost and errors come first.
"""

from __future__ import annotations

import os

from ..errors import InputError
from .base import Backend

__all__ = ["Backend", "BACKENDS", "KINDS", "load_backend"]

#: Names accepted by ``load_backend(backend=...)`` (and ``--backend``).
BACKENDS = ("torch", "onnx", "onnx-int8")
#: What a back-end returns: hidden states ("encoder") or sequence-classification logits.
KINDS = ("encoder", "classifier")


def load_backend(model=None, *, backend: str = "torch", kind: str = "encoder", device=None) -> Backend:
    """Return a :class:`Backend` that runs ``model``.

    Parameters
    ----------
    model : str, PathLike, transformers.PreTrainedModel or None, default=None
        A model folder, a Hugging Face id, None for the bundled default (see
        :func:`bertkit.models.resolve_model`), or a model already loaded (e.g. by
        :func:`bertkit.models.load_model`; it is used as it is, never put in train mode).
    backend : {"torch", "onnx", "onnx-int8"}, default="torch"
    kind : {"encoder", "classifier"}, default="encoder"
        "classifier" needs a sequence-classification model and returns logits; "encoder"
        returns hidden states (of the base model, for a loaded classifier).
    device : str, torch.device or None, default=None
        "torch": None picks cuda > mps > cpu. The ONNX back-ends run on the CPU (None,
        "auto" or "cpu"); "cuda" needs onnxruntime-gpu and works for "onnx" only.

    Raises
    ------
    InputError
        Unknown ``backend`` or ``kind``; ONNX Runtime missing; a model ONNX cannot export.
    ModelLoadError
        The model cannot be found or read.
    """
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise InputError(f"The 'backend' parameter must be one of {_choices(BACKENDS)}. "
                         f"Got {backend!r} instead.")
    if not isinstance(kind, str) or kind not in KINDS:
        raise InputError(f"The 'kind' parameter must be one of {_choices(KINDS)}. Got {kind!r} instead.")
    loaded = None if model is None or isinstance(model, (str, os.PathLike)) else model
    if loaded is not None and not hasattr(loaded, "config"):
        raise InputError("The 'model' parameter must be a model folder, a Hugging Face id, None or "
                         f"a loaded transformers model. Got {type(model).__name__} instead.")
    if backend == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend.load(model, kind=kind, device=device)
    from .onnx_backend import OnnxBackend

    return OnnxBackend.load(model, kind=kind, int8=backend == "onnx-int8", device=device)


def _choices(names) -> str:
    return "{" + ", ".join(repr(n) for n in names) + "}"
