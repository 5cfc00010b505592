"""Attention weights: equal to the Hugging Face model's own eager attentions."""

import numpy as np
import pytest

from bertkit.attention import attention_weights, plot_attention
from bertkit.errors import InputError


@pytest.fixture(scope="module")
def tiny_att(tiny_model_dir):
    return attention_weights("the cat sat on the mat", "the dog ran", model=tiny_model_dir,
                             device="cpu")


def _hf_eager_attentions(model_dir, text, pair=None):
    """Reference: transformers' BertModel loaded with eager attention, called directly."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    net = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    batch = tok(text, pair, return_tensors="pt")
    with torch.no_grad():
        out = net(**batch, output_attentions=True)
    return torch.stack(out.attentions)[:, 0].numpy()  # (layers, heads, T, T)


def test_weights_equal_hf_eager_and_rows_sum_to_one(tiny_att, tiny_model_dir):
    ref = _hf_eager_attentions(tiny_model_dir, "the cat sat on the mat", "the dog ran")
    assert tiny_att.weights.shape == ref.shape == (2, 4, 12, 12)
    np.testing.assert_allclose(tiny_att.weights, ref, atol=1e-6)
    np.testing.assert_allclose(tiny_att.weights.sum(-1), 1.0, atol=1e-5)
    assert tiny_att.tokens[0] == "[CLS]" and tiny_att.tokens.count("[SEP]") == 2
    assert tiny_att.token_type_ids == [0] * 8 + [1] * 4
    assert tiny_att.special == [True] + [False] * 6 + [True] + [False] * 3 + [True]


def test_select_layers_heads_and_specials(tiny_att):
    w = tiny_att.weights
    m, tokens = tiny_att.select(layer=-1, head="mean")
    np.testing.assert_allclose(m, w[1].mean(axis=0), atol=1e-7)
    assert tokens == tiny_att.tokens
    m1, _ = tiny_att.select(layer=1, head=3)  # heads count from 1, like layers
    np.testing.assert_array_equal(m1, w[0, 2])
    np.testing.assert_array_equal(tiny_att.select(layer=2, head=-1)[0], w[1, 3])
    np.testing.assert_array_equal(tiny_att.select(layer=2, head=4)[0], w[1, 3])
    grid, _ = tiny_att.select(layer=2, head="all")
    assert grid.shape == (4, 12, 12)
    inner, inner_tokens = tiny_att.select(layer=2, head=1, exclude_special=True)
    keep = [i for i, s in enumerate(tiny_att.special) if not s]
    np.testing.assert_array_equal(inner, w[1, 0][np.ix_(keep, keep)])
    with pytest.warns(DeprecationWarning, match="exclude_special"):
        old, _ = tiny_att.select(layer=2, head=1, special=False)  # the old spelling, one release
    np.testing.assert_array_equal(old, inner)
    assert "[CLS]" not in inner_tokens and "[SEP]" not in inner_tokens and len(inner_tokens) == 9


def test_bad_layer_and_head_name_the_range(tiny_att):
    with pytest.raises(InputError, match="layer 0 is the embedding output"):
        tiny_att.select(layer=0)
    with pytest.raises(InputError, match=r"1\.\.2"):
        tiny_att.select(layer=3)
    with pytest.raises(InputError, match=r"1\.\.4"):
        tiny_att.select(head=5)
    with pytest.raises(InputError, match=r"1\.\.4"):
        tiny_att.select(head=0)
    with pytest.raises(InputError, match="'mean' or 'all'"):
        tiny_att.select(head="max")
    with pytest.raises(InputError, match="'text' is empty"):
        attention_weights("  ")


def test_encoder_is_switched_to_eager_and_back(tiny_model_dir, tiny_att):
    from bertkit import Encoder

    enc = Encoder(tiny_model_dir, device="cpu")
    before = enc.model.config._attn_implementation
    att = attention_weights("the cat sat on the mat", "the dog ran", encoder=enc)
    np.testing.assert_allclose(att.weights, tiny_att.weights, atol=1e-6)
    assert enc.model.config._attn_implementation == before


def test_truncation_is_counted(tiny_model_dir):
    att = attention_weights("the cat sat on the mat " * 3, model=tiny_model_dir, max_length=8)
    assert att.weights.shape[-1] == 8 and att.n_truncated == 20 - 8
    np.testing.assert_allclose(att.weights.sum(-1), 1.0, atol=1e-5)


def test_plots_are_pngs(tiny_att, tmp_path):
    one = plot_attention(tiny_att, tmp_path / "one.png", layer=1, head=2)
    grid = tiny_att.plot(tmp_path / "grid.png", head="all", exclude_special=True)
    for path, least in ((one, 15_000), (grid, 30_000)):
        data = open(path, "rb").read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > least
    d = tiny_att.to_dict(layer=2, head="mean", exclude_special=True)
    assert d["layer"] == 2 and d["head"] == "mean" and len(d["weights"]) == len(d["tokens"]) == 9


@pytest.mark.integration
def test_default_model_attention_equals_hf(default_model_dir):
    text = "After stealing money from the bank vault, the bank robber was seen fishing."
    att = attention_weights(text, device="cpu")
    ref = _hf_eager_attentions(default_model_dir, text)
    assert att.weights.shape == ref.shape and att.weights.shape[:2] == (6, 12)
    np.testing.assert_allclose(att.weights, ref, atol=1e-5)
    np.testing.assert_allclose(att.weights.sum(-1), 1.0, atol=1e-5)
