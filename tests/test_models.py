import os
import shutil

import pytest

from bertkit.errors import InputError, ModelLoadError
from bertkit.models import (check_model_folder, load_model, max_length_of, resolve_model,
                            select_device)


def test_resolve_none_is_bundled_default(default_model_dir):
    assert resolve_model(None) == default_model_dir
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        assert os.path.isfile(os.path.join(default_model_dir, name))


def test_resolve_local_folder(tiny_model_dir):
    assert resolve_model(tiny_model_dir) == tiny_model_dir


def test_missing_folder_is_one_clear_error():
    with pytest.raises(ModelLoadError, match="'/nonexistent/folder' does not exist"):
        resolve_model("/nonexistent/folder")


def test_hub_id_is_passed_through():
    assert resolve_model("bert-base-uncased") == "bert-base-uncased"
    assert resolve_model("sentence-transformers/all-mpnet-base-v2") == "sentence-transformers/all-mpnet-base-v2"


def test_default_model_names_load_the_bundled_copy(default_model_dir):
    # Encoder.model_name of the default is recorded in index metadata; it must load offline.
    assert resolve_model("all-MiniLM-L6-v2") == default_model_dir
    assert resolve_model("sentence-transformers/all-MiniLM-L6-v2") == default_model_dir


def test_uncached_hub_id_offline_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="cannot be reached"):
        load_model("no-such-org/no-such-model-xyz")


@pytest.fixture
def broken_copy(tiny_model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    return folder


def test_folder_without_config(broken_copy):
    (broken_copy / "config.json").unlink()
    with pytest.raises(ModelLoadError, match="no config.json"):
        check_model_folder(str(broken_copy))


def test_folder_with_bad_config_json(broken_copy):
    (broken_copy / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="config.json .*not valid JSON"):
        check_model_folder(str(broken_copy))


def test_folder_without_weights(broken_copy):
    (broken_copy / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="no model.safetensors"):
        check_model_folder(str(broken_copy))


def test_pickle_weights_are_refused(broken_copy):
    (broken_copy / "model.safetensors").rename(broken_copy / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="safetensors only"):
        check_model_folder(str(broken_copy))


def test_truncated_weights(broken_copy):
    weights = broken_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match="corrupt or truncated"):
        check_model_folder(str(broken_copy))


def test_folder_without_tokenizer(broken_copy):
    for name in ("tokenizer.json", "vocab.txt"):
        (broken_copy / name).unlink()
    with pytest.raises(ModelLoadError, match="no tokenizer"):
        check_model_folder(str(broken_copy))


def test_load_model_eval_mode_and_limits(tiny_model_dir):
    net, tok = load_model(tiny_model_dir, device="cpu")
    assert not net.training
    assert net.config.hidden_size == 32
    assert max_length_of(tok, net.config) == 64


def test_eager_attention_returns_weights(tiny_model_dir):
    import torch

    net, tok = load_model(tiny_model_dir, device="cpu", attn_implementation="eager")
    with torch.no_grad():
        out = net(**tok("the cat sat", return_tensors="pt"), output_attentions=True)
    assert len(out.attentions) == 2
    assert torch.allclose(out.attentions[0].sum(-1), torch.ones(1, 4, 5), atol=1e-5)


def test_select_device():
    assert select_device("cpu").type == "cpu"
    assert select_device(None).type in ("cpu", "cuda", "mps")
    with pytest.raises(InputError, match="device"):
        select_device("tpu-9000")


def test_cuda_without_gpu_is_clear():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(InputError, match="no CUDA GPU"):
        select_device("cuda")


# ---------------------------------------------------------------- architectures (issue 14, item 9)

def build_tiny_gpt2(folder) -> str:
    """A 1-layer GPT-2 with a real byte-level BPE tokenizer (no padding token, as GPT-2)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2Model, GPT2TokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(["the cat sat on the mat", "a dog ran in the park"] * 5,
                            trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = GPT2TokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>",
                            eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    config = GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=300, n_positions=64,
                        bos_token_id=0, eos_token_id=0)
    GPT2Model(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    return build_tiny_gpt2(tmp_path_factory.mktemp("gpt2"))


def test_check_architecture_refuses_non_encoders():
    from transformers import BartConfig, BertConfig, GPT2Config, LlamaConfig, RobertaConfig, T5Config

    from bertkit.models import check_architecture

    check_architecture(BertConfig())  # the BERT family passes
    check_architecture(RobertaConfig())
    for config, what in [(GPT2Config(), "gpt2 model, a decoder-only language model"),
                         (LlamaConfig(), "llama model, a decoder-only language model"),
                         (T5Config(), "t5 model, an encoder-decoder"),
                         (BartConfig(), "bart model, an encoder-decoder"),
                         (BertConfig(is_decoder=True), "bert model, configured as a decoder")]:
        with pytest.raises(ModelLoadError, match=what) as e:
            check_architecture(config, "m")
        assert "BERT-family encoders (bert, roberta" in str(e.value)


def test_gpt2_folder_is_refused_by_every_entry_point(gpt2_dir, tmp_path):
    from click.testing import CliRunner

    from bertkit import Encoder
    from bertkit.cli import cli

    for task in ("base", "classification"):
        with pytest.raises(ModelLoadError, match="is a gpt2 model"):
            load_model(gpt2_dir, task=task, device="cpu")
    with pytest.raises(ModelLoadError, match="is a gpt2 model"):
        Encoder(gpt2_dir, device="cpu")
    train = os.path.join(os.path.dirname(__file__), "fixtures", "train_topics.csv")
    runner = CliRunner()
    for args in (["train", "--train", train, "--model", gpt2_dir, "--output", tmp_path / "out",
                  "--epochs", "1", "--device", "cpu", "--precision", "fp32"],
                 ["embed", "the cat", "a dog", "--model", gpt2_dir, "--output", tmp_path / "e.npy"]):
        result = runner.invoke(cli, [str(a) for a in args])
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith(f"Error: '{gpt2_dir}' is a gpt2 model, a decoder-only")
        assert len(result.stderr.splitlines()) == 1 and "unexpected" not in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "e.npy").exists()
