import pytest

from bertkit.info import model_info


def test_tiny_model_counts(tiny_model_dir):
    import torch
    from transformers import AutoModel

    info = model_info(tiny_model_dir)
    net = AutoModel.from_pretrained(tiny_model_dir)
    assert info["num_hidden_layers"] == 2
    assert info["num_hidden_states"] == 3
    assert info["hidden_size"] == 32
    assert info["num_parameters"] == sum(p.numel() for p in net.parameters())
    assert list(info["parameters"]) == ["embeddings", "encoder.layer.0", "encoder.layer.1", "pooler"]
    assert info["parameters"]["pooler"] == 32 * 32 + 32
    assert info["num_labels"] is None


def test_classifier_head_is_its_own_group(tmp_path):
    from conftest import build_tiny_model

    folder = build_tiny_model(tmp_path / "clf", num_labels=3)
    info = model_info(folder)
    assert info["architecture"] == "BertForSequenceClassification"
    assert info["parameters"]["head"] == 32 * 3 + 3
    assert info["num_labels"] == 3


@pytest.mark.integration
def test_default_model_info():
    info = model_info()
    assert info["num_hidden_layers"] == 6
    assert info["hidden_size"] == 384
    assert info["num_hidden_states"] == 7
    assert info["num_attention_heads"] == 12
    assert info["vocab_size"] == 30522
    assert info["num_parameters"] == 22_713_216
