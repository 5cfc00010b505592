"""A lean inference forward pass for plain BERT models (kept only where it pays).

Built by :func:`build` for a Hugging Face ``BertModel`` and used by the torch back-end; every
other model, and any model where this pass does not reproduce the Hugging Face forward,
goes through the model itself. The guard is twofold: :meth:`FastBert.supports` accepts only
the exact module types this code reads, and :func:`build` compares its output with the
model's own on a small random batch before it is used (a mismatch, or an attribute that a
newer transformers renamed, gives one warning and the plain forward).
"""

from __future__ import annotations

import warnings

class FastBert:
    """A lean inference forward pass of a Hugging Face ``BertModel``, same maths.

    The Hugging Face forward spends milliseconds per call in Python (mask building, output
    bookkeeping, ~15 module calls per layer); on the short batches that CPUs like, that is
    ~10% of the time and, with several worker threads, contention for the GIL. This runs
    the same operations with the model's own weights and returns the hidden states:
    query, key and value fused into one matrix product, bias and residual added in the same
    product, and on a CPU with oneDNN the weight matrices packed once into its blocked
    layout (``torch.ops.mkldnn``, with the exact GELU fused into its product; used only
    after a numeric self-check, else plain ``addmm``). :func:`build` rebuilds it whenever a parameter changes, so it never goes
    stale. Only plain ``BertModel`` models with absolute positions and exact GELU are accepted
    (:meth:`supports`); anything else goes through the model itself. Tests check it
    against the Hugging Face forward.
    """

    #: the batch size oneDNN's weight packing is tuned for (tokens; any size works)
    pack_hint = 256

    def __init__(self, model):
        import torch

        emb = model.embeddings
        self.word = emb.word_embeddings.weight
        self.pos = emb.position_embeddings.weight
        self.type0 = emb.token_type_embeddings.weight[0]
        self.emb_ln = (emb.LayerNorm.weight, emb.LayerNorm.bias, emb.LayerNorm.eps)
        self.hidden = model.config.hidden_size
        self.heads = model.config.num_attention_heads
        self.layers = []
        for layer in model.encoder.layer:
            att = layer.attention.self
            with torch.no_grad():
                w_qkv = torch.cat([att.query.weight, att.key.weight, att.value.weight])
                b_qkv = torch.cat([att.query.bias, att.key.bias, att.value.bias])
            out, mid, end = layer.attention.output, layer.intermediate.dense, layer.output
            self.layers.append((w_qkv, b_qkv, out.dense.weight, out.dense.bias,
                                (out.LayerNorm.weight, out.LayerNorm.bias, out.LayerNorm.eps),
                                mid.weight, mid.bias, end.dense.weight, end.dense.bias,
                                (end.LayerNorm.weight, end.LayerNorm.bias, end.LayerNorm.eps)))
        self.packed = self._pack() if self.word.device.type == "cpu" else None

    def _pack(self):
        """oneDNN-packed weights per layer (qkv, out, intermediate, output), or None when
        torch lacks the ops or their results differ from ``F.linear``."""
        import torch
        import torch.nn.functional as F

        if self.word.dtype != torch.float32 or not torch.backends.mkldnn.is_available():
            return None
        try:
            reorder = torch.ops.mkldnn._reorder_linear_weight
            linear = torch.ops.mkldnn._linear_pointwise
            with torch.inference_mode():
                packed = [tuple(reorder(w, self.pack_hint) for w in (lay[0], lay[2], lay[5], lay[7]))
                          for lay in self.layers]
                # self-check on the first layer: plain and with a residual added
                w_qkv, b_qkv, w_o, b_o = self.layers[0][:4]
                x = torch.randn(7, self.hidden, generator=torch.Generator().manual_seed(0))
                ok = torch.allclose(linear(x, packed[0][0], b_qkv, "none", [], ""),
                                    F.linear(x, w_qkv, b_qkv), rtol=1e-4, atol=1e-5)
                ok = ok and torch.allclose(linear.binary(x, x, packed[0][1], b_o, "add"),
                                           F.linear(x, w_o, b_o) + x, rtol=1e-4, atol=1e-5)
                w_i, b_i = self.layers[0][5:7]
                ok = ok and torch.allclose(linear(x, packed[0][2], b_i, "gelu", [], "none"),
                                           F.gelu(F.linear(x, w_i, b_i)), rtol=1e-4, atol=1e-5)
            return packed if ok else None
        except (AttributeError, RuntimeError, TypeError):
            return None

    @staticmethod
    def supports(model) -> bool:
        try:
            from transformers import BertModel
            from transformers.models.bert.modeling_bert import BertLayer
        except ImportError:  # pragma: no cover
            return False
        cfg = model.config
        return (type(model) is BertModel and not model.training
                and getattr(cfg, "position_embedding_type", "absolute") == "absolute"
                and cfg.hidden_act == "gelu" and not getattr(cfg, "is_decoder", False)
                and not getattr(cfg, "add_cross_attention", False)
                and not getattr(cfg, "chunk_size_feed_forward", 0)
                and cfg.hidden_size % cfg.num_attention_heads == 0
                and all(type(layer) is BertLayer for layer in model.encoder.layer))

    def __call__(self, input_ids, mask=None, all_states: bool = False):
        """``input_ids`` [B, T], ``mask`` [B, T] (1 = token) or None -> list of [B, T, H]:
        every hidden state (embeddings first) if ``all_states`` else just the last.

        With a mask, the matrix products (~90% of the time) run on the real tokens only,
        packed into one (tokens, H) matrix; only attention sees the padded (B, T) layout.
        Padding positions of the result are zeros (the Hugging Face forward fills them with
        values nobody should read).
        """
        import torch
        import torch.nn.functional as F

        B, T = input_ids.shape
        H, heads = self.hidden, self.heads
        x = F.embedding(input_ids, self.word) + self.type0
        x = F.layer_norm(x + self.pos[:T], (H,), *self.emb_ln).view(B * T, H)  # (B*T, H)
        keep = None
        if mask is not None:
            keep = mask.reshape(-1).nonzero().squeeze(1)  # real tokens' rows of (B*T, H)
            x = x.index_select(0, keep)  # (N, H), N = real tokens
        attn_mask = None if mask is None else mask[:, None, None, :].bool()  # (B, 1, 1, T)

        def padded(v):  # (N, W) -> (B*T, W), zeros at the padding
            if keep is None:
                return v
            out = v.new_zeros(B * T, v.shape[1])
            return out.index_copy_(0, keep, v)

        states = [padded(x).view(B, T, H)] if all_states else []
        packed = self.packed or [None] * len(self.layers)
        if self.packed is not None:
            linear = torch.ops.mkldnn._linear_pointwise
        for (w_qkv, b_qkv, w_o, b_o, ln1, w_i, b_i, w_2, b_2, ln2), pk in zip(self.layers, packed):
            if pk is not None:  # oneDNN, packed weights; residual added in the product
                qkv = linear(x, pk[0], b_qkv, "none", [], "")  # (N, 3H)
            else:
                qkv = torch.addmm(b_qkv, x, w_qkv.t())
            qkv = padded(qkv).view(B, T, 3, heads, H // heads).permute(2, 0, 3, 1, 4)  # (3, B, heads, T, d)
            a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=attn_mask)
            a = a.transpose(1, 2).reshape(B * T, H)
            if keep is not None:
                a = a.index_select(0, keep)  # (N, H)
            if pk is not None:
                y = linear.binary(a, x, pk[1], b_o, "add")
            else:
                y = x + b_o
                y.addmm_(a, w_o.t())  # residual + bias + projection, no extra copy
            x = F.layer_norm(y, (H,), *ln1)
            if pk is not None:
                h = linear(x, pk[2], b_i, "gelu", [], "none")  # (N, I), exact (erf) GELU fused
                y = linear.binary(h, x, pk[3], b_2, "add")
            else:
                h = _gelu_(torch.addmm(b_i, x, w_i.t()))
                y = x + b_2
                y.addmm_(h, w_2.t())
            x = F.layer_norm(y, (H,), *ln2)
            if all_states:
                states.append(padded(x).view(B, T, H))
        return states if all_states else [padded(x).view(B, T, H)]


def _gelu_(x):
    """Exact (erf) GELU, in place where torch has it."""
    import torch

    op = getattr(torch.ops.aten, "gelu_", None)
    if op is not None:
        try:
            return op(x)
        except RuntimeError:  # pragma: no cover
            pass
    return torch.nn.functional.gelu(x)


_warned = False


def build(model):
    """A checked :class:`FastBert` for ``model``, or None (use the model's own forward)."""
    global _warned
    import torch

    if not FastBert.supports(model):
        return None
    try:
        fast = FastBert(model)
        gen = torch.Generator().manual_seed(0)
        device = fast.word.device
        ids = torch.randint(0, fast.word.shape[0], (2, 9), generator=gen).to(device)
        mask = torch.ones_like(ids)
        mask[1, 6:] = 0
        with torch.inference_mode():
            ref = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
            got = fast(ids, mask, all_states=True)
        ok = len(ref) == len(got) and all(
            torch.allclose(r[0], g[0], rtol=1e-3, atol=1e-4) and torch.allclose(r[1, :6], g[1, :6], rtol=1e-3, atol=1e-4)
            for r, g in zip(ref, got))
    except Exception as e:  # transformers' internals changed under us
        ok, why = False, f"{type(e).__name__}: {e}"
    else:
        why = "its output differs from the model's own forward"
    if ok:
        return fast
    if not _warned:
        _warned = True
        warnings.warn(f"bertkit's fast BERT forward is off ({why}); using the model's own forward.",
                      RuntimeWarning, stacklevel=2)
    return None
