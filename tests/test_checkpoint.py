"""Training checkpoints hold no pickle: a crafted file in a run folder never runs code on
``--resume``, a damaged checkpoint is refused with one line, and the format round-trips."""

import json
import os
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch

from bertkit import Classifier
from bertkit.checkpoint import optimizer_from_files, optimizer_to_files, rng_state, set_rng_state
from bertkit.errors import InputError

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
TOPICS = os.path.join(FIX, "train_topics.csv")
SRC = Path(__file__).resolve().parent.parent / "src" / "bertkit"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Payload:
    """Unpickling this creates ``marker`` (as the issue's ``os.system`` payload would run)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def payload_bytes(marker) -> bytes:
    return pickle.dumps({"state": Payload(marker)})


def train_tiny(model, out, **kw):
    settings = dict(model=model, epochs=2, batch_size=8, lr=5e-4, precision="fp32", refit=False,
                    device="cpu", verbose=False, save_steps=2)
    settings.update(kw)
    return Classifier.train(TOPICS, output=out, **settings)


@pytest.fixture(scope="module")
def interrupted(tiny_model_dir, tmp_path_factory):
    """A run folder left by a run killed after its step-4 checkpoint."""
    out = tmp_path_factory.mktemp("killed") / "run"

    def stop(state):
        if state.global_step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_tiny(tiny_model_dir, out, on_step=stop)
    assert (out / "checkpoints" / "last" / "checkpoint.json").is_file()
    return out


def test_payload_really_runs_when_unpickled(tmp_path):
    """The test payload is live: plain unpickling (what accelerate's load_state does with
    weights_only=False) creates the marker, so its absence below means something."""
    marker = tmp_path / "ran"
    pickle.loads(payload_bytes(marker))
    assert marker.exists()


def _copy_run(interrupted, dest) -> Path:
    shutil.copytree(interrupted, dest)
    return dest / "checkpoints" / "last"


ACCELERATE_NAMES = ["custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin",
                    "scheduler.bin", "pytorch_model.bin", "scaler.pt", "sampler.bin"]


def test_no_file_of_a_crafted_checkpoint_runs_code(interrupted, tiny_model_dir, tmp_path):
    names = sorted(p.name for p in (interrupted / "checkpoints" / "last").iterdir())
    assert {"model.safetensors", "optimizer.safetensors", "optimizer.json", "scheduler.json",
            "state.json", "rng_0.json", "checkpoint.json"} <= set(names)
    for i, name in enumerate(names + ACCELERATE_NAMES + ["ALL"]):
        last = _copy_run(interrupted, tmp_path / f"run{i}")
        marker = tmp_path / f"marker{i}"
        targets = names + ACCELERATE_NAMES if name == "ALL" else [name]
        for target in targets:
            (last / target).write_bytes(payload_bytes(marker))
        if name in ACCELERATE_NAMES:
            # an accelerate-format folder: ours removed, only pickles left
            for own in names:
                (last / own).unlink()
        with pytest.raises(InputError, match="cannot be used.*--overwrite"):
            train_tiny(tiny_model_dir, tmp_path / f"run{i}", resume=True)
        assert not marker.exists(), f"code ran from a crafted {name}"


def test_payload_with_a_forged_manifest_still_runs_nothing(interrupted, tiny_model_dir, tmp_path):
    """Even with the checksums updated to match, every file is parsed as safetensors or
    JSON: a pickle inside is an error, never code."""
    from bertkit.checkpoint import seal_checkpoint

    for name in ("state.json", "optimizer.safetensors", "rng_0.json", "model.safetensors"):
        last = _copy_run(interrupted, tmp_path / name)
        marker = tmp_path / f"marker-{name}"
        (last / name).write_bytes(payload_bytes(marker))
        seal_checkpoint(last)
        with pytest.raises(InputError, match="cannot be used"):
            train_tiny(tiny_model_dir, tmp_path / name, resume=True)
        assert not marker.exists()


def test_damaged_file_is_refused_in_one_line(interrupted, tiny_model_dir, tmp_path):
    last = _copy_run(interrupted, tmp_path / "r")
    data = (last / "optimizer.safetensors").read_bytes()
    (last / "optimizer.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="optimizer.safetensors does not match its recorded checksum"):
        train_tiny(tiny_model_dir, tmp_path / "r", resume=True)


def test_state_json_with_unknown_fields_is_refused(interrupted, tiny_model_dir, tmp_path):
    from bertkit.checkpoint import seal_checkpoint

    last = _copy_run(interrupted, tmp_path / "r")
    state = json.loads((last / "state.json").read_text())
    state["__class__"] = "x"
    (last / "state.json").write_text(json.dumps(state))
    seal_checkpoint(last)
    with pytest.raises(InputError, match="__class__"):
        train_tiny(tiny_model_dir, tmp_path / "r", resume=True)


def test_resume_from_the_untouched_copy_still_works(interrupted, tiny_model_dir, tmp_path):
    _copy_run(interrupted, tmp_path / "r")
    resumed = train_tiny(tiny_model_dir, tmp_path / "r", resume=True)
    clean = train_tiny(tiny_model_dir, tmp_path / "clean")
    assert resumed.training_result["history"][-1]["val_loss"] == clean.training_result["history"][-1]["val_loss"]


def test_optimizer_state_round_trips_exactly():
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.8, 0.95))
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    tensors, meta = optimizer_to_files(opt.state_dict())
    json.dumps(meta)  # JSON-able
    back = optimizer_from_files(tensors, json.loads(json.dumps(meta)))
    ref = opt.state_dict()
    assert back["param_groups"] == ref["param_groups"]
    for pid, per_param in ref["state"].items():
        for name, value in per_param.items():
            assert torch.equal(back["state"][pid][name], value)


def test_rng_state_round_trips():
    import random

    import numpy as np

    saved = json.loads(json.dumps(rng_state()))
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(saved)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_no_unsafe_loader_in_the_code_base():
    """No pickle, no accelerate load_state, torch.load only with weights_only=True."""
    for path in SRC.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\bpickle\.loads?\(|\bload_state\(|allow_pickle\s*=\s*True", text), path
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (path, call)
