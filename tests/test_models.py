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
