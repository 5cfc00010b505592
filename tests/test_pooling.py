"""Layer selection and pooling functions against plain NumPy references."""

import numpy as np
import pytest
import torch

from bertkit.errors import InputError
from bertkit.pooling import (combine_layers, l2_normalize, max_pool, mean_pool, parse_layers,
                             pool_tokens, pool_words)



pytestmark = pytest.mark.usefixtures("one_torch_thread")

@pytest.mark.parametrize("spec, expected", [
    ("-1", [6]), (-1, [6]), ("6", [6]), ("0", [0]), ("-4:", [3, 4, 5, 6]), ("0,3,6", [0, 3, 6]),
    ("all", list(range(7))), ("ALL", list(range(7))), ("1:4", [1, 2, 3]), ("-1,-2", [6, 5]),
    ([0, -1], [0, 6]), (slice(-2, None), [5, 6]), (" -2 , 0 ", [5, 0]), ("::3", [0, 3, 6]),
    ("-7:", list(range(7))), ("0:7", list(range(7))), ("::-1", [6, 5, 4, 3, 2, 1, 0]),
])
def test_parse_layers(spec, expected):
    assert parse_layers(spec, 7) == expected


@pytest.mark.parametrize("spec", ["7", "-8", "x", "", "1,,2", "5:2", [], True, 1.5, ["1"], "1:2:3:4"])
def test_parse_layers_rejects_with_the_argument_named(spec):
    with pytest.raises(InputError, match=r"The 'layers' parameter of encode .* 7 hidden states"):
        parse_layers(spec, 7)


# issue 14, item 10: a slice past the model's layers was clamped silently ("-8:" = "all")
@pytest.mark.parametrize("spec, why", [
    ("-8:", "slice start out of range"), ("7:", "slice start out of range"),
    ("0:8", "slice end out of range"), ("-9:-1", "slice start out of range"),
    ("::0", "a slice step cannot be 0"), (slice(0, 9), "slice end out of range"),
])
def test_parse_layers_rejects_slices_past_the_model(spec, why):
    with pytest.raises(InputError, match=rf"7 hidden states.*\({why}\)"):
        parse_layers(spec, 7)


def _padded(rng, lengths, dim=5):
    """Random [B, T, D] with huge garbage in the padding, and its mask."""
    width = max(lengths)
    h = rng.normal(size=(len(lengths), width, dim)).astype(np.float32)
    mask = np.zeros((len(lengths), width), np.int64)
    for r, n in enumerate(lengths):
        mask[r, :n] = 1
        h[r, n:] = 1e6
    return h, mask


def test_mean_and_max_pooling_ignore_padding():
    rng = np.random.default_rng(0)
    lengths = [4, 1, 3]
    h, mask = _padded(rng, lengths)
    mean = mean_pool(torch.from_numpy(h), torch.from_numpy(mask)).numpy()
    mx = max_pool(torch.from_numpy(h), torch.from_numpy(mask)).numpy()
    for r, n in enumerate(lengths):
        np.testing.assert_allclose(mean[r], h[r, :n].mean(axis=0), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(mx[r], h[r, :n].max(axis=0))
    cls = pool_tokens(torch.from_numpy(h), torch.from_numpy(mask), "cls").numpy()
    np.testing.assert_array_equal(cls, h[:, 0])


def test_pooling_a_row_with_nothing_counted_gives_zeros():
    h = torch.ones((1, 3, 4))
    mask = torch.zeros((1, 3), dtype=torch.long)
    assert torch.equal(mean_pool(h, mask), torch.zeros((1, 4)))
    assert torch.equal(max_pool(h, mask), torch.zeros((1, 4)))


def test_combine_layers():
    rng = np.random.default_rng(1)
    states = [torch.from_numpy(rng.normal(size=(2, 3, 4)).astype(np.float32)) for _ in range(3)]
    arrays = [s.numpy() for s in states]
    assert combine_layers(states[:1], "sum") is states[0]
    np.testing.assert_array_equal(combine_layers(states, "concat").numpy(), np.concatenate(arrays, -1))
    np.testing.assert_allclose(combine_layers(states, "sum").numpy(), sum(arrays), rtol=1e-6)
    np.testing.assert_allclose(combine_layers(states, "mean").numpy(), sum(arrays) / 3, rtol=1e-6)
    with pytest.raises(InputError, match="layer_agg"):
        combine_layers(states, "avg")


@pytest.mark.parametrize("subword", ["mean", "first", "last"])
def test_pool_words(subword):
    rng = np.random.default_rng(2)
    vec = rng.normal(size=(7, 4)).astype(np.float32)
    wids = np.array([-1, 0, 1, 1, 1, 2, -1])  # [CLS] w0 w1 w1 w1 w2 [SEP]
    got = pool_words(torch.from_numpy(vec), torch.from_numpy(wids), 3, subword).numpy()
    for w in range(3):
        pieces = vec[wids == w]
        want = {"mean": pieces.mean(axis=0), "first": pieces[0], "last": pieces[-1]}[subword]
        np.testing.assert_allclose(got[w], want, rtol=1e-6)


def test_l2_normalize():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(l2_normalize(x).numpy(), [[0.6, 0.8], [0.0, 0.0]])
