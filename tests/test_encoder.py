"""bertkit.Encoder against plain references: the Hugging Face model called directly on one
text at a time, without padding."""

import itertools
import warnings

import numpy as np
import pytest
import torch

from bertkit import Encoder
from bertkit.encoder import TokenEmbeddings, WordEmbeddings
from bertkit.errors import InputError
from bertkit.pooling import parse_layers

TEXTS = [
    "the bank vault",
    "a",
    "after stealing money from the bank vault, the bank robber was seen fishing on the river bank.",
    "granola bars are sweet food",
    "the cat sat on the mat and the dog ran in the park",
]
POOLINGS = ["mean", "cls", "max", "pooler"]
LAYER_SPECS = ["-1", "-4:", "0,3,6", "all"]
AGGS = ["concat", "sum", "mean"]



pytestmark = pytest.mark.usefixtures("one_torch_thread")

@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return Encoder(tiny_model_dir, device="cpu")


def _states(enc, text):
    """All hidden states of ``text`` (list of [T, H] tensors), HF model called directly."""
    ids = enc.tokenizer(text, return_tensors="pt")
    with torch.inference_mode():
        out = enc.model(input_ids=ids["input_ids"], output_hidden_states=True)
    return [h[0] for h in out.hidden_states]


def _agg(tensors, agg):
    if agg == "concat":
        return torch.cat(tensors, dim=-1)
    stacked = torch.stack(tensors)
    return stacked.sum(0) if agg == "sum" else stacked.mean(0)


def _reference(enc, states, pooling, layers, agg, exclude_special=False):
    idx = parse_layers(layers, len(states))
    chosen = [states[j] for j in idx]
    with torch.inference_mode():
        if pooling == "pooler":
            return _agg([enc.model.pooler(s[None])[0] for s in chosen], agg).numpy()
        tok = _agg(chosen, agg)
        if exclude_special:
            tok = tok[1:-1]
        return {"mean": tok.mean(0), "max": tok.max(0).values, "cls": tok[0]}[pooling].numpy()


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _check_every_combination(enc, texts, layer_specs):
    states = [_states(enc, t) for t in texts]
    worst = 1.0
    for pooling, layers, agg in itertools.product(POOLINGS, layer_specs, AGGS):
        got = enc.encode(texts, pooling=pooling, layers=layers, layer_agg=agg, batch_size=2)
        assert got.shape == (len(texts), enc.dimension(layers, agg)) and got.dtype == np.float32
        for g, s in zip(got, states):
            worst = min(worst, _cos(g, _reference(enc, s, pooling, layers, agg)))
    return worst


def test_every_pooling_layers_agg_matches_reference(tiny):
    # 2 layers: "-4:" is not valid on the tiny model, so use its equivalents
    assert _check_every_combination(tiny, TEXTS, ["-1", "-2:", "0,2", "all", "1"]) >= 0.99999


def test_exclude_special_drops_cls_and_sep(tiny):
    states = [_states(tiny, t) for t in TEXTS]
    for pooling in ("mean", "max"):
        got = tiny.encode(TEXTS, pooling=pooling, exclude_special=True, layers="-2:", layer_agg="sum")
        for g, s in zip(got, states):
            assert _cos(g, _reference(tiny, s, pooling, "-2:", "sum", exclude_special=True)) >= 0.99999
    with pytest.raises(InputError, match="exclude_special=True cannot be used with pooling='cls'"):
        tiny.encode(TEXTS, pooling="cls", exclude_special=True)


def test_results_do_not_depend_on_batching_or_order(tiny):
    texts = TEXTS * 3
    base = tiny.encode(texts, batch_size=64)
    for kwargs in (dict(batch_size=1), dict(batch_size=4), dict(batch_size=64, max_tokens=40)):
        np.testing.assert_allclose(tiny.encode(texts, **kwargs), base, rtol=1e-4, atol=1e-5)
    perm = np.random.default_rng(0).permutation(len(texts))
    shuffled = tiny.encode([texts[i] for i in perm], batch_size=3)
    np.testing.assert_allclose(shuffled, base[perm], rtol=1e-4, atol=1e-5)
    assert tiny.last_stats["n_texts"] == len(texts) and tiny.last_stats["n_batches"] == 5


def test_single_string_normalize_and_empty_list(tiny):
    one = tiny.encode("the bank vault")
    assert one.shape == (32,)
    np.testing.assert_allclose(one, tiny.encode(["the bank vault"])[0], rtol=1e-5)
    unit = tiny.encode(TEXTS, normalize=True, layers="all")
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)
    assert tiny.encode([]).shape == (0, 32)
    assert tiny.encode([], layers="all").shape == (0, 96)
    assert tiny.encode([], level="word") == []


def test_token_level(tiny):
    res = tiny.encode(TEXTS, level="token", layers="-2:", layer_agg="concat")
    assert all(isinstance(r, TokenEmbeddings) for r in res)
    for text, r in zip(TEXTS, res):
        states = _states(tiny, text)
        ids = tiny.tokenizer(text)["input_ids"]
        assert r.tokens == tiny.tokenizer.convert_ids_to_tokens(ids)
        assert r.tokens[0] == "[CLS]" and r.tokens[-1] == "[SEP]" and len(r) == len(ids)
        assert r.vectors.shape == (len(ids), 64) and r.vectors.dtype == np.float32
        np.testing.assert_allclose(r.vectors, torch.cat(states[1:], -1).numpy(), rtol=1e-4, atol=1e-5)
        for tok, (s, e) in zip(r.tokens[1:-1], r.offsets[1:-1]):
            assert text[s:e].lower() == tok.removeprefix("##")
    inner = tiny.encode(TEXTS[0], level="token", exclude_special=True)
    assert inner.tokens == ["the", "bank", "vault"] and inner.vectors.shape == (3, 32)
    assert inner.offsets == [(0, 3), (4, 8), (9, 14)]


@pytest.mark.parametrize("subword", ["mean", "first", "last"])
def test_word_level_pools_pieces(tiny, subword):
    text = "Granola bars, sweetly eaten!"
    tok = tiny.encode(text, level="token")
    word = tiny.encode(text, level="word", subword=subword)
    assert isinstance(word, WordEmbeddings)
    assert word.words == ["Granola", "bars", ",", "sweetly", "eaten", "!"]
    assert all(text[s:e] == w for w, (s, e) in zip(word.words, word.offsets))
    enc = tiny.tokenizer(text)
    wids = np.array([-1 if w is None else w for w in enc.word_ids()])
    for w in range(len(word.words)):
        pieces = tok.vectors[wids == w]
        want = {"mean": pieces.mean(0), "first": pieces[0], "last": pieces[-1]}[subword]
        np.testing.assert_allclose(word.vectors[w], want, rtol=1e-5, atol=1e-6)


def test_hidden_states_stack(tiny):
    h = tiny.hidden_states("the bank vault")
    states = _states(tiny, "the bank vault")
    assert h.shape == (3, 5, 32) and h.dtype == np.float32
    np.testing.assert_allclose(h, torch.stack(states).numpy(), rtol=1e-5, atol=1e-6)


LONG = " ".join(["the bank robber was seen fishing on the river bank"] * 12)  # ~120 tokens


def test_long_truncate_is_counted_and_warned(tiny):
    with pytest.warns(UserWarning, match=r"1 of 2 texts were longer than the model's limit of 64"):
        got = tiny.encode([LONG, "the cat"])
    assert tiny.last_stats["n_truncated"] == 1 and tiny.last_stats["n_windowed"] == 0
    ids = tiny.tokenizer(LONG, truncation=True, max_length=64, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        ref = tiny.model(input_ids=ids).last_hidden_state[0].mean(0).numpy()
    assert _cos(got[0], ref) >= 0.99999
    with pytest.warns(UserWarning, match="1 of 1 texts"):
        res = tiny.encode(LONG, level="word")
    assert res.truncated and len(res.words) < len(LONG.split())


def test_long_window_covers_the_whole_text(tiny):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no truncation warning
        words = tiny.encode(LONG, level="word", long="window")
        vec = tiny.encode([LONG, "the cat"], long="window")
    assert tiny.last_stats["n_windowed"] == 1 and tiny.last_stats["n_truncated"] == 0
    assert words.words == LONG.split() and not words.truncated
    tokens = tiny.encode(LONG, level="token", long="window")
    n_full = len(tiny.tokenizer(LONG)["input_ids"])
    assert tokens.vectors.shape == (n_full, 32)
    # the first window's head (before any overlap) equals running that window alone
    first = tiny.tokenizer(LONG, truncation=True, max_length=64, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        alone = tiny.model(input_ids=first).last_hidden_state[0].numpy()
    np.testing.assert_allclose(tokens.vectors[1:20], alone[1:20], rtol=1e-4, atol=1e-5)
    # sentence vector: the mean of the stitched token vectors
    assert _cos(vec[0], tokens.vectors.mean(0)) >= 0.99999
    # a short text is the same in both modes
    np.testing.assert_allclose(vec[1], tiny.encode("the cat"), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("texts, pattern", [
    (["ok", ""], r"texts\[1\] is empty"),
    (["ok", "  "], r"texts\[1\] is empty"),
    (["ok", None], r"texts\[1\] is NoneType"),
    (["ok", "fine", 3], r"texts\[2\] is int"),
    (5, r"'texts' must be a string or a list of strings"),
])
def test_bad_texts_name_the_index(tiny, texts, pattern):
    with pytest.raises(InputError, match=pattern):
        tiny.encode(texts)


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(pooling="avg"), r"The 'pooling' parameter of encode must be one of \{'mean', 'cls', 'max', 'pooler'\}. Got 'avg' instead."),
    (dict(level="doc"), r"The 'level' parameter"),
    (dict(layer_agg="max"), r"The 'layer_agg' parameter"),
    (dict(subword="all"), r"The 'subword' parameter"),
    (dict(long="split"), r"The 'long' parameter"),
    (dict(layers="-5"), r"The 'layers' parameter of encode .*3 hidden states"),
    (dict(batch_size=0), r"The 'batch_size' parameter of encode must be a positive integer"),
    (dict(max_tokens=-1), r"The 'max_tokens' parameter"),
    (dict(normalize="yes"), r"The 'normalize' parameter"),
])
def test_bad_arguments_are_named(tiny, kwargs, pattern):
    with pytest.raises(InputError, match=pattern):
        tiny.encode(["the cat"], **kwargs)


# ------------------------------------------------------------------ the real default model
@pytest.fixture(scope="module")
def real():
    return Encoder(device="cpu")


@pytest.mark.integration
def test_real_model_every_combination_matches_reference(real):
    texts = ["granola bars", "the bank vault was robbed", "He sat on the river bank, fishing.",
             "it 's a charming and often affecting journey . "]
    assert _check_every_combination(real, texts, LAYER_SPECS) >= 0.99999


@pytest.mark.integration
def test_real_model_seed_facts(real):
    assert real.max_length == 256 and real.hidden_size == 384  # the folder's max_seq_length
    assert real.pooling == "mean" and real.normalize is True  # 1_Pooling, Normalize
    assert real.encode("granola bars", level="token").tokens == ["[CLS]", "gran", "##ola", "bars", "[SEP]"]
    assert real.encode(["a", "b"], layers="-4:", layer_agg="concat").shape == (2, 1536)
    assert real.hidden_states("granola bars").shape == (7, 5, 384)
    # seed 003's bank study: word vectors, sum of the last four layers
    text = ("After stealing money from the bank vault, the bank robber was seen fishing on the "
            "Mississippi river bank.")
    words = real.encode(text, level="word", layers="-4:", layer_agg="sum")
    banks = [v for w, v in zip(words.words, words.vectors) if w == "bank"]
    vault_robber, vault_river, robber_river = _cos(banks[0], banks[1]), _cos(banks[0], banks[2]), _cos(banks[1], banks[2])
    assert vault_robber > vault_river and vault_robber > robber_river
    assert vault_robber == pytest.approx(0.94, abs=0.02)


@pytest.mark.integration
def test_real_model_equals_sentence_transformers(real, default_model_dir):
    import pandas as pd
    from sentence_transformers import SentenceTransformer

    from bertkit.labelled import example_data

    # the shipped example sentences, plus longer ones built from them (lengths vary)
    base = pd.read_csv(f"{example_data()}/topics_test.csv")["text"].tolist()[:64]
    texts = base + [" ".join(base[i:i + 4]) for i in range(0, 64, 2)]
    # and one text over the folder's max_seq_length (256 tokens): cut where ST cuts it
    texts.append(" ".join(base[:40]))
    assert len(real.tokenizer(texts[-1])["input_ids"]) > 300
    st = SentenceTransformer(default_model_dir, device="cpu").encode(texts, batch_size=32)
    with pytest.warns(UserWarning, match="max_seq_length of 256"):
        ours = real.encode(texts)  # defaults: the folder's length, pooling and normalisation
    cos = (st * ours).sum(1) / np.linalg.norm(st, axis=1) / np.linalg.norm(ours, axis=1)
    assert cos.min() >= 0.99999
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-5)
    assert np.abs(st - ours).max() < 1e-4


def test_fast_path_and_workers_give_the_same_vectors(tiny_model_dir, tiny):
    texts = TEXTS * 4
    base = tiny.encode(texts, layers="all", layer_agg="concat")
    other = Encoder(tiny_model_dir, device="cpu", workers=2)
    other.fast_path = False  # the Hugging Face forward itself
    np.testing.assert_allclose(other.encode(texts, layers="all", layer_agg="concat", batch_size=3),
                               base, rtol=1e-4, atol=1e-5)
    assert torch.get_num_threads() == 1  # restored after the call (the module runs on one)
    other.fast_path = True
    words = other.encode(texts, level="word", batch_size=2)
    np.testing.assert_allclose(np.concatenate([w.vectors for w in words]),
                               np.concatenate([w.vectors for w in tiny.encode(texts, level="word")]),
                               rtol=1e-4, atol=1e-5)


def test_fast_path_without_onednn_packing_and_after_weight_changes(tiny_model_dir):
    enc = Encoder(tiny_model_dir, device="cpu")
    base = enc.encode(TEXTS, layers="all")
    fast = enc._fast_forward()
    packed, fast.packed = fast.packed, None  # the plain addmm route
    np.testing.assert_allclose(enc.encode(TEXTS, layers="all"), base, rtol=1e-4, atol=1e-5)
    fast.packed = packed
    # an in-place weight change (as an optimizer step makes) is seen at once
    with torch.no_grad():
        enc.model.encoder.layer[0].intermediate.dense.weight.mul_(0.5)
    assert enc._fast_forward() is not fast
    states = _states(enc, TEXTS[2])
    got = enc.encode(TEXTS[2], layers="all", layer_agg="mean")
    assert _cos(got, _reference(enc, states, "mean", "all", "mean")) >= 0.99999
