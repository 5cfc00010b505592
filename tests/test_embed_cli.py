"""`bertkit embed` through click's runner: inputs, outputs, streaming, resume, errors."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bertkit import Encoder
from bertkit.cli import cli

TEXTS = ["the bank vault", "the river bank", "granola bars are sweet food", "a cat sat on the mat",
         "the dog ran in the park", "good movie", "a terrible plot", "i love this film"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return Encoder(tiny_model_dir, device="cpu")


@pytest.fixture
def run(tiny_model_dir):
    runner = CliRunner()

    def invoke(*args, model=True):
        extra = ["--model", tiny_model_dir] if model else []
        return runner.invoke(cli, ["embed", *[str(a) for a in args], *extra])

    return invoke


def _ok(result):
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output


def _error(result, pattern):
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    import re

    assert re.search(pattern, result.stderr), result.stderr


def test_texts_to_stdout_json(run, tiny):
    result = run("the bank vault", "the river bank")
    _ok(result)
    data = json.loads(result.stdout)
    assert [d["text"] for d in data] == ["the bank vault", "the river bank"]
    np.testing.assert_allclose(np.array([d["vector"] for d in data]),
                               tiny.encode(["the bank vault", "the river bank"]), rtol=1e-4, atol=1e-6)
    words = json.loads(run("granola bars", "--level", "word").stdout)[0]
    assert words["words"] == ["granola", "bars"] and words["offsets"] == [[0, 7], [8, 12]]
    assert np.array(words["vectors"]).shape == (2, 32)


@pytest.mark.parametrize("name, write, flags", [
    ("in.txt", lambda p: p.write_text("\n".join(TEXTS) + "\n"), []),
    ("in.csv", lambda p: pd.DataFrame({"id": range(8), "review": TEXTS}).to_csv(p, index=False),
     ["--text-column", "review"]),
    ("in.tsv", lambda p: p.write_text("".join(f"{i}\t{t}\n" for i, t in enumerate(TEXTS))),
     ["--columns", "id,sentence"]),
    ("in.jsonl", lambda p: p.write_text("".join(json.dumps({"text": t, "n": 1}) + "\n" for t in TEXTS)), []),
    ("in.parquet", lambda p: pd.DataFrame({"sentence": TEXTS, "label": 1}).to_parquet(p), []),
])
def test_input_formats_to_npy(run, tiny, tmp_path, name, write, flags):
    src = tmp_path / name
    write(src)
    out = tmp_path / "out.npy"
    result = run("--input", src, *flags, "--output", out, "--chunk-size", 3)
    _ok(result)
    arr = np.load(out)
    assert arr.shape == (8, 32) and arr.dtype == np.float32
    np.testing.assert_allclose(arr, tiny.encode(TEXTS), rtol=1e-4, atol=1e-6)
    assert f"Wrote {out}: (8, 32) float32" in result.stderr
    assert not (tmp_path / "out.npy.partial").exists()


def test_output_formats_sentence(run, tiny, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS) + "\n")
    want = tiny.encode(TEXTS, layers="-2:", layer_agg="concat")
    for ext in ("npz", "parquet", "jsonl"):
        out = tmp_path / f"out.{ext}"
        _ok(run("-i", src, "-o", out, "--layers", "-2:", "--layer-agg", "concat", "--chunk-size", 5))
        if ext == "npz":
            z = np.load(out)
            got, texts = z["embeddings"], list(z["texts"])
        elif ext == "parquet":
            frame = pd.read_parquet(out)
            got, texts = np.stack(frame["vector"].to_numpy()), list(frame["text"])
        else:
            rows = [json.loads(line) for line in out.read_text().splitlines()]
            got, texts = np.array([r["vector"] for r in rows]), [r["text"] for r in rows]
        assert texts == TEXTS and got.shape == (8, 64)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("level", ["token", "word"])
def test_output_formats_token_and_word(run, tiny, tmp_path, level):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS) + "\n")
    want = tiny.encode(TEXTS, level=level)
    key = "tokens" if level == "token" else "words"
    _ok(run("-i", src, "-o", tmp_path / "o.npz", "--level", level, "--chunk-size", 3))
    z = np.load(tmp_path / "o.npz")
    assert z["vectors"].shape == (sum(len(w) for w in want), 32)
    assert list(z["items"]) == [s for w in want for s in getattr(w, key)]
    np.testing.assert_array_equal(z["text_index"], np.repeat(np.arange(8), [len(w) for w in want]))
    np.testing.assert_allclose(z["vectors"], np.concatenate([w.vectors for w in want]), rtol=1e-4, atol=1e-6)
    assert [tuple(o) for o in z["offsets"][:3]] == list(want[0].offsets[:3])

    _ok(run("-i", src, "-o", tmp_path / "o.parquet", "--level", level, "--chunk-size", 3))
    frame = pd.read_parquet(tmp_path / "o.parquet")
    assert list(frame[key][1]) == getattr(want[1], key)
    np.testing.assert_allclose(np.stack(frame["vectors"][1]), want[1].vectors, rtol=1e-4, atol=1e-6)

    _ok(run("-i", src, "-o", tmp_path / "o.jsonl", "--level", level))
    rec = json.loads((tmp_path / "o.jsonl").read_text().splitlines()[2])
    assert rec[key] == getattr(want[2], key) and rec["offsets"] == [list(o) for o in want[2].offsets]

    _error(run("-i", src, "-o", tmp_path / "o.npy", "--level", level), r"cannot hold; write .npz")


def test_empty_rows_stop_or_are_skipped(run, tiny, tmp_path):
    src = tmp_path / "in.csv"
    pd.DataFrame({"text": ["good movie", "", "bad plot", "  ", "fun"], "label": 1}).to_csv(src, index=False)
    _error(run("-i", src, "-o", tmp_path / "o.npy"),
           r"2 of 5 rows of column 'text' in '.*in.csv' are empty \(first: row 2\).*--skip-empty")
    result = run("-i", src, "-o", tmp_path / "o.npy", "--skip-empty")
    _ok(result)
    assert "left out 2 empty row(s)" in result.stderr and "(3, 32)" in result.stderr
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), tiny.encode(["good movie", "bad plot", "fun"]),
                               rtol=1e-4, atol=1e-6)


def test_truncation_is_reported_and_window_covers(run, tmp_path):
    long = " ".join(["the bank robber was seen fishing on the river bank"] * 10)
    src = tmp_path / "in.txt"
    src.write_text(f"{long}\nthe cat\n")
    result = run("-i", src, "-o", tmp_path / "o.npy")
    _ok(result)
    assert "Warning: 1 of 2 texts were longer than the model's limit of 64 tokens" in result.stderr
    result = run("-i", src, "-o", tmp_path / "o.jsonl", "--long", "window", "--level", "word")
    _ok(result)
    assert "Warning" not in result.stderr
    first = json.loads((tmp_path / "o.jsonl").read_text().splitlines()[0])
    assert first["words"] == long.split()


def test_input_without_output_streams_json_lines(run, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS) + "\n")
    result = run("-i", src, "--chunk-size", 3)
    _ok(result)
    lines = result.stdout.splitlines()
    assert len(lines) == 8 and json.loads(lines[4])["text"] == TEXTS[4]


def _interrupt_after(monkeypatch, n_calls):
    """Make Encoder.encode raise KeyboardInterrupt on call number ``n_calls + 1``."""
    real = Encoder.encode
    calls = {"n": 0}

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > n_calls:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Encoder, "encode", flaky)
    return calls


@pytest.mark.parametrize("ext", ["npy", "parquet"])
def test_resume_equals_an_uninterrupted_run(run, tmp_path, monkeypatch, ext):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS * 3) + "\n")  # 24 rows, 8 chunks of 3
    whole = tmp_path / f"whole.{ext}"
    _ok(run("-i", src, "-o", whole, "--chunk-size", 3))

    out = tmp_path / f"out.{ext}"
    with monkeypatch.context() as m:
        _interrupt_after(m, 3)
        result = run("-i", src, "-o", out, "--chunk-size", 3)
    assert result.exit_code == 130 and "Interrupted." in result.stderr
    assert not out.exists()
    partial = tmp_path / f"out.{ext}.partial"
    assert len(json.loads((partial / "manifest.json").read_text())["chunks"]) == 3

    # without --resume: refuse to clobber the finished chunks
    _error(run("-i", src, "-o", out, "--chunk-size", 3), r"holds 3 finished chunk\(s\).*--resume")
    # different settings: refuse to mix
    _error(run("-i", src, "-o", out, "--chunk-size", 3, "--resume", "--pooling", "max"),
           r"Cannot resume: .*differs in: pooling")

    with monkeypatch.context() as m:
        calls = _interrupt_after(m, 100)
        result = run("-i", src, "-o", out, "--chunk-size", 3, "--resume")
    _ok(result)
    assert calls["n"] == 5  # only the 5 unfinished chunks were embedded
    assert "Resuming: 3 finished chunk(s)" in result.stderr
    assert out.read_bytes() == whole.read_bytes()
    assert not partial.exists()


def test_bad_usage_is_one_error_line(run, tmp_path):
    _error(run(), r"Nothing to embed")
    _error(run("a", "--input", tmp_path / "x.txt"), r"not both")
    _error(run("a", "--resume"), r"--resume needs --output")
    _error(run("a", "-o", tmp_path / "x.bin"), r"Cannot tell the output format of .*x.bin")
    _error(run("--input", tmp_path / "missing.txt", "-o", tmp_path / "x.npy"), r"does not exist")
    _error(run("a", "--layers", "9"), r"The 'layers' parameter .* 3 hidden states")
    _error(run("a", ""), r"TEXT\[1\] is empty")
    src = tmp_path / "in.csv"
    pd.DataFrame({"a": ["x"], "b": ["y"]}).to_csv(src, index=False)
    _error(run("-i", src, "-o", tmp_path / "o.npy"), r"several columns .*--text-column")
    _error(run("-i", src, "--text-column", "c"), r"Column 'c' \(--text-column\) is not in")
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "ok"}\n{"text": 5}\n')
    _error(run("-i", src), r"Row 2 of column 'text' .* is int")
    result = run("a", "--pooling", "avg")
    assert result.exit_code == 2 and "Invalid value for '--pooling'" in result.stderr


@pytest.mark.integration
def test_sst2_dev_shapes(tmp_path, shared_datasets):
    """The issue's must-show, on the first 200 rows (the full file is run by hand)."""
    rows = open(shared_datasets / "sst2" / "dev.tsv", encoding="utf-8").read().splitlines()[:201]
    src = tmp_path / "dev.tsv"
    src.write_text("\n".join(rows) + "\n", encoding="utf-8")
    runner = CliRunner()
    out = tmp_path / "x.npy"
    result = runner.invoke(cli, ["embed", "--input", str(src), "--text-column", "sentence", "--output", str(out)])
    _ok(result)
    arr = np.load(out)
    assert arr.shape == (200, 384) and arr.dtype == np.float32
    result = runner.invoke(cli, ["embed", "--input", str(src), "--text-column", "sentence", "--output",
                                 str(out), "--layers", "-4:", "--layer-agg", "concat"])
    _ok(result)
    assert np.load(out).shape == (200, 1536)
    assert "(200, 1536) float32 (mean pooling, layers -4:, concat, all-MiniLM-L6-v2)" in result.stderr
