"""Other BERT-family architectures end to end, on every back-end that exports them.

For tiny random bert, roberta, distilbert, albert and electra models (hidden 32, 2 layers,
4 heads, 64 positions), each saved with safetensors and its own family's kind of fast
tokenizer: tokenize (text and pair), embed at every level with the last and all layers,
cover an over-long text with windows, fine-tune one epoch on single texts and on sentence
pairs, predict, and run the ONNX back-ends against torch.

The tokenizers are built offline from the vocabulary of ``conftest.py``, each the way its
family's real one works, because that is where architectures differ for bertkit: WordPiece
with ``[CLS]``/``[SEP]`` and segment ids (bert, electra), the same without segment ids
(distilbert), byte-level BPE with ``<s>``/``</s></s>``, ``Ġ`` word starts, pad id 1 and no
segment ids (roberta), and SentencePiece-style unigram pieces with ``▁`` (albert).
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_WORDS, write_tiny_vocab

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import bertkit  # noqa: E402
from bertkit import Classifier, Encoder  # noqa: E402

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
TOPICS = os.path.join(FIX, "train_topics.csv")
PAIRS_FIXTURE = os.path.join(FIX, "train_pairs.tsv")
ARCHS = ("bert", "roberta", "distilbert", "albert", "electra")
LIMIT = 64  # tokens, specials included, for every architecture

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXTS = ["the bank robber was seen", "a cat sat on the mat", "granola bars",
         "the team won the match at night in the rain"]
# ~200 tokens with every tokenizer: three or more windows of 64
LONG = " ".join(["the cat sat on the mat and the dog ran in the park"] * 15)


def _tokenizer(arch: str, folder: str):
    """The family's kind of fast tokenizer, over the tiny vocabulary (see the module doc)."""
    if arch in ("bert", "distilbert", "electra"):
        vocab_file = write_tiny_vocab(os.path.join(folder, "vocab.txt"))
        with open(vocab_file, encoding="utf-8") as f:
            vocab = {tok: i for i, tok in enumerate(f.read().split())}
        cls = {"bert": transformers.BertTokenizerFast, "distilbert": transformers.DistilBertTokenizer,
               "electra": transformers.ElectraTokenizerFast}[arch]
        return cls(vocab=vocab, do_lower_case=True, model_max_length=LIMIT)
    if arch == "roberta":
        from tokenizers import ByteLevelBPETokenizer

        bpe = ByteLevelBPETokenizer()
        corpus = [" ".join(TINY_WORDS[i:i + 7]) for i in range(0, len(TINY_WORDS), 3)]
        bpe.train_from_iterator(corpus, vocab_size=400, min_frequency=1, show_progress=False,
                                special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        model = json.loads(bpe.to_str())["model"]
        merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
        # no model_max_length, like roberta-base under transformers 5: the limit must come
        # from the config, less the 2 positions RoBERTa skips (see models.position_offset)
        return transformers.RobertaTokenizer(vocab=model["vocab"], merges=merges)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces = [("<pad>", 0.0), ("<unk>", 0.0), ("[CLS]", 0.0), ("[SEP]", 0.0), ("[MASK]", 0.0), ("▁", -2.0)]
    pieces += [("▁" + w, -1.0) for w in TINY_WORDS]
    pieces += [(c, -3.0) for c in letters + list(".,!?'\"-:;()0123456789")] + [("▁" + c, -2.5) for c in letters]
    return transformers.AlbertTokenizer(vocab=pieces, model_max_length=LIMIT)


def build_arch_model(folder, arch: str) -> str:
    """Save a tiny random ``arch`` encoder (safetensors) and its tokenizer in ``folder``."""
    os.makedirs(folder, exist_ok=True)
    folder = str(folder)
    tok = _tokenizer(arch, folder)
    n, pad = len(tok), tok.pad_token_id
    common = dict(vocab_size=n, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=LIMIT, pad_token_id=pad)
    config = {
        "bert": lambda: transformers.BertConfig(**common),
        "electra": lambda: transformers.ElectraConfig(**common, embedding_size=16),
        "albert": lambda: transformers.AlbertConfig(**common, embedding_size=16),
        "distilbert": lambda: transformers.DistilBertConfig(
            vocab_size=n, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=LIMIT,
            pad_token_id=pad),
        # positions of real tokens start at pad + 1 (as roberta-base's 514 for 512 tokens)
        "roberta": lambda: transformers.RobertaConfig(
            **{**common, "max_position_embeddings": LIMIT + pad + 1}, type_vocab_size=1,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id),
    }[arch]()
    torch.manual_seed(0)
    transformers.AutoModel.from_config(config).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    if os.path.exists(os.path.join(folder, "vocab.txt")):
        os.remove(os.path.join(folder, "vocab.txt"))  # tokenizer.json holds the vocabulary
    return folder


def pair_rows() -> pd.DataFrame:
    """Sentence pairs from the topics fixture: label "same" when both texts share a topic."""
    topics = pd.read_csv(TOPICS)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(48):
        a, b = rng.choice(len(topics), 2, replace=False)
        if i % 2:  # half the pairs from one topic, so both labels are well represented
            same = topics.index[topics["label"] == topics["label"][a]].to_numpy()
            b = rng.choice(same[same != a])
        rows.append((topics["text"][a], topics["text"][b],
                     "same" if topics["label"][a] == topics["label"][b] else "different"))
    return pd.DataFrame(rows, columns=["premise", "hypothesis", "label"])


def cosines(a, b) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def check_int8(got, want) -> None:
    """int8 probabilities against torch's.

    Barely trained tiny models give probabilities within a few hundredths of each other,
    so a fixed bound (or argmax agreement on near-ties) would pass a graph that ignores its
    input. The bound is therefore relative to how much torch's probabilities vary from row
    to row (measured: int8 moves them by 2e-4 to 8e-4, 1-3% of that spread, and keeps every
    argmax); rows whose top two classes are under 0.01 apart may flip legitimately, so the
    argmax must agree on most (90%) of the others.
    """
    assert got.shape == want.shape
    spread = float((want.max(0) - want.min(0)).max())
    assert np.abs(got - want).max() <= max(0.1 * spread, 2e-3)
    top2 = np.sort(want, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] >= 0.01
    if clear.any():
        assert (got[clear].argmax(1) == want[clear].argmax(1)).mean() >= 0.9


# ------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """ONNX exports go to a temporary bertkit cache (BERTKIT_CACHE) for this module."""
    mp = pytest.MonkeyPatch()
    mp.setenv("BERTKIT_CACHE", str(tmp_path_factory.mktemp("bertkit-cache")))
    mp.delenv("BERTKIT_THREADS", raising=False)
    yield
    mp.undo()


@pytest.fixture(scope="module", params=ARCHS)
def arch(request, tmp_path_factory):
    """(architecture name, model folder)."""
    return request.param, build_arch_model(tmp_path_factory.mktemp(f"tiny-{request.param}"), request.param)


@pytest.fixture(scope="module")
def encoders(arch):
    _, folder = arch
    return Encoder(folder, device="cpu"), Encoder(folder, device="cpu", backend="onnx")


@pytest.fixture(scope="module")
def trained(arch, tmp_path_factory):
    """One epoch on the topic texts and one on sentence pairs: (topics dir, pairs dir, pairs file)."""
    name, folder = arch
    root = tmp_path_factory.mktemp(f"trained-{name}")
    settings = dict(model=folder, epochs=1, batch_size=8, lr=1e-2, precision="fp32", device="cpu",
                    verbose=False)
    Classifier.train(TOPICS, output=root / "topics", **settings)
    pairs = root / "pairs.tsv"
    pair_rows().to_csv(pairs, sep="\t", index=False)
    Classifier.train(pairs, output=root / "pairs", text_column="premise", pair_column="hypothesis",
                     **settings)
    return root / "topics", root / "pairs", pairs


# ---------------------------------------------------------------------------------- tests


def test_folder_limit_and_tokenize(arch):
    name, folder = arch
    from bertkit.models import load_config, load_tokenizer, max_length_of

    tok, config = load_tokenizer(folder), load_config(folder)
    assert config.model_type == name and os.path.isfile(os.path.join(folder, "model.safetensors"))
    # roberta: a tokenizer with no limit and 66 positions, of which 64 usable
    assert max_length_of(tok, config) == LIMIT

    one = bertkit.tokenize("the bank robber", model=folder)
    assert one.tokens[0] == tok.cls_token and one.tokens[-1] == tok.sep_token
    assert len(one.tokens) == len(one.input_ids) == len(one.attention_mask) == len(one.word_ids)
    assert one.n_truncated == 0 and one.word_ids[0] is None and max(w for w in one.word_ids if w is not None) == 2
    assert tok.convert_tokens_to_string(one.tokens[1:-1]).strip() == "the bank robber"

    pair = bertkit.tokenize("the bank robber", "on the river bank", model=folder)
    assert set(s for s in pair.sequence_ids if s is not None) == {0, 1}
    first_b = pair.sequence_ids.index(1)
    assert pair.tokens[first_b - 1] == tok.sep_token and pair.tokens[-1] == tok.sep_token
    # segment ids only where the tokenizer gives them (bert, electra); zeros elsewhere
    with_segments = name in ("bert", "electra")
    assert (max(pair.token_type_ids) == 1) == with_segments
    if with_segments:
        assert pair.token_type_ids[first_b:] == [1] * (len(pair.tokens) - first_b)

    cut = bertkit.tokenize(LONG, model=folder)
    assert len(cut.tokens) == LIMIT and cut.n_truncated > 0


def test_encoder_matches_the_model_at_every_level(arch, encoders):
    """Sentence vectors are the model's own mean-pooled states (texts batched and padded
    together); token and word outputs line up with the tokenizer; "all" layers concat."""
    name, folder = arch
    enc, _ = encoders
    assert enc.max_length == LIMIT and enc.n_states == 3
    model = transformers.AutoModel.from_pretrained(folder).eval()
    tok = enc.tokenizer
    with torch.no_grad():
        want = np.stack([model(**tok(t, return_tensors="pt")).last_hidden_state[0].mean(0).numpy()
                         for t in TEXTS])
    got = enc.encode(TEXTS)
    assert got.shape == (4, 32)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)

    every = enc.encode(TEXTS, layers="all")
    assert every.shape == (4, 96)
    np.testing.assert_allclose(every[:, 64:], got, atol=1e-5)  # the last state comes last

    for layers, width in (("-1", 32), ("all", 96)):
        tokens = enc.encode(TEXTS, level="token", layers=layers)
        words = enc.encode(TEXTS, level="word", layers=layers)
        for text, t, w in zip(TEXTS, tokens, words):
            ids = tok(text)["input_ids"]
            assert t.tokens == tok.convert_ids_to_tokens(ids) and t.vectors.shape == (len(ids), width)
            assert w.words == text.split() and w.vectors.shape == (len(w.words), width)
            assert np.isfinite(w.vectors).all()


def test_windows_cover_a_long_text(arch, encoders):
    enc, _ = encoders
    n_tokens = len(enc.tokenizer(LONG)["input_ids"])
    assert n_tokens > 2 * LIMIT
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no truncation warning: nothing is cut
        vecs = enc.encode([LONG, "a cat"], long="window")
        assert enc.last_stats["n_windowed"] == 1 and enc.last_stats["n_truncated"] == 0
        words = enc.encode(LONG, level="word", long="window", layers="all")
    assert vecs.shape == (2, 32) and np.isfinite(vecs).all()
    assert words.words == LONG.split() and words.vectors.shape == (len(LONG.split()), 96)
    assert not words.truncated
    # the windowed vector is not the head's: the rest of the text counts
    with pytest.warns(UserWarning, match="longer than"):
        head = enc.encode(LONG)
    assert cosines(head[None], vecs[:1])[0] < 0.99999


def test_onnx_encoder_matches_torch(arch, encoders):
    enc, onnx_enc = encoders
    assert onnx_enc.backend.name == "onnx"
    texts = TEXTS + [LONG]
    for layers in ("-1", "all"):
        want = enc.encode(texts, layers=layers, long="window")
        got = onnx_enc.encode(texts, layers=layers, long="window")
        assert got.shape == want.shape
        assert cosines(got, want).min() >= 0.9999
    want = np.vstack([w.vectors for w in enc.encode(texts, level="word", layers="all", long="window")])
    got = np.vstack([w.vectors for w in onnx_enc.encode(texts, level="word", layers="all", long="window")])
    assert cosines(got, want).min() >= 0.9999


@pytest.mark.slow  # a long end-to-end run; `make test` runs it, -m 'not slow' skips it
def test_train_predict_on_every_backend(arch, trained):
    name, _ = arch
    topics_dir, pairs_dir, pairs_file = trained
    clf = Classifier(topics_dir, device="cpu")
    assert clf.labels == ["food", "sky", "sport"] and clf.max_length == LIMIT
    assert json.loads((topics_dir / "training_args.json").read_text())["config"]["epochs"] == 1
    texts = pd.read_csv(TOPICS)["text"].tolist() + [LONG]
    want = clf.predict_proba(texts)
    assert clf.last_n_truncated == 1  # the long text is cut, and counted
    assert want.shape == (91, 3) and np.allclose(want.sum(1), 1, atol=1e-5)
    # the step reached the encoder (the whole model is fine-tuned, not just the head)
    base = transformers.AutoModel.from_pretrained(arch[1]).state_dict()
    tuned = clf.model.base_model.state_dict()
    shared = [k for k in base if k in tuned and base[k].dtype.is_floating_point]
    assert len(shared) > 10 and any(not torch.equal(base[k], tuned[k]) for k in shared if "layer" in k)
    one = clf.predict("the team won the match")
    assert one["label"] in clf.labels

    pclf = Classifier.load(pairs_dir, device="cpu")
    assert pclf.labels == ["different", "same"]
    raw = pd.read_csv(PAIRS_FIXTURE, sep="\t")  # quotes, a tab and odd words inside fields
    frame = pd.read_csv(pairs_file, sep="\t")
    a = frame["premise"].tolist() + raw["premise"].tolist()
    b = frame["hypothesis"].tolist() + raw["hypothesis"].tolist()
    pwant = pclf.predict_proba(a, b)
    assert pwant.shape == (len(a), 2)
    assert pclf.predict(a[0], b[0])["label"] in pclf.labels
    metrics = pclf.evaluate(pairs_file)
    assert metrics["n"] == 48 and metrics["n_skipped"] == 0

    for backend in ("onnx", "onnx-int8"):
        got = Classifier(topics_dir, backend=backend).predict_proba(texts)
        pgot = Classifier(pairs_dir, backend=backend).predict_proba(a, b)
        if backend == "onnx":
            np.testing.assert_allclose(got, want, atol=1e-4)
            np.testing.assert_allclose(pgot, pwant, atol=1e-4)
        else:
            check_int8(got, want)
            check_int8(pgot, pwant)


def test_classifier_backend_inputs(arch, trained):
    """Segment ids reach the exported classifier only for models that read them (not
    DistilBERT, whose forward has no token_type_ids)."""
    name, _ = arch
    topics_dir, _, _ = trained
    clf = Classifier(topics_dir, backend="onnx")
    clf.backend.prepare()
    inputs = {i.name for i in clf.backend._session("logits")[0].get_inputs()}
    assert ("token_type_ids" in inputs) == (name != "distilbert")
    assert clf.backend.uses_token_type_ids == (name != "distilbert")


def test_position_offset_from_the_model_code():
    """RoBERTa-style models skip pad_token_id + 1 positions; BERT-style ones none."""
    from bertkit.models import max_length_of, position_offset

    assert position_offset(transformers.RobertaConfig(pad_token_id=1)) == 2
    assert position_offset(transformers.XLMRobertaConfig(pad_token_id=1)) == 2
    assert position_offset(transformers.MPNetConfig()) == 2
    for config in (transformers.BertConfig(), transformers.DistilBertConfig(),
                   transformers.AlbertConfig(), transformers.ElectraConfig()):
        assert position_offset(config) == 0

    class NoLimit:  # a tokenizer that states no limit (transformers' 1e30)
        model_max_length = int(1e30)

    assert max_length_of(NoLimit(), transformers.RobertaConfig(max_position_embeddings=514)) == 512
    assert max_length_of(NoLimit(), transformers.BertConfig(max_position_embeddings=512)) == 512


def test_bertkit_tokenize_stays_the_function_after_its_module_is_imported():
    """``bertkit.tokenize`` is also a submodule; importing it (as the CLI and other modules
    do) used to replace the function on the package with the module."""
    import subprocess
    import sys

    code = ("import bertkit.tokenize, bertkit; from bertkit.tokenize import Tokenized; "
            "assert callable(bertkit.tokenize) and bertkit.Tokenized is Tokenized; "
            "import sys; assert 'torch' not in sys.modules")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
