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


# --------------------------------------------------------------- split_rows (training memory)


def _padded(lengths, *, pairs=False, multi_hot=False):
    """A pad_batch batch of rows with these real lengths (ids = position + 1)."""
    from bertkit.batching import pad_batch

    examples = []
    for i, n in enumerate(lengths):
        ex = {"input_ids": list(range(1, n + 1)), "index": i,
              "label": [1.0, 0.0, float(i % 2)] if multi_hot else i % 3}
        if pairs:
            ex["token_type_ids"] = [0] * (n // 2) + [1] * (n - n // 2)
        examples.append(ex)
    return pad_batch(examples, pad_id=0)


def test_split_rows_cuts_a_long_batch_into_parts_within_the_budget():
    import torch

    from bertkit.batching import split_rows

    lengths = [30, 28, 27, 25, 25, 24, 20, 17]  # (8, 30): 240 padded tokens
    batch = _padded(lengths, pairs=True, multi_hot=True)
    parts = split_rows(batch, 64)
    assert len(parts) == 4 and [len(p["index"]) for p in parts] == [2, 2, 2, 2]
    for part in parts:
        b, t = part["input_ids"].shape
        assert b * t <= 64 or b == 1
        assert t == int(part["attention_mask"].sum(1).max())  # trimmed to its longest row
        assert part["token_type_ids"].shape == (b, t) and part["labels"].shape == (b, 3)
    assert [p["input_ids"].shape[1] for p in parts] == [30, 27, 25, 20]
    # every row once, in order, with its own tokens
    assert torch.equal(torch.cat([p["index"] for p in parts]), batch["index"])
    for part in parts:
        for r, i in enumerate(part["index"].tolist()):
            n = lengths[i]
            assert part["input_ids"][r, :n].tolist() == list(range(1, n + 1))
            assert torch.equal(part["token_type_ids"][r, :n], batch["token_type_ids"][i, :n])


def test_split_rows_leaves_small_batches_and_zero_alone():
    from bertkit.batching import split_rows

    batch = _padded([10, 9, 8, 8])  # 40 tokens
    for budget in (40, 4096, 0):
        (whole,) = split_rows(batch, budget)
        assert whole is batch
    single = _padded([50])
    assert split_rows(single, 8)[0] is single  # one row cannot be split
    parts = split_rows(batch, 1)  # more parts than rows: one row each
    assert [p["input_ids"].shape for p in parts] == [(1, 10), (1, 9), (1, 8), (1, 8)]


def test_parts_give_the_gradient_of_the_whole_batch(tiny_model_dir):
    """Run part by part with shard_loss, a batch's gradient equals the whole batch's (the
    claim behind train_loop.train_step's parts), with and without example weights."""
    import torch

    from bertkit.batching import model_inputs, split_rows
    from bertkit.models import load_model
    from bertkit.train_loop import shard_loss

    model, _ = load_model(tiny_model_dir, task="classification", num_labels=3,
                          hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model.train()
    batch = _padded([40, 33, 31, 22, 20, 12, 9])
    weights = torch.tensor([1.0, 2.0, 0.5])  # class weights, so rows weigh differently

    def gradient(parts, class_weight):
        model.zero_grad()
        total = float(class_weight[batch["labels"]].sum()) if class_weight is not None else len(batch["index"])
        for part in parts:
            logits = model(**model_inputs(part)).logits
            shard_loss("single-label", logits, part, class_weight, total, 1).backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    for class_weight in (None, weights):
        whole = gradient([batch], class_weight)
        parts = split_rows(batch, 70)
        assert len(parts) == 4
        torch.testing.assert_close(gradient(parts, class_weight), whole, atol=1e-6, rtol=1e-4)
