"""Training checkpoints without pickle.

A checkpoint folder is something a user may receive from someone else, so nothing in it may
run code when it is read. accelerate's ``save_state``/``load_state`` store the RNG states
and registered objects as pickles and read them back with torch.load, weights_only off:
a crafted file there runs as the user on ``--resume``. bertkit therefore writes and reads
its own format, made only of safetensors (tensors) and JSON (everything else)::

    checkpoint.json        format version, the files below and their sha256
    model.safetensors      the model's weights (unwrapped)
    optimizer.safetensors  the optimizer's per-parameter tensors (AdamW moments, steps)
    optimizer.json         the optimizer's parameter groups (lr, betas, ...)
    scheduler.json         the learning-rate schedule's position
    scaler.json            the fp16 loss scaler, when there is one
    state.json             the loop's own state (epoch, step, history, best score)
    rng_<process>.json     each process's python, numpy and torch random states, and under
                           "process" its own part of the loop's state (the epoch's running
                           loss sums: every process of a multi-process run has its own)

Reading verifies every file against the sha256 in ``checkpoint.json`` before parsing it,
so a damaged or edited checkpoint is refused with one line instead of half-loaded. Files
of any other name in the folder (accelerate's ``*.pkl``, ``*.bin``) are never opened.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import numpy as np

from .errors import InputError

FORMAT = "bertkit-checkpoint"
VERSION = 1


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_json(path: Path, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())


# ----------------------------------------------------------------------------------------
# pieces: each is (to JSON/tensors) and (back from them)


def optimizer_to_files(state: dict) -> tuple[dict, dict]:
    """Split ``optimizer.state_dict()`` into tensors (for safetensors) and JSON."""
    import torch

    tensors, scalars = {}, {}
    for pid, per_param in state["state"].items():
        for name, value in per_param.items():
            key = f"{pid}.{name}"
            if isinstance(value, torch.Tensor):
                tensors[key] = value.detach().cpu().contiguous()
            else:  # plain numbers (older torch keeps ``step`` as a float)
                scalars[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
              for g in state["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_files(tensors: dict, meta: dict) -> dict:
    """Rebuild an ``optimizer.state_dict()`` from :func:`optimizer_to_files`'s output."""
    state: dict = {}
    for key, value in list(tensors.items()) + list(meta.get("scalars", {}).items()):
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()}
              for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def rng_state() -> dict:
    """Python, numpy and torch (CPU and CUDA) random states as JSON-able lists."""
    import torch

    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    out = {"python": [version, list(internal), gauss],
           "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
           "torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available():
        out["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return out


def set_rng_state(state: dict) -> None:
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


# ----------------------------------------------------------------------------------------
# the folder


def save_checkpoint(folder, *, model, optimizer, scheduler, train_state: dict, scaler=None,
                    process_index: int = 0, is_main: bool = True, process_state: dict | None = None) -> None:
    """Write a checkpoint into ``folder`` (which the caller then renames into place).

    Every process writes its own ``rng_<process_index>.json`` (its random states and
    ``process_state``, the JSON-able entries of ``train_state`` that differ by process); the
    main process writes the rest and, last, ``checkpoint.json`` with the sha256 of every
    file. Call it on every process with a barrier after it (``accelerator.wait_for_everyone()``).
    """
    from safetensors.torch import save_file, save_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / f"rng_{process_index}.json", {**rng_state(), "process": process_state or {}})
    if not is_main:
        return
    save_model(model, str(folder / "model.safetensors"))  # handles tied weights
    tensors, meta = optimizer_to_files(optimizer.state_dict())
    save_file(tensors, str(folder / "optimizer.safetensors"))
    _write_json(folder / "optimizer.json", meta)
    _write_json(folder / "scheduler.json", scheduler.state_dict())
    if scaler is not None:
        _write_json(folder / "scaler.json", scaler.state_dict())
    _write_json(folder / "state.json", train_state)


def seal_checkpoint(folder) -> None:
    """Record every file's sha256 in ``checkpoint.json`` (main process, after all wrote)."""
    folder = Path(folder)
    files = {p.name: _sha256(p) for p in sorted(folder.iterdir())
             if p.is_file() and p.name != "checkpoint.json"}
    _write_json(folder / "checkpoint.json", {"format": FORMAT, "version": VERSION, "files": files})


def _damaged(folder: Path, why: str) -> InputError:
    return InputError(f"The checkpoint in '{folder}' cannot be used ({why}); pass --overwrite "
                      "to start the run over.")


def _verified(folder: Path) -> dict:
    """The manifest, after checking every listed file's sha256 (nothing parsed before)."""
    manifest_path = folder / "checkpoint.json"
    if not manifest_path.is_file():
        if any(folder.glob("*.pkl")) or any(folder.glob("*.bin")):
            raise _damaged(folder, "it is in accelerate's pickle format, which bertkit never "
                                   "loads because a pickle can run code")
        raise _damaged(folder, "checkpoint.json is missing")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
        ok = manifest.get("format") == FORMAT and isinstance(files, dict)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        ok = False
    if not ok:
        raise _damaged(folder, "checkpoint.json is not a bertkit checkpoint manifest")
    if manifest.get("version") != VERSION:
        raise _damaged(folder, f"format version {manifest.get('version')!r}, this bertkit reads {VERSION}")
    for name, digest in files.items():
        path = folder / name
        if os.path.basename(name) != name or not path.is_file():
            raise _damaged(folder, f"{name} is missing")
        if _sha256(path) != digest:
            raise _damaged(folder, f"{name} does not match its recorded checksum")
    return manifest


def load_checkpoint(folder, *, model, optimizer, scheduler, scaler=None,
                    process_index: int = 0) -> dict:
    """Restore what :func:`save_checkpoint` wrote into the given objects; returns the
    loop's state dict (``state.json``, updated with this process's own entries). Raises :class:`InputError` (one line) for a damaged, edited or
    foreign checkpoint; never unpickles anything."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, load_model

    folder = Path(folder)
    files = _verified(folder)["files"]
    needed = ["model.safetensors", "optimizer.safetensors", "optimizer.json", "scheduler.json",
              "state.json", f"rng_{process_index}.json"] + (["scaler.json"] if scaler is not None else [])
    missing = [name for name in needed if name not in files]
    if missing:
        raise _damaged(folder, f"{', '.join(missing)} missing")
    try:
        load_model(model, str(folder / "model.safetensors"), strict=True)
        optimizer.load_state_dict(optimizer_from_files(
            load_file(str(folder / "optimizer.safetensors")),
            json.loads((folder / "optimizer.json").read_text(encoding="utf-8"))))
        scheduler.load_state_dict(json.loads((folder / "scheduler.json").read_text(encoding="utf-8")))
        if scaler is not None:
            scaler.load_state_dict(json.loads((folder / "scaler.json").read_text(encoding="utf-8")))
        rng = json.loads((folder / f"rng_{process_index}.json").read_text(encoding="utf-8"))
        set_rng_state(rng)
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        state.update(rng.get("process", {}))
    except (SafetensorError, ValueError, KeyError, TypeError, RuntimeError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise _damaged(folder, first[:200]) from e
    if not isinstance(state, dict):
        raise _damaged(folder, "state.json is not an object")
    return state
