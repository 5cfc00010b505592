"""``--engine ray``: bulk embedding and prediction on Ray Data (bertkit.ray_engine).

Ray runs locally (``ray.init(num_cpus=2)``, started once for the module: it costs
seconds) on small generated files; the shards, concatenated by id, must equal the local
engine's output. Skipped where Ray is not installed (``pip install 'bertkit[ray]'``).
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from bertkit.cli import cli
from bertkit.errors import InputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = "the cat sat on a mat good bad movie film plot river bank money dog ran park".split()


def texts(n, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, int(rng.integers(1, 12)))) for _ in range(n)]


def cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'bertkit[ray]')")
    niceness = os.environ.setdefault("RAY_worker_niceness", "0")  # as bertkit's own start does
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    if niceness == "0":
        del os.environ["RAY_worker_niceness"]


@pytest.fixture(scope="module")
def two_files(tmp_path_factory):
    """b.jsonl sorts after a.txt: its rows get ids 250..; empty rows: id 260 and ids 300-399
    (with shards of 100, shard 3 has no texts)."""
    folder = tmp_path_factory.mktemp("in")
    first, second = texts(250, 1), texts(180, 2)
    (folder / "a.txt").write_text("\n".join(first) + "\n", encoding="utf-8")
    second[10] = ""
    second[50:150] = [""] * 100
    (folder / "b.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in second),
                                    encoding="utf-8")
    return folder, first + second


def test_missing_ray_is_one_line_with_the_install_command(monkeypatch, tmp_path):
    (tmp_path / "in.txt").write_text("a cat\n", encoding="utf-8")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    result = CliRunner().invoke(cli, ["embed", "--engine", "ray", "--input", str(tmp_path / "in.txt"),
                                      "--output", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: --engine ray needs Ray Data, which is not installed; run: pip install 'bertkit[ray]'"]


def test_ray_options_need_engine_ray(tmp_path):
    (tmp_path / "in.txt").write_text("a cat\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["embed", "--input", str(tmp_path / "in.txt"), "--num-workers", "2"])
    assert result.exit_code == 1 and "Error: --num-workers goes with --engine ray." in result.output


def test_unreachable_address_fails_in_one_line_quickly(tiny_model_dir, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'bertkit[ray]')")
    if ray.is_initialized():
        pytest.skip("runs before the module's local Ray starts")
    from bertkit.ray_engine import embed_files

    (tmp_path / "in.txt").write_text("a cat\n", encoding="utf-8")
    started = time.perf_counter()
    with pytest.raises(InputError, match=r"--ray-address '127.0.0.1:9' cannot be reached"):
        embed_files(tmp_path / "in.txt", tmp_path / "out", model=tiny_model_dir, ray_address="127.0.0.1:9")
    assert time.perf_counter() - started < 30
    assert not (tmp_path / "out").exists()


def test_shards_by_id_equal_the_local_engine(ray_local, tiny_model_dir, two_files, tmp_path):
    from bertkit import embed_file
    from bertkit.ray_engine import embed_files
    from bertkit.ray_shards import read_manifest, read_output

    folder, rows = two_files
    out = tmp_path / "out"
    summary = embed_files(folder, out, model=tiny_model_dir, num_workers=2, shard_size=100,
                          keep_text=True, on_empty="skip", verbose=False)
    assert (summary["n_rows"], summary["n_written"], summary["n_shards"]) == (430, 329, 5)
    got = read_output(out)
    assert got["id"].tolist() == [i for i in range(430) if i != 260 and not 300 <= i < 400]
    assert got["text"].tolist() == [t for t in rows if t]
    local = np.concatenate([np.load(embed_file(folder / name, tmp_path / f"{name}.npy", model=tiny_model_dir,
                                               on_empty="skip", verbose=False)["output"])
                            for name in ("a.txt", "b.jsonl")])
    vectors = np.stack(got["vector"])
    assert vectors.shape == local.shape == (329, 32) and vectors.dtype == np.float32
    assert cosines(vectors, local).min() >= 0.99999
    manifest = read_manifest(out)
    assert manifest["complete"] and sorted(manifest["shards"], key=int) == ["0", "1", "2", "3", "4"]
    assert [manifest["shards"][k]["rows"] for k in "01234"] == [100, 100, 99, 0, 30]


def test_resume_keeps_finished_shards_and_recomputes_the_rest(ray_local, tiny_model_dir, two_files, tmp_path):
    from bertkit.ray_engine import embed_files
    from bertkit.ray_shards import read_manifest, read_output, write_manifest

    folder, _ = two_files
    out = tmp_path / "out"
    run = dict(model=tiny_model_dir, num_workers=2, shard_size=100, on_empty="skip", verbose=False)
    embed_files(folder, out, **run)
    before = read_output(out)
    # A kill -9 after shard 3 was written but before it was recorded, shard 1 never written,
    # and a temporary file of a shard being written.
    manifest = read_manifest(out)
    del manifest["shards"]["1"], manifest["shards"]["3"]
    manifest["complete"] = False
    write_manifest(out, manifest)
    (out / "part-000001.parquet").unlink()
    (out / ".part-000004.parquet.abc.tmp").write_bytes(b"half")
    kept = {k: os.stat(out / f"part-{k:06d}.parquet").st_mtime_ns for k in (0, 2, 4)}
    with pytest.raises(InputError, match="--resume to continue"):
        embed_files(folder, out, **run)
    with pytest.raises(InputError, match="other settings or input .*shard_size"):
        embed_files(folder, out, resume=True, **dict(run, shard_size=50))
    summary = embed_files(folder, out, resume=True, **run)
    assert summary["resumed_shards"] == 3 and summary["n_written"] == 329
    assert {k: os.stat(out / f"part-{k:06d}.parquet").st_mtime_ns for k in (0, 2, 4)} == kept
    assert not list(out.glob(".*tmp"))
    after = read_output(out)
    assert after["id"].tolist() == before["id"].tolist()
    assert np.array_equal(np.stack(after["vector"]), np.stack(before["vector"]))


def test_predict_cli_engine_ray(ray_local, tmp_path):
    from conftest import build_tiny_model

    from bertkit.classifier import Classifier
    from bertkit.ray_shards import read_output

    model = build_tiny_model(tmp_path / "clf", num_labels=2)
    rows = texts(120, 3)
    (tmp_path / "in.csv").write_text("text\n" + "\n".join(rows) + "\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["predict", "--engine", "ray", "-m", model, "--input",
                                      str(tmp_path / "in.csv"), "--output", str(tmp_path / "out"),
                                      "--num-workers", "2", "--chunk-size", "50"])
    assert result.exit_code == 0, result.output
    got = read_output(tmp_path / "out")
    assert got["id"].tolist() == list(range(120))
    probs = Classifier(model).predict_proba(rows)
    assert np.allclose(np.stack(got["probabilities"]), probs, atol=1e-5)
    assert got["label"].tolist() == [["LABEL_0", "LABEL_1"][i] for i in probs.argmax(1)]


@pytest.mark.integration
def test_default_model_cli_matches_local_embed(ray_local, tmp_path):
    from bertkit.ray_shards import read_output

    src = tmp_path / "in.tsv"
    src.write_text("sentence\n" + "\n".join(texts(300, 4)) + "\n", encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(cli, ["embed", "--engine", "ray", "--input", str(src), "--text-column", "sentence",
                                 "--output", str(tmp_path / "out"), "--num-workers", "2",
                                 "--chunk-size", "128"])
    assert result.exit_code == 0, result.output
    local = runner.invoke(cli, ["embed", "--input", str(src), "--text-column", "sentence", "--output",
                                str(tmp_path / "local.npy")])
    assert local.exit_code == 0, local.output
    got, want = np.stack(read_output(tmp_path / "out")["vector"]), np.load(tmp_path / "local.npy")
    assert got.shape == want.shape == (300, 384)
    assert cosines(got, want).min() >= 0.99999


def test_embed_dataset_adds_vectors(ray_local, tiny_model_dir):
    from bertkit import Encoder
    from bertkit.ray_engine import embed_dataset

    rows = texts(40, 5)
    ds = ray_local.data.from_items([{"id": i, "text": t} for i, t in enumerate(rows)])
    got = embed_dataset(ds, model=tiny_model_dir, num_workers=1, batch_size=16).to_pandas().sort_values("id")
    want = Encoder(tiny_model_dir).encode(rows)
    assert cosines(np.stack(got["vector"]), want).min() >= 0.99999


def test_inputs_and_shards_without_ray(tmp_path):
    """Ids count rows across the files in sorted order; a shard may span two files; a
    shard whose rows were all left out as empty still exists, with no texts."""
    from bertkit.ray_shards import expand_inputs, iter_shards, scan_inputs

    (tmp_path / "b.txt").write_text("x\ny\n", encoding="utf-8")
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in ["one", "z", "", " "]),
                                      encoding="utf-8")
    (tmp_path / "notes.md").write_text("not an input\n", encoding="utf-8")
    files = expand_inputs(tmp_path)
    assert [os.path.basename(f) for f in files] == ["a.jsonl", "b.txt"]
    assert expand_inputs(str(tmp_path / "*.txt")) == [str(tmp_path / "b.txt")]
    with pytest.raises(InputError, match="--input pattern .* matches no files"):
        expand_inputs(str(tmp_path / "*.parquet"))
    with pytest.raises(InputError, match="--input '.*missing.txt' does not exist"):
        expand_inputs(tmp_path / "missing.txt")
    scans = scan_inputs(files, text_column=None, columns=None, on_empty="skip")
    shards = list(iter_shards(files, scans, columns=None, on_empty="skip", shard_size=2))
    assert shards == [{"shard": 0, "ids": [0, 1], "texts": ["one", "z"]},
                      {"shard": 1, "ids": [], "texts": []},
                      {"shard": 2, "ids": [4, 5], "texts": ["x", "y"]}]
    assert [s["ids"] for s in iter_shards(files, scans, columns=None, on_empty="skip", shard_size=4)] == [
        [0, 1], [4, 5]]
