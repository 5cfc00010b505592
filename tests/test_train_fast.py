"""The [CLS]-only last layer used in training (bertkit.train_fast): same logits and the
same gradients as the Hugging Face forward, used by training, undone afterwards."""

import json
from pathlib import Path

import pytest
import torch

from bertkit.train_fast import cls_only_last_layer, undo_cls_only

from conftest import build_tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _classifier(tmp_path, dropout=0.0):
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(build_tiny_model(tmp_path / "m", num_labels=3),
                                                          hidden_dropout_prob=dropout,
                                                          attention_probs_dropout_prob=dropout)
    return model


def _batch():
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 60, (4, 11), generator=gen)
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    mask[2, 3:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def _logits_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    logits = model(**batch).logits
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 1])).backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_training_pass_has_the_same_logits_and_gradients(tmp_path):
    model = _classifier(tmp_path)  # no dropout: both passes are deterministic
    model.train()
    batch = _batch()
    full_logits, full_grads = _logits_and_grads(model, batch)
    assert cls_only_last_layer(model)
    hidden = model.bert(**batch).last_hidden_state
    assert hidden.shape[1] == 1  # the last layer really computed the [CLS] row only
    logits, grads = _logits_and_grads(model, batch)
    torch.testing.assert_close(logits, full_logits, rtol=1e-5, atol=1e-6)
    # the last layer's query gets gradient from row 0 only, as in the full pass
    assert set(grads) == set(full_grads)
    for name, g in full_grads.items():
        torch.testing.assert_close(grads[name], g, rtol=1e-4, atol=1e-6, msg=name)


def test_eval_mode_and_undo_give_the_models_own_pass(tmp_path):
    model = _classifier(tmp_path, dropout=0.1)
    assert cls_only_last_layer(model)
    model.eval()
    with torch.no_grad():
        assert model.bert(**_batch()).last_hidden_state.shape[1] == 11
    undo_cls_only(model)
    model.train()
    assert model.bert(**_batch()).last_hidden_state.shape[1] == 11
    assert "forward" not in vars(model.bert.encoder.layer[-1])


def test_other_models_are_left_alone(tmp_path):
    from transformers import BertModel

    base = BertModel.from_pretrained(build_tiny_model(tmp_path / "b"))
    assert not cls_only_last_layer(base)
    assert "forward" not in vars(base.encoder.layer[-1])


def test_training_uses_it_and_hands_back_the_plain_model(tiny_model_dir, tmp_path):
    from bertkit import Classifier

    topics = Path(__file__).parent / "fixtures" / "train_topics.csv"
    Classifier.train(topics, output=tmp_path / "out", model=tiny_model_dir, epochs=1, batch_size=8,
                           lr=5e-4, precision="fp32", device="cpu", verbose=False)
    args = json.loads((tmp_path / "out" / "training_args.json").read_text())
    assert args["cls_only_last_layer"] is True


_FAULTS = """
import ctypes, resource, sys
from bertkit.train_fast import reuse_large_blocks
if sys.argv[1] == "reuse":
    assert reuse_large_blocks()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
n = 44_000_000  # a 44 MB block, over glibc's largest default heap block
def faults_of_one_big_block():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    p = libc.malloc(n)
    ctypes.memset(p, 0, n)
    libc.free(ctypes.c_void_p(p))
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_one_big_block()
print(faults_of_one_big_block())
"""


def test_large_blocks_are_reused_without_page_faults():
    """In a fresh process (as `bertkit train` sets it; the test process's heap, shaped by every
    earlier test, decides by itself where a block lands): with the setting, a second 44 MB
    malloc reuses the first one's pages; without it, each is mmapped and faulted afresh.
    (torch's own 64-byte-aligned blocks do not always get this reuse: see the docstring.)"""
    import platform
    import subprocess
    import sys

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")

    def faults(mode):
        out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
        return int(out.stdout.split()[-1])

    assert faults("reuse") < 1000
    assert faults("default") > 5000  # ~10,700 pages
