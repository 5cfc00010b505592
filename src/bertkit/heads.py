"""Classification heads that stay loadable by plain ``transformers``.

Both heads are built inside the model's own ``AutoModelForSequenceClassification`` class,
so a trained folder loads with ``AutoModelForSequenceClassification.from_pretrained(DIR)``
and gives the same logits as bertkit, with no custom code and no ``trust_remote_code``:

``mlp`` (default; seed 004's head)
    [CLS] -> hidden layer (dense + tanh) -> dropout -> output layer. For BERT this is
    ``BertForSequenceClassification`` as it is: the hidden layer is BERT's pooler, which
    starts from the checkpoint's pre-trained pooler when it has one (as seed 004 starts its
    hidden layer from the pre-trained model). RoBERTa/DistilBERT-style models use their
    own dense + activation + output head, which has the same shape.

``linear``
    [CLS] -> dropout -> one output layer, no hidden layer. For BERT the pooler's dense layer
    is set to the identity and frozen, so the exported model computes
    ``W tanh([CLS]) + b``: one linear layer on the (squashed) [CLS] vector, saved as a
    standard ``BertForSequenceClassification``.
"""

from __future__ import annotations

from .errors import InputError

HEADS = ("mlp", "linear")


def apply_head(model, head: str) -> None:
    """Shape ``model`` (a ``*ForSequenceClassification``) for ``head`` in place."""
    import torch

    if head == "mlp":
        return
    if head != "linear":
        raise InputError(f"--head must be one of {', '.join(HEADS)}; got {head!r}.")
    pooler = getattr(getattr(model, "bert", None), "pooler", None)
    dense = getattr(pooler, "dense", None)
    if dense is None:
        raise InputError(
            f"--head linear needs a BERT model with a pooler; {type(model).__name__} has its "
            "own classification head. Use --head mlp (that head) instead.")
    with torch.no_grad():
        dense.weight.copy_(torch.eye(dense.weight.shape[0], dtype=dense.weight.dtype))
        dense.bias.zero_()
    dense.requires_grad_(False)


def head_parameters(model) -> set:
    """Names of the parameters that belong to the head (trained even with a frozen encoder)."""
    base = getattr(model, "base_model_prefix", "")
    names = set()
    for name, _ in model.named_parameters():
        in_base = base and name.startswith(base + ".")
        if not in_base or ".pooler." in name:
            names.add(name)
    return names


def freeze_encoder(model) -> int:
    """Freeze everything but the head; returns the number of trainable parameters left."""
    keep = head_parameters(model)
    trainable = 0
    for name, p in model.named_parameters():
        if name not in keep:
            p.requires_grad_(False)
        elif p.requires_grad:
            trainable += p.numel()
    return trainable
