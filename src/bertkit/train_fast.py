"""Training a [CLS] classifier without the last layer's work on the other tokens.

A sequence classifier reads only the [CLS] row of the last layer (BERT's pooler takes
``hidden_states[:, 0]``), so in the last layer the other T-1 rows matter only as keys and
values of [CLS]'s attention: their queries, attention outputs, feed-forward blocks and
LayerNorms are computed, back-propagated and thrown away. :func:`cls_only_last_layer`
makes the last layer of a plain BERT classifier compute, in training mode, its keys and
values for all rows and everything else for row 0 only: about 5/6 of that layer's work
(1/6 of the encoder's matrix products, forward and backward) is saved, and the logits are
the same maths. In eval mode (validation, prediction, export) the layer runs unchanged.

Only the exact Hugging Face BERT module types read here are accepted, and the pass is
compared with the model's own forward on a small batch before it is used (else the model
is left as it is); tests check it against the Hugging Face forward.
"""

from __future__ import annotations

import types


def _supported(model) -> bool:
    """A ``BertForSequenceClassification`` whose last layer is a plain encoder ``BertLayer``
    (no decoder, no cross-attention, no chunked feed-forward) with SDPA or eager attention."""
    try:
        from transformers.models.bert import modeling_bert as mb
    except ImportError:  # pragma: no cover - transformers without BERT
        return False
    if type(model) is not mb.BertForSequenceClassification:
        return False
    cfg = model.config
    layer = model.bert.encoder.layer[-1] if len(model.bert.encoder.layer) else None
    return (type(layer) is mb.BertLayer and type(layer.attention.self) is mb.BertSelfAttention
            and type(layer.attention.output) is mb.BertSelfOutput and type(layer.output) is mb.BertOutput
            and type(layer.intermediate) is mb.BertIntermediate and model.bert.pooler is not None
            and not cfg.is_decoder and not cfg.add_cross_attention and not layer.chunk_size_feed_forward
            and getattr(cfg, "_attn_implementation", None) in ("sdpa", "eager"))


def _cls_forward(self, hidden_states, attention_mask=None, *args, **kwargs):
    """``BertLayer.forward`` for row 0 only (training mode): keys and values from all T rows,
    the rest from row 0; returns (B, 1, H). In eval mode, the original forward."""
    if not (self.training or self._bertkit_force_cls):
        return self._bertkit_full_forward(hidden_states, attention_mask, *args, **kwargs)
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.bert.modeling_bert import eager_attention_forward

    sa = self.attention.self
    b, t = hidden_states.shape[:2]
    first = hidden_states[:, :1]                                                  # (B, 1, H)
    heads = (b, -1, sa.num_attention_heads, sa.attention_head_size)
    query = sa.query(first).view(*heads).transpose(1, 2)                          # (B, h, 1, d)
    key = sa.key(hidden_states).view(*heads).transpose(1, 2)                      # (B, h, T, d)
    value = sa.value(hidden_states).view(*heads).transpose(1, 2)                  # (B, h, T, d)
    if attention_mask is not None and attention_mask.dim() == 4 and attention_mask.shape[-2] > 1:
        attention_mask = attention_mask[:, :, :1]                                 # (B, 1, 1, T)
    attend = ALL_ATTENTION_FUNCTIONS.get_interface(sa.config._attn_implementation, eager_attention_forward)
    context, _ = attend(sa, query, key, value, attention_mask,
                        dropout=sa.dropout.p if self.training else 0.0, scaling=sa.scaling)
    context = context.reshape(b, 1, -1).contiguous()                              # (B, 1, H)
    attended = self.attention.output(context, first)                              # (B, 1, H)
    return self.output(self.intermediate(attended), attended)                     # (B, 1, H)


def cls_only_last_layer(model) -> bool:
    """Make ``model``'s last layer compute only what the [CLS] logits need while training.

    Parameters
    ----------
    model : transformers.BertForSequenceClassification
        Changed in place (an instance attribute on its last layer; the weights and the
        saved files are untouched). Any other model is left as it is.

    Returns
    -------
    bool
        True when the pass is in use: the model is supported and, on a random batch with
        padding, its logits matched the model's own forward (rtol 1e-4, atol 1e-5).
    """
    import torch

    if not _supported(model):
        return False
    layer = model.bert.encoder.layer[-1]
    if getattr(layer, "_bertkit_full_forward", None) is not None:
        return True
    layer._bertkit_full_forward = layer.forward
    layer._bertkit_force_cls = False
    layer.forward = types.MethodType(_cls_forward, layer)
    was_training = model.training
    try:
        model.eval()
        gen = torch.Generator().manual_seed(0)
        device = next(model.parameters()).device
        ids = torch.randint(1, model.config.vocab_size, (3, 9), generator=gen).to(device)
        mask = torch.ones_like(ids)
        mask[1, 5:] = 0  # padding, so the mask path is checked too
        with torch.no_grad():
            full = model(input_ids=ids, attention_mask=mask).logits
            layer._bertkit_force_cls = True
            fast = model(input_ids=ids, attention_mask=mask).logits
        ok = fast.shape == full.shape and torch.allclose(fast, full, rtol=1e-4, atol=1e-5)
    except Exception:  # an attribute a newer transformers renamed: keep the model's own pass
        ok = False
    finally:
        layer._bertkit_force_cls = False
        model.train(was_training)
    if not ok:
        undo_cls_only(model)
    return ok


def undo_cls_only(model) -> None:
    """Give the last layer back its own forward (no-op if :func:`cls_only_last_layer` did
    not change it)."""
    if not hasattr(model, "bert"):
        return
    layer = model.bert.encoder.layer[-1]
    if getattr(layer, "_bertkit_full_forward", None) is not None:
        del layer.forward
        del layer._bertkit_full_forward, layer._bertkit_force_cls


#: glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def reuse_large_blocks(mmap_mb: int = 64, trim_mb: int = 128) -> bool:
    """Let glibc's malloc keep freed blocks of up to ``mmap_mb`` MB for reuse (process-wide).

    By default glibc serves a block over 32 MB with a fresh ``mmap`` and gives it back on
    ``free``; the word-embedding gradient of a BERT classifier (30,522 x 384 floats, 47 MB
    for the bundled model) is such a block, allocated and zero-filled every step, so every
    step page-faults 11,400 fresh pages (~6% of a CoLA training step's CPU time, measured
    on a 2-core EPYC). Served from the heap, the same pages are reused. Blocks up to 32 MB
    already go to the heap after the first free (glibc's dynamic threshold), so this adds
    about one such block to the resident memory. Returns False where it does not apply
    (not glibc).

    Caveat (measured 2026-11-23, same EPYC): in a fresh process, torch's allocations, which
    glibc serves through ``posix_memalign``, were not always reused; 44 MB ``torch.zeros``
    blocks page-faulted afresh on most calls with or without this setting, while plain
    ``malloc`` blocks were reused. The 1.06x above was measured in training runs; whether
    it holds in every heap state is open.
    """
    import ctypes
    import platform

    if platform.system() != "Linux" or not platform.libc_ver()[0] == "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_mb << 20) and libc.mallopt(_M_TRIM_THRESHOLD, trim_mb << 20))
    except (OSError, AttributeError):
        return False
