"""Layer selection and pooling: pure functions on tensors, shared by :class:`bertkit.Encoder`.

Shapes use ``B`` = texts in a batch, ``T`` = tokens (padded), ``H`` = hidden size,
``L`` = selected layers and ``D`` = output width (``H``, or ``L * H`` for ``concat``).

Hidden states are indexed like Hugging Face's ``output_hidden_states``: 0 is the embedding
output, 1..N the encoder layers, negative numbers count from the end (-1 = last layer).
"""

from __future__ import annotations

from typing import Sequence

from .errors import InputError

POOLINGS = ("mean", "cls", "max", "pooler")
LAYER_AGGS = ("concat", "sum", "mean")
SUBWORDS = ("mean", "first", "last")


def parse_layers(layers, n_states: int, where: str = "encode") -> list[int]:
    """Turn a layer spec into a list of absolute hidden-state indices (0..n_states-1).

    Parameters
    ----------
    layers : str, int, slice or sequence of int
        ``"-1"`` (last layer), ``"-4:"`` (last four, oldest first), ``"0,3,6"``, ``"1:4"``,
        ``"all"`` (embeddings and every layer), an int, a slice or a list of ints.
    n_states : int
        Number of hidden states (layers + 1).

    Returns
    -------
    list of int
        Absolute indices in the order given (duplicates kept: they count twice in ``sum``).

    Examples
    --------
    >>> parse_layers("-4:", 7)
    [3, 4, 5, 6]
    >>> parse_layers("0,3,-1", 7)
    [0, 3, 6]
    """
    def bad(extra=""):
        return InputError(
            f"The 'layers' parameter of {where} must be an index like -1, a slice like -4:, a "
            f"list like 0,3,6 or 'all' (this model has {n_states} hidden states: 0 = embeddings, "
            f"1..{n_states - 1} = layers){extra}. Got {layers!r} instead.")

    if isinstance(layers, bool):
        raise bad()
    if isinstance(layers, int):
        items: list = [layers]
    elif isinstance(layers, slice):
        items = [layers]
    elif isinstance(layers, str):
        spec = layers.strip().lower()
        if spec in ("all", ":"):
            return list(range(n_states))
        items = []
        for part in spec.split(","):
            part = part.strip()
            if not part:
                raise bad()
            try:
                if ":" in part:
                    bits = [b.strip() for b in part.split(":")]
                    if len(bits) > 3:
                        raise ValueError
                    items.append(slice(*[int(b) if b else None for b in bits]))
                else:
                    items.append(int(part))
            except ValueError:
                raise bad() from None
    elif isinstance(layers, Sequence):
        items = list(layers)
        if not items or any(isinstance(i, bool) or not isinstance(i, int) for i in items):
            raise bad()
    else:
        raise bad()

    out: list[int] = []
    for item in items:
        if isinstance(item, slice):
            problem = _slice_problem(item, n_states)
            if problem is not None:
                raise bad(problem)
            chosen = list(range(n_states))[item]
            if not chosen:
                raise bad(" (the slice selects nothing)")
            out.extend(chosen)
        else:
            if not -n_states <= item < n_states:
                raise bad(" (index out of range)")
            out.append(item % n_states)
    if not out:
        raise bad()
    return out


def _slice_problem(item: slice, n_states: int) -> str | None:
    """Why ``item`` is not a valid layer slice (None when it is).

    Decision: a bound past the model's hidden states is an error, as a single index is;
    Python would clamp ``-8:`` on 7 states to "all" and hide the mistake.
    """
    bounds = (item.start, item.stop, item.step)
    if any(b is not None and (isinstance(b, bool) or not isinstance(b, int)) for b in bounds):
        return ""
    if item.step == 0:
        return " (a slice step cannot be 0)"
    if item.start is not None and not -n_states <= item.start < n_states:
        return " (slice start out of range)"
    if item.stop is not None and not -n_states <= item.stop <= n_states:
        return " (slice end out of range)"
    return None


def combine_layers(states: Sequence, agg: str = "concat"):
    """Combine the selected hidden states ``L x [B, T, H]`` into ``[B, T, D]``.

    ``concat`` joins them on the last axis (``D = L * H``), in the order given; ``sum`` and
    ``mean`` keep ``D = H``.
    """
    import torch

    if len(states) == 1:
        return states[0]
    if agg == "concat":
        return torch.cat(list(states), dim=-1)
    if agg == "sum":
        return torch.stack(list(states), dim=0).sum(dim=0)
    if agg == "mean":
        return torch.stack(list(states), dim=0).mean(dim=0)
    raise InputError(f"The 'layer_agg' parameter must be one of {{'concat', 'sum', 'mean'}}. Got {agg!r} instead.")


def mean_pool(hidden, mask):
    """Mask-aware mean over tokens: ``[B, T, D]``, ``[B, T]`` (1 = counts) -> ``[B, D]``.

    Padding (mask 0) never counts; a row with no counted token gives zeros.
    """
    m = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    total = (hidden * m).sum(dim=1)  # (B, D)
    count = m.sum(dim=1).clamp(min=1e-9)  # (B, 1)
    return total / count


def max_pool(hidden, mask):
    """Mask-aware max over tokens: ``[B, T, D]``, ``[B, T]`` -> ``[B, D]``.

    Padding is set to -inf before the max; a row with no counted token gives zeros.
    """
    import torch

    keep = mask.bool().unsqueeze(-1)  # (B, T, 1)
    out = hidden.masked_fill(~keep, float("-inf")).max(dim=1).values
    return torch.where(torch.isfinite(out), out, torch.zeros_like(out))


def cls_pool(hidden, mask=None):
    """The first token's vector (``[CLS]`` on BERT): ``[B, T, D]`` -> ``[B, D]``."""
    return hidden[:, 0]


def pool_tokens(hidden, mask, pooling: str):
    """Pool ``[B, T, D]`` token vectors to ``[B, D]`` with ``mean``, ``max`` or ``cls``."""
    if pooling == "mean":
        return mean_pool(hidden, mask)
    if pooling == "max":
        return max_pool(hidden, mask)
    if pooling == "cls":
        return cls_pool(hidden)
    raise InputError(f"The 'pooling' parameter must be one of {{'mean', 'cls', 'max'}} here. Got {pooling!r} instead.")


def pool_words(vectors, word_ids, n_words: int, subword: str = "mean"):
    """Pool subword vectors into word vectors.

    Parameters
    ----------
    vectors : Tensor of shape (n_tokens, D)
    word_ids : LongTensor of shape (n_tokens,)
        Word index of each token, -1 for tokens that belong to no word (specials).
    n_words : int
    subword : {"mean", "first", "last"}, default="mean"

    Returns
    -------
    Tensor of shape (n_words, D)
    """
    import torch

    keep = word_ids >= 0
    vec, wid = vectors[keep], word_ids[keep]
    out = torch.zeros((n_words, vectors.shape[-1]), dtype=vectors.dtype, device=vectors.device)
    if subword == "mean":
        out.index_add_(0, wid, vec)
        count = torch.zeros(n_words, dtype=vectors.dtype, device=vectors.device)
        count.index_add_(0, wid, torch.ones_like(wid, dtype=vectors.dtype))
        return out / count.clamp(min=1).unsqueeze(-1)
    if subword not in ("first", "last"):
        raise InputError(f"The 'subword' parameter must be one of {{'mean', 'first', 'last'}}. Got {subword!r} instead.")
    pos = torch.arange(len(wid), device=vectors.device)
    if subword == "first":
        start = torch.full((n_words,), len(wid), dtype=torch.long, device=vectors.device)
        chosen = start.scatter_reduce(0, wid, pos, reduce="amin")
    else:
        start = torch.full((n_words,), -1, dtype=torch.long, device=vectors.device)
        chosen = start.scatter_reduce(0, wid, pos, reduce="amax")
    found = (chosen >= 0) & (chosen < len(wid))
    out[found] = vec[chosen[found]]
    return out


def l2_normalize(x, eps: float = 1e-12):
    """Scale rows of ``x`` (``[..., D]``) to unit length (zero rows stay zero)."""
    import torch

    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp(min=eps)
