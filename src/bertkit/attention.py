"""Attention weights of every layer and head, and heat-maps of them.

Transformers 5 computes attention with SDPA by default, which returns no weights; bertkit
runs the model with the "eager" implementation here (switching an :class:`~bertkit.Encoder`'s
model temporarily when one is passed), so the weights are exactly those the model uses.

Numbering follows the hidden states of :meth:`bertkit.Encoder.hidden_states`: layer ``L``
(1..num_layers, or -1 for the last) is the layer whose output is hidden state ``L``; there is
no layer 0 here (hidden state 0 is the embedding output, which involves no attention).
Heads are counted the same way: 1..num_heads, or negative from the end (-1 = the last).
The CLI, the HTTP API and the plot titles use these numbers too.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field

import numpy as np

from ._validate import check_positive_int
from .errors import InputError

__all__ = ["AttentionWeights", "attention_weights", "plot_attention"]


@dataclass
class AttentionWeights:
    """Attention probabilities of one text (or text pair) in every layer and head.

    Attributes
    ----------
    tokens : list of str, length n_tokens
        The model's tokens, specials included (``[CLS] ... [SEP] (pair [SEP])``).
    weights : ndarray of shape (num_layers, num_heads, n_tokens, n_tokens), float32
        ``weights[l - 1, h - 1, i, j]``: how much token ``i`` attends to token ``j`` in layer
        ``l``, head ``h`` (both counted from 1). Each row sums to 1.
    special : list of bool, length n_tokens
        True for special tokens ([CLS], [SEP]).
    token_type_ids : list of int, length n_tokens
        0 for the first text, 1 for the pair.
    text, pair : str and str or None
        The inputs.
    model_name : str
        Which model produced the weights.
    n_truncated : int
        Tokens cut to fit the model's input limit (0 when nothing was cut).
    """

    tokens: list
    weights: np.ndarray
    special: list
    token_type_ids: list = field(default_factory=list)
    text: str = ""
    pair: str | None = None
    model_name: str = ""
    n_truncated: int = 0

    @property
    def num_layers(self) -> int:
        return int(self.weights.shape[0])

    @property
    def num_heads(self) -> int:
        return int(self.weights.shape[1])

    def layer_number(self, layer: int) -> int:
        """``layer`` (1..num_layers or negative from the end) as a number 1..num_layers."""
        n = self.num_layers
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
            raise InputError(f"The 'layer' parameter must be an integer 1..{n} or -1 for the last. "
                             f"Got {layer!r} instead.")
        if layer == 0:
            raise InputError(
                f"layer 0 is the embedding output, which has no attention; pick a layer 1..{n} "
                "(or -1 for the last).")
        if not -n <= layer <= n:
            raise InputError(f"The 'layer' parameter must be in 1..{n} (or -{n}..-1); this model "
                             f"has {n} layers. Got {layer} instead.")
        return int(layer if layer > 0 else n + 1 + layer)

    def head_number(self, head: int) -> int:
        """``head`` (1..num_heads or negative from the end) as a number 1..num_heads."""
        n = self.num_heads
        if (isinstance(head, bool) or not isinstance(head, (int, np.integer)) or head == 0
                or not -n <= head <= n):
            raise InputError(f"The 'head' parameter must be an integer 1..{n} or -1 for the last "
                             f"(this model has {n} heads per layer). Got {head!r} instead.")
        return int(head if head > 0 else n + 1 + head)

    def select(self, layer: int = -1, head="mean", *, exclude_special: bool = False,
               special: bool | None = None):
        """Pick the weights of one layer.

        Parameters
        ----------
        layer : int, default=-1
            Layer number 1..num_layers, or negative from the end (-1 = last).
        head : int, "mean" or "all", default="mean"
            One head (1..num_heads, or negative from the end), the average over the layer's
            heads, or every head.
        exclude_special : bool, default=False
            Drop the [CLS]/[SEP] rows and columns (as ``exclude_special`` does for
            embeddings). The rows left no longer sum to 1 (the weights are shown as the model
            computed them, not renormalised).
        special : bool or None, default=None
            Deprecated spelling of ``exclude_special=not special``; kept for one release.

        Returns
        -------
        matrix : ndarray of shape (n, n), or (num_heads, n, n) for ``head="all"``
        tokens : list of str, length n
        """
        exclude_special = _exclude_special(exclude_special, special)
        w = self.weights[self.layer_number(layer) - 1]  # (heads, T, T)
        if isinstance(head, str):
            if head == "mean":
                w = w.mean(axis=0)
            elif head != "all":
                raise InputError(f"The 'head' parameter must be a head number, 'mean' or 'all'. "
                                 f"Got {head!r} instead.")
        else:
            w = w[self.head_number(head) - 1]
        keep = [i for i, s in enumerate(self.special) if not (exclude_special and s)]
        if not keep:
            raise InputError("Nothing is left once the special tokens are dropped.")
        w = w[..., keep, :][..., keep]
        return np.ascontiguousarray(w, dtype=np.float32), [self.tokens[i] for i in keep]

    def to_dict(self, layer: int = -1, head="mean", *, exclude_special: bool = False,
                special: bool | None = None) -> dict:
        """The selection of :meth:`select` as plain Python values (for JSON)."""
        exclude_special = _exclude_special(exclude_special, special)
        matrix, tokens = self.select(layer, head, exclude_special=exclude_special)
        return {
            "text": self.text, "pair": self.pair, "model": self.model_name,
            "num_layers": self.num_layers, "num_heads": self.num_heads,
            "layer": self.layer_number(layer),
            "head": head if isinstance(head, str) else self.head_number(head),
            "exclude_special": exclude_special, "tokens": tokens,
            "weights": np.round(matrix.astype(float), 6).tolist(),
            "n_truncated": self.n_truncated,
        }

    def plot(self, path, *, layer: int = -1, head="mean", exclude_special: bool = False,
             title: str | None = None) -> str:
        """Draw one layer's attention as a token x token heat-map PNG at ``path`` (see
        :func:`plot_attention`); returns the path written."""
        return plot_attention(self, path, layer=layer, head=head,
                              exclude_special=exclude_special, title=title)


def _exclude_special(exclude_special: bool, special) -> bool:
    """``exclude_special``, or the old ``special`` flag it replaces (with a warning)."""
    if special is None:
        return bool(exclude_special)
    warnings.warn("'special' is now 'exclude_special' (exclude_special=not special); 'special' "
                  "goes in the next release.", DeprecationWarning, stacklevel=3)
    return not special


@contextlib.contextmanager
def eager_attention(net):
    """Run ``net`` with eager attention inside the block, then restore its implementation."""
    config = getattr(net, "config", None)
    before = getattr(config, "_attn_implementation", None)
    if before in (None, "eager"):
        yield net
        return
    net.set_attn_implementation("eager")
    try:
        yield net
    finally:
        net.set_attn_implementation(before)


def attention_weights(text: str, pair: str | None = None, *, model=None, encoder=None,
                      device=None, max_length: int | None = None) -> AttentionWeights:
    """Return the attention probabilities of every layer and head for ``text`` (and ``pair``).

    Parameters
    ----------
    text : str
        The text (segment 0).
    pair : str or None, default=None
        A second text packed after ``[SEP]`` (segment 1), as for sentence-pair tasks.
    model : str, PathLike or None, default=None
        Model folder or Hugging Face id; None for the bundled default. Ignored when
        ``encoder`` is given.
    encoder : Encoder or None, default=None
        An already loaded :class:`bertkit.Encoder` to reuse (its model is switched to eager
        attention for the call and switched back afterwards).
    device : str or None, default=None
        Where to run when loading ``model`` (None: cuda > mps > cpu).
    max_length : int or None, default=None
        Longest input in tokens (default: the model's limit); longer input is cut and
        ``n_truncated`` says how many tokens went.

    Returns
    -------
    AttentionWeights
        ``weights`` of shape (num_layers, num_heads, n_tokens, n_tokens).

    Examples
    --------
    >>> att = attention_weights("The bank robber ran.")
    >>> att.weights.shape
    (6, 12, 7, 7)
    >>> matrix, tokens = att.select(layer=-1, head="mean", exclude_special=True)
    >>> att.plot("attention.png", layer=1, head=1)  # layers and heads counted from 1
    """
    import torch

    from .models import DEFAULT_MODEL_NAME, load_model, max_length_of

    for name, value in (("text", text), ("pair", pair)):
        if name == "pair" and value is None:
            continue
        if not isinstance(value, str):
            raise InputError(f"'{name}' must be a string, got {type(value).__name__}.")
        if not value.strip():
            raise InputError(f"'{name}' is empty; give some text.")
    check_positive_int("max_length", max_length, "attention_weights", allow_none=True)
    if encoder is not None:
        net, tokenizer = encoder.model, encoder.tokenizer
        model_name = str(getattr(encoder, "model_name", "") or "")
    else:
        net, tokenizer = load_model(model, device=device, attn_implementation="eager")
        model_name = str(model) if model else DEFAULT_MODEL_NAME
    limit = max_length_of(tokenizer, net.config)
    max_length = min(max_length or limit, limit)
    if max_length < (4 if pair is not None else 3):
        raise InputError(f"max_length={max_length} leaves no room for text between the special tokens.")
    full = tokenizer(text, pair, truncation=False, verbose=False)
    enc = tokenizer(text, pair, truncation="longest_first", max_length=max_length,
                    return_special_tokens_mask=True, return_tensors="pt")
    n_tokens = enc["input_ids"].shape[1]
    inputs = {k: v.to(net.device) for k, v in enc.items() if k != "special_tokens_mask"}
    with eager_attention(net), torch.inference_mode():
        out = net(**inputs, output_attentions=True, return_dict=True)
    if not out.attentions:
        raise InputError(f"Model {model_name or 'given'} returned no attention weights; it must "
                         "support eager attention (attn_implementation='eager').")
    # one (1, heads, T, T) tensor per layer -> (layers, heads, T, T)
    weights = torch.stack([a[0] for a in out.attentions]).float().cpu().numpy()
    ids = enc["input_ids"][0].tolist()
    return AttentionWeights(
        tokens=tokenizer.convert_ids_to_tokens(ids),
        weights=weights,
        special=[bool(s) for s in enc["special_tokens_mask"][0].tolist()],
        token_type_ids=(enc["token_type_ids"][0].tolist() if "token_type_ids" in enc
                        else [0] * n_tokens),
        text=text, pair=pair, model_name=model_name,
        n_truncated=len(full["input_ids"]) - n_tokens,
    )


def plot_attention(att: AttentionWeights, path, *, layer: int = -1, head="mean",
                   exclude_special: bool = False, title: str | None = None,
                   special: bool | None = None) -> str:
    """Draw one layer's attention as a token x token heat-map PNG at ``path``.

    ``head`` is a head number (1..num_heads), "mean" (the head average) or "all" (a grid
    with one panel a head). Rows are the attending tokens ("from"), columns the attended
    ones ("to"). The same as ``att.plot(path, ...)``. Returns the path written.
    """
    from . import plots

    exclude_special = _exclude_special(exclude_special, special)
    matrix, tokens = att.select(layer, head, exclude_special=exclude_special)
    layer_no = att.layer_number(layer)
    note = " (specials hidden)" if exclude_special else ""
    if isinstance(head, str) and head == "all":
        return plots.heatmap_grid(
            matrix, tokens, tokens, path,
            titles=[f"head {h} of {att.num_heads}" for h in range(1, att.num_heads + 1)],
            title=title or f"Attention, layer {layer_no} of {att.num_layers}, all heads{note}",
            vmin=0.0, xlabel="attended token", ylabel="attending token",
            colorbar_label="attention weight")
    which = ("mean over heads" if isinstance(head, str)
             else f"head {att.head_number(head)} of {att.num_heads}")
    return plots.heatmap(
        matrix, tokens, tokens, path,
        title=title or f"Attention, layer {layer_no} of {att.num_layers}, {which}{note}",
        vmin=0.0, xlabel="attended token", ylabel="attending token",
        colorbar_label="attention weight")
