"""The training loop on a tiny random BERT: batching, schedule, outputs, reproducibility,
exact resume after an interruption, heads, freezing, early stopping, config files."""

import csv
import json
import os

import numpy as np
import pytest
import torch

from bertkit import Classifier
from bertkit.errors import DataError, InputError
from bertkit.train import (LengthGroupedBatches, TrainConfig, lr_factor, main_metric, make_optimizer,
                           stats_table)

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
TOPICS = os.path.join(FIX, "train_topics.csv")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def train_tiny(tiny_model_dir, out, **kw):
    train = kw.pop("train", TOPICS)
    settings = dict(model=tiny_model_dir, epochs=2, batch_size=8, lr=5e-4, precision="fp32", refit=False,
                    device="cpu", verbose=False)
    settings.update(kw)
    return Classifier.train(train, output=out, **settings)


def history_numbers(result):
    keys = ("train_loss", "val_loss", "val_accuracy", "val_mcc", "val_f1_macro")
    return [[row.get(k) for k in keys] for row in result["history"]]


# ---------------------------------------------------------------------------- batching


def test_length_grouped_batches_cover_everything_once():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, 1000)
    sampler = LengthGroupedBatches(lengths, 16, seed=5, group=8)
    batches = list(sampler)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1000))
    assert all(len(b) <= 16 for b in batches)
    assert list(sampler) == batches  # same epoch, same order
    sampler.set_epoch(1)
    assert list(sampler) != batches
    assert LengthGroupedBatches(lengths, 16, seed=5, group=8).batches(1) == list(sampler)

    def padded(bs):
        return sum(len(b) * lengths[b].max() for b in bs)

    random_batches = [rng.permutation(1000)[i:i + 16] for i in range(0, 1000, 16)]
    assert padded(batches) < 0.75 * padded(random_batches)  # far less padding


def test_token_budget_caps_batches():
    lengths = np.array([50, 40, 10, 10, 10, 10, 10, 10, 5, 5])
    sampler = LengthGroupedBatches(lengths, 8, max_tokens=60, shuffle=False)
    for b in sampler:
        assert len(b) * lengths[b].max() <= 60 or len(b) == 1
    assert sorted(i for b in sampler for i in b) == list(range(10))


def test_schedule_and_metric_choice():
    assert lr_factor(0, 10, 100) == pytest.approx(1 / 11)
    assert lr_factor(10, 10, 100) == pytest.approx(1.0)
    assert lr_factor(55, 10, 100) == pytest.approx(0.5)
    assert lr_factor(100, 10, 100) == 0.0
    assert lr_factor(0, 0, 10) == 1.0
    assert main_metric("auto", {"a": 70, "b": 30}) == "mcc"
    assert main_metric("auto", {"a": 50, "b": 45, "c": 48}) == "accuracy"
    assert main_metric("f1_macro", {"a": 1, "b": 9}) == "f1_macro"


def test_optimizer_is_fused_adamw_with_the_same_maths():
    def params():
        g = torch.Generator().manual_seed(0)
        return [torch.nn.Parameter(torch.randn(5, 3, generator=g)), torch.nn.Parameter(torch.randn(3, generator=g))]

    a, b = params(), params()
    fused = make_optimizer([a[0]], [a[1]], lr=1e-2, weight_decay=0.1)
    plain = torch.optim.AdamW([{"params": [b[0]], "weight_decay": 0.1}, {"params": [b[1]], "weight_decay": 0.0}],
                              lr=1e-2, foreach=False)
    assert fused.defaults["fused"] is True  # torch has the kernel for CPU float32
    assert [g["weight_decay"] for g in fused.param_groups] == [0.1, 0.0]
    for step in range(5):
        for ps, opt in ((a, fused), (b, plain)):
            opt.zero_grad()
            (ps[0].sum(0) * ps[1] * (step + 1)).square().sum().backward()
            opt.step()
    for x, y, start in zip(a, b, params()):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(x, start, atol=1e-3)  # the steps moved the weights


def test_config_is_checked():
    with pytest.raises(InputError, match="'head' parameter of train must be one of"):
        TrainConfig(head="deep").check()
    with pytest.raises(InputError, match="'lr' parameter"):
        TrainConfig(lr=0).check()
    with pytest.raises(InputError, match="'warmup_ratio' parameter"):
        TrainConfig(warmup_ratio=1.5).check()
    with pytest.raises(InputError, match="CUDA_VISIBLE_DEVICES"):
        TrainConfig(device="cuda:1").check()


# ---------------------------------------------------------------------------- a full run


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "model"
    clf = train_tiny(tiny_model_dir, out, epochs=3, save_steps=5)
    return clf, out


def test_output_folder(trained):
    clf, out = trained
    names = set(os.listdir(out))
    for name in ("config.json", "model.safetensors", "training_args.json", "metrics.json",
                 "stats.csv", "learning_curves.png", "confusion_matrix.png", "tokenizer.json"):
        assert name in names
    assert "checkpoints" not in names  # removed once the run finished
    assert os.stat(out / "model.safetensors").st_mode & 0o044  # readable by others, as usual
    config = json.load(open(out / "config.json"))
    assert config["id2label"] == {"0": "food", "1": "sky", "2": "sport"}
    args = json.load(open(out / "training_args.json"))
    assert args["config"]["epochs"] == 3 and args["config"]["max_length"] == 64  # model limit
    assert args["data"]["split"] == {"val_split": 0.1, "seed": 42, "n_train": 81, "n_validation": 9}
    assert args["data"]["text_column"] == "text" and args["metric"] == "accuracy"
    metrics = json.load(open(out / "metrics.json"))
    assert len(metrics["history"]) == 3 and metrics["validation"]["n"] == 9
    hist = metrics["history"]  # best accuracy; ties go to the lower validation loss
    best = max(range(3), key=lambda i: (hist[i]["val_accuracy"], -hist[i]["val_loss"]))
    assert metrics["best_epoch"] == best + 1
    rows = list(csv.DictReader(open(out / "stats.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[0]["train_loss"]) == pytest.approx(metrics["history"][0]["train_loss"])
    for png in ("learning_curves.png", "confusion_matrix.png"):
        assert open(out / png, "rb").read(4) == b"\x89PNG"
    assert "val_loss" in stats_table(metrics["history"])


def test_loads_in_plain_transformers_with_same_logits(trained):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    clf, out = trained
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    texts = ["the team won the match", "we ate sweet food in the rain"]
    with torch.no_grad():
        logits = model(**tok(texts, padding=True, return_tensors="pt")).logits
    ours = clf.predict_proba(texts)
    np.testing.assert_allclose(torch.softmax(logits, -1).numpy(), ours, atol=1e-5)
    assert model.config.id2label[0] == "food"


def test_same_seed_same_metrics(trained, tiny_model_dir, tmp_path):
    clf, _ = trained
    again = train_tiny(tiny_model_dir, tmp_path / "again", epochs=3, save_steps=0)
    assert history_numbers(again.training_result) == history_numbers(clf.training_result)
    other = train_tiny(tiny_model_dir, tmp_path / "other", epochs=3, seed=7)
    assert history_numbers(other.training_result) != history_numbers(clf.training_result)


def test_resume_after_interruption_matches_uninterrupted(trained, tiny_model_dir, tmp_path):
    clf, _ = trained  # 3 epochs, 11 steps each, checkpoint every 5 steps
    out = tmp_path / "killed"

    def kill(state):
        if state.global_step == 18:  # epoch 2, batch 7; the last checkpoint is step 15
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_tiny(tiny_model_dir, out, epochs=3, save_steps=5, on_step=kill)
    assert (out / "checkpoints" / "last").is_dir() and not (out / "metrics.json").exists()
    with pytest.raises(InputError, match="--resume"):
        train_tiny(tiny_model_dir, out, epochs=3, save_steps=5)
    resumed = train_tiny(tiny_model_dir, out, epochs=3, save_steps=5, resume=True)
    assert history_numbers(resumed.training_result) == history_numbers(clf.training_result)
    assert resumed.training_result["metrics"] == clf.training_result["metrics"]
    with pytest.raises(InputError, match="finished training run"):
        train_tiny(tiny_model_dir, out, epochs=3, resume=True)


def test_resume_refuses_other_settings(tiny_model_dir, tmp_path):
    out = tmp_path / "m"

    def stop(state):
        if state.global_step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_tiny(tiny_model_dir, out, save_steps=2, on_step=stop)
    with pytest.raises(InputError, match="other data or settings"):
        train_tiny(tiny_model_dir, out, save_steps=2, lr=1e-3, resume=True)


# ---------------------------------------------------------------------------- options


def test_linear_head_and_frozen_encoder(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    clf = train_tiny(tiny_model_dir, tmp_path / "lin", freeze_encoder=True, epochs=1)  # default head
    trained = load_file(str(tmp_path / "lin" / "model.safetensors"))
    base = load_file(os.path.join(tiny_model_dir, "model.safetensors"))
    pooler = trained["bert.pooler.dense.weight"]
    assert torch.equal(pooler, torch.eye(pooler.shape[0]))  # linear head: identity pooler
    assert torch.equal(trained["bert.encoder.layer.0.attention.self.query.weight"],
                       base["encoder.layer.0.attention.self.query.weight"])  # frozen
    assert not torch.equal(trained["classifier.weight"][:, :4], torch.zeros(3, 4))
    assert json.load(open(tmp_path / "lin" / "training_args.json"))["config"]["head"] == "linear"
    assert clf.predict_proba(["the sun"]).shape == (1, 3)


def test_mlp_head_trains_the_pooler(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    train_tiny(tiny_model_dir, tmp_path / "mlp", head="mlp", freeze_encoder=True, epochs=1)
    trained = load_file(str(tmp_path / "mlp" / "model.safetensors"))
    base = load_file(os.path.join(tiny_model_dir, "model.safetensors"))
    assert not torch.equal(trained["bert.pooler.dense.weight"], base["pooler.dense.weight"])
    assert torch.equal(trained["bert.embeddings.word_embeddings.weight"], base["embeddings.word_embeddings.weight"])


def test_early_stopping_keeps_best(tiny_model_dir, tmp_path, monkeypatch):
    """Scripted validation scores (no reliance on float ties): best at epoch 2, then two
    epochs without a better score stop the run after epoch 4, and the exported weights
    are epoch 2's, not the last epoch's."""
    from safetensors.torch import load_file

    from bertkit import train_loop

    accuracy = [0.50, 0.75, 0.60, 0.70, 0.90]  # epoch 5 would be best: it must never run
    seen = []
    real = train_loop.evaluate

    def scripted(model, *args, **kwargs):
        val_loss, metrics = real(model, *args, **kwargs)
        weights = {n: p.detach().clone() for n, p in model.named_parameters() if "classifier" in n}
        seen.append(weights)
        return 1.0 - accuracy[len(seen) - 1], dict(metrics, accuracy=accuracy[len(seen) - 1])

    monkeypatch.setattr(train_loop, "evaluate", scripted)
    clf = train_tiny(tiny_model_dir, tmp_path / "es", epochs=5, early_stopping=2, metric="accuracy")
    result = clf.training_result
    assert result["stopped_early"] and len(result["history"]) == 4 and result["best_epoch"] == 2
    assert [row["val_accuracy"] for row in result["history"]] == accuracy[:4]
    saved = load_file(str(tmp_path / "es" / "model.safetensors"))
    for name, value in seen[1].items():  # epoch 2's head
        assert torch.equal(saved[name], value), name
        assert not torch.equal(seen[3][name], value)  # training went on after epoch 2


def test_accumulation_class_weights_token_budget_and_bf16(tiny_model_dir, tmp_path):
    clf = train_tiny(tiny_model_dir, tmp_path / "opts", epochs=1, grad_accum=3, class_weights="auto",
                     batch_tokens=200, precision="bf16", metric="mcc", val_split=0.2)
    result = clf.training_result
    assert result["metric"] == "mcc" and result["metrics"]["n"] == 18
    args = json.load(open(tmp_path / "opts" / "training_args.json"))
    assert args["precision"] == "bf16" and args["config"]["grad_accum"] == 3


def test_no_validation_keeps_last_epoch(tiny_model_dir, tmp_path):
    clf = train_tiny(tiny_model_dir, tmp_path / "noval", epochs=1, val_split=0)
    result = clf.training_result
    assert result["metrics"] is None and result["best_epoch"] is None
    assert not (tmp_path / "noval" / "confusion_matrix.png").exists()
    assert (tmp_path / "noval" / "learning_curves.png").exists()


def test_validation_file_and_truncation_count(tiny_model_dir, tmp_path):
    long = tmp_path / "long.csv"
    with open(long, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(12):
            w.writerow([("the team won " * 30) if i % 3 == 0 else "the sun", "sport" if i % 2 else "sky"])
    clf = train_tiny(tiny_model_dir, tmp_path / "v", train=long, validation=long, epochs=1)
    assert clf.training_result["n_truncated"] == {"train": 4, "validation": 4}
    bad_val = tmp_path / "bad.csv"
    bad_val.write_text("text,label\nthe sun,moon\n")
    with pytest.raises(DataError, match="'moon'.*not seen in training"):
        train_tiny(tiny_model_dir, tmp_path / "v2", validation=bad_val, epochs=1)
    with pytest.raises(InputError, match="either --validation"):
        train_tiny(tiny_model_dir, tmp_path / "v3", validation=long, val_split=0.2)


def test_single_label_and_output_checks(tiny_model_dir, tmp_path):
    one = tmp_path / "one.csv"
    one.write_text("text,label\nthe sun,a\nthe rain,a\nthe sky,a\n")
    with pytest.raises(InputError, match="single label"):
        train_tiny(tiny_model_dir, tmp_path / "x", train=one, val_split=0)
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    with pytest.raises(InputError, match="is a file"):
        train_tiny(tiny_model_dir, afile)


def test_yaml_config(tiny_model_dir, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"train: {TOPICS}\nmodel: {tiny_model_dir}\nepochs: 1\nbatch-size: 16\n"
                   "lr: 0.001\nval_split: 0.2\nprecision: fp32\nhead: linear\n")
    clf = Classifier.train(config=cfg, output=tmp_path / "y", batch_size=8, verbose=False)
    args = json.load(open(tmp_path / "y" / "training_args.json"))["config"]
    assert args["batch_size"] == 8 and args["lr"] == 0.001 and args["head"] == "linear"  # argument wins
    assert clf.training_result["metrics"]["n"] == 18
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: 0.1\n")
    with pytest.raises(InputError, match="Unknown key 'learning_rate'.*valid keys:.*\\blr\\b"):
        Classifier.train(config=bad, output=tmp_path / "z")


def test_heads_for_other_architectures():
    from transformers import (DistilBertConfig, DistilBertForSequenceClassification, RobertaConfig,
                              RobertaForSequenceClassification)

    from bertkit.heads import apply_head, default_head

    small = dict(vocab_size=50, max_position_embeddings=40, num_labels=3)
    roberta = RobertaForSequenceClassification(RobertaConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, **small))
    assert default_head(roberta) == "linear"
    apply_head(roberta, "linear")
    assert torch.equal(roberta.classifier.dense.weight, torch.eye(16))
    assert not roberta.classifier.dense.weight.requires_grad
    distil = DistilBertForSequenceClassification(DistilBertConfig(
        dim=16, n_layers=1, n_heads=2, hidden_dim=32, **small))
    assert default_head(distil) == "mlp"
    with pytest.raises(InputError, match="head='mlp'"):
        apply_head(distil, "linear")


# ---------------------------------------------------------------------------- --overwrite keeps the old model until the new one is done


def _model_files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_overwrite_with_bad_data_keeps_the_old_model(tiny_model_dir, tmp_path):
    out = tmp_path / "m"
    train_tiny(tiny_model_dir, out, epochs=1)
    before = _model_files(out)
    probs = Classifier(out).predict_proba(["the team won the match"])
    single = tmp_path / "single.csv"
    single.write_text("text,label\na good movie,pos\na great film,pos\nfun plot,pos\n")
    with pytest.raises(InputError, match="single label"):
        train_tiny(tiny_model_dir, out, epochs=1, train=str(single), overwrite=True)
    assert _model_files(out) == before  # nothing deleted or changed
    assert not (out / "checkpoints").exists()
    assert np.array_equal(Classifier(out).predict_proba(["the team won the match"]), probs)


def test_overwrite_killed_midway_leaves_the_old_model_usable(tiny_model_dir, tmp_path):
    out = tmp_path / "m"
    train_tiny(tiny_model_dir, out, epochs=1)
    old_weights = (out / "model.safetensors").read_bytes()
    old_probs = Classifier(out).predict_proba(["the team won the match"])

    def stop(state):
        if state.global_step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_tiny(tiny_model_dir, out, epochs=2, seed=3, save_steps=2, overwrite=True, on_step=stop)
    assert (out / "model.safetensors").read_bytes() == old_weights
    assert (out / "metrics.json").exists()
    assert np.array_equal(Classifier(out).predict_proba(["the team won the match"]), old_probs)
    # the new run resumes to its end and then replaces the old model
    resumed = train_tiny(tiny_model_dir, out, epochs=2, seed=3, save_steps=2, resume=True)
    assert (out / "model.safetensors").read_bytes() != old_weights
    assert len(json.loads((out / "metrics.json").read_text())["history"]) == 2
    assert resumed.training_result["best_epoch"] in (1, 2)
    assert not (out / "checkpoints").exists()


# ---------------------------------------------------------------------------- batches in parts (chunk_tokens)


def test_batches_in_parts_are_reproducible_and_resume_exactly(tiny_model_dir, tmp_path, monkeypatch):
    from bertkit import train_loop

    sizes = []
    real_split = train_loop.split_rows

    def counting_split(batch, max_tokens):
        parts = real_split(batch, max_tokens)
        sizes.append(len(parts))
        return parts

    monkeypatch.setattr(train_loop, "split_rows", counting_split)
    first = train_tiny(tiny_model_dir, tmp_path / "a", epochs=2, chunk_tokens=24, save_steps=4)
    assert max(sizes) >= 3  # batches of 8 short texts (~10 tokens) ran in parts
    args = json.load(open(tmp_path / "a" / "training_args.json"))
    assert args["config"]["chunk_tokens"] == 24
    again = train_tiny(tiny_model_dir, tmp_path / "b", epochs=2, chunk_tokens=24, save_steps=4)
    assert history_numbers(again.training_result) == history_numbers(first.training_result)

    def kill(state):
        if state.global_step == 14:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_tiny(tiny_model_dir, tmp_path / "c", epochs=2, chunk_tokens=24, save_steps=4, on_step=kill)
    resumed = train_tiny(tiny_model_dir, tmp_path / "c", epochs=2, chunk_tokens=24, save_steps=4, resume=True)
    assert history_numbers(resumed.training_result) == history_numbers(first.training_result)
    with pytest.raises(InputError, match="chunk_tokens"):
        TrainConfig(chunk_tokens=-1).check()
