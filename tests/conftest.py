"""Shared fixtures: a tiny random BERT saved as a Hugging Face folder, and the real default.

The tiny model (2 layers, hidden 32) makes unit tests fast; tests marked ``integration``
run the real bundled all-MiniLM-L6-v2 (they run by default; ``-m "not integration"``
skips them).
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the Hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# A small WordPiece vocabulary: specials, letters, some words and pieces.
TINY_WORDS = (
    "the a an and of to in on is was were it this that with for from at by as "
    "bank vault robber river money fishing seen after stealing mississippi "
    "good bad great terrible movie film plot actor love hate fun boring "
    "cat dog sat mat ran park sun rain day night sky blue red green "
    "gran bars sweet food eat ate i you he she we they not no yes very "
    "sport game team won lost match science space computer phone market stock price"
).split()
TINY_PIECES = ["##s", "##ed", "##ing", "##ly", "##ola", "##er", "##y", "##a", "##e", "##o", "##i", "##n", "##t", "##r"]


def write_tiny_vocab(path) -> str:
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    punct = list(".,!?'\"-:;()0123456789")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + punct + letters
    vocab += ["##" + c for c in letters] + TINY_WORDS + TINY_PIECES
    seen, unique = set(), []
    for tok in vocab:
        if tok not in seen:
            seen.add(tok)
            unique.append(tok)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(unique) + "\n")
    return str(path)


def build_tiny_model(folder, *, num_labels: int | None = None, seed: int = 0) -> str:
    """Save a random 2-layer BERT (hidden 32, 4 heads, 64 positions) and its tokenizer."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    os.makedirs(folder, exist_ok=True)
    vocab_file = write_tiny_vocab(os.path.join(folder, "vocab.txt"))
    # transformers 5: BertTokenizer takes ``vocab`` (a path or dict) and is the fast one.
    vocab = {tok: i for i, tok in enumerate(open(vocab_file, encoding="utf-8").read().split())}
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True, model_max_length=64)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=64, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
    )
    torch.manual_seed(seed)
    if num_labels:
        from transformers import BertForSequenceClassification

        config.num_labels = num_labels
        model = BertForSequenceClassification(config)
    else:
        model = BertModel(config)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return str(folder)


def interrupt_encode_after(monkeypatch, n_calls):
    """Make Encoder.encode raise KeyboardInterrupt on call number ``n_calls + 1`` (a kill
    in the middle of a file); returns the call counter."""
    from bertkit import Encoder

    real = Encoder.encode
    calls = {"n": 0}

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > n_calls:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Encoder, "encode", flaky)
    return calls


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests (``pytestmark = pytest.mark.usefixtures(...)``):
    tiny models gain nothing from a second thread, and on a shared 2-core machine two
    spinning OpenMP threads can be many times slower than one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def _quiet_transformers():
    from bertkit.models import quiet_transformers

    quiet_transformers()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """Folder of a tiny random BertModel (do not modify; copy it if a test must)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def default_model_dir() -> str:
    """Folder of the real bundled default model (all-MiniLM-L6-v2)."""
    from bertkit.models import default_model_path

    return default_model_path()


@pytest.fixture(scope="session")
def shared_datasets():
    """``../shared/datasets`` beside the project, when present (benchmark data; users'
    clones do not have it, so tests that use it skip there)."""
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"
    if not folder.is_dir():
        pytest.skip("../shared/datasets is not here (only developers' machines and CI have it)")
    return folder
