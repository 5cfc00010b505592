"""Classifier.predict / predict_proba / evaluate / predict_file, on a tiny trained model,
and one integration run that fine-tunes the real default model on the shipped example."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

from bertkit import Classifier
from bertkit.errors import DataError, InputError
from bertkit.labelled import example_data

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
TOPICS = os.path.join(FIX, "train_topics.csv")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def clf_dir(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("clf") / "model"
    Classifier.train(TOPICS, output=out, model=tiny_model_dir, epochs=2, batch_size=8, lr=1e-3,
                     precision="fp32", device="cpu", verbose=False)
    return out


@pytest.fixture(scope="module")
def pair_dir(tiny_model_dir, tmp_path_factory):
    rows = [("the team won", "the game", "same"), ("the sun", "the sky was blue", "same"),
            ("we ate food", "the match was lost", "different"), ("rain at night", "sweet bars", "different")] * 6
    path = tmp_path_factory.mktemp("pairs") / "pairs.tsv"
    pd.DataFrame(rows, columns=["premise", "hypothesis", "label"]).to_csv(path, sep="\t", index=False)
    out = path.parent / "model"
    Classifier.train(path, output=out, model=tiny_model_dir, text_column="premise",
                     pair_column="hypothesis", epochs=1, batch_size=8, precision="fp32",
                     device="cpu", verbose=False)
    return out, path


def test_predict_shapes_and_order(clf_dir):
    clf = Classifier(clf_dir, device="cpu")
    assert clf.labels == ["food", "sky", "sport"] and clf.max_length == 64
    one = clf.predict("the team won the match")
    assert set(one) == {"label", "probabilities", "truncated"} and one["label"] in clf.labels
    assert one["truncated"] is False
    assert sum(one["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    texts = ["the sun", "we ate the sweet food and the gran bars " * 3, "team", "the rain at night"]
    probs = clf.predict_proba(texts, batch_size=2)
    assert probs.shape == (4, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    singles = np.vstack([clf.predict_proba(t) for t in texts])
    np.testing.assert_allclose(probs, singles, atol=1e-5)  # sorted batching keeps input order
    many = clf.predict(texts)
    assert [m["label"] for m in many] == [clf.labels[i] for i in probs.argmax(1)]
    assert clf.predict_proba([]).shape == (0, 3)
    assert "Classifier(" in repr(clf)


def test_predict_bad_input(clf_dir):
    clf = Classifier(clf_dir, device="cpu")
    with pytest.raises(InputError, match=r"texts\[1\] is empty"):
        clf.predict(["ok", " "])
    with pytest.raises(InputError, match="'pairs' has 1 texts but 'texts' has 2"):
        clf.predict(["a", "b"], ["c"])


def test_evaluate_keys_defaults_and_plot(clf_dir, tmp_path):
    clf = Classifier(clf_dir, device="cpu")
    m = clf.evaluate(TOPICS, plot=tmp_path / "cm.png")
    for key in ("accuracy", "mcc", "f1_macro", "per_class", "confusion_matrix", "n"):
        assert key in m
    assert m["n"] == 90 and m["n_skipped"] == 0 and set(m["per_class"]) == {"food", "sky", "sport"}
    assert sum(map(sum, m["confusion_matrix"])) == 90
    assert open(m["plot"], "rb").read(4) == b"\x89PNG"
    json.dumps(m)
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nthe sun,weather\n")
    with pytest.raises(DataError, match="'weather'.*not seen in training.*'food', 'sky', 'sport'"):
        clf.evaluate(bad)


def test_evaluate_counts_bad_rows(clf_dir):
    m = Classifier(clf_dir, device="cpu").evaluate(os.path.join(FIX, "train_bad_rows.csv"))
    assert m["n"] == 3 and m["n_skipped"] == 3
    assert m["skipped"] == {"missing text": 2, "missing label": 1}
    with pytest.raises(DataError, match="--strict"):
        Classifier(clf_dir, device="cpu").evaluate(os.path.join(FIX, "train_bad_rows.csv"), strict=True)


@pytest.mark.parametrize("ext", ["csv", "jsonl", "parquet"])
def test_predict_file(clf_dir, tmp_path, ext):
    clf = Classifier(clf_dir, device="cpu")
    src = tmp_path / "in.csv"
    src.write_text("id,text,label\n1,the team won,sport\n2,,food\n3,the sun in the sky,sky\n")
    out = tmp_path / f"out.{ext}"
    summary = clf.predict_file(src, out)
    assert summary["n_rows"] == 3 and summary["n_predicted"] == 2 and summary["n_skipped"] == 1
    frame = {"csv": pd.read_csv, "jsonl": lambda p: pd.read_json(p, lines=True),
             "parquet": pd.read_parquet}[ext](out)
    assert list(frame.columns) == ["id", "text", "label", "prediction", "prob_food", "prob_sky", "prob_sport"]
    assert frame["prediction"].isna().tolist() == [False, True, False]
    probs = frame[["prob_food", "prob_sky", "prob_sport"]].to_numpy()
    np.testing.assert_allclose(probs[[0, 2]], clf.predict_proba(["the team won", "the sun in the sky"]), atol=1e-5)
    with pytest.raises(InputError, match="--output must end in"):
        clf.predict_file(src, tmp_path / "out.txt")


def test_pairs(pair_dir, monkeypatch):
    out, path = pair_dir
    clf = Classifier(out, device="cpu")
    assert clf.training_args["data"]["pair_column"] == "hypothesis"
    m = clf.evaluate(path)  # columns default to the training ones
    assert m["n"] == 24
    p = clf.predict("the team won", "the game")
    assert p["label"] in ("same", "different")
    # the pair reaches the model: what predict hands the model is tokenizer(text, pair),
    # with segment 1 on the pair, and its probabilities are the transformers model's
    import torch
    from transformers import AutoModelForSequenceClassification

    import bertkit.predict

    fed = []
    real = bertkit.predict.predict_logits

    def spy(backend, enc, **kwargs):
        fed.append(enc)
        return real(backend, enc, **kwargs)

    monkeypatch.setattr(bertkit.predict, "predict_logits", spy)
    got = clf.predict_proba(["the team won"], ["the game"])[0]
    want_ids = clf.tokenizer("the team won", "the game")
    assert fed[0].input_ids[0] == want_ids["input_ids"]
    assert fed[0].token_type_ids[0] == want_ids["token_type_ids"] and sum(fed[0].token_type_ids[0]) == 3
    hf = AutoModelForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        want = hf(**clf.tokenizer("the team won", "the game", return_tensors="pt")).logits.softmax(-1)[0]
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)
    from bertkit.predict import encode_examples

    enc = encode_examples(clf.tokenizer, ["the team won"], ["the game"], max_length=64)
    assert enc.token_type_ids[0] == [0, 0, 0, 0, 0, 1, 1, 1]  # [CLS] a [SEP] | b [SEP]
    # over-long pairs lose tokens from the longer side first, and are counted
    enc = encode_examples(clf.tokenizer, ["the team won the match at night in the rain", "the sun"],
                          ["the game", "the sky"], max_length=9)
    tokens = clf.tokenizer.convert_ids_to_tokens(enc.input_ids[0])
    assert enc.n_truncated == 1 and len(tokens) == 9 and tokens[-3:] == ["the", "game", "[SEP]"]
    assert len(enc.input_ids[1]) == 7


@pytest.mark.integration
@pytest.mark.slow  # a long end-to-end run; `make test` runs it, -m 'not slow' skips it
def test_real_model_learns_the_example_topics(tmp_path):
    """Fine-tune the bundled all-MiniLM-L6-v2 briefly on the shipped example data."""
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    try:
        clf = Classifier.train(example_data("topics_train.csv"), output=tmp_path / "m", epochs=1,
                               verbose=False)
    finally:
        torch.set_num_threads(1)
    m = clf.evaluate(example_data("topics_test.csv"))
    assert m["n"] == 120
    assert m["accuracy"] > 0.8  # chance is 1/3
    assert clf.predict("The striker scored twice in the derby.")["label"] == "sports"
