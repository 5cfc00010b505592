"""The lean BERT forward: only for plain BertModel, checked against the model at build,
falls back with one warning when it does not match."""

import pytest
import torch

from bertkit import fastbert
from bertkit.models import load_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def model(tiny_model_dir):
    net, _ = load_model(tiny_model_dir, device="cpu")
    return net


def test_only_for_plain_bert_in_eval_mode(model):
    assert fastbert.FastBert.supports(model)
    model.train()
    assert not fastbert.FastBert.supports(model)
    assert fastbert.build(model) is None


def test_build_matches_the_model_on_padded_batches(model):
    fast = fastbert.build(model)
    assert fast is not None
    ids = torch.tensor([[2, 40, 41, 42, 3], [2, 50, 3, 0, 0]])
    mask = (ids != 0).long()
    with torch.inference_mode():
        ref = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        got = fast(ids, mask, all_states=True)
    for r, g in zip(ref, got):
        torch.testing.assert_close(g[0], r[0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(g[1, :3], r[1, :3], rtol=1e-4, atol=1e-5)


def test_padding_is_skipped_and_left_as_zeros(model):
    """The products run on real tokens only: each row equals that text run alone, and the
    padding positions of every state are zeros."""
    fast = fastbert.build(model)
    ids = torch.tensor([[2, 40, 41, 42, 43, 3], [2, 50, 3, 0, 0, 0], [2, 60, 61, 3, 0, 0]])
    mask = (ids != 0).long()
    with torch.inference_mode():
        got = fast(ids, mask, all_states=True)
        for row in range(len(ids)):
            n = int(mask[row].sum())
            alone = fast(ids[row:row + 1, :n], None, all_states=True)
            for g, a in zip(got, alone):
                torch.testing.assert_close(g[row, :n], a[0], rtol=1e-4, atol=1e-5)
                assert not g[row, n:].any()


def test_a_mismatch_falls_back_with_one_warning(model, monkeypatch):
    monkeypatch.setattr(fastbert, "_warned", False)
    real_call = fastbert.FastBert.__call__

    def wrong(self, input_ids, mask=None, all_states=False):
        return [s * 1.01 for s in real_call(self, input_ids, mask, all_states)]

    monkeypatch.setattr(fastbert.FastBert, "__call__", wrong)
    with pytest.warns(RuntimeWarning, match="differs from the model's own forward"):
        assert fastbert.build(model) is None


def test_changed_internals_fall_back(model, monkeypatch):
    monkeypatch.setattr(fastbert, "_warned", False)
    del model.embeddings.LayerNorm  # as if a newer transformers renamed it
    monkeypatch.setattr(fastbert.FastBert, "supports", staticmethod(lambda m: True))
    with pytest.warns(RuntimeWarning, match="AttributeError"):
        assert fastbert.build(model) is None
