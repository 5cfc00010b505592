"""Word and sentence similarity: checked against NumPy and the Hugging Face model itself."""

import numpy as np
import pytest

from bertkit.errors import InputError
from bertkit.similarity import (_context, cosine_matrix, find_word, sentence_similarity,
                                short_label, word_similarity)

SEED = ("After stealing money from the bank vault, the bank robber was seen fishing on the "
        "Mississippi river bank.")


@pytest.fixture(scope="module")
def tiny_encoder(tiny_model_dir):
    from bertkit import Encoder

    return Encoder(tiny_model_dir, device="cpu")


def _hf_states(encoder, text):
    """All hidden states of ``text`` straight from the Hugging Face model: (L+1, T, H)."""
    import torch

    batch = encoder.tokenizer(text, return_tensors="pt", return_offsets_mapping=True)
    offsets = batch.pop("offset_mapping")[0].tolist()
    with torch.no_grad():
        out = encoder.model(**batch, output_hidden_states=True)
    return torch.stack(out.hidden_states)[:, 0].numpy(), batch.word_ids(), offsets


# ------------------------------------------------------------------ pure functions
def test_cosine_matrix_matches_numpy_reference():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 7)), rng.normal(size=(3, 7))
    ref = np.array([[x @ y / np.linalg.norm(x) / np.linalg.norm(y) for y in b] for x in a])
    np.testing.assert_allclose(cosine_matrix(a, b), ref, rtol=1e-6, atol=1e-6)
    self_sim = cosine_matrix(a)
    assert self_sim.shape == (4, 4) and self_sim.dtype == np.float32
    np.testing.assert_allclose(np.diag(self_sim), 1.0, atol=1e-6)
    np.testing.assert_allclose(self_sim, self_sim.T)


def test_cosine_matrix_zero_vector_and_bad_shapes():
    m = cosine_matrix(np.array([[0.0, 0.0], [1.0, 0.0]]))
    assert m[0, 1] == 0.0 and m[0, 0] == 0.0
    with pytest.raises(InputError, match="same width"):
        cosine_matrix(np.ones((2, 3)), np.ones((2, 4)))


def test_find_word_whole_words_any_case(tiny_encoder):
    words = ["The", "Bank", "of", "banks", ",", "embankment", "bank", "."]
    tok = tiny_encoder.tokenizer
    assert find_word(words, "bank", tokenizer=tok) == [(1, 1), (6, 6)]
    assert find_word(words, "BANK", tokenizer=tok) == [(1, 1), (6, 6)]
    assert find_word(words, "Bank", tokenizer=tok, case_sensitive=True) == [(1, 1)]
    assert find_word(words, "bank of", tokenizer=tok) == [(1, 2)]  # a phrase: words in a row
    assert find_word(words, "vault", tokenizer=tok) == []


def test_context_labels():
    text = SEED
    words, offsets, pos = [], [], 0
    import re

    for m in re.finditer(r"\w+|[^\w\s]", text):
        words.append(m.group())
        offsets.append((m.start(), m.end()))
    banks = [i for i, w in enumerate(words) if w == "bank"]
    assert [_context(text, offsets, i, i, 2) for i in banks] == [
        "...from the bank vault, the...", "...vault, the bank robber was...",
        "...Mississippi river bank."]
    assert _context(text, offsets, 0, 0, 1) == "After stealing..."
    assert _context(text, offsets, banks[0], banks[0], 0) == "...bank..."


def test_short_label():
    assert short_label("a  short\ntext") == "a short text"
    long = "A man with a hard hat is dancing on the roof of a very tall building."
    out = short_label(long)
    assert out.endswith("...") and len(out) <= 36 and long.startswith(out[:-3])


# ------------------------------------------------------------------ word similarity
def test_word_similarity_vectors_equal_hf_hidden_states(tiny_encoder):
    ws = word_similarity(SEED, "bank", encoder=tiny_encoder)
    assert len(ws.occurrences) == 3
    assert [o.surface for o in ws.occurrences] == ["bank"] * 3
    assert ws.labels == ["...from the bank vault, the...", "...vault, the bank robber was...",
                         "...Mississippi river bank."]
    # reference: sum of the last four hidden states (2-layer model: states 0..2, -4: is clipped
    # to what exists) at the token of each "bank"
    states, word_ids, offsets = _hf_states(tiny_encoder, SEED)
    summed = states[-4:].sum(axis=0)
    positions = [i for i, (s, e) in enumerate(offsets) if SEED[s:e] == "bank"]
    ref = summed[positions]
    np.testing.assert_allclose(ws.vectors, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ws.matrix, cosine_matrix(ref), atol=1e-5)
    assert ws.settings["layers"] == "-4:" and ws.settings["layer_agg"] == "sum"


def test_split_word_pieces_are_pooled(tiny_encoder):
    text = "the granola bars and granola"
    ws = word_similarity(text, "granola", encoder=tiny_encoder, layers="-1", layer_agg="concat")
    states, word_ids, offsets = _hf_states(tiny_encoder, text)
    tokens = tiny_encoder.tokenizer.convert_ids_to_tokens(tiny_encoder.tokenizer(text)["input_ids"])
    assert tokens[2:4] == ["gran", "##ola"]
    last = states[-1]
    ref = np.stack([last[2:4].mean(axis=0), last[6:8].mean(axis=0)])
    assert tokens[6:8] == ["gran", "##ola"]
    np.testing.assert_allclose(ws.vectors, ref, rtol=1e-4, atol=1e-4)
    first = word_similarity(text, "granola", encoder=tiny_encoder, layers="-1", subword="first")
    np.testing.assert_allclose(first.vectors, last[[2, 6]], rtol=1e-4, atol=1e-4)


def test_across_texts_labels_and_missing(tiny_encoder):
    texts = [SEED, "no such word here", "The BANK was red."]
    ws = word_similarity(texts, "bank", encoder=tiny_encoder)
    assert [o.text_index for o in ws.occurrences] == [0, 0, 0, 2]
    assert ws.labels[0].startswith("[1] ...from the bank")
    assert ws.labels[3] == "[3] The BANK was red."
    assert ws.missing == [1]
    assert ws.matrix.shape == (4, 4)
    d = ws.to_dict()
    assert d["occurrences"][3]["surface"] == "BANK" and d["labels"] == ws.labels
    # labels stay unique even when contexts repeat
    same = word_similarity(["the bank", "the bank"], "bank", encoder=tiny_encoder)
    assert same.labels == ["[1] the bank", "[2] the bank"]
    rep = word_similarity("bank bank bank", "bank", encoder=tiny_encoder, context=0)
    assert len(set(rep.labels)) == 3


def test_absent_word_is_a_clear_error(tiny_encoder):
    with pytest.raises(InputError, match=r"'vault' does not occur in any of the 2 texts"):
        word_similarity(["the bank", "the river"], "vault", encoder=tiny_encoder)
    with pytest.raises(InputError, match="'word' parameter"):
        word_similarity(["the bank"], "  ", encoder=tiny_encoder)
    with pytest.raises(InputError, match="texts\\[1\\] is empty"):
        word_similarity(["the bank", ""], "bank", encoder=tiny_encoder)


def test_word_similarity_plot_is_a_png(tiny_encoder, tmp_path):
    ws = word_similarity(SEED, "bank", encoder=tiny_encoder)
    path = ws.plot(tmp_path / "bank.png")
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


# ------------------------------------------------------------------ sentences
def test_sentence_similarity_is_cosine_of_encode(tiny_encoder, tmp_path):
    texts = ["a cat sat on the mat", "a dog sat on the mat", "stock market price fell"]
    ss = sentence_similarity(texts, encoder=tiny_encoder, pooling="cls")
    vecs = tiny_encoder.encode(texts, pooling="cls")
    np.testing.assert_allclose(ss.matrix, cosine_matrix(vecs), atol=1e-6)
    assert ss.labels == ["[1] a cat sat on the mat", "[2] a dog sat on the mat",
                         "[3] stock market price fell"]
    assert ss.settings["pooling"] == "cls"
    i, j, score = ss.most_similar(1)[0]
    assert score == pytest.approx(ss.matrix[i, j])
    png = ss.plot(tmp_path / "s.png")
    assert open(png, "rb").read(4) == b"\x89PNG"
    with pytest.raises(InputError, match="at least two texts"):
        sentence_similarity(["only one"], encoder=tiny_encoder)


# ------------------------------------------------------------------ the real model
@pytest.mark.integration
def test_bank_study_on_default_model():
    """Seed 003 with all-MiniLM-L6-v2: the two money senses are closer to each other than
    to the river sense (NOTES.md: 0.94 / 0.89 / 0.89 with the last four layers summed)."""
    ws = word_similarity(SEED, "bank")
    assert len(ws.occurrences) == 3
    m = ws.matrix
    vault_robber, vault_river, robber_river = m[0, 1], m[0, 2], m[1, 2]
    assert vault_robber > vault_river and vault_robber > robber_river
    assert vault_robber == pytest.approx(0.94, abs=0.01)
    assert vault_river == pytest.approx(0.89, abs=0.01)
    assert robber_river == pytest.approx(0.89, abs=0.01)


# ------------------------------------------------------------------ the STS benchmark's helpers
def _sts_module():
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "sts.py")
    spec = importlib.util.spec_from_file_location("bench_sts", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sts_reader_handles_stray_quotes_and_spearman_matches_scipy(tmp_path):
    sts = _sts_module()
    path = tmp_path / "dev.tsv"
    path.write_text("index\tgenre\tsentence1\tsentence2\tscore\n"
                    '0\tx\tHe said "hi.\tShe "left\t4.5\n1\tx\ta b\tc d\t1.0\n', encoding="utf-8")
    assert sts.read_sts(str(path)) == [('He said "hi.', 'She "left', 4.5), ("a b", "c d", 1.0)]
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=50), np.round(rng.normal(size=50), 1)  # ties in y
    assert sts.spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic, abs=1e-12)


@pytest.mark.integration
def test_mean_last_layer_equals_sentence_transformers(default_model_dir):
    """The STS-B figure rests on this: bertkit's default sentence vectors are
    sentence-transformers' vectors of the same model (up to their normalisation)."""
    import os

    st_mod = pytest.importorskip("sentence_transformers")
    sts = _sts_module()
    data = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "stsb",
                        "dev.tsv")
    if not os.path.exists(data):
        pytest.skip("STS-B dev.tsv is not in ../shared/datasets")
    rows = sts.read_sts(data)
    assert len(rows) == 1500
    sentences = [s for r in rows[:16] for s in r[:2]]
    from bertkit import Encoder

    ours = Encoder(device="cpu").encode(sentences, normalize=True)
    theirs = st_mod.SentenceTransformer(default_model_dir, device="cpu").encode(
        sentences, normalize_embeddings=True)
    np.testing.assert_allclose(np.einsum("ij,ij->i", ours, theirs), 1.0, atol=1e-5)
