"""Architecture summary of a model: sizes and parameter counts by group."""

from __future__ import annotations

import re
from collections import OrderedDict

_LAYER = re.compile(r"(?:^|\.)encoder\.layers?\.(\d+)\.")


def parameter_groups(net) -> "OrderedDict[str, int]":
    """Parameter counts grouped as embeddings, encoder.layer.N, pooler and head.

    Parameters are counted once even when tied (``named_parameters`` dedupes them).
    """
    groups: OrderedDict[str, int] = OrderedDict()
    base_prefix = getattr(net, "base_model_prefix", "") + "."
    for name, p in net.named_parameters():
        inner = name[len(base_prefix):] if name.startswith(base_prefix) else name
        m = _LAYER.search("." + inner)
        if m:
            key = f"encoder.layer.{int(m.group(1))}"
        elif inner.startswith("embeddings."):
            key = "embeddings"
        elif inner.startswith("pooler."):
            key = "pooler"
        elif name.startswith(base_prefix) or net.base_model is net:
            key = "encoder (other)"
        else:
            key = "head"
        groups[key] = groups.get(key, 0) + p.numel()
    return groups


def model_info(model=None) -> dict:
    """Summarise ``model``'s architecture.

    Returns
    -------
    dict with keys ``model``, ``model_type``, ``architecture``, ``num_hidden_layers``,
    ``hidden_size``, ``num_attention_heads``, ``intermediate_size``, ``vocab_size``,
    ``max_position_embeddings``, ``num_hidden_states`` (layers + 1: the embedding output and
    each layer), ``num_labels`` (None for a bare encoder), ``parameters`` (group -> count),
    ``num_parameters`` (total) and ``folder_settings`` (what the folder's
    sentence-transformers config sets, see :func:`folder_settings_summary`).
    """
    from .model_settings import folder_settings
    from .models import DEFAULT_MODEL_NAME, load_model

    net, _ = load_model(model, task="auto", device="cpu")
    settings = folder_settings(model, warn=False)
    cfg = net.config
    groups = parameter_groups(net)
    is_classifier = "ForSequenceClassification" in type(net).__name__
    return {
        "model": str(model) if model else f"{DEFAULT_MODEL_NAME} (bundled default)",
        "model_type": cfg.model_type,
        "architecture": type(net).__name__,
        "num_hidden_layers": cfg.num_hidden_layers,
        "hidden_size": cfg.hidden_size,
        "num_attention_heads": cfg.num_attention_heads,
        "intermediate_size": getattr(cfg, "intermediate_size", None),
        "vocab_size": cfg.vocab_size,
        "max_position_embeddings": getattr(cfg, "max_position_embeddings", None),
        "num_hidden_states": cfg.num_hidden_layers + 1,
        "num_labels": cfg.num_labels if is_classifier else None,
        "id2label": {str(k): v for k, v in cfg.id2label.items()} if is_classifier else None,
        "parameters": dict(groups),
        "num_parameters": sum(groups.values()),
        "folder_settings": folder_settings_summary(settings),
    }


def folder_settings_summary(settings) -> dict:
    """A :class:`~bertkit.model_settings.FolderSettings` as plain JSON-ready values.

    Keys: ``max_length``, ``pooling``, ``normalize`` (None = not set by the folder),
    ``source`` ("sentence-transformers config" or None), ``files`` (setting -> file),
    ``unsupported`` and ``problems`` (lists of str).
    """
    from .model_settings import ST_SOURCE

    return {
        "max_length": settings.max_length,
        "pooling": settings.pooling,
        "normalize": settings.normalize,
        "source": ST_SOURCE if settings.is_sentence_transformers else None,
        "files": dict(settings.source),
        "unsupported": list(settings.unsupported),
        "problems": list(settings.problems),
    }
