"""What a model folder's own sentence-transformers config says about its vectors.

A sentence-transformers folder records how its sentence vectors are made:

* ``modules.json`` -- the module chain, e.g. ``Transformer -> Pooling -> Normalize``
  (``Normalize`` has no folder of its own in older saves);
* ``sentence_bert_config.json`` (beside the Transformer, usually the root) --
  ``max_seq_length`` (or ``processor_kwargs.model_max_length``), ``do_lower_case``;
* ``1_Pooling/config.json`` -- ``pooling_mode`` (sentence-transformers >= 6) or the legacy
  ``pooling_mode_cls_token`` / ``_mean_tokens`` / ``_max_tokens`` /
  ``_mean_sqrt_len_tokens`` / ``_weightedmean_tokens`` / ``_lasttoken`` booleans;
* ``config_sentence_transformers.json`` -- ``prompts`` and ``default_prompt_name``.

:func:`folder_settings` reads them into a :class:`FolderSettings`;
:func:`resolve_encode_defaults` merges them with explicit arguments and bertkit's own
fallbacks. Missing files mean "not set"; a corrupt file is ignored with a warning, never an
error, because the model itself still loads. Parts bertkit cannot reproduce (a ``Dense``
projection, ``weightedmean`` pooling, a default prompt, ...) are listed in
``FolderSettings.unsupported`` so the caller can warn once that vectors will differ from
``SentenceTransformer(...).encode``.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field

ST_SOURCE = "sentence-transformers config"
# sentence-transformers pooling modes -> bertkit pooling names (bertkit.pooling.POOLINGS).
_POOLING_NAMES = {"mean": "mean", "cls": "cls", "max": "max"}
# Legacy Pooling config keys, in the order sentence-transformers concatenates them.
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# Where sentence-transformers looks for the Transformer's settings, first found wins.
_SBERT_CONFIGS = ("sentence_bert_config.json", "sentence_roberta_config.json",
                  "sentence_distilbert_config.json", "sentence_camembert_config.json",
                  "sentence_albert_config.json", "sentence_xlm-roberta_config.json",
                  "sentence_xlnet_config.json")
# Modules with no effect on inference vectors (Dropout is the identity in eval mode).
_NO_EFFECT = {"Dropout"}


@dataclass(frozen=True)
class FolderSettings:
    """Encoding settings a model folder declares (None = the folder does not say).

    Attributes
    ----------
    max_length : int or None
        Longest input in tokens (specials included) sentence-transformers uses.
    pooling : {"mean", "cls", "max"} or None
        The folder's pooling, in bertkit's names; None when not set or not reproducible.
    normalize : bool or None
        True when the module chain ends in ``Normalize`` (unit-length vectors), False for a
        sentence-transformers folder without one, None for a plain Hugging Face folder.
    source : dict
        Setting name -> file it came from, relative to the folder (``"modules.json"``...).
    unsupported : list of str
        Parts of the folder's pipeline bertkit does not reproduce, one phrase each.
    problems : list of str
        Files that were present but unreadable and so ignored.
    """

    max_length: int | None = None
    pooling: str | None = None
    normalize: bool | None = None
    source: dict = field(default_factory=dict)
    unsupported: list = field(default_factory=list)
    problems: list = field(default_factory=list)

    @property
    def is_sentence_transformers(self) -> bool:
        """Whether the folder has a (readable) sentence-transformers config at all."""
        return bool(self.source or self.unsupported)


class _Files:
    """Reads small JSON files of a local folder or of a Hub model (cache first)."""

    def __init__(self, resolved: str, download: bool):
        self.resolved, self.download = resolved, download
        self.is_dir = os.path.isdir(resolved)
        self.problems: list[str] = []

    def local(self, rel: str) -> str | None:
        if self.is_dir:
            path = os.path.join(self.resolved, rel)
            return path if os.path.isfile(path) else None
        return _hub_file(self.resolved, rel, self.download)

    def json(self, rel: str, kind=(dict,)):
        """The parsed file, or None when missing; a corrupt file is noted and gives None."""
        path = self.local(rel)
        if path is None:
            return None
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError, UnicodeDecodeError) as e:
            self.problems.append(f"{rel} is not valid JSON ({str(e).splitlines()[0]})")
            return None
        if not isinstance(data, kind):
            want = " or ".join("an object" if k is dict else "a list" for k in kind)
            self.problems.append(f"{rel} is not {want} of settings")
            return None
        return data


def _hub_file(repo_id: str, rel: str, download: bool) -> str | None:
    """Local path of ``rel`` in Hub model ``repo_id``: the cache, else (if allowed and the
    Hub answers) a download; None when the file is not there or cannot be had."""
    try:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache
    except ImportError:  # pragma: no cover - a transformers dependency
        return None
    try:
        cached = try_to_load_from_cache(repo_id, rel)
    except Exception:  # a malformed id or cache: treat as "not set"
        cached = None
    if isinstance(cached, str):
        return cached
    if cached is not None or not download:  # cached "does not exist" marker, or offline use
        return None
    from .models import _hub_reachable

    if not _hub_reachable():
        return None
    try:
        return hf_hub_download(repo_id, rel)
    except Exception:  # missing file, gated repo, network drop: the setting is just unknown
        return None


def folder_settings(model=None, *, download: bool = True, warn: bool = True) -> FolderSettings:
    """Read the sentence-transformers settings of ``model``'s folder.

    Parameters
    ----------
    model : str, PathLike or None, default=None
        As for :func:`bertkit.models.resolve_model` (None = the bundled all-MiniLM-L6-v2).
    download : bool, default=True
        For a Hub id whose config files are not in the local cache, fetch them (a few KB)
        when the Hub can be reached; False only looks in the cache.
    warn : bool, default=True
        Emit a ``UserWarning`` for each present but unreadable config file (the file is
        ignored either way and listed in ``FolderSettings.problems``).

    Returns
    -------
    FolderSettings
        All None for a plain Hugging Face folder (no ``modules.json``).

    Raises
    ------
    ModelLoadError
        Only for a bad ``model`` itself (see ``resolve_model``); never for its ST configs.
    """
    from .models import resolve_model

    files = _Files(resolve_model(model), download)
    modules = files.json("modules.json", kind=(list,))
    # A corrupt modules.json: still honour the root sentence_bert_config.json.
    corrupt = modules is None and files.local("modules.json") is not None
    found = _read_settings(files, modules or [], with_root_transformer=corrupt)
    if warn:
        for problem in files.problems:
            warnings.warn(f"Model '{files.resolved}': {problem}; bertkit ignores it and uses "
                          "its own defaults for what it would have set.", UserWarning, stacklevel=2)
    return FolderSettings(**found, problems=list(files.problems))


def _read_settings(files: _Files, modules: list, with_root_transformer: bool) -> dict:
    """Walk the module chain and collect settings, sources and unsupported parts."""
    out: dict = {"max_length": None, "pooling": None, "normalize": None, "source": {},
                 "unsupported": []}
    if with_root_transformer:
        _read_transformer(files, "", out)
        return out
    if not modules:
        return out
    seen_pooling = False
    out["normalize"], out["source"]["normalize"] = False, "modules.json"
    for i, entry in enumerate(modules):
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
            files.problems.append(f"modules.json entry {i} has no module type")
            continue
        kind = entry["type"].rsplit(".", 1)[-1]
        path = str(entry.get("path") or "")
        where = f"{kind} module" + (f" ({path})" if path else "")
        if kind == "Transformer" and i == 0:
            _read_transformer(files, path, out)
        elif kind == "Pooling" and not seen_pooling:
            seen_pooling = True
            _read_pooling(files, path, out)
        elif kind == "Normalize":
            cfg = files.json(_join(path, "config.json")) if path else None
            target = (cfg or {}).get("module_input_name", "sentence_embedding")
            if target == "sentence_embedding":
                out["normalize"] = True
            else:
                out["unsupported"].append(f"{where} on {target}")
        elif kind not in _NO_EFFECT:
            out["unsupported"].append(where)
    if not seen_pooling:
        out["unsupported"].append("no Pooling module (sentence-transformers makes no "
                                  "mean/cls/max sentence vector)")
    _read_prompt(files, out)
    return out


def _join(folder: str, name: str) -> str:
    return f"{folder.strip('/')}/{name}" if folder.strip("/") else name


def _read_transformer(files: _Files, path: str, out: dict) -> None:
    """max_length and do_lower_case from sentence_bert_config.json (or a legacy name)."""
    for name in _SBERT_CONFIGS:
        rel = _join(path, name)
        cfg = files.json(rel)
        if cfg is not None:
            break
    else:
        return
    # sentence-transformers: processor_kwargs (legacy tokenizer_args) win over max_seq_length.
    kwargs = cfg.get("processor_kwargs") or cfg.get("tokenizer_args") or {}
    length = kwargs.get("model_max_length") if isinstance(kwargs, dict) else None
    if length is None:
        length = cfg.get("max_seq_length")
    if isinstance(length, int) and not isinstance(length, bool) and length > 0:
        out["max_length"], out["source"]["max_length"] = length, rel
    if cfg.get("do_lower_case") is True:
        tok = files.json(_join(path, "tokenizer_config.json")) or {}
        if tok.get("do_lower_case") is not True:  # else the tokenizer lowercases already
            out["unsupported"].append(f"do_lower_case in {rel} (sentence-transformers lowercases "
                                      "the text; this tokenizer does not)")


def _read_pooling(files: _Files, path: str, out: dict) -> None:
    """pooling from the Pooling module's config.json (new or legacy keys)."""
    rel = _join(path, "config.json")
    cfg = files.json(rel) if path else None
    if cfg is None:
        if not path or files.local(rel) is None:  # (a corrupt file is already noted)
            files.problems.append(f"{rel} (the Pooling module's settings) is missing")
        return
    if "pooling_mode" in cfg:
        modes = cfg["pooling_mode"]
        modes = [modes] if isinstance(modes, str) else list(modes or [])
    else:
        modes = [m for k, m in _LEGACY_POOLING_KEYS.items() if cfg.get(k)] or ["mean"]
    if len(modes) == 1 and modes[0] in _POOLING_NAMES:
        out["pooling"], out["source"]["pooling"] = _POOLING_NAMES[modes[0]], rel
    elif len(modes) == 1:
        out["unsupported"].append(f"{modes[0]} pooling ({rel})")
    else:
        out["unsupported"].append(f"{'+'.join(map(str, modes))} pooling, concatenated ({rel})")


def _read_prompt(files: _Files, out: dict) -> None:
    """A default prompt is text sentence-transformers prepends to every input."""
    cfg = files.json("config_sentence_transformers.json") or {}
    name = cfg.get("default_prompt_name")
    prompts = cfg.get("prompts") if isinstance(cfg.get("prompts"), dict) else {}
    if name and prompts.get(name):
        out["unsupported"].append(f"default prompt '{name}' ({prompts[name]!r}, prepended to "
                                  "every text by sentence-transformers)")


def resolve_encode_defaults(settings: FolderSettings | None, *, max_length: int | None = None,
                            pooling: str | None = None, normalize: bool | None = None,
                            model_limit: int | None = None) -> dict:
    """Pick ``max_length``, ``pooling`` and ``normalize`` for an encode call.

    Explicit arguments win; else the folder's settings; else bertkit's fallbacks (mean
    pooling, no normalizing, ``model_limit``). A folder ``max_length`` above
    ``model_limit`` (the model's position limit, :func:`bertkit.models.max_length_of`) is
    capped to it.

    Returns
    -------
    dict with ``max_length`` (int or None when neither folder nor ``model_limit`` says),
    ``pooling``, ``normalize``, ``source`` (setting -> ``"argument"``,
    ``"sentence-transformers config (<file>)"``, ``"model limit"`` or ``"bertkit default"``) and
    ``unsupported`` (the folder's, to warn about once).
    """
    settings = settings or FolderSettings()
    folder_src = settings.source
    given = {"max_length": max_length, "pooling": pooling, "normalize": normalize}
    fallbacks = {"max_length": model_limit, "pooling": "mean", "normalize": False}
    out: dict = dict.fromkeys(given)
    out.update(source={}, unsupported=list(settings.unsupported))
    for key, value in given.items():
        folder_value = getattr(settings, key)
        if value is not None:
            out[key], out["source"][key] = value, "argument"
        elif folder_value is not None:
            if key == "max_length" and model_limit is not None:
                folder_value = min(folder_value, model_limit)
            out[key] = folder_value
            out["source"][key] = f"{ST_SOURCE} ({folder_src.get(key, 'modules.json')})"
        elif key == "max_length" and model_limit is not None:
            out[key], out["source"][key] = model_limit, "model limit"
        else:
            out[key], out["source"][key] = fallbacks[key], "bertkit default"
    return out
