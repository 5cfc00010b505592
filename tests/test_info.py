import pytest

from bertkit.info import model_info


def test_tiny_model_counts(tiny_model_dir):
    from transformers import AutoModel

    from bertkit.info import _from_files

    assert _from_files(tiny_model_dir) is not None  # counted from the safetensors header
    info = model_info(tiny_model_dir)
    net = AutoModel.from_pretrained(tiny_model_dir)  # the loaded model: an independent count
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
    from bertkit.info import _from_files, _from_loaded_model

    assert _from_files(folder) == _from_loaded_model(folder)  # header and loaded model agree
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
    assert info["num_parameters"] == 22_713_216  # the buffer position_ids (512) not counted
    from bertkit.info import _from_loaded_model

    loaded = _from_loaded_model(None)
    assert {k: info[k] for k in loaded} == loaded


def test_plain_folder_has_no_folder_settings(tiny_model_dir):
    fs = model_info(tiny_model_dir)["folder_settings"]
    assert fs["source"] is None
    assert (fs["max_length"], fs["pooling"], fs["normalize"]) == (None, None, None)


def test_folder_settings_in_info_and_cli_table(tmp_path, tiny_model_dir):
    from click.testing import CliRunner
    from test_model_settings import DENSE, NORMALIZE, POOLING, TRANSFORMER, st_folder

    from bertkit.cli import cli

    folder = st_folder(tmp_path, tiny_model_dir, {
        "modules.json": [TRANSFORMER, POOLING, DENSE, dict(NORMALIZE, idx=3, path="3_Normalize")],
        "sentence_bert_config.json": {"max_seq_length": 48},
        "1_Pooling/config.json": {"pooling_mode": "cls"},
    })
    fs = model_info(folder)["folder_settings"]
    assert (fs["max_length"], fs["pooling"], fs["normalize"]) == (48, "cls", True)
    assert fs["source"] == "sentence-transformers config"
    assert fs["unsupported"] == ["Dense module (2_Dense)"]
    out = CliRunner().invoke(cli, ["info", "--model", folder]).output
    assert "folder max_length  48 (sentence-transformers config: sentence_bert_config.json)" in out
    assert "folder pooling     cls (sentence-transformers config: 1_Pooling/config.json)" in out
    assert "folder normalize   yes (sentence-transformers config: modules.json)" in out
    assert "not reproduced     Dense module (2_Dense)" in out


def test_corrupt_folder_config_is_a_cli_warning(tmp_path, tiny_model_dir):
    import json
    import shutil

    from click.testing import CliRunner

    from bertkit.cli import cli

    folder = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "modules.json").write_text("[{")
    result = CliRunner().invoke(cli, ["info", "--model", str(folder), "--json"])
    assert result.exit_code == 0
    assert "Warning: modules.json is not valid JSON" in result.stderr
    assert json.loads(result.stdout)["folder_settings"]["problems"]


@pytest.mark.integration
def test_default_model_folder_settings():
    from click.testing import CliRunner

    from bertkit.cli import cli

    fs = model_info()["folder_settings"]
    assert (fs["max_length"], fs["pooling"], fs["normalize"]) == (256, "mean", True)
    assert fs["source"] == "sentence-transformers config" and fs["unsupported"] == []
    out = CliRunner().invoke(cli, ["info"]).output
    assert "folder max_length  256 (sentence-transformers config: sentence_bert_config.json)" in out
    assert "folder normalize   yes" in out
