"""`bertkit.embed_file`: the file-embedding run as a Python API (chunks, resume, empty rows,
progress, truncation, back-ends)."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from bertkit import Encoder, embed_file
from bertkit.errors import DataError, InputError
from bertkit.file_embedding import EmbedInterrupted

TEXTS = ["the bank vault", "the river bank", "granola bars are sweet food", "a cat sat on the mat",
         "the dog ran in the park", "good movie", "a terrible plot", "i love this film"]
LONG = " ".join(["the bank robber was seen fishing on the river bank"] * 10)  # > 64 tokens

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return Encoder(tiny_model_dir, device="cpu")


def _csv(path, texts):
    pd.DataFrame({"id": range(len(texts)), "review": texts}).to_csv(path, index=False)
    return path


def _interrupt_after(monkeypatch, n_calls):
    from conftest import interrupt_encode_after

    return interrupt_encode_after(monkeypatch, n_calls)


def _no_model(monkeypatch):
    """Loading a model or embedding fails loudly: the checks under test must come first."""
    def boom(*args, **kwargs):
        raise AssertionError("model work started before the check")

    monkeypatch.setattr(Encoder, "__init__", boom)
    monkeypatch.setattr(Encoder, "encode", boom)


@pytest.mark.parametrize("ext", ["npy", "parquet"])
def test_resume_after_an_interruption_equals_an_uninterrupted_run(tiny, tmp_path, monkeypatch, ext):
    src = _csv(tmp_path / "in.csv", TEXTS * 3)  # 24 rows: 8 chunks of 3
    whole = tmp_path / f"whole.{ext}"
    summary = embed_file(src, whole, text_column="review", chunk_size=3, encoder=tiny, verbose=False)
    assert summary["n_rows"] == summary["n_written"] == 24 and summary["shape"] == (24, 32)
    assert summary["format"] == ext and summary["output"] == str(whole) and summary["n_skipped"] == 0
    got = np.load(whole) if ext == "npy" else np.stack(pd.read_parquet(whole)["vector"].to_numpy())
    np.testing.assert_allclose(got, tiny.encode(TEXTS * 3), rtol=1e-4, atol=1e-6)

    out = tmp_path / f"out.{ext}"
    with monkeypatch.context() as m:
        _interrupt_after(m, 3)
        with pytest.raises(EmbedInterrupted, match=r"3 finished chunk\(s\) .* resume=True") as caught:
            embed_file(src, out, text_column="review", chunk_size=3, encoder=tiny, verbose=False)
    assert isinstance(caught.value, KeyboardInterrupt) and caught.value.n_chunks == 3
    assert not out.exists() and (tmp_path / f"out.{ext}.partial").is_dir()
    with pytest.raises(InputError, match=r"holds 3 finished chunk\(s\).*--resume"):
        embed_file(src, out, text_column="review", chunk_size=3, encoder=tiny, verbose=False)

    with monkeypatch.context() as m:
        calls = _interrupt_after(m, 100)
        resumed = embed_file(src, out, text_column="review", chunk_size=3, encoder=tiny,
                             resume=True, verbose=False)
    assert calls["n"] == 5  # only the unfinished chunks were embedded
    assert resumed["resumed_chunks"] == 3 and resumed["n_written"] == 24
    assert out.read_bytes() == whole.read_bytes()
    assert not (tmp_path / f"out.{ext}.partial").exists()


def test_empty_rows_error_before_the_model_loads_or_are_skipped(tiny, tmp_path, monkeypatch, capsys):
    src = _csv(tmp_path / "in.csv", ["good movie", "", "bad plot", "  ", "fun"])
    with monkeypatch.context() as m:
        _no_model(m)
        with pytest.raises(DataError, match=r"2 of 5 rows of column 'review' in '.*in.csv' are empty "
                                             r"\(rows 2, 4\).*on_empty='skip'"):
            embed_file(src, tmp_path / "o.npy", text_column="review", model="unused")
    assert not (tmp_path / "o.npy.partial").exists()

    summary = embed_file(src, tmp_path / "o.jsonl", text_column="review", on_empty="skip", encoder=tiny)
    assert (summary["n_rows"], summary["n_written"], summary["n_skipped"]) == (5, 3, 2)
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == ["good movie", "bad plot", "fun"]
    np.testing.assert_allclose([r["vector"] for r in rows], tiny.encode(["good movie", "bad plot", "fun"]),
                               rtol=1e-4, atol=1e-6)
    err = capsys.readouterr().err
    assert "left out 2 empty row(s) of column 'review'" in err and "not 5" in err

    all_empty = _csv(tmp_path / "empty.csv", ["", " "])
    with pytest.raises(DataError, match=r"All 2 rows of column 'review' .* are empty"):
        embed_file(all_empty, tmp_path / "e.npy", text_column="review", on_empty="skip", encoder=tiny)
    with pytest.raises(InputError, match=r"'on_empty' parameter of embed_file"):
        embed_file(src, tmp_path / "e.npy", on_empty="drop", encoder=tiny)


def test_output_checks_come_before_any_work(tmp_path, monkeypatch):
    src = _csv(tmp_path / "in.csv", TEXTS)
    _no_model(monkeypatch)
    corpus = tmp_path / "corpus.parquet"
    pd.read_csv(src).to_parquet(corpus)
    with pytest.raises(InputError, match=r"is the --input file"):
        embed_file(corpus, tmp_path / "." / "corpus.parquet", overwrite=True, model="unused")
    (tmp_path / "old.npy").write_bytes(b"precious")
    with pytest.raises(InputError, match=r"already exists; pass --overwrite \(overwrite=True\)"):
        embed_file(src, tmp_path / "old.npy", model="unused")
    with pytest.raises(InputError, match=r"--resume needs --output"):
        embed_file(src, None, resume=True, model="unused")
    with pytest.raises(InputError, match=r"cannot hold; write .npz"):
        embed_file(src, tmp_path / "o.npy", level="word", model="unused")
    with pytest.raises(InputError, match=r"an 'encoder' or the model"):
        embed_file(src, tmp_path / "o.npy", model="x", encoder=object())
    assert (tmp_path / "old.npy").read_bytes() == b"precious"


def test_no_output_streams_json_lines_and_options_resolve(tiny, tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS) + "\n")
    summary = embed_file(src, chunk_size=3, encoder=tiny, layers="-2:", layer_agg="sum", normalize=True)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8 and json.loads(lines[4])["text"] == TEXTS[4]
    want = tiny.encode(TEXTS, layers="-2:", layer_agg="sum", normalize=True)
    np.testing.assert_allclose([json.loads(x)["vector"] for x in lines], want, rtol=1e-4, atol=1e-6)
    assert summary["output"] is None and summary["format"] == "jsonl" and summary["shape"] == (8, 32)
    # the encode options actually used, the model folder's defaults filled in
    assert summary["settings"]["pooling"] == "mean" and summary["settings"]["normalize"] is True
    with pytest.raises(InputError, match=r"Unknown encode option\(s\) 'poolng'"):
        embed_file(src, encoder=tiny, poolng="max")


def test_progress_moves_per_batch_over_all_rows(tiny, tmp_path, monkeypatch):
    """The bar's total is the file's rows and it moves after every batch, not every chunk."""
    import bertkit.file_embedding as fe

    class Bar:
        def __init__(self, total):
            self.total, self.updates, self.closed = total, [], False

        def update(self, n):
            self.updates.append(n)

        def close(self):
            self.closed = True

    bars = []
    monkeypatch.setattr(fe, "_progress_bar", lambda progress, total: bars.append(Bar(total)) or bars[-1])
    src = _csv(tmp_path / "in.csv", TEXTS + ["", LONG])  # 10 rows: one empty, one windowed
    embed_file(src, tmp_path / "o.npy", text_column="review", on_empty="skip", chunk_size=100,
               batch_size=2, long="window", encoder=tiny, verbose=False)
    bar = bars[0]
    assert bar.total == 10 and bar.closed
    assert len([n for n in bar.updates if n]) >= 4  # 9 texts (and windows) in batches of 2: one chunk
    assert sum(bar.updates) == 10  # every row once: texts when their last window is done, + the empty


def test_truncation_is_counted_once_for_the_file(tiny, tmp_path, capsys):
    src = _csv(tmp_path / "in.csv", [LONG, "the cat", LONG])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = embed_file(src, tmp_path / "o.npy", text_column="review", chunk_size=1, encoder=tiny,
                             verbose=False)
    messages = [str(w.message) for w in caught if "longer than" in str(w.message)]
    assert messages == ["2 of 3 texts were longer than the model's limit of 64 tokens and were cut; "
                        "pass --long window (long='window') to cover them whole."]
    assert summary["n_truncated"] == 2
    embed_file(src, tmp_path / "o.npy", text_column="review", chunk_size=1, encoder=tiny, overwrite=True)
    assert capsys.readouterr().err.count("longer than") == 1


def test_exported_from_the_package_and_encode_defaults_agree():
    import inspect

    import bertkit.file_embedding  # noqa: F401 (importing the module must not shadow the function)
    from bertkit.encoder import ENCODE_DEFAULTS

    assert callable(bertkit.embed_file) and bertkit.embed_file is embed_file
    assert "embed_file" in dir(bertkit)
    params = inspect.signature(Encoder.encode).parameters
    assert ENCODE_DEFAULTS == {n: p.default for n, p in params.items()
                               if p.kind is p.KEYWORD_ONLY and n != "progress"}


def test_onnx_backend_gives_the_torch_vectors(tiny, tiny_model_dir, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime", reason="the onnx back-end needs pip install 'bertkit[onnx]'")
    pytest.importorskip("onnx", reason="the onnx export needs pip install 'bertkit[onnx]'")
    monkeypatch.setenv("BERTKIT_CACHE", str(tmp_path / "cache"))
    src = _csv(tmp_path / "in.csv", TEXTS)
    summary = embed_file(src, tmp_path / "o.npy", text_column="review", chunk_size=5, model=tiny_model_dir,
                         device="cpu", backend="onnx", verbose=False)
    assert summary["shape"] == (8, 32) and summary["backend"] == "onnx"
    assert list((tmp_path / "cache" / "onnx").iterdir())  # the export was made (and cached)
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), tiny.encode(TEXTS), rtol=1e-3, atol=1e-5)
