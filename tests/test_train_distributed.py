"""Multi-process training: the batch sharding and loss that make N processes step like one,
and two real CPU processes (gloo) under `accelerate launch` on the tiny model: the saved
model, validation gathered once per example, one set of outputs, exact --resume after a
kill -9, and a clear refusal to resume with another number of processes."""

import csv
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from bertkit import Classifier
from bertkit.batching import LengthGroupedBatches, ShardedBatches, shard_batch
from bertkit.errors import InputError
from bertkit.train_loop import shard_loss

FIX = os.path.join(os.path.dirname(__file__), "fixtures")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------- sharding


def test_every_process_takes_a_part_of_every_batch():
    lengths = np.random.default_rng(0).integers(3, 60, 64)
    batches = LengthGroupedBatches(lengths, 7, seed=3)  # 9 batches of 7 and one of 1
    shards = [ShardedBatches(batches, rank, 2) for rank in range(2)]
    for epoch in range(2):
        for s in shards:
            s.set_epoch(epoch)
        parts = [list(s) for s in shards]
        assert len(parts[0]) == len(parts[1]) == len(batches.batches(epoch)) == 10
        for whole, p0, p1 in zip(batches.batches(epoch), *parts):
            if len(whole) == 1:  # a part of its own for process 0, a weightless stand-in for 1
                assert p0 == whole and p1 == [-1 - whole[0]]
            else:
                assert sorted(p0 + p1) == sorted(whole) and abs(len(p0) - len(p1)) <= 1
    shards[1].set_epoch(1, start=4)  # a resumed run skips what it had trained on
    assert list(shards[1]) == [shard_batch(b, 1, 2) for b in batches.batches(1)[4:]]
    assert len(shards[1]) == 6


@pytest.mark.parametrize("class_weight", [None, torch.tensor([0.5, 1.0, 2.5])])
@pytest.mark.parametrize("size", [5, 1])
def test_split_batch_gives_the_one_process_gradient(tiny_model_dir, class_weight, size):
    """The mean of two processes' gradients (what DDP makes) equals one process's gradient
    on the whole batch, for uneven parts, class weights and a stand-in row."""
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=3).eval()
    ids = torch.randint(5, 60, (size, 9))
    labels = torch.tensor([0, 2, 1, 2, 2][:size])
    weight = class_weight[labels].sum().item() if class_weight is not None else float(size)

    def loss_of(rows, row_labels, index, world):
        batch = {"labels": row_labels, "index": torch.tensor(index)}
        return shard_loss("single-label", model(input_ids=ids[rows]).logits, batch, class_weight,
                          weight, world)

    def grads(rows, row_labels, world, index=None):
        model.zero_grad()
        loss_of(rows, row_labels, list(rows) if index is None else index, world).backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    whole = grads(list(range(size)), labels, 1)
    expected = torch.nn.functional.cross_entropy(model(input_ids=ids).logits, labels, weight=class_weight)
    assert loss_of(list(range(size)), labels, list(range(size)), 1).item() == \
        pytest.approx(expected.item(), rel=1e-6)
    parts = []
    for rank in range(2):
        rows = shard_batch(list(range(size)), rank, 2)
        real = [r if r >= 0 else -1 - r for r in rows]  # a stand-in: a real row, index -1
        parts.append(grads(real, labels[real], 2, index=[r if r >= 0 else -1 for r in rows]))
    torch.testing.assert_close((parts[0] + parts[1]) / 2, whole, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------- two processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny model without dropout (so one process and two compute the same numbers), 64
    training rows (batches of 7: the last holds 1 row) and 23 validation rows (uneven
    shares of the validation batches), and an accelerate config file for 2 processes."""
    from conftest import build_tiny_model
    from transformers import AutoConfig

    root = tmp_path_factory.mktemp("dist")
    model = build_tiny_model(root / "model", num_labels=3)
    config = AutoConfig.from_pretrained(model)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    config.save_pretrained(model)
    with open(os.path.join(FIX, "train_topics.csv"), encoding="utf-8") as f:
        rows = list(csv.reader(f))
    for name, part in (("train.csv", rows[1:65]), ("val.csv", rows[65:88])):
        with open(root / name, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([rows[0]] + part)
    (root / "accelerate.yaml").write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\nnum_machines: 1\n"
        "num_processes: 2\nmixed_precision: 'no'\ndynamo_backend: 'NO'\nuse_cpu: false\n")
    return root


SETTINGS = ["--epochs", "2", "--batch-size", "7", "--lr", "1e-3", "--precision", "fp32",
            "--device", "cpu", "--save-steps", "3", "--json"]


def _launch(root, out, *extra):
    """`accelerate launch` (torchrun underneath; gloo on the CPU) of `python -m bertkit train`."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(root / "accelerate.yaml"),
           "--main_process_port", str(_free_port()), "-m", "bertkit", "train",
           "--train", str(root / "train.csv"), "--validation", str(root / "val.csv"),
           "--model", str(root / "model"), "--output", str(out), *SETTINGS, *extra]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", BERTKIT_THREADS="1",
               PYTHONUNBUFFERED="1")
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc):
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out), err  # exactly one JSON document: one process reported


def _numbers(result):
    keys = ("train_loss", "val_loss", "val_accuracy", "val_mcc", "val_f1_macro")
    return [[row[k] for k in keys] for row in result["history"]]


@pytest.mark.slow
def test_two_processes_train_export_and_resume(setup, tmp_path):
    import psutil

    root = setup
    two, err = _finish(_launch(root, tmp_path / "two"))
    assert err.count("Training on 2 processes") == 1 and err.count("epoch 2/2") == 1
    out = tmp_path / "two"
    args = json.loads((out / "training_args.json").read_text(encoding="utf-8"))
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert args["num_processes"] == 2 and args["n_validation"] == 23
    assert metrics["validation"]["n"] == 23 == np.sum(metrics["validation"]["confusion_matrix"])
    assert sorted(os.listdir(out)) == sorted(["config.json", "model.safetensors", "tokenizer.json",
                                              "tokenizer_config.json", "training_args.json", "metrics.json",
                                              "stats.csv", "steps.csv", "learning_curves.png",
                                              "confusion_matrix.png"])
    texts = ["the team won the match", "we ate sweet food in the rain"]
    assert Classifier(out, device="cpu").predict(texts)[0]["label"] in ("food", "sky", "sport")

    # one process, same settings: the same batches and steps, so the same numbers
    one = Classifier.train(str(root / "train.csv"), validation=str(root / "val.csv"), output=tmp_path / "one",
                           model=str(root / "model"), epochs=2, batch_size=7, lr=1e-3, precision="fp32",
                           device="cpu", save_steps=3, verbose=False).training_result
    np.testing.assert_allclose(_numbers(two), _numbers(one), rtol=1e-4, atol=1e-5)
    assert two["metrics"]["confusion_matrix"] == one["metrics"]["confusion_matrix"]
    np.testing.assert_allclose(Classifier(out, device="cpu").predict_proba(texts),
                               Classifier(tmp_path / "one", device="cpu").predict_proba(texts), atol=1e-4)

    # kill -9 of the launcher and both workers after the first checkpoint
    killed = tmp_path / "killed"
    proc = _launch(root, killed)
    ckpt = killed / "checkpoints" / "last"
    deadline = time.time() + 300
    while not (ckpt / "checkpoint.json").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    victims = psutil.Process(proc.pid).children(recursive=True) + [psutil.Process(proc.pid)]
    for p in victims:
        p.kill()
    proc.communicate()
    psutil.wait_procs(victims, timeout=30)
    assert sorted(f.name for f in ckpt.glob("rng_*.json")) == ["rng_0.json", "rng_1.json"]
    assert not (killed / "metrics.json").exists()

    with pytest.raises(InputError, match="2 training process.*--num_processes 2"):
        Classifier.train(str(root / "train.csv"), validation=str(root / "val.csv"), output=killed,
                         model=str(root / "model"), epochs=2, batch_size=7, lr=1e-3, precision="fp32",
                         device="cpu", save_steps=3, resume=True, verbose=False)
    resumed, err = _finish(_launch(root, killed, "--resume"))
    assert "Resuming from" in err
    assert _numbers(resumed) == _numbers(two)  # exact: same batches, same per-process state
    assert resumed["metrics"] == two["metrics"]
    assert not (killed / "checkpoints").exists()
