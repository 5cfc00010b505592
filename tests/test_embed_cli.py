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
           r"2 of 5 rows of column 'text' in '.*in.csv' are empty \(rows 2, 4\).*--skip-empty")
    result = run("-i", src, "-o", tmp_path / "o.npy", "--skip-empty")
    _ok(result)
    assert "left out 2 empty row(s) of column 'text'" in result.stderr and "(rows 2, 4;" in result.stderr
    assert "the output has 3 rows, not 5" in result.stderr and "(3, 32)" in result.stderr
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
    from conftest import interrupt_encode_after

    return interrupt_encode_after(monkeypatch, n_calls)


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
    _error(run("a", "--layers", "9"), r"--layers must .* 3 hidden states")  # the CLI names its flag
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
@pytest.mark.slow  # a long end-to-end run; `make test` runs it, -m 'not slow' skips it
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
                                 str(out), "--layers", "-4:", "--layer-agg", "concat", "--overwrite"])
    _ok(result)
    assert np.load(out).shape == (200, 1536)
    assert "(200, 1536) float32 (mean pooling, layers -4:, concat, all-MiniLM-L6-v2)" in result.stderr


# ---------------------------------------------------------------- issue 14 reliability items
def _no_encode(monkeypatch):
    """Make any embedding work fail loudly: the checks under test must come first."""
    def boom(*args, **kwargs):
        raise AssertionError("embedding started before the check")

    monkeypatch.setattr(Encoder, "encode", boom)


def test_columns_fewer_than_fields_is_an_error(run, tmp_path):
    src = tmp_path / "pairs.tsv"
    src.write_text("a cat\tthe dog\t1\ngood movie\tbad plot\t0\n")
    _error(run("--input", src, "--columns", "a,b", "--text-column", "a"),
           r"--columns gives 2 names but '.*pairs.tsv' has 3 fields a row; give one name per field")


def test_output_over_the_input_is_refused(run, tmp_path, monkeypatch):
    src = tmp_path / "corpus.parquet"
    pd.DataFrame({"id": [1, 2], "text": ["a cat", "a dog"], "label": [0, 1]}).to_parquet(src)
    before = src.read_bytes()
    (tmp_path / "link.parquet").symlink_to(src)
    monkeypatch.chdir(tmp_path)
    _no_encode(monkeypatch)
    for out, extra in ((src, []), ("./corpus.parquet", ["--resume"]), ("link.parquet", ["--overwrite"])):
        _error(run("--input", "corpus.parquet", "--output", out, *extra),
               r"--output '.*' is the --input file; .*other columns.*Choose another --output")
    assert src.read_bytes() == before


def test_unwritable_output_is_a_plain_error_before_any_work(run, tmp_path, monkeypatch):
    src = tmp_path / "in.txt"
    src.write_text("a cat\n")
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder.npy").mkdir()
    _no_encode(monkeypatch)
    _error(run("--input", src, "--output", tmp_path / "file" / "out.npy"),
           r"--output '.*out.npy' cannot be written: '.*file' is a file, not a folder")
    _error(run("a cat", "--output", tmp_path / "folder.npy"),
           r"--output '.*folder.npy' is a folder; give a file name")
    import tempfile

    def refuse(*args, **kwargs):  # what a read-only folder does (the tests may run as root)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    _error(run("--input", src, "--output", tmp_path / "out.npy"),
           r"cannot be written in .*\(Permission denied\)")


def test_existing_output_needs_overwrite(run, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("a cat\na dog\n")
    out = tmp_path / "out.npy"
    out.write_bytes(b"precious")
    _error(run("--input", src, "--output", out), r"'.*out.npy' already exists; pass --overwrite")
    _error(run("a cat", "--output", out), r"already exists; pass --overwrite")
    assert out.read_bytes() == b"precious"
    _ok(run("--input", src, "--output", out, "--overwrite"))
    assert np.load(out).shape == (2, 32)
    assert "--overwrite" in run("--help").stdout


def _interrupted_run(run, monkeypatch, src, out):
    with monkeypatch.context() as m:
        _interrupt_after(m, 3)
        result = run("-i", src, "-o", out, "--chunk-size", 3)
    assert result.exit_code == 130
    return result


def test_damaged_chunk_is_recomputed_on_resume(run, tmp_path, monkeypatch):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS * 3) + "\n")  # 8 chunks of 3
    whole = tmp_path / "whole.npy"
    _ok(run("-i", src, "-o", whole, "--chunk-size", 3))
    out = tmp_path / "out.npy"
    result = _interrupted_run(run, monkeypatch, src, out)
    assert "--resume to continue" in result.stderr and "3 finished chunk(s)" in result.stderr
    chunk = tmp_path / "out.npy.partial" / "chunk_000001.npy"
    chunk.write_bytes(chunk.read_bytes()[:100])  # cut short, as after a crash or a full disk

    with monkeypatch.context() as m:
        calls = _interrupt_after(m, 100)
        result = run("-i", src, "-o", out, "--chunk-size", 3, "--resume")
    _ok(result)
    assert "Note: chunk 1 in " in result.stderr and "damaged" in result.stderr
    assert "Resuming: 2 finished chunk(s)" in result.stderr
    assert calls["n"] == 6  # the 5 unfinished chunks and the damaged one
    assert out.read_bytes() == whole.read_bytes()


def test_resume_notices_an_edit_with_the_same_size_and_time(run, tmp_path, monkeypatch):
    import os

    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS * 3) + "\n")
    out = tmp_path / "out.npy"
    _interrupted_run(run, monkeypatch, src, out)
    st = os.stat(src)
    src.write_text(src.read_text().replace("cat", "dog"))  # same size
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))  # same modification time
    assert os.stat(src).st_size == st.st_size and os.stat(src).st_mtime_ns == st.st_mtime_ns
    _error(run("-i", src, "-o", out, "--chunk-size", 3, "--resume"),
           r"Cannot resume: .*differs in: input")


@pytest.mark.slow  # a long end-to-end run; `make test` runs it, -m 'not slow' skips it
def test_broken_pipe_exits_quietly(tiny_model_dir, tmp_path):
    """`bertkit embed --input corpus.txt | head -c 100`: no 'unexpected' error, exit 141."""
    import os
    import subprocess
    import sys

    src = tmp_path / "corpus.txt"
    src.write_text("\n".join(TEXTS * 100) + "\n")  # ~600 KB of JSON lines, past a pipe's buffer
    env = dict(os.environ, BERTKIT_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from bertkit.cli import main; main()", "embed", "--input",
         str(src), "--model", tiny_model_dir, "--chunk-size", "50"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    head = proc.stdout.read(100)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert head.startswith(b'{"text": ')
    assert err == "" and proc.returncode == 141, (proc.returncode, err)


def test_gzipped_input_folder_input_and_layer_slices(run, tiny, tmp_path):
    import gzip

    src = tmp_path / "in.txt.gz"
    src.write_bytes(gzip.compress(("\n".join(TEXTS) + "\n").encode()))
    _ok(run("-i", src, "-o", tmp_path / "o.npy"))
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), tiny.encode(TEXTS), rtol=1e-4, atol=1e-6)
    (tmp_path / "dir.txt").mkdir()
    _error(run("-i", tmp_path / "dir.txt"), r"'.*dir.txt' is a folder, not a file\. A folder "
                                            r"can be read as: ")
    # the tiny model has 3 hidden states: -4: used to be clamped to "all" silently
    _error(run("a", "--layers", "-4:"), r"--layers must .* 3 hidden states.*out of range")


# ---------------------------------------------------------------- issue 9: folder defaults, --backend
def _st_folder(tmp_path, tiny_model_dir):
    """The tiny model as a sentence-transformers folder: CLS pooling, Normalize, 48 tokens."""
    import shutil

    folder = tmp_path / "st"
    shutil.copytree(tiny_model_dir, folder)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
    files = {"modules.json": modules, "sentence_bert_config.json": {"max_seq_length": 48},
             "1_Pooling/config.json": {"embedding_dimension": 32, "pooling_mode": "cls"},
             "2_Normalize/config.json": {}}
    for rel, content in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(json.dumps(content))
    return str(folder)


def test_pooling_and_normalize_default_to_the_model_folder(tmp_path, tiny_model_dir):
    folder = _st_folder(tmp_path, tiny_model_dir)
    enc = Encoder(folder, device="cpu")
    runner = CliRunner()

    def vectors(*flags):
        result = runner.invoke(cli, ["embed", "the bank vault", "a cat", "--model", folder, *flags])
        _ok(result)
        return np.array([d["vector"] for d in json.loads(result.stdout)])

    default = vectors()
    np.testing.assert_allclose(np.linalg.norm(default, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(default, enc.encode(["the bank vault", "a cat"], pooling="cls", normalize=True),
                               rtol=1e-4, atol=1e-6)
    raw = vectors("--no-normalize")
    np.testing.assert_allclose(raw, enc.encode(["the bank vault", "a cat"], pooling="cls", normalize=False),
                               rtol=1e-4, atol=1e-6)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    np.testing.assert_allclose(vectors("--pooling", "mean"),
                               enc.encode(["the bank vault", "a cat"], pooling="mean", normalize=True),
                               rtol=1e-4, atol=1e-6)
    help_text = " ".join(runner.invoke(cli, ["embed", "--help"]).stdout.split())
    assert "--normalize / --no-normalize" in help_text and "the model folder's, else mean" in help_text

    # the folder's max_seq_length: the Encoder's per-chunk warnings are filtered, one total shown
    long = " ".join(["the bank robber was seen fishing on the river bank"] * 6)
    src = tmp_path / "in.txt"
    src.write_text(f"{long}\nthe cat\n{long}\n")
    result = runner.invoke(cli, ["embed", "-i", str(src), "-o", str(tmp_path / "o.npy"), "--model", folder,
                                 "--chunk-size", "1"])
    _ok(result)
    assert result.stderr.count("longer than") == 1, result.stderr
    assert ("Warning: 2 of 3 texts were longer than the model folder's max_seq_length of 48 tokens"
            in result.stderr)
    assert "(3, 32) float32 (cls pooling, layers -1, " in result.stderr


def test_backend_option(run, tiny, tmp_path, monkeypatch):
    result = run("a cat", "--backend", "tensorrt")
    assert result.exit_code == 2 and "Invalid value for '--backend'" in result.stderr
    pytest.importorskip("onnxruntime", reason="--backend onnx needs pip install 'bertkit[onnx]'")
    pytest.importorskip("onnx", reason="--backend onnx needs pip install 'bertkit[onnx]'")
    monkeypatch.setenv("BERTKIT_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS) + "\n")
    _ok(run("-i", src, "-o", tmp_path / "o.npy", "--backend", "onnx", "--device", "cpu"))
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), tiny.encode(TEXTS), rtol=1e-3, atol=1e-5)
    result = run("a cat", "the dog", "--backend", "onnx", "--device", "cpu")
    _ok(result)
    np.testing.assert_allclose([d["vector"] for d in json.loads(result.stdout)],
                               tiny.encode(["a cat", "the dog"]), rtol=1e-3, atol=1e-5)
    assert list((tmp_path / "cache" / "onnx").iterdir())
