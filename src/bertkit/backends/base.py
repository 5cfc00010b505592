"""The :class:`Backend` base class and helpers shared by the back-ends."""

from __future__ import annotations

import inspect

import numpy as np

from ..errors import InputError


class Backend:
    """Runs a model on padded token ids (see :mod:`bertkit.backends` for the interface).

    Subclasses set :attr:`name` and implement :meth:`forward`.
    """

    name = ""

    def __init__(self, config, *, kind: str, uses_token_type_ids, device, model_name: str):
        self.config = config
        self.kind = kind
        self.num_hidden_states = int(config.num_hidden_layers) + 1
        self.hidden_size = int(config.hidden_size)
        self.num_labels = int(config.num_labels) if kind == "classifier" else None
        self._uses_token_type_ids = uses_token_type_ids
        self.device = device
        self.model_name = model_name

    @property
    def uses_token_type_ids(self) -> bool:
        """Whether the model reads ``token_type_ids`` (False: they are ignored)."""
        return bool(self._uses_token_type_ids)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, *, all_states: bool = False):
        """(B, T) ids, mask and token types -> (B, T, H), (S, B, T, H) or (B, K) float32."""
        raise NotImplementedError

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, *, all_states: bool = False):
        return self.forward(input_ids, attention_mask, token_type_ids, all_states=all_states)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, kind={self.kind!r}, "
                f"model={self.model_name!r}, states={self.num_hidden_states}, hidden={self.hidden_size})")

    def _check(self, input_ids, attention_mask, token_type_ids, all_states: bool) -> None:
        """Raise InputError for inputs that are not (B, T) alike, or states of a classifier."""
        shape = tuple(input_ids.shape)
        if len(shape) != 2 or 0 in shape:
            raise InputError(f"The 'input_ids' parameter must be a non-empty (batch, tokens) array. "
                             f"Got shape {shape} instead.")
        for name, x in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
            if x is not None and tuple(x.shape) != shape:
                raise InputError(f"The '{name}' parameter must have the shape of input_ids {shape}. "
                                 f"Got {tuple(x.shape)} instead.")
        if all_states and self.kind == "classifier":
            raise InputError("all_states=True needs an encoder back-end (kind='encoder'); a classifier "
                             "back-end returns logits.")


def to_int64(x) -> np.ndarray | None:
    """A C-contiguous int64 numpy array of ``x`` (numpy or torch; None stays None)."""
    if x is None:
        return None
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.int64)


def takes_token_type_ids(model_or_class) -> bool:
    """Whether the model's ``forward`` has a ``token_type_ids`` argument."""
    forward = getattr(model_or_class, "forward", None)
    try:
        return "token_type_ids" in inspect.signature(forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - not introspectable
        return True


def model_class(config, kind: str):
    """The transformers class that ``load_model`` builds for ``config`` and ``kind``, or None."""
    from transformers import AutoModel, AutoModelForSequenceClassification

    auto = AutoModelForSequenceClassification if kind == "classifier" else AutoModel
    try:
        return auto._model_mapping[type(config)]
    except (KeyError, AttributeError):
        return None


def is_classifier(model) -> bool:
    """Whether a loaded model is a sequence classifier (it has a head that gives logits)."""
    return type(model).__name__.endswith("ForSequenceClassification")
