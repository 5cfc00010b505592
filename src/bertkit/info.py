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
    from .models import DEFAULT_MODEL_NAME

    summary = _from_files(model)  # config.json + safetensors header: no torch, no weights
    if summary is None:
        summary = _from_loaded_model(model)
    settings = folder_settings(model, warn=False)
    return {
        "model": str(model) if model else f"{DEFAULT_MODEL_NAME} (bundled default)",
        **summary,
        "folder_settings": folder_settings_summary(settings),
    }


def _summary(cfg: dict, architecture: str, groups: dict) -> dict:
    """The sizes and counts of :func:`model_info` from a config (as a dict) and groups."""
    is_classifier = "ForSequenceClassification" in architecture
    id2label = {str(k): v for k, v in (cfg.get("id2label") or {}).items()}
    return {
        "model_type": cfg["model_type"],
        "architecture": architecture,
        "num_hidden_layers": cfg["num_hidden_layers"],
        "hidden_size": cfg["hidden_size"],
        "num_attention_heads": cfg["num_attention_heads"],
        "intermediate_size": cfg.get("intermediate_size"),
        "vocab_size": cfg["vocab_size"],
        "max_position_embeddings": cfg.get("max_position_embeddings"),
        "num_hidden_states": cfg["num_hidden_layers"] + 1,
        "num_labels": len(id2label) if is_classifier else None,
        "id2label": id2label if is_classifier else None,
        "parameters": dict(groups),
        "num_parameters": sum(groups.values()),
    }


def _from_files(model) -> dict | None:
    """:func:`model_info`'s summary from a local folder's files, or None when only loading
    the model gives it exactly (see :mod:`bertkit.model_files`)."""
    from .model_files import parameter_groups_from_header, read_config, safetensors_shapes

    cfg = read_config(model)
    if cfg is None or (cfg.get("id2label") is None and "ForSequenceClassification" in cfg["architectures"][0]):
        return None
    shapes = safetensors_shapes(model)
    groups = parameter_groups_from_header(shapes, cfg["architectures"][0]) if shapes else None
    if groups is None:
        return None
    return _summary(cfg, cfg["architectures"][0], groups)


def _from_loaded_model(model) -> dict:
    """:func:`model_info`'s summary by loading the model with transformers."""
    from .models import load_model

    net, _ = load_model(model, task="auto", device="cpu")
    cfg = net.config
    d = {k: getattr(cfg, k, None) for k in (
        "model_type", "num_hidden_layers", "hidden_size", "num_attention_heads",
        "intermediate_size", "vocab_size", "max_position_embeddings")}
    d["id2label"] = cfg.id2label
    return _summary(d, type(net).__name__, parameter_groups(net))


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
