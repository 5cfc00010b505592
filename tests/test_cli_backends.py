"""``--backend`` on the command line: predict, evaluate, similarity sentences and search give
what the torch back-end gives (up to the ONNX Runtime tolerances), a search index made with
one back-end is refused with another, and a missing ONNX Runtime is one ``Error:`` line."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bertkit import Classifier
from bertkit.cli import cli

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
TOPICS = os.path.join(FIX, "train_topics.csv")
SENTENCES = ["the team won the match", "the sun in the blue sky", "we ate sweet food",
             "the cat sat on the mat"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def ok_json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def one_error_line(result):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "unexpected" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """ONNX exports and default-path indexes go to a temporary cache (BERTKIT_CACHE)."""
    mp = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("bertkit-cache")
    mp.setenv("BERTKIT_CACHE", str(folder))
    mp.delenv("BERTKIT_THREADS", raising=False)
    yield folder
    mp.undo()


@pytest.fixture(scope="module")
def clf_dir(tiny_model_dir, tmp_path_factory):
    """A tiny BERT classifier of the topics fixture (one epoch on every row)."""
    out = tmp_path_factory.mktemp("cli-clf") / "model"
    Classifier.train(TOPICS, output=out, model=tiny_model_dir, epochs=1, batch_size=8, lr=1e-2,
                     val_split=0, precision="fp32", device="cpu", verbose=False)
    return out


def test_predict_onnx_int8_agrees_with_torch(clf_dir, cache):
    clf = Classifier(clf_dir, device="cpu")
    texts = pd.read_csv(TOPICS)["text"].tolist()
    probs = clf.predict_proba(texts)
    top2 = np.sort(probs, axis=1)[:, -2:]
    text = texts[int((top2[:, 1] - top2[:, 0]).argmax())]  # the clearest call: no near-tie
    want = ok_json(run("predict", "--model", clf_dir, text, "--json"))
    got = ok_json(run("predict", "--model", clf_dir, "--backend", "onnx-int8", text, "--json"))
    assert got["label"] == want["label"] == clf.predict(text)["label"]
    diff = max(abs(got["probabilities"][k] - want["probabilities"][k]) for k in clf.labels)
    assert diff < 0.01  # int8 weights: measured 6e-4 on this model
    assert list((cache / "onnx").glob("*-classifier-logits-int8-*.onnx"))  # exported to the temp cache

    plain = run("predict", "--model", clf_dir, "--backend", "onnx-int8", text)
    assert plain.exit_code == 0 and plain.stdout.splitlines()[0] == want["label"]


def test_evaluate_onnx_gives_the_torch_metrics(clf_dir):
    want = ok_json(run("evaluate", "--model", clf_dir, "--input", TOPICS, "--json"))
    got = ok_json(run("evaluate", "--model", clf_dir, "--input", TOPICS, "--backend", "onnx", "--json"))
    assert got["n"] == want["n"] == 90
    assert got["accuracy"] == want["accuracy"]
    assert got["confusion_matrix"] == want["confusion_matrix"]
    assert got["mcc"] == pytest.approx(want["mcc"], abs=1e-9)


def test_similarity_sentences_onnx_matches_torch(tiny_model_dir):
    args = ["similarity", "sentences", *SENTENCES, "--model", tiny_model_dir, "--json"]
    want = ok_json(run(*args))
    got = ok_json(run(*args, "--backend", "onnx"))
    assert got["texts"] == want["texts"] == SENTENCES
    w, g = np.asarray(want["matrix"]), np.asarray(got["matrix"])
    assert g.shape == (4, 4)
    np.testing.assert_allclose(g, w, atol=1e-4)
    assert np.abs(w - np.eye(4)).max() > 0.01  # the texts differ: the comparison means something


def test_search_refuses_an_index_of_another_backend(tiny_model_dir, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    index = tmp_path / "corpus.npz"
    base = ["search", "--corpus", corpus, "--query", "a game", "--model", tiny_model_dir, "--index", index]
    built = ok_json(run(*base, "--backend", "torch", "--json"))
    assert built["index"]["action"] == "built" and index.is_file()
    stamp = index.stat().st_mtime_ns

    line = one_error_line(run(*base, "--backend", "onnx", "--json"))
    assert "--backend torch" in line and "--backend onnx" in line and str(index) in line
    assert index.stat().st_mtime_ns == stamp  # the index is left as it was

    again = ok_json(run(*base, "--backend", "torch", "--json"))  # the same back-end reuses it
    assert again["index"]["action"] == "reused"
    assert again["results"] == built["results"]


@pytest.mark.parametrize("how", ["sys.modules", "import_onnxruntime"])
@pytest.mark.parametrize("command", ["predict", "evaluate", "similarity", "search"])
def test_missing_onnxruntime_is_one_error_line(clf_dir, tiny_model_dir, tmp_path, monkeypatch, command, how):
    if how == "sys.modules":
        monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails
    else:
        from bertkit.backends import onnx_backend
        from bertkit.errors import InputError

        def missing(backend="onnx"):
            raise InputError(f"--backend {backend} needs ONNX Runtime: pip install 'bertkit[onnx]'")

        monkeypatch.setattr(onnx_backend, "import_onnxruntime", missing)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    args = {
        "predict": ["predict", "--model", clf_dir, "the team won"],
        "evaluate": ["evaluate", "--model", clf_dir, "--input", TOPICS],
        "similarity": ["similarity", "sentences", "a cat", "a dog", "--model", tiny_model_dir],
        "search": ["search", "--corpus", corpus, "--query", "a game", "--model", tiny_model_dir,
                   "--index", tmp_path / "i.npz"],
    }[command]
    line = one_error_line(run(*args, "--backend", "onnx-int8"))
    assert line == "Error: --backend onnx-int8 needs ONNX Runtime: pip install 'bertkit[onnx]'"
    assert not (tmp_path / "i.npz").exists()


def test_cli_backend_choices_are_the_library_s():
    from bertkit.backends import BACKENDS
    from bertkit.cli.options import BACKENDS as CLI_BACKENDS

    assert CLI_BACKENDS == BACKENDS
