"""Classification heads: two that stay loadable by plain ``transformers``, and one that needs bertkit.

``linear`` and ``mlp`` are built inside the model's own ``AutoModelForSequenceClassification``
class, so a trained folder loads with ``AutoModelForSequenceClassification.from_pretrained(DIR)``
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

``mean``
    mean of the last layer's token vectors (padding left out) -> dropout -> output layer;
    BERT's pooler is not used. This is how sentence-embedding models such as the bundled
    one were trained to be read (their [CLS] is stale); an option, not the default (see
    :func:`default_head`). Plain ``transformers`` has no such head: the folder's
    ``config.json`` records ``"bertkit_pooling": "mean"`` and bertkit's loader
    (:func:`bertkit.models.load_model`, so predict, evaluate, serve and the ONNX export)
    restores it; ``AutoModelForSequenceClassification`` alone would read [CLS] instead.
    Needs a BERT-style model (a pooler whose output the classifier reads).

Why linear is the default: the bundled model is a sentence-embedding model trained with
mean pooling, so its pre-trained pooler is stale (its [CLS]/pooler vectors score about 7
points lower on STS-B, see benchmarks/README.md); on CoLA the linear head was as good on
the validation split and better out of domain (benchmarks/README.md).
"""

from __future__ import annotations

import types

from .errors import InputError

HEADS = ("linear", "mlp", "mean")

#: the config.json key that marks a mean-pooled head (read back by :func:`restore_head`)
POOLING_KEY = "bertkit_pooling"


def _bert_pooler(model):
    """BERT's pooler when the classifier reads the base model's ``pooler_output``, else None."""
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    pooler = getattr(base, "pooler", None)
    if pooler is not None and hasattr(model, "classifier") and hasattr(model.classifier, "weight"):
        return pooler
    return None


def _hidden_layer(model):
    """The dense layer between [CLS] and the output layer (followed by tanh), or None."""
    pooler = _bert_pooler(model)
    if pooler is not None and hasattr(pooler, "dense"):
        return pooler.dense  # BERT: pooler (dense + tanh) -> classifier
    head = getattr(model, "classifier", None)
    if head is not None and hasattr(head, "dense") and hasattr(head, "out_proj"):
        return head.dense  # RoBERTa-style: dense + tanh -> out_proj
    return None


def default_head(model) -> str:
    """``linear`` where the model's head allows it, else ``mlp`` (the model's own head).

    ``mean`` is never the default: on STS-B it scored 0.856 against 0.853 for ``linear``
    (one run each, benchmarks/README.md), about the difference dropout draws alone make, while a linear head
    keeps the folder loadable by plain ``transformers`` and lets training skip most of the
    last layer (the [CLS]-only pass of :mod:`bertkit.train_fast`).
    """
    return "linear" if _hidden_layer(model) is not None else "mlp"


def _mean_pooled_forward(self, *args, **kwargs):
    """The base model's forward with ``pooler_output`` replaced by the mean of the last
    layer's token vectors over the attention mask."""
    out = self._bertkit_pooled_forward(*args, **kwargs)
    mask = kwargs.get("attention_mask")
    if mask is None and len(args) > 1:
        mask = args[1]
    states = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]   # (B, T, H)
    if mask is None:
        pooled = states.mean(dim=1)
    else:
        weights = mask[:, :, None].to(states.dtype)                                  # (B, T, 1)
        pooled = (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)   # (B, H)
    if hasattr(out, "pooler_output"):
        out.pooler_output = pooled
        return out
    return (out[0], pooled, *out[2:])


def use_mean_pooling(model) -> None:
    """Make ``model``'s classifier read the masked mean of the last layer instead of BERT's
    pooler (in place: an instance ``forward`` on the base model; the weights are untouched),
    and record it in ``model.config`` so the saved folder loads the same way."""
    if _bert_pooler(model) is None:
        raise InputError(
            f"head='mean' needs a BERT-style model (a pooler read by the classifier); "
            f"{type(model).__name__} has another head. Use head='linear' or head='mlp' instead.")
    base = getattr(model, model.base_model_prefix)
    if getattr(base, "_bertkit_pooled_forward", None) is None:
        base._bertkit_pooled_forward = base.forward
        base.forward = types.MethodType(_mean_pooled_forward, base)
    base.pooler.requires_grad_(False)  # not read: keep it out of the optimizer
    setattr(model.config, POOLING_KEY, "mean")


def _undo_mean_pooling(model) -> None:
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if base is not None and getattr(base, "_bertkit_pooled_forward", None) is not None:
        del base.forward
        del base._bertkit_pooled_forward
        base.pooler.requires_grad_(True)
    if hasattr(model.config, POOLING_KEY):
        delattr(model.config, POOLING_KEY)


def restore_head(model) -> None:
    """Give a loaded classifier back the head its ``config.json`` records (the mean head;
    the others are plain ``transformers`` weights and need nothing)."""
    if getattr(model.config, POOLING_KEY, None) == "mean" and hasattr(model, "classifier"):
        use_mean_pooling(model)


def apply_head(model, head: str) -> None:
    """Shape ``model`` (a ``*ForSequenceClassification``) for ``head`` in place."""
    import torch

    if head not in HEADS:
        raise InputError(f"The 'head' parameter must be one of {', '.join(HEADS)}. Got {head!r} instead.")
    if head == "mean":
        use_mean_pooling(model)
        return
    _undo_mean_pooling(model)  # a mean-head classifier trained again with another head
    if head == "mlp":
        return
    dense = _hidden_layer(model)
    if dense is None:
        raise InputError(
            f"head='linear' needs a BERT- or RoBERTa-style head; {type(model).__name__} has "
            "another one. Use head='mlp' (the model's own head) instead.")
    with torch.no_grad():
        dense.weight.copy_(torch.eye(dense.weight.shape[0], dtype=dense.weight.dtype))
        dense.bias.zero_()
    dense.requires_grad_(False)


def output_layer(model):
    """The last linear layer of the head (its ``out_features`` are the outputs), or None."""
    head = getattr(model, "classifier", None)
    for layer in (getattr(head, "out_proj", None), head):
        if layer is not None and hasattr(layer, "weight") and hasattr(layer, "bias"):
            return layer
    return None


def start_at_mean(model, mean: float) -> None:
    """Regression: start the single output's bias at the training targets' mean.

    Why: AdamW moves a parameter by about ``lr`` per step, so from a bias of 0 a 0-5 scale
    (STS-B, mean 2.7) cannot be reached through the bias in a few hundred steps at lr 1e-4;
    the encoder would have to spend its updates on the offset. Starting at the mean makes the
    first loss the targets' variance instead of their mean square. The bias is an ordinary
    weight of the exported model, so plain transformers gives the same numbers.
    """
    import torch

    layer = output_layer(model)
    if layer is not None and layer.bias is not None and layer.bias.numel() == 1:
        with torch.no_grad():
            layer.bias.fill_(float(mean))


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
