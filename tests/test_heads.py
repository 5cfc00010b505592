"""The mean-pooled head (``head="mean"``): what it reads, and that a saved folder loads with
it through every path bertkit has (torch, ONNX, a model loaded by plain transformers)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import build_tiny_model

from bertkit.errors import InputError
from bertkit.heads import POOLING_KEY, apply_head, default_head
from bertkit.models import load_model

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXTS = ["the team won the match", "sky", "we eat sweet food and the sun was blue"]


@pytest.fixture
def mean_clf(tmp_path):
    """A tiny BERT classifier (3 outputs) given the mean head, with its tokenizer."""
    folder = build_tiny_model(tmp_path / "clf", num_labels=3, seed=1)
    model, tok = load_model(folder, task="classification")
    apply_head(model, "mean")
    return model, tok


def test_mean_head_reads_the_masked_mean_of_the_last_layer(mean_clf):
    model, tok = mean_clf
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    assert (enc["attention_mask"] == 0).any()  # padding present, so the mask matters
    with torch.no_grad():
        logits = model(**enc).logits
        states = model.bert._bertkit_pooled_forward(**enc, return_dict=True).last_hidden_state
    mask = enc["attention_mask"][:, :, None].float()
    mean = (states * mask).sum(1) / mask.sum(1)
    torch.testing.assert_close(logits, model.classifier(mean))  # dropout is off in eval mode
    # each row as it is alone: padding does not reach the head
    for i, text in enumerate(TEXTS):
        with torch.no_grad():
            alone = model(**tok([text], return_tensors="pt")).logits
        torch.testing.assert_close(alone[0], logits[i], atol=1e-5, rtol=1e-4)
    assert not any(p.requires_grad for p in model.bert.pooler.parameters())


def test_saved_mean_head_loads_back_in_torch_and_onnx(mean_clf, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from transformers import AutoModelForSequenceClassification

    from bertkit.backends import load_backend

    monkeypatch.setenv("BERTKIT_CACHE", str(tmp_path / "cache"))
    model, tok = mean_clf
    out = tmp_path / "saved"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    assert json.loads((out / "config.json").read_text())[POOLING_KEY] == "mean"
    enc = tok(TEXTS, padding=True, return_tensors="np")
    ids, mask, types = enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]
    with torch.no_grad():
        want = model(**tok(TEXTS, padding=True, return_tensors="pt")).logits
    for backend in ("torch", "onnx"):
        got = load_backend(str(out), backend=backend, kind="classifier").forward(ids, mask, types)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4, msg=backend)
    # plain transformers reads [CLS] through the pooler: different numbers (why bertkit's
    # loader must restore the head, and why the docs say so)
    plain = AutoModelForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        other = plain(**tok(TEXTS, padding=True, return_tensors="pt")).logits
    assert not torch.allclose(other, want, atol=1e-3)


def test_another_head_undoes_the_mean_head(mean_clf):
    model, tok = mean_clf
    apply_head(model, "linear")
    assert not hasattr(model.config, POOLING_KEY) and "forward" not in vars(model.bert)
    enc = tok(TEXTS[:1], return_tensors="pt")
    with torch.no_grad():
        cls = model.bert(**enc).last_hidden_state[:, 0]
        torch.testing.assert_close(model(**enc).logits, model.classifier(torch.tanh(cls)))


def test_mean_is_an_option_never_the_default():
    from transformers import BertConfig, BertForSequenceClassification

    model = BertForSequenceClassification(BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=40, num_labels=1))
    assert default_head(model) == "linear"
    with pytest.raises(InputError, match="'head' parameter must be one of linear, mlp, mean"):
        apply_head(model, "max")


def test_mean_head_needs_a_pooler_read_by_the_classifier():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    distil = DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=50, max_position_embeddings=40, dim=16, n_layers=1, n_heads=2, hidden_dim=32))
    with pytest.raises(InputError, match="head='mean' needs a BERT-style model"):
        apply_head(distil, "mean")


def test_training_with_the_mean_head_skips_the_cls_shortcut(tiny_model_dir, tmp_path):
    import pandas as pd

    from bertkit import Classifier

    rng = np.random.default_rng(0)
    words = {"a": ["team", "won", "match"], "b": ["sky", "blue", "sun"]}
    labels = rng.choice(["a", "b"], 60)
    data = pd.DataFrame({"text": [" ".join(rng.choice(words[y], 3)) for y in labels], "label": labels})
    clf = Classifier.train(data, output=tmp_path / "m",
                           model=tiny_model_dir, epochs=4, batch_size=8, lr=5e-3, head="mean",
                           precision="fp32", refit=False, val_split=0.2, device="cpu", verbose=False)
    args = json.loads((tmp_path / "m" / "training_args.json").read_text())
    assert args["config"]["head"] == "mean" and args["cls_only_last_layer"] is False
    assert clf.model.config.bertkit_pooling == "mean"
    assert [p["label"] for p in clf.predict(["team won match", "blue sky sun"])] == ["a", "b"]


def test_a_classifier_loaded_by_plain_transformers_gets_its_mean_head_back(mean_clf, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from bertkit.backends import load_backend

    model, tok = mean_clf
    model.save_pretrained(tmp_path / "saved")
    enc = tok(TEXTS, padding=True, return_tensors="np")
    with torch.no_grad():
        want = model(**tok(TEXTS, padding=True, return_tensors="pt")).logits
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved").eval()
    got = load_backend(plain, kind="classifier").forward(enc["input_ids"], enc["attention_mask"],
                                                           enc["token_type_ids"])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
