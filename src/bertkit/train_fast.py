"""Training-step work that a classifier does not need, cut without changing the maths.

Three paths, each checked against the plain Hugging Face step in tests/test_train_fast.py
and measured in ``benchmarks/train_step.py``; ``bertkit train`` turns on each that applies
and records which in training_args.json, and the model handed back runs as loaded:

* :func:`cls_only_last_layer` -- the last layer computes the [CLS] row only (below);
* :func:`sparse_word_grad` -- the word-embedding gradient as the rows a batch used
  (:class:`SparseWordGrad`);
* :func:`use_fast_dropout` -- dropout masks drawn two per random number (:func:`fast_dropout`;
  the one change to the maths: the drop rate is p to within 2**-15).

[CLS]-only last layer.

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
    if not _supported(model):
        return False
    layer = model.bert.encoder.layer[-1]
    if getattr(layer, "_bertkit_full_forward", None) is not None:
        return True
    layer._bertkit_full_forward = layer.forward
    layer._bertkit_force_cls = False
    layer.forward = types.MethodType(_cls_forward, layer)
    try:  # the row-0 pass, forced on in eval mode, must give the model's own logits
        ok = _same_eval_logits(model, lambda: setattr(layer, "_bertkit_force_cls", True))
    finally:
        layer._bertkit_force_cls = False
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


class SparseWordGrad:
    """The word-embedding gradient as the rows a batch used, not a dense (V, H) matrix.

    A batch of B x T tokens touches at most B*T of the V rows of the word-embedding matrix
    (30,522 for the BERT vocabulary), yet PyTorch's dense embedding backward allocates and
    zero-fills all V x H floats every step (47 MB for the bundled model), clipping reads
    them all for the norm and scales them, and AdamW reads and writes every row of the
    weight and its two moment buffers. Here the embedding runs with ``sparse=True``
    (autograd returns the used rows only), :meth:`clip` is ``clip_grad_norm_`` with the
    embedding's part taken over those rows, and the embedding's AdamW update runs on the
    rows it changes (:meth:`step`, after :meth:`use_lazy_adamw`):

    * a row whose moments are both zero (no gradient for it yet) is changed by AdamW only
      through weight decay, ``p *= 1 - lr * wd`` a step: a running product of those factors
      is kept, and a row is brought up to date when a batch uses it (a forward pre-hook on
      the embedding, so the forward pass reads the weights AdamW would have made) and by
      :meth:`settle` before anything else reads the weights (validation, checkpoints,
      export);
    * the other rows (every row seen so far: their moments keep moving) go through torch's
      own fused AdamW kernel, gathered into contiguous tensors and scattered back.

    The moments live in the optimizer's state as torch's AdamW keeps them, so checkpoints
    and ``--resume`` are unchanged (on resume, the rows with non-zero moments are the seen
    ones). Once half of the rows have been seen, gathering costs about what it saves, and
    the embedding goes back to AdamW's own step with a dense gradient (:meth:`densify`
    fills one buffer that lives for the whole run; the previous step's rows are zeroed
    first). The maths of the step is unchanged; sums and the decay product run in another
    order, so the last bits of a float may differ (tests/test_train_fast.py compares with
    torch's AdamW over many steps).

    Single process only (under DDP the gradient exchange would see a sparse tensor), and
    only for an ``nn.Embedding`` whose weight no other module shares (an untied
    classifier); :func:`sparse_word_grad` returns None otherwise.
    """

    #: the share of seen rows at which the embedding goes back to AdamW's dense step
    LAZY_MAX_SHARE = 0.5

    def __init__(self, embedding):
        self.embedding = embedding
        self.weight = embedding.weight
        self.buffer = None   # (V, H) dense gradient, allocated when first needed
        self.rows = None     # the step's rows, sorted, (n,)
        self.values = None   # their gradient, (n, H)
        self.optimizer = self.group = None
        self.lazy = False    # the embedding's AdamW step runs here (see the class notes)
        self.seen = None     # (V,) bool: rows with non-zero moments
        self.seen_rows = None  # their indices, sorted, (m,)
        self.product = 1.0   # the product of every step's (1 - lr * wd) so far
        self.synced = None   # (V,) float64: the product an unseen row was last brought up to
        self.hook = None     # the embedding's forward pre-hook (lazy only)
        embedding.sparse = True

    # ------------------------------------------------------------------ lazy AdamW

    def use_lazy_adamw(self, optimizer) -> bool:
        """Run the embedding's AdamW update on its changed rows (see the class notes) when
        ``optimizer`` is a plain ``torch.optim.AdamW`` (no amsgrad, maximize, capturable,
        differentiable) that holds the weight; its state may come from a checkpoint.
        Returns whether the lazy update is on."""
        import torch

        self.optimizer = optimizer
        self.group = next((g for g in optimizer.param_groups if any(p is self.weight for p in g["params"])), None)
        plain = (type(optimizer) is torch.optim.AdamW and self.group is not None
                 and not any(self.group.get(k) for k in ("amsgrad", "maximize", "capturable", "differentiable")))
        if not plain:
            self.lazy = False
            return False
        state = optimizer.state.get(self.weight, {})
        if "exp_avg" in state:  # resumed: the rows seen are those with moments
            self.seen = (state["exp_avg"] != 0).any(dim=1) | (state["exp_avg_sq"] != 0).any(dim=1)
        else:
            self.seen = torch.zeros(self.weight.shape[0], dtype=torch.bool, device=self.weight.device)
        self.seen_rows = self.seen.nonzero().squeeze(1)
        self.product = 1.0
        self.synced = torch.ones(len(self.seen), dtype=torch.float64, device=self.weight.device)
        self.lazy = len(self.seen_rows) < self.LAZY_MAX_SHARE * len(self.seen)
        if self.lazy:
            self.hook = self.embedding.register_forward_pre_hook(self._sync_inputs)
        return self.lazy

    def _sync_inputs(self, module, args) -> None:
        """Forward pre-hook: the rows of this batch's token ids brought up to date."""
        import torch

        if self.product != 1.0 and args and torch.is_tensor(args[0]):
            self._sync_rows(torch.unique(args[0]))

    def _sync_rows(self, rows) -> None:
        """Apply to the unseen ones among ``rows`` the decay they sat out."""
        import torch

        if self.product == 1.0 or not len(rows):
            return
        rows = rows[~self.seen[rows] & (self.synced[rows] != self.product)]
        if len(rows):
            with torch.no_grad():
                factor = (self.product / self.synced[rows]).to(self.weight.dtype)
                self.weight[rows] = self.weight[rows] * factor[:, None]
            self.synced[rows] = self.product

    def _state(self):
        """The optimizer's state of the weight, created as torch's fused AdamW creates it."""
        import torch

        state = self.optimizer.state[self.weight]
        if "exp_avg" not in state:
            state["step"] = torch.zeros((), dtype=torch.float32, device=self.weight.device)
            state["exp_avg"] = torch.zeros_like(self.weight, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(self.weight, memory_format=torch.preserve_format)
        return state

    def step(self) -> None:
        """The embedding's AdamW update for this step (after ``optimizer.step()`` and before
        the scheduler's, so the same learning rate); a no-op unless lazy."""
        import torch

        if not self.lazy:
            return
        group = self.group
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        state = self._state()
        weight, seen = self.weight, self.seen
        with torch.no_grad():
            if self.rows is not None and len(self.rows):
                new = self.rows[~seen[self.rows]]
                if len(new):
                    self._sync_rows(new)  # (the forward hook has done it already)
                    seen[new] = True
                    self.seen_rows = seen.nonzero().squeeze(1)
            if wd:
                self.product *= 1.0 - lr * wd  # this step's decay of the unseen rows
            rows = self.seen_rows
            state["step"] += 1
            if len(rows):
                params = weight.index_select(0, rows)
                exp_avg = state["exp_avg"].index_select(0, rows)
                exp_avg_sq = state["exp_avg_sq"].index_select(0, rows)
                grads = torch.zeros_like(params)
                if self.rows is not None and len(self.rows):
                    grads[torch.searchsorted(rows, self.rows)] = self.values
                torch._fused_adamw_([params], [grads], [exp_avg], [exp_avg_sq], [], [state["step"]],
                                    lr=lr, beta1=beta1, beta2=beta2, weight_decay=wd, eps=eps,
                                    amsgrad=False, maximize=False)
                weight.index_copy_(0, rows, params)
                state["exp_avg"].index_copy_(0, rows, exp_avg)
                state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
        self.rows = self.values = None
        if len(self.seen_rows) >= self.LAZY_MAX_SHARE * len(seen):
            self.settle()
            self.lazy = False  # from the next step on, AdamW's own step on a dense gradient
            self.hook.remove()
            self.hook = None

    def settle(self) -> None:
        """Apply the pending weight decay to the rows not seen yet, so that the weights are
        what AdamW's own step would have made them (call before anything reads them)."""
        import torch

        if self.product == 1.0 or self.seen is None or not self.lazy:
            return
        with torch.no_grad():
            factor = torch.where(self.seen, 1.0, self.product / self.synced).to(self.weight.dtype)  # (V,)
            self.weight.mul_(factor[:, None])
        self.synced.fill_(self.product)

    # ------------------------------------------------------------------ gradient

    def densify(self) -> None:
        """Take the weight's sparse gradient (summed over the step's batches): lazy, keep its
        rows for :meth:`clip` and :meth:`step` and leave the weight without a gradient (so
        AdamW's own step passes it by); else write it into the dense buffer. A no-op when
        the weight has no gradient (a frozen encoder)."""
        import torch

        grad = self.weight.grad
        if grad is None or not grad.is_sparse:
            self.rows = self.values = None
            return
        grad = grad.coalesce()  # one row per used token id, duplicates summed, sorted
        rows, values = grad.indices()[0], grad.values()  # (n,), (n, H)
        if self.lazy:
            self.rows, self.values = rows, values
            self.weight.grad = None
            return
        if self.buffer is None:
            self.buffer = torch.zeros_like(self.weight)
        elif self.rows is not None:
            self.buffer.index_fill_(0, self.rows, 0.0)
        self.buffer.index_copy_(0, rows, values)
        self.rows, self.values = rows, None
        self.weight.grad = self.buffer

    def clip(self, parameters, max_norm: float):
        """``torch.nn.utils.clip_grad_norm_(parameters, max_norm)`` after :meth:`densify`:
        the total 2-norm of all gradients, and every gradient scaled by
        ``min(1, max_norm / (norm + 1e-6))``; the embedding's part over its used rows.
        Returns the total norm, shape ()."""
        import torch

        grads = [p.grad for p in parameters if p.grad is not None and p is not self.weight]
        norms = [torch.linalg.vector_norm(g) for g in grads]
        if self.values is not None:
            norms.append(torch.linalg.vector_norm(self.values))
        elif self.rows is not None:  # read back from the buffer: a GradScaler may have unscaled it
            norms.append(torch.linalg.vector_norm(self.buffer.index_select(0, self.rows)))
        if not norms:
            return torch.tensor(0.0)
        total = torch.linalg.vector_norm(torch.stack(norms))
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        for g in grads:
            g.mul_(coef)
        if self.values is not None:
            self.values.mul_(coef)
        elif self.rows is not None:
            self.buffer[self.rows] = self.buffer[self.rows] * coef
        return total

    def undo(self) -> None:
        """Settle the weights and give the embedding back its dense gradients (the model
        handed back runs as loaded)."""
        self.settle()
        if self.hook is not None:
            self.hook.remove()
        self.embedding.sparse = False
        self.lazy = False
        self.buffer = self.rows = self.values = self.seen = self.seen_rows = self.synced = self.hook = None


def sparse_word_grad(model, num_processes: int = 1):
    """A :class:`SparseWordGrad` for ``model``'s input embedding, or None where it does not
    apply: several processes, no ``nn.Embedding`` input, or a weight that another module
    shares (tied to an output layer)."""
    import torch

    if num_processes != 1:
        return None
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if type(embedding) is not torch.nn.Embedding or embedding.max_norm is not None:
        return None
    shared = [name for name, p in model.named_parameters(remove_duplicate=False) if p is embedding.weight]
    if len(shared) != 1:
        return None
    return SparseWordGrad(embedding)


# ------------------------------------------------------------------------ dropout masks
#
# On a CPU, PyTorch draws each dropout mask element with its own Bernoulli sample from the
# Mersenne Twister (torch.bernoulli_), ~6 ns an element on one core: 20 masks a step for
# a 6-layer BERT, and the attention-probability masks grow with the square of the length.
# One 32-bit draw gives two mask elements here: its two 16-bit halves, each cut to 15
# uniform bits (torch's int32 random_ is uniform on [0, 2**31)) and compared with one
# threshold. Drop rate: the nearest multiple of 2**-15 to p (0.1 -> 0.1000061); kept
# elements are scaled by 1 / (1 - p) and the backward uses the same bool mask, as torch's
# native_dropout does; masks come from torch's default generator, so seeding works as before.


def _keep_mask(shape, p: float):
    """A bool mask of ``shape``, each element False with probability ~``p`` (see above)."""
    import torch

    n = 1
    for size in shape:
        n *= size
    draws = torch.empty((n + 1) // 2, dtype=torch.int32).random_()   # uniform on [0, 2**31)
    halves = draws.view(torch.int16).bitwise_and_(0x7FFF)             # 2 per draw, 15 bits each (in place)
    return (halves >= round(p * 32768))[:n].view(shape)


def _dropout_function():
    import torch

    class FastDropoutFunction(torch.autograd.Function):
        """``x * keep / (1 - p)``; the backward scales the gradient by the same mask. Both
        through torch's ``native_dropout_backward`` kernel (``x * keep * scale``), with the
        bool mask kept as torch's ``native_dropout`` keeps it (1 byte an element)."""

        @staticmethod
        def forward(ctx, x, p):
            keep = _keep_mask(x.shape, p)
            ctx.scale = 1.0 / (1.0 - p)
            ctx.save_for_backward(keep)
            return torch.ops.aten.native_dropout_backward(x, keep, ctx.scale)

        @staticmethod
        def backward(ctx, grad):
            (keep,) = ctx.saved_tensors
            return torch.ops.aten.native_dropout_backward(grad, keep, ctx.scale), None

    return FastDropoutFunction


_FUNCTION = None


def fast_dropout(x, p: float, training: bool = True):
    """``torch.nn.functional.dropout(x, p, training)`` with the masks drawn as above."""
    global _FUNCTION
    if not training or p == 0.0:
        return x
    if not 0.0 < p < 1.0:
        import torch.nn.functional as F

        return F.dropout(x, p, training)
    if _FUNCTION is None:
        _FUNCTION = _dropout_function()
    return _FUNCTION.apply(x, p)


_MODULE = None


def _fast_dropout_module():
    """The ``FastDropout`` class: ``nn.Dropout`` drawing its masks with :func:`fast_dropout`
    (same ``p``); a model's dropout layers are switched to it by class, and back."""
    global _MODULE
    if _MODULE is None:
        import torch

        class FastDropout(torch.nn.Dropout):
            def forward(self, x):
                if self.inplace:  # not used by the models here; keep torch's own
                    return super().forward(x)
                return fast_dropout(x, self.p, self.training)

        _MODULE = FastDropout
    return _MODULE


_ATTENTION = "bertkit_fast_dropout"  # + "_sdpa" or "_eager", the implementation it falls back on


def _attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """Attention with its probabilities dropped by :func:`fast_dropout` while training;
    any other case goes to the model's own implementation (``module._bertkit_attention``).
    The maths of PyTorch's SDPA math path: softmax(q k^T * scaling + mask) v."""
    import torch

    own = module._bertkit_attention
    plain = (dropout == 0.0 or kwargs.get("is_causal") or getattr(module, "is_causal", False)
             or kwargs.get("position_bias") is not None or kwargs.get("softcap") is not None
             or getattr(module, "num_key_value_groups", 1) != 1 or kwargs.get("output_attentions"))
    if plain:
        return own(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    # in the inputs' dtype, as SDPA's one operator runs (under bf16 autocast, a float32
    # softmax would keep float32 probabilities and masks of (B, h, T, T) for the backward)
    with torch.autocast(query.device.type, enabled=False):
        scores = torch.matmul(query, key.transpose(-1, -2)) * scaling  # (B, h, Tq, Tk)
        if attention_mask is not None:
            if attention_mask.dtype == torch.bool:
                scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
            else:
                scores = scores + attention_mask.to(scores.dtype)
        probs = fast_dropout(torch.softmax(scores, dim=-1), dropout)
        return torch.matmul(probs, value).transpose(1, 2).contiguous(), None  # (B, Tq, h, d)


def use_fast_dropout(model) -> bool:
    """Draw ``model``'s dropout masks with :func:`fast_dropout` while it trains: every
    ``nn.Dropout`` becomes a :class:`FastDropout` (same ``p``) and the attention
    probabilities are dropped by :func:`_attention`. Only for models whose attention goes
    through Hugging Face's attention interface with ``sdpa`` or ``eager`` (BERT and its
    kin in transformers 5.x); returns False and changes nothing otherwise. Undone by
    :func:`undo_fast_dropout`. Eval mode (validation, export) runs the model's own pass."""
    import torch

    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    except ImportError:  # pragma: no cover - an old transformers
        return False
    config = model.config
    own = getattr(config, "_attn_implementation", None)
    if own not in ("sdpa", "eager") or getattr(config, "is_decoder", False):
        return False
    if own == "sdpa":
        own_fn = ALL_ATTENTION_FUNCTIONS["sdpa"]
    else:
        from transformers.models.bert.modeling_bert import eager_attention_forward as own_fn
    name = f"{_ATTENTION}_{own}"
    AttentionInterface.register(name, _attention)
    # the masks the model builds for its own implementation (transformers builds none for
    # a name it has no mask function for: padding would be attended to)
    AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[own])
    fast = _fast_dropout_module()
    for module in model.modules():
        if type(module) is torch.nn.Dropout:
            module.__class__ = fast
        elif getattr(module, "config", None) is config:  # the modules that call the attention
            module._bertkit_attention = own_fn
    model._bertkit_own_attention = own
    ok = _same_eval_logits(model, lambda: setattr(config, "_attn_implementation", name))
    if not ok:
        undo_fast_dropout(model)
    return ok


def _same_eval_logits(model, change) -> bool:
    """Whether ``model``'s eval-mode output on a random batch with padding is the same
    (rtol 1e-4, atol 1e-5) before and after ``change()`` (a check that the changed model
    still builds its masks and calls its attention as before)."""
    import torch

    was_training = model.training
    try:
        model.eval()
        gen = torch.Generator().manual_seed(0)
        device = next(model.parameters()).device
        ids = torch.randint(1, model.config.vocab_size, (3, 9), generator=gen).to(device)
        mask = torch.ones_like(ids)
        mask[1, 5:] = 0  # padding, so the mask path is checked too
        with torch.no_grad():
            before = model(input_ids=ids, attention_mask=mask)[0]
            change()
            after = model(input_ids=ids, attention_mask=mask)[0]
        return after.shape == before.shape and torch.allclose(after, before, rtol=1e-4, atol=1e-5)
    except Exception:  # an attribute a newer transformers renamed: keep the model's own pass
        return False
    finally:
        model.train(was_training)


def undo_fast_dropout(model) -> None:
    """Give ``model`` back its own dropout and attention (no-op if not changed)."""
    import torch

    own = getattr(model, "_bertkit_own_attention", None)
    if own is None:
        return
    model.config._attn_implementation = own
    del model._bertkit_own_attention
    for module in model.modules():
        if _MODULE is not None and type(module) is _MODULE:
            module.__class__ = torch.nn.Dropout
        module.__dict__.pop("_bertkit_attention", None)
