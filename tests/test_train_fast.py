"""The training fast paths (bertkit.train_fast) against the plain Hugging Face step: the
[CLS]-only last layer (same logits and gradients), the word-embedding gradient and AdamW
by rows (same gradients, clipping and updates), the dropout masks (rates, maths, seeding);
each used by training and undone afterwards."""

import json
from pathlib import Path

import pytest
import torch

from bertkit.train_fast import SparseWordGrad, cls_only_last_layer, sparse_word_grad, undo_cls_only

from conftest import build_tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _classifier(tmp_path, dropout=0.0):
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(build_tiny_model(tmp_path / "m", num_labels=3),
                                                          hidden_dropout_prob=dropout,
                                                          attention_probs_dropout_prob=dropout)
    return model


def _batch():
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 60, (4, 11), generator=gen)
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    mask[2, 3:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def _logits_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    logits = model(**batch).logits
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 1])).backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_training_pass_has_the_same_logits_and_gradients(tmp_path):
    model = _classifier(tmp_path)  # no dropout: both passes are deterministic
    model.train()
    batch = _batch()
    full_logits, full_grads = _logits_and_grads(model, batch)
    assert cls_only_last_layer(model)
    hidden = model.bert(**batch).last_hidden_state
    assert hidden.shape[1] == 1  # the last layer really computed the [CLS] row only
    logits, grads = _logits_and_grads(model, batch)
    torch.testing.assert_close(logits, full_logits, rtol=1e-5, atol=1e-6)
    # the last layer's query gets gradient from row 0 only, as in the full pass
    assert set(grads) == set(full_grads)
    for name, g in full_grads.items():
        torch.testing.assert_close(grads[name], g, rtol=1e-4, atol=1e-6, msg=name)


def test_eval_mode_and_undo_give_the_models_own_pass(tmp_path):
    model = _classifier(tmp_path, dropout=0.1)
    assert cls_only_last_layer(model)
    model.eval()
    with torch.no_grad():
        assert model.bert(**_batch()).last_hidden_state.shape[1] == 11
    undo_cls_only(model)
    model.train()
    assert model.bert(**_batch()).last_hidden_state.shape[1] == 11
    assert "forward" not in vars(model.bert.encoder.layer[-1])


def test_other_models_are_left_alone(tmp_path):
    from transformers import BertModel

    base = BertModel.from_pretrained(build_tiny_model(tmp_path / "b"))
    assert not cls_only_last_layer(base)
    assert "forward" not in vars(base.encoder.layer[-1])


def test_training_uses_it_and_hands_back_the_plain_model(tiny_model_dir, tmp_path):
    from bertkit import Classifier

    topics = Path(__file__).parent / "fixtures" / "train_topics.csv"
    Classifier.train(topics, output=tmp_path / "out", model=tiny_model_dir, epochs=1, batch_size=8,
                           lr=5e-4, precision="fp32", device="cpu", verbose=False)
    args = json.loads((tmp_path / "out" / "training_args.json").read_text())
    assert args["cls_only_last_layer"] is True
    assert args["sparse_word_grad"] is True


# ------------------------------------------------------------------ word-embedding gradient by rows


def _dense_step(model, batch, labels, max_norm):
    """Gradients and total norm of the plain path: dense backward, clip_grad_norm_."""
    model.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(**batch).logits, labels).backward()
    total = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    return total, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _sparse_step(model, rows, batch, labels, max_norm):
    model.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(**batch).logits, labels).backward()
    assert model.bert.embeddings.word_embeddings.weight.grad.is_sparse
    rows.densify()
    total = rows.clip(list(model.parameters()), max_norm)
    return total, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_rows_give_the_dense_gradient_and_clipping(tmp_path):
    model = _classifier(tmp_path)  # no dropout: both passes are deterministic
    model.train()
    first = _batch()
    first["input_ids"][1, :4] = 7  # a token id used several times: its rows are summed
    second = _batch()
    second["input_ids"] = (second["input_ids"] * 3) % 59 + 1  # other rows than the first batch's
    labels = torch.tensor([0, 1, 2, 1])
    for max_norm in (1e-3, 1e3):  # clipping scales, and clipping leaves alone
        dense = [_dense_step(model, b, labels, max_norm) for b in (first, second)]
        rows = SparseWordGrad(model.bert.embeddings.word_embeddings)
        sparse = [_sparse_step(model, rows, b, labels, max_norm) for b in (first, second)]
        rows.undo()
        assert not model.bert.embeddings.word_embeddings.sparse
        for (d_total, d_grads), (s_total, s_grads) in zip(dense, sparse):
            torch.testing.assert_close(s_total, d_total, rtol=1e-5, atol=1e-7)
            assert set(s_grads) == set(d_grads)
            for name, g in d_grads.items():
                # the second step's buffer holds no row of the first step's
                torch.testing.assert_close(s_grads[name], g, rtol=1e-5, atol=1e-9, msg=name)


def test_rows_apply_to_one_process_and_untied_embeddings_only(tmp_path):
    from transformers import BertForMaskedLM

    model = _classifier(tmp_path)
    assert sparse_word_grad(model, num_processes=2) is None  # DDP would exchange a sparse tensor
    tied = BertForMaskedLM.from_pretrained(build_tiny_model(tmp_path / "lm"))
    assert sparse_word_grad(tied) is None  # the output layer shares the weight
    assert not tied.bert.embeddings.word_embeddings.sparse
    rows = sparse_word_grad(model)
    assert rows is not None and model.bert.embeddings.word_embeddings.sparse


def test_training_with_rows_matches_dense_training(tiny_model_dir, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from bertkit import Classifier
    import bertkit.train_fast as train_fast

    topics = Path(__file__).parent / "fixtures" / "train_topics.csv"
    options = dict(model=tiny_model_dir, epochs=2, batch_size=8, lr=5e-4, precision="fp32", device="cpu",
                   verbose=False, seed=3)
    Classifier.train(topics, output=tmp_path / "rows", **options)
    monkeypatch.setattr(train_fast, "sparse_word_grad", lambda model, num_processes=1: None)
    Classifier.train(topics, output=tmp_path / "dense", **options)
    args = [json.loads((tmp_path / d / "training_args.json").read_text()) for d in ("rows", "dense")]
    assert [a["sparse_word_grad"] for a in args] == [True, False]
    rows, dense = (load_file(tmp_path / d / "model.safetensors") for d in ("rows", "dense"))
    assert set(rows) == set(dense)
    for name in dense:  # same maths; only the order of float sums differs
        torch.testing.assert_close(rows[name], dense[name], rtol=1e-4, atol=1e-5, msg=name)


# ------------------------------------------------------------------ dropout masks


def test_masks_drop_at_the_rate_asked_in_both_halves_and_follow_the_seed():
    from bertkit.train_fast import _keep_mask

    torch.manual_seed(0)
    keep = _keep_mask((1000, 1001), 0.1)  # odd size: the last draw is half used
    assert keep.shape == (1000, 1001) and keep.dtype == torch.bool
    flat = keep.view(-1)[:1_000_000].view(-1, 2).float()
    dropped = 1 - flat.mean(dim=0)  # the 16-bit and the 15-bit halves of the draws
    assert torch.allclose(dropped, torch.tensor([0.1, 0.1]), atol=0.002), dropped
    # neighbours are not correlated (the two halves of one draw)
    assert abs(torch.corrcoef(flat.T)[0, 1]) < 0.005
    torch.manual_seed(0)
    assert torch.equal(_keep_mask((1000, 1001), 0.1), keep)
    for p in (0.25, 0.5):
        assert abs((1 - _keep_mask((400_000,), p).float().mean()) - p) < 0.003


def test_fast_dropout_is_dropout_maths():
    from bertkit.train_fast import _keep_mask, fast_dropout

    x = torch.randn(6, 7, requires_grad=True)
    assert fast_dropout(x, 0.1, training=False) is x and fast_dropout(x, 0.0) is x
    torch.manual_seed(5)
    y = fast_dropout(x, 0.2)
    torch.manual_seed(5)
    keep = _keep_mask(x.shape, 0.2)
    torch.testing.assert_close(y, x.detach() * keep / 0.8)
    y.sum().backward()
    torch.testing.assert_close(x.grad, keep.float() / 0.8)
    low = x.detach().bfloat16()  # bf16: the scale is not rounded into a bf16 mask
    torch.manual_seed(5)
    y = fast_dropout(low, 0.2)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y, (low * keep).mul_(1 / 0.8))


def test_attention_drops_probabilities_and_eval_runs_the_models_own_pass(tmp_path, monkeypatch):
    import bertkit.train_fast as train_fast
    from bertkit.train_fast import undo_fast_dropout, use_fast_dropout

    model = _classifier(tmp_path, dropout=0.1)
    batch = _batch()
    model.eval()
    with torch.no_grad():
        before = model(**batch).logits
    assert use_fast_dropout(model)
    assert model.config._attn_implementation == "bertkit_fast_dropout_sdpa"
    assert type(model.dropout).__name__ == "FastDropout" and model.dropout.p == 0.1
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, before)  # eval: the model's own pass

    # training: softmax(q k^T * s + mask) with the drawn mask applied, then times v
    layer = model.bert.encoder.layer[0].attention.self
    gen = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(4, 2, 5, 16, generator=gen) for _ in range(3))
    mask = torch.ones(4, 1, 5, 5, dtype=torch.bool)
    mask[1, ..., 3:] = False
    fixed = torch.rand(4, 2, 5, 5, generator=gen) > 0.3
    monkeypatch.setattr(train_fast, "_keep_mask", lambda shape, p: fixed)
    out, _ = train_fast._attention(layer, q, k, v, mask, dropout=0.3, scaling=0.25)
    scores = (q @ k.transpose(-1, -2) * 0.25).masked_fill(~mask, torch.finfo(q.dtype).min)
    expected = (torch.softmax(scores, -1) * fixed / 0.7) @ v
    torch.testing.assert_close(out, expected.transpose(1, 2))
    monkeypatch.undo()

    model.train()
    torch.manual_seed(9)
    a = model(**batch).logits
    torch.manual_seed(9)
    b = model(**batch).logits
    torch.testing.assert_close(a, b)  # seeded: the same masks
    a.sum().backward()
    assert all(p.grad is not None for p in model.bert.encoder.parameters())
    undo_fast_dropout(model)
    assert model.config._attn_implementation == "sdpa" and type(model.dropout) is torch.nn.Dropout
    assert not any("_bertkit_attention" in vars(m) for m in model.modules())
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, before)


class _Tiny(torch.nn.Module):
    """An embedding (200 rows) and a linear layer: enough for AdamW's two groups."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(200, 8, padding_idx=0)
        self.lin = torch.nn.Linear(8, 3)

    def get_input_embeddings(self):
        return self.emb

    def forward(self, ids):
        return self.lin(self.emb(ids).mean(dim=1))


def _optimizer(model, wd):
    groups = [{"params": [model.emb.weight, model.lin.weight], "weight_decay": wd},
              {"params": [model.lin.bias], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=1e-2, fused=True)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1 + step))


def _ids(step):
    """Rows 0-29 first, then more and more rows (new rows keep appearing), padding included."""
    gen = torch.Generator().manual_seed(step)
    return torch.randint(0, 30 + 6 * step, (4, 5), generator=gen)


def _train(model, opt, sched, steps, rows=None, start=0):
    for step in range(start, start + steps):
        ids = _ids(step)
        loss = torch.nn.functional.cross_entropy(model(ids), ids[:, 0] % 3)
        loss.backward()
        max_norm = 0.05 if step % 3 == 0 else 100.0  # clipping on some steps
        if rows is None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        else:
            rows.densify()
            rows.clip(list(model.parameters()), max_norm)
        opt.step()
        if rows is not None:
            rows.step()
        sched.step()
        opt.zero_grad(set_to_none=True)


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_lazy_adamw_matches_adamw_and_resumes(wd):
    reference = _Tiny()
    opt, sched = _optimizer(reference, wd)
    _train(reference, opt, sched, 24)

    model = _Tiny()
    lazy_opt, lazy_sched = _optimizer(model, wd)
    rows = sparse_word_grad(model)
    assert rows.use_lazy_adamw(lazy_opt)
    _train(model, lazy_opt, lazy_sched, 10, rows)
    assert rows.lazy  # 30 + 6 * 9 = 84 of 200 rows at most: still under half
    assert 0 < int(rows.seen.sum()) < 100
    rows.settle()  # as a checkpoint does
    saved = {"model": {k: v.clone() for k, v in model.state_dict().items()},
             "opt": lazy_opt.state_dict(), "sched": lazy_sched.state_dict()}

    resumed = _Tiny()  # a new process: the checkpoint's weights and optimizer state
    resumed.load_state_dict(saved["model"])
    opt2, sched2 = _optimizer(resumed, wd)
    opt2.load_state_dict(saved["opt"])
    sched2.load_state_dict(saved["sched"])
    rows2 = sparse_word_grad(resumed)
    assert rows2.use_lazy_adamw(opt2)
    torch.testing.assert_close(rows2.seen, rows.seen)  # the seen rows, read from the moments
    _train(resumed, opt2, sched2, 14, rows2, start=10)
    assert not rows2.lazy  # over half of the rows seen: back to AdamW's own step
    rows2.undo()
    assert not resumed.emb.sparse

    for name, value in reference.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=1e-5, atol=1e-6, msg=name)
    ref_state, state = opt.state[reference.emb.weight], opt2.state[resumed.emb.weight]
    for key in ("exp_avg", "exp_avg_sq", "step"):
        torch.testing.assert_close(state[key], ref_state[key], rtol=1e-5, atol=1e-7, msg=key)


def test_unseen_rows_decay_only_when_settled():
    model = _Tiny()
    opt, _ = _optimizer(model, 0.1)
    rows = sparse_word_grad(model)
    assert rows.use_lazy_adamw(opt)
    before = model.emb.weight.detach().clone()
    model(torch.tensor([[1, 2]])).sum().backward()
    rows.densify()
    assert model.emb.weight.grad is None  # AdamW's own step passes the embedding by
    opt.step()
    rows.step()
    unseen = model.emb.weight[5].detach().clone()
    assert torch.equal(unseen, before[5])  # not touched yet: the decay is pending
    rows.settle()
    torch.testing.assert_close(model.emb.weight[5].detach(), before[5] * (1 - 1e-2 * 0.1))
    assert not torch.equal(model.emb.weight[1].detach(), before[1] * (1 - 1e-2 * 0.1))  # a seen row: AdamW
