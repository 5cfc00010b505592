"""Reading a model folder's small files without torch or transformers.

``bertkit tokenize`` and ``bertkit info`` need no weights: the tokenizer comes from
``tokenizer.json`` (the ``tokenizers`` library, which transformers' fast tokenizers wrap),
sizes from ``config.json`` and parameter counts from the safetensors header (shapes only,
no tensor is read). Importing transformers and loading the weights took 4-8 s; this takes
a fraction of a second.

Each reader returns None when it cannot be sure to give what the transformers path gives
(a Hub id, a tokenizer class whose outputs differ, a checkpoint with parts the loaded model
would add or drop); callers then fall back to transformers. Only local folders qualify.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from pathlib import Path

# Tokenizer classes whose transformers outputs equal tokenizer.json's run as it is: BERT's
# WordPiece with [CLS]/[SEP] and segment ids (model_input_names include token_type_ids).
# Other classes (RoBERTa, DistilBERT, ... drop token_type_ids) use transformers.
_PLAIN_TOKENIZERS = {"BertTokenizer", "BertTokenizerFast", "ElectraTokenizer",
                     "ElectraTokenizerFast"}
_CONFIG_KEYS = ("model_type", "num_hidden_layers", "hidden_size", "num_attention_heads",
                "intermediate_size", "vocab_size", "max_position_embeddings")
_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.")
# Buffers older checkpoints saved next to the parameters (not parameters: not counted)
_BUFFERS = (".position_ids", ".token_type_ids")


def local_folder(model) -> Path | None:
    """The folder of ``model`` (None: the bundled default) when it is a local folder."""
    if model is None or str(model) == "":
        from .models import default_model_path

        return Path(default_model_path())
    from .models import DEFAULT_MODEL_ALIASES

    text = os.path.expanduser(str(model))
    if os.path.isdir(text):
        return Path(text)
    if text in DEFAULT_MODEL_ALIASES:
        from .models import default_model_path

        return Path(default_model_path())
    return None


def _json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class FastTokenizer:
    """``tokenizer.json`` through the ``tokenizers`` library, with transformers' settings.

    Attributes
    ----------
    tokenizer : tokenizers.Tokenizer
        Truncation and padding stored in the file are switched off (transformers does so
        too: they apply only when asked for).
    model_max_length : int
        ``tokenizer_config.json``'s ``model_max_length`` (the limit transformers uses).
    """

    def __init__(self, tokenizer, model_max_length: int):
        self.tokenizer = tokenizer
        self.model_max_length = model_max_length

    def encode(self, text: str, pair: str | None, max_length: int | None):
        """A ``tokenizers.Encoding`` with specials, cut longest-first to ``max_length``."""
        tok = self.tokenizer
        if max_length is None:
            tok.no_truncation()
        else:
            tok.enable_truncation(max_length, strategy="longest_first")
        return tok.encode(text, pair, add_special_tokens=True)

    def id_to_token(self, i: int) -> str:
        return self.tokenizer.id_to_token(i)


def fast_tokenizer(model) -> FastTokenizer | None:
    """The tokenizer of a local ``model`` folder without transformers, or None when only
    transformers can give the exact same tokens (see the module docstring)."""
    folder = local_folder(model)
    if folder is None or not (folder / "tokenizer.json").is_file():
        return None
    settings = _json(folder / "tokenizer_config.json") or {}
    cls = settings.get("tokenizer_class")
    if cls is None:
        config = _json(folder / "config.json") or {}
        cls = "BertTokenizer" if config.get("model_type") == "bert" else None
    limit = settings.get("model_max_length")
    if cls not in _PLAIN_TOKENIZERS or not isinstance(limit, int) or not 0 < limit < 100_000:
        return None
    try:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    except Exception:  # an unreadable or newer file: transformers reports it properly
        return None
    declared = {t.get("content") for t in (settings.get("added_tokens_decoder") or {}).values()
                if isinstance(t, dict)}
    declared |= set(settings.get("additional_special_tokens") or [])
    if not declared <= {t.content for t in tok.get_added_tokens_decoder().values()}:
        return None  # tokens transformers would add on load: let it do so
    tok.no_padding()
    return FastTokenizer(tok, limit)


def read_config(model) -> dict | None:
    """``config.json`` of a local folder when it states every size :func:`model_info`
    reports (else None: transformers fills in its class defaults)."""
    folder = local_folder(model)
    config = _json(folder / "config.json") if folder is not None else None
    if not config or any(not isinstance(config.get(k), (int, str)) for k in _CONFIG_KEYS):
        return None
    if not config.get("architectures"):
        return None
    return config


def safetensors_shapes(model) -> dict | None:
    """Tensor name -> shape from the safetensors header(s) of a local folder (no tensor is
    read), or None when the folder has no safetensors weights."""
    folder = local_folder(model)
    if folder is None:
        return None
    files = [folder / "model.safetensors"]
    index = folder / "model.safetensors.index.json"
    if not files[0].is_file():
        weight_map = (_json(index) or {}).get("weight_map")
        if not isinstance(weight_map, dict):
            return None
        files = [folder / f for f in sorted(set(weight_map.values()))]
    shapes = {}
    for file in files:
        try:
            with open(file, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                if n > 100_000_000:
                    return None
                header = json.loads(f.read(n))
        except (OSError, ValueError, struct.error):
            return None  # damaged: the transformers path names the problem
        for name, meta in header.items():
            if name != "__metadata__":
                shapes[name] = list(meta.get("shape", []))
    return shapes


def parameter_groups_from_header(shapes: dict, architecture: str) -> dict | None:
    """Counts grouped as :func:`bertkit.info.parameter_groups` groups a loaded BERT model,
    from the header's names and shapes; None unless the names are BERT's exact layout
    (embeddings, encoder.layer.N, pooler, and for ``*ForSequenceClassification`` a
    ``classifier``), which the loaded model has too, nothing added or dropped."""
    is_classifier = architecture.endswith("ForSequenceClassification")
    if architecture not in ("BertModel", "BertForSequenceClassification"):
        return None
    prefix = "bert." if is_classifier else ""
    counts: dict = {}
    for name, shape in shapes.items():
        if name.endswith(_BUFFERS):
            continue
        if prefix and not name.startswith(prefix):
            key = "head" if name.startswith("classifier.") else None
        else:
            inner = name[len(prefix):]
            m = _LAYER.match(inner)
            key = (f"encoder.layer.{int(m.group(1))}" if m else
                   "embeddings" if inner.startswith("embeddings.") else
                   "pooler" if inner.startswith("pooler.") else None)
        if key is None:
            return None  # a part the loaded model would not have (or another layout)
        counts[key] = counts.get(key, 0) + math.prod(shape)
    if "embeddings" not in counts or "pooler" not in counts or (is_classifier and "head" not in counts):
        return None  # the loaded model would add (randomly initialised) parts
    layers = sorted((k for k in counts if k.startswith("encoder.layer.")),
                    key=lambda k: int(k.rsplit(".", 1)[1]))
    order = ["embeddings", *layers, "pooler", "head"]
    return {k: counts[k] for k in order if k in counts}
