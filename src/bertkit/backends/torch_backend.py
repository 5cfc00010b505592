"""The "torch" back-end: the Hugging Face model itself."""

from __future__ import annotations

from ..errors import InputError
from .base import Backend, is_classifier, takes_token_type_ids, to_int64


class TorchBackend(Backend):
    """Calls the Hugging Face model (``output_hidden_states=True`` when all states are
    asked for) under ``torch.inference_mode``; outputs stay on the model's device."""

    name = "torch"

    def __init__(self, model, *, kind: str, model_name: str):
        import torch

        super().__init__(model.config, kind=kind, uses_token_type_ids=takes_token_type_ids(model),
                         device=next(model.parameters()).device, model_name=model_name)
        self.model = model
        self._torch = torch

    @classmethod
    def load(cls, model, *, kind: str, device=None) -> "TorchBackend":
        """``model``: a folder, Hub id, None (the default) or a loaded model (see
        :func:`bertkit.backends.load_backend`)."""
        from ..models import DEFAULT_MODEL_NAME, load_model

        if model is None or isinstance(model, str) or hasattr(model, "__fspath__"):
            name = DEFAULT_MODEL_NAME if model is None else str(model)
            check_classifier_config(_config_of(model), name, kind)
            task = "classification" if kind == "classifier" else "base"
            net, _ = load_model(model, task=task, device=device)
            return cls(net, kind=kind, model_name=name)
        net = model
        name = str(getattr(net, "name_or_path", "") or type(net).__name__)
        if kind == "classifier" and not is_classifier(net):
            raise InputError(f"kind='classifier' needs a sequence-classification model; got a "
                             f"{type(net).__name__}.")
        if kind == "classifier":
            from ..heads import restore_head

            restore_head(net)  # loaded by plain transformers: a mean head is only in its config
        if kind == "encoder" and is_classifier(net):
            net = net.base_model  # the hidden states of a classifier are its encoder's
        if device is not None:
            from ..models import select_device

            want = select_device(device) if not hasattr(device, "type") else device
            have = next(net.parameters()).device
            if want.type != have.type or (want.index is not None and want.index != have.index):
                raise InputError(f"The 'device' parameter ({want}) differs from the loaded model's "
                                 f"device ({have}); move the model, or leave out device.")
        return cls(net, kind=kind, model_name=name)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, *, all_states: bool = False):
        torch = self._torch
        self._check(input_ids, attention_mask, token_type_ids, all_states)
        kwargs = {"input_ids": self._tensor(input_ids), "return_dict": True}
        if attention_mask is not None:
            kwargs["attention_mask"] = self._tensor(attention_mask)
        if token_type_ids is not None and self.uses_token_type_ids:
            kwargs["token_type_ids"] = self._tensor(token_type_ids)
        with torch.inference_mode():
            if self.kind == "classifier":
                return self.model(**kwargs).logits.float()
            out = self.model(**kwargs, output_hidden_states=all_states)
            if all_states:
                return torch.stack(out.hidden_states).float()
            return out.last_hidden_state.float()

    def _tensor(self, x):
        torch = self._torch
        if isinstance(x, torch.Tensor):
            return x.to(self.device, torch.long)
        return torch.from_numpy(to_int64(x)).to(self.device)


def _config_of(model):
    from ..models import load_config

    return load_config(model)


def check_classifier_config(config, name: str, kind: str) -> None:
    """Refuse kind="classifier" for a model saved without a classification head (its
    head would be random)."""
    if kind != "classifier":
        return
    archs = getattr(config, "architectures", None) or []
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        raise InputError(f"kind='classifier' needs a model saved as a sequence classifier; "
                         f"'{name}' is a {archs[0] if archs else 'model without a head'}. Use "
                         "kind='encoder', or pass a classifier trained with bertkit train.")
