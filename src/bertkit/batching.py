"""Batching and padding: the one implementation behind embedding, prediction and training.

* :func:`length_sorted_batches` - inference: positions sorted longest first and cut into
  batches of at most ``batch_size`` items and (optionally) ``max_tokens`` padded tokens;
* :class:`LengthGroupedBatches` - training: the same cut inside shuffled groups, in an order
  that depends only on (seed, epoch); :class:`ShardedBatches` - one process's part of each
  of those batches (multi-process training);
* :func:`pad` - id lists to rectangular arrays (ids, attention mask, token types), padded
  only to the batch's own longest row; :func:`pad_batch` is the ``DataLoader`` collation
  built on it.
"""

from __future__ import annotations

import numpy as np


def cut_sorted(idx, lengths, batch_size: int, max_tokens: int | None = None) -> list:
    """Cut positions ``idx`` (already sorted longest first) into batches.

    A batch holds at most ``batch_size`` positions and, when ``max_tokens`` is given, at
    most ``max_tokens`` padded tokens (rows x the batch's longest row, which is its first).
    A single row longer than ``max_tokens`` still forms a batch of its own.
    """
    idx = [int(i) for i in idx]
    if max_tokens is None:
        return [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
    out, cur = [], []
    for i in idx:
        if cur and (len(cur) == batch_size or (len(cur) + 1) * int(lengths[cur[0]]) > max_tokens):
            out.append(cur)
            cur = []
        cur.append(i)
    if cur:
        out.append(cur)
    return out


def length_sorted_batches(lengths, batch_size: int, max_tokens: int | None = None) -> list:
    """Positions ``0..n-1`` grouped into batches of similar length, longest batch first.

    Parameters
    ----------
    lengths : sequence of int, length n
        Tokens of each item (specials included).
    batch_size : int
        Most items per batch.
    max_tokens : int or None, default=None
        Also cap each batch at this many padded tokens.

    Returns
    -------
    list of list of int
        Every position exactly once; ties keep input order.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    return cut_sorted(order, lengths, batch_size, max_tokens)


def spread(batches: list, lengths, parts: int) -> list:
    """A small call's ``batches`` (from :func:`length_sorted_batches`, fewer than ``2 * parts``)
    re-cut into ``parts`` runs of the same sorted order holding about equal numbers of
    tokens; larger calls are returned as they are.

    Why: the few short texts of one call (a served request, a handful of sentences) make one
    or three batches under the token cap, so of ``parts`` worker threads one would run
    while the others wait. The forward pass skips padding in its matrix products
    (:mod:`bertkit.fastbert`), so longer runs cost little more than their tokens.
    """
    if parts <= 1 or len(batches) >= 2 * parts:
        return batches
    order = [i for b in batches for i in b]  # longest first, as the batches were cut
    parts = min(parts, len(order))
    if parts <= 1:
        return batches
    tokens = np.cumsum([int(lengths[i]) for i in order])
    cuts = np.searchsorted(tokens, tokens[-1] * np.arange(1, parts) / parts, side="left") + 1
    cuts = np.maximum.accumulate(np.clip(cuts, np.arange(1, parts), len(order) - parts + np.arange(1, parts)))
    bounds = [0, *[int(c) for c in cuts], len(order)]
    return [order[bounds[j]:bounds[j + 1]] for j in range(parts)]


class LengthGroupedBatches:
    """Training batches of examples of similar length, for ``DataLoader(batch_sampler=...)``.

    With ``shuffle``, positions are shuffled, cut into groups of ``group`` batches, sorted
    by length inside each group and cut into batches; the batch order is then shuffled.
    Everything is drawn from ``numpy.random.default_rng([seed, epoch])``, so the order is a
    function of (seed, epoch) only: the same on every process and after a resume.
    ``max_tokens`` also caps the padded size (examples x longest) of a batch.
    """

    def __init__(self, lengths, batch_size: int, *, max_tokens: int | None = None,
                 shuffle: bool = True, seed: int = 0, group: int = 50):
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.group = group
        self.epoch = 0
        self._cache = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self, epoch: int | None = None) -> list:
        epoch = self.epoch if epoch is None else epoch
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        n = len(self.lengths)
        if self.shuffle:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(n)
            chunk = self.batch_size * self.group
        else:
            rng, order, chunk = None, np.arange(n), max(n, 1)
        out = []
        for start in range(0, n, chunk):
            idx = order[start:start + chunk]
            idx = idx[np.argsort(-self.lengths[idx], kind="stable")]  # longest first
            out.extend(cut_sorted(idx, self.lengths, self.batch_size, self.max_tokens))
        if rng is not None:
            out = [out[i] for i in rng.permutation(len(out))]
        self._cache = (epoch, out)
        return out

    def __iter__(self):
        yield from self.batches()

    def __len__(self) -> int:
        return len(self.batches())


def shard_batch(batch: list, rank: int, world: int) -> list:
    """Process ``rank``'s part (of ``world``) of one global batch: every ``world``-th position
    from ``rank`` on, so that each part holds long and short rows alike (a batch is sorted
    longest first) and the processes finish their forward passes together.

    A part that would be empty (a batch with fewer rows than processes) is the batch's first
    position written as ``-1 - position``: the process still takes part in the gradient
    exchange, and :class:`ShardedBatches`' readers give that row no weight.
    """
    part = batch[rank::world]
    return part if part else [-1 - batch[0]]


class ShardedBatches:
    """One process's share of every training batch, for ``DataLoader(batch_sampler=...)``.

    Every process reads the same global batches (:class:`LengthGroupedBatches`, an order
    fixed by (seed, epoch)) and takes its part of each (:func:`shard_batch`), so N processes
    make the same optimizer steps on the same examples as one process with the same
    ``batch_size``; ``start`` skips the first batches of the epoch (a resumed run).
    """

    def __init__(self, batches: LengthGroupedBatches, rank: int = 0, world: int = 1):
        self.global_batches, self.rank, self.world = batches, rank, world
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.global_batches.set_epoch(epoch)
        self.start = start

    def __iter__(self):
        for batch in self.global_batches.batches()[self.start:]:
            yield shard_batch(batch, self.rank, self.world)

    def __len__(self) -> int:
        return len(self.global_batches) - self.start


def pad(id_lists, pad_id: int, type_lists=None) -> dict:
    """Pad token id lists to the longest one.

    Returns
    -------
    dict of ndarray, int64
        ``input_ids`` and ``attention_mask`` of shape (B, T); ``token_type_ids`` (B, T) when
        ``type_lists`` is given (padding positions get segment 0).
    """
    lengths = [len(ids) for ids in id_lists]
    b, t = len(id_lists), max(lengths)
    input_ids = np.full((b, t), pad_id, dtype=np.int64)
    mask = np.zeros((b, t), dtype=np.int64)
    types = np.zeros((b, t), dtype=np.int64) if type_lists is not None else None
    for r, ids in enumerate(id_lists):
        input_ids[r, :lengths[r]] = ids
        mask[r, :lengths[r]] = 1
        if types is not None:
            types[r, :lengths[r]] = type_lists[r]
    out = {"input_ids": input_ids, "attention_mask": mask}
    if types is not None:
        out["token_type_ids"] = types
    return out


def pad_batch(examples: list, pad_id: int) -> dict:
    """Collate examples (dicts with ``input_ids``, ``index``, optional ``token_type_ids`` and
    ``label``) into torch tensors: (B, T) for ids / mask / token types, (B,) for ``index``
    and ``labels``."""
    import torch

    has_types = "token_type_ids" in examples[0]
    arrays = pad([ex["input_ids"] for ex in examples], pad_id,
                 [ex["token_type_ids"] for ex in examples] if has_types else None)
    batch = {k: torch.from_numpy(v) for k, v in arrays.items()}
    batch["index"] = torch.tensor([ex["index"] for ex in examples], dtype=torch.long)
    if "label" in examples[0]:
        # class ids -> int64 (B,); numbers (regression) and multi-hot rows -> float32 (B,) / (B, K)
        first = examples[0]["label"]
        dtype = torch.long if isinstance(first, (int, np.integer)) else torch.float32
        batch["labels"] = torch.tensor([ex["label"] for ex in examples], dtype=dtype)
    return batch


def split_rows(batch: dict, max_tokens: int) -> list:
    """``batch`` (from :func:`pad_batch`) as parts of at most ``max_tokens`` padded tokens.

    Why: a training step's memory grows with B x T (and the attention matrices with
    B x T x T): on CPU, SDPA with attention dropout materializes them, so one batch of 32
    pairs at 128 tokens costs about 0.6 GB more than at 64. Run one part after another,
    with their losses summed, a batch gives the same gradient (up to float rounding and
    the dropout draws) in a part's memory. Rows are split into equal consecutive parts
    (each (b, T) trimmed to its own longest row); a batch within ``max_tokens``, a
    ``max_tokens`` of 0, or a one-row batch comes back whole, as ``[batch]``.
    """
    ids = batch["input_ids"]
    b, t = ids.shape
    if not max_tokens or b * t <= max_tokens or b == 1:
        return [batch]
    n_parts = min(b, -(-b * t // max_tokens))
    bounds = [round(i * b / n_parts) for i in range(n_parts + 1)]
    lengths = batch["attention_mask"].sum(dim=1) if "attention_mask" in batch else None
    parts = []
    for lo, hi in zip(bounds, bounds[1:]):
        width = int(lengths[lo:hi].max()) if lengths is not None else t
        part = {}
        for key, value in batch.items():
            value = value[lo:hi]
            if key in ("input_ids", "attention_mask", "token_type_ids"):
                value = value[:, :max(width, 1)]
            part[key] = value
        parts.append(part)
    return parts


def model_inputs(batch: dict) -> dict:
    """The keys of a padded batch that a model's forward takes."""
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
