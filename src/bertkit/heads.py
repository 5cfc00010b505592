"""Classification heads that stay loadable by plain ``transformers``.

Both heads are built inside the model's own ``AutoModelForSequenceClassification`` class,
so a trained folder loads with ``AutoModelForSequenceClassification.from_pretrained(DIR)``
and gives the same logits as bertkit, with no custom code and no ``trust_remote_code``:

``linear`` (default)
    [CLS] -> dropout -> one output layer, no hidden layer. BERT's classifier runs [CLS]
    through its pooler (dense + tanh) first; bertkit sets that dense layer to the identity
    and freezes it, so the exported ``BertForSequenceClassification`` computes
    ``W tanh([CLS]) + b``: one linear layer on the (squashed) [CLS] vector. RoBERTa-style
    heads (dense + tanh + out_proj) are treated the same way.

``mlp`` (BERT's own classifier head)
    [CLS] -> hidden layer (dense + tanh) -> dropout -> output layer. For BERT this is
    ``BertForSequenceClassification`` as it is: the hidden layer is BERT's pooler, which
    starts from the checkpoint's pre-trained pooler, as fine-tuning BERT usually does. Other architectures use their own head, which has this
    shape (DistilBERT: dense + ReLU).

Why linear is the default: the bundled model is a sentence-embedding model trained with
mean pooling, so its pre-trained pooler is stale (its [CLS]/pooler vectors score about 7
points lower on STS-B, see benchmarks/README.md); on CoLA the linear head was as good on
the validation split and better out of domain (benchmarks/README.md).
"""

from __future__ import annotations

from .errors import InputError

HEADS = ("linear", "mlp")


def _hidden_layer(model):
    """The dense layer between [CLS] and the output layer (followed by tanh), or None."""
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    pooler = getattr(base, "pooler", None)
    if pooler is not None and hasattr(pooler, "dense") and hasattr(model, "classifier") \
            and hasattr(model.classifier, "weight"):
        return pooler.dense  # BERT: pooler (dense + tanh) -> classifier
    head = getattr(model, "classifier", None)
    if head is not None and hasattr(head, "dense") and hasattr(head, "out_proj"):
        return head.dense  # RoBERTa-style: dense + tanh -> out_proj
    return None


def default_head(model) -> str:
    """``linear`` where the model's head allows it, else ``mlp`` (the model's own head)."""
    return "linear" if _hidden_layer(model) is not None else "mlp"


def apply_head(model, head: str) -> None:
    """Shape ``model`` (a ``*ForSequenceClassification``) for ``head`` in place."""
    import torch

    if head == "mlp":
        return
    if head != "linear":
        raise InputError(f"The 'head' parameter must be one of {', '.join(HEADS)}. Got {head!r} instead.")
    dense = _hidden_layer(model)
    if dense is None:
        raise InputError(
            f"head='linear' needs a BERT- or RoBERTa-style head; {type(model).__name__} has "
            "another one. Use head='mlp' (the model's own head) instead.")
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
