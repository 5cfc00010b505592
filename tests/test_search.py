"""Search index: build/save/load, top-k against NumPy, settings/model/corpus checks."""

import json
import os
import shutil

import numpy as np
import pytest

from bertkit.errors import DataError, InputError
from bertkit.search import (SearchIndex, default_index_path, model_fingerprint, open_index,
                            semantic_search)

CORPUS = ["the cat sat on the mat", "a dog ran in the park", "stock market price fell",
          "the team won the game", "i love this film", "naïve café — ünïcode ✓",
          "rain on a blue day"]


@pytest.fixture(scope="module")
def tiny_encoder(tiny_model_dir):
    from bertkit import Encoder

    return Encoder(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def index(tiny_encoder):
    return SearchIndex.build(CORPUS, encoder=tiny_encoder)


def _corpus_file(tmp_path, texts=CORPUS, name="corpus.tsv"):
    path = tmp_path / name
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{i % 2}\n" for i, t in enumerate(texts)),
                    encoding="utf-8")
    return path


def test_build_vectors_are_normalized_encode(index, tiny_encoder):
    ref = tiny_encoder.encode(CORPUS)
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(index.vectors, ref, atol=1e-5)
    assert index.vectors.dtype == np.float32 and len(index) == len(CORPUS)
    assert index.settings == {"pooling": "mean", "layers": "-1", "layer_agg": "concat",
                              "exclude_special": False, "long": "truncate"}
    assert len(index.model["fingerprint"]) == 64


def test_search_matches_numpy_top_k(index, tiny_encoder):
    queries = ["a cat on a mat", "the market"]
    hits = index.search(queries, k=3)
    q = tiny_encoder.encode(queries, normalize=True)
    scores = q @ index.vectors.T
    for qi, row in enumerate(hits):
        order = np.argsort(-scores[qi], kind="stable")[:3]
        assert [h.index for h in row] == order.tolist()
        assert [h.rank for h in row] == [1, 2, 3]
        np.testing.assert_allclose([h.score for h in row], scores[qi][order], atol=1e-5)
        assert [h.text for h in row] == [CORPUS[i] for i in order]
    single = index.search("a cat on a mat", k=100)  # k clipped to the corpus size
    assert isinstance(single, list) and len(single) == len(CORPUS)
    assert single[0].text == hits[0][0].text
    with pytest.raises(InputError, match="'k' parameter"):
        index.search("x", k=0)


def test_save_load_round_trip_without_pickle(index, tmp_path):
    path = index.save(tmp_path / "idx.npz")
    with np.load(path, allow_pickle=False) as z:  # loads with pickle refused
        assert set(z.files) == {"vectors", "rows", "text_bytes", "text_offsets", "header"}
    back = SearchIndex.load(path)
    assert back.texts == CORPUS
    np.testing.assert_array_equal(back.vectors, index.vectors)
    assert back.settings == index.settings and back.model == index.model
    assert back.rows.tolist() == list(range(len(CORPUS)))
    assert [os.path.basename(p) for p in os.listdir(tmp_path)] == ["idx.npz"]  # no temp left


def test_load_refuses_non_index_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(DataError, match="not a bertkit search index"):
        SearchIndex.load(bad)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, header=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="not a bertkit search index"):
        SearchIndex.load(pickled)
    with pytest.raises(DataError, match="does not exist"):
        SearchIndex.load(tmp_path / "missing.npz")


def test_fingerprint_follows_weights_not_location(tiny_model_dir, tiny_encoder, tmp_path):
    from bertkit import Encoder
    from conftest import build_tiny_model

    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy")
    assert model_fingerprint(Encoder(str(copy), device="cpu")) == model_fingerprint(tiny_encoder)
    other = build_tiny_model(tmp_path / "other", seed=1)
    assert model_fingerprint(Encoder(other, device="cpu")) != model_fingerprint(tiny_encoder)


def test_refuses_other_settings_and_other_model(index, tmp_path):
    from bertkit import Encoder
    from conftest import build_tiny_model

    index.save(tmp_path / "idx.npz")
    loaded = SearchIndex.load(tmp_path / "idx.npz")
    with pytest.raises(InputError, match=r"built with pooling=mean, not pooling=cls"):
        loaded.check_compatible(settings={"pooling": "cls"})
    loaded.check_compatible(settings={"layers": -1})  # same setting spelled as an int
    other = Encoder(build_tiny_model(tmp_path / "other", seed=2), device="cpu")
    with pytest.raises(InputError, match="built with another model"):
        loaded.search("a cat", encoder=other)
    with pytest.raises(InputError, match="Unknown setting"):
        SearchIndex.build(["a"], encoder=other, pooling_mode="mean")


def test_open_index_builds_reuses_and_rebuilds(tiny_encoder, tmp_path, monkeypatch):
    corpus = _corpus_file(tmp_path)
    idx_path = tmp_path / "c.npz"
    index, status = open_index(corpus, encoder=tiny_encoder, index_path=idx_path)
    assert status.action == "built" and index.texts == CORPUS
    assert index.corpus["text_column"] == "sentence" and index.corpus["n_rows"] == len(CORPUS)

    calls = []
    real = tiny_encoder.encode
    monkeypatch.setattr(tiny_encoder, "encode", lambda *a, **k: calls.append(a) or real(*a, **k))
    again, status = open_index(corpus, encoder=tiny_encoder, index_path=idx_path)
    assert status.action == "reused" and calls == []  # nothing re-embedded
    hits = again.search("a cat on the mat", k=2)
    assert len(calls) == 1 and len(calls[0][0]) == 1  # only the query was embedded
    assert hits[0].row == hits[0].index

    with pytest.raises(InputError, match="pooling=mean, not pooling=max"):
        open_index(corpus, encoder=tiny_encoder, index_path=idx_path, pooling="max")
    _, status = open_index(corpus, encoder=tiny_encoder, index_path=idx_path, pooling="max",
                           rebuild=True)
    assert status.action == "rebuilt"

    _corpus_file(tmp_path, CORPUS + ["", "a new line about the sky"])  # corpus changed
    changed, status = open_index(corpus, encoder=tiny_encoder, index_path=idx_path, pooling="max",
                                 skip_empty=True)
    assert status.action == "rebuilt" and "changed" in status.reason
    assert changed.texts[-1] == "a new line about the sky"
    assert changed.rows[-1] == len(CORPUS) + 1  # the empty row was skipped, rows keep counting
    assert changed.corpus["n_skipped"] == 1
    header = json.loads(bytes(np.load(idx_path)["header"]).decode())
    assert header["corpus"]["sha256"] == changed.corpus["sha256"]


def test_default_index_path_in_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BERTKIT_CACHE", str(tmp_path / "cache"))
    a = default_index_path("data/dev.tsv", text_column=None, model_name="m", settings={})
    b = default_index_path("data/dev.tsv", text_column=None, model_name="m",
                           settings={"pooling": "cls"})
    assert a.parent == tmp_path / "cache" / "indexes" and a.name.startswith("dev_tsv-")
    assert a.suffix == ".npz" and a != b


def test_semantic_search_one_off(tiny_encoder):
    from bertkit.similarity import cosine_matrix

    query = "a cat on the mat"
    hits = semantic_search(query, CORPUS, k=3, encoder=tiny_encoder)
    # the order a brute-force cosine over the same vectors gives (not just "some corpus text")
    scores = cosine_matrix(tiny_encoder.encode([query]), tiny_encoder.encode(CORPUS))[0]
    best = np.argsort(-scores, kind="stable")[:3]
    assert [h.text for h in hits] == [CORPUS[i] for i in best]
    assert [h.rank for h in hits] == [1, 2, 3]
    np.testing.assert_allclose([h.score for h in hits], scores[best], atol=1e-5)
    again = semantic_search(CORPUS[2], CORPUS, k=1, encoder=tiny_encoder)[0]
    assert again.text == CORPUS[2] and again.score == pytest.approx(1.0, abs=1e-5)


def test_cached_index_is_rebuilt_when_model_changes_in_place(tmp_path, monkeypatch):
    from bertkit import Encoder
    from conftest import build_tiny_model

    monkeypatch.setenv("BERTKIT_CACHE", str(tmp_path / "cache"))
    corpus = _corpus_file(tmp_path)
    folder = build_tiny_model(tmp_path / "model", seed=3)
    _, status = open_index(corpus, encoder=Encoder(folder, device="cpu"))
    assert status.action == "built" and status.path.startswith(str(tmp_path / "cache"))
    folder = build_tiny_model(tmp_path / "model", seed=4)  # same path, new weights
    _, again = open_index(corpus, encoder=Encoder(folder, device="cpu"))
    assert again.path == status.path and again.action == "rebuilt"
    assert "model changed" in again.reason


def test_empty_corpus_rows_stop_unless_skip_empty(tiny_encoder, tmp_path):
    # As `bertkit embed`: empty rows are an error naming --skip-empty, never dropped silently.
    corpus = _corpus_file(tmp_path, ["the cat sat", "", "a dog ran", "  "])
    with pytest.raises(DataError, match=r"2 of 4 rows .* are empty \(rows 2, 4\).*--skip-empty"):
        open_index(corpus, encoder=tiny_encoder, index_path=tmp_path / "i.npz")
    assert not (tmp_path / "i.npz").exists()
    index, _ = open_index(corpus, encoder=tiny_encoder, index_path=tmp_path / "i.npz",
                          skip_empty=True)
    assert index.texts == ["the cat sat", "a dog ran"] and index.rows.tolist() == [0, 2]
    assert index.corpus["n_skipped"] == 2 and index.corpus["n_rows"] == 4
    numbers = tmp_path / "n.jsonl"
    numbers.write_text('{"text": "the cat"}\n{"text": 42}\n', encoding="utf-8")
    with pytest.raises(DataError, match="Row 2 of column 'text' .* is int"):
        open_index(numbers, encoder=tiny_encoder, index_path=tmp_path / "n.npz", skip_empty=True)


def test_embeddings_npy_or_damaged_header_is_one_clear_error(index, tiny_encoder, tmp_path):
    ref = tmp_path / "ref.npy"
    np.save(ref, np.ones((3, 32), np.float32))  # what `bertkit embed --output ref.npy` writes
    with pytest.raises(DataError, match=r"single NumPy array of shape \(3, 32\).*not a bertkit "
                                        r"search index.*--index NEW.npz"):
        SearchIndex.load(ref)
    # --rebuild must not overwrite the user's embeddings with an index
    corpus = _corpus_file(tmp_path)
    before = ref.read_bytes()
    with pytest.raises(InputError, match="--rebuild replaces index files only"):
        open_index(corpus, encoder=tiny_encoder, index_path=ref, rebuild=True)
    assert ref.read_bytes() == before

    old = tmp_path / "old.npz"
    index.save(old)
    with np.load(old) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(bytes(arrays["header"]).decode())
    del header["settings"]
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(old, **arrays)
    with pytest.raises(DataError, match="damaged or old bertkit search index \\(its header has "
                                        "no 'settings'\\); rebuild it.*--rebuild"):
        SearchIndex.load(old)
    rebuilt, status = open_index(corpus, encoder=tiny_encoder, index_path=old, rebuild=True)
    assert status.action == "rebuilt" and SearchIndex.load(old).texts == CORPUS


def test_corpus_read_settings_and_folder_corpus(tiny_encoder, tmp_path):
    # A latin-1 corpus is read with encoding=..., and reading it another way rebuilds the
    # index (the texts differ); a folder of one file per class is a corpus too.
    corpus = tmp_path / "latin.txt"
    corpus.write_bytes("caf\xe9 au lait\nthe river bank\n".encode("latin-1"))
    idx = tmp_path / "i.npz"
    index, status = open_index(corpus, encoder=tiny_encoder, index_path=idx, encoding="latin-1")
    assert status.action == "built" and index.texts[0] == "caf\xe9 au lait"
    _, status = open_index(corpus, encoder=tiny_encoder, index_path=idx, encoding="latin-1")
    assert status.action == "reused"
    index, status = open_index(corpus, encoder=tiny_encoder, index_path=idx, encoding="cp1252")
    assert status.action == "rebuilt" and "--encoding" in status.reason
    folder = tmp_path / "classes"
    folder.mkdir()
    (folder / "a.txt").write_text("one\ntwo\n")
    (folder / "b.txt").write_text("three\n")
    index, _ = open_index(folder, encoder=tiny_encoder, index_path=tmp_path / "f.npz", format="folder")
    assert index.texts == ["one", "two", "three"]
