"""Inference batching: length-sorted batches under a token cap, and small calls spread over
the worker threads."""

import numpy as np
import pytest

from bertkit.batching import length_sorted_batches, spread


def _tokens(parts, lengths):
    return [sum(lengths[i] for i in part) for part in parts]


@pytest.mark.parametrize("lengths", [[50, 30, 20, 10, 10, 10, 9, 8, 8, 8, 7, 5, 5, 5, 5, 4], [5, 4], [7, 7, 7],
                                     [512, 512, 512], list(np.random.default_rng(0).integers(3, 30, 20))])
def test_a_small_call_is_cut_into_one_run_per_worker(lengths):
    batches = length_sorted_batches(lengths, 64, 256)
    parts = spread(batches, lengths, 2)
    assert len(parts) == 2
    flat = [i for p in parts for i in p]
    assert sorted(flat) == list(range(len(lengths)))  # every position once
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)  # still longest first
    a, b = _tokens(parts, lengths)
    assert abs(a - b) <= max(lengths)  # about equal work


def test_one_text_stays_one_batch_and_large_calls_are_untouched():
    assert spread(length_sorted_batches([9], 64, 256), [9], 2) == [[0]]
    lengths = list(np.random.default_rng(1).integers(3, 60, 200))
    batches = length_sorted_batches(lengths, 64, 256)
    assert len(batches) >= 4
    assert spread(batches, lengths, 2) == batches
    assert spread(batches[:1], lengths, 1) == batches[:1]
