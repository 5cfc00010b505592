"""Reading a model folder's sentence-transformers settings (bertkit.model_settings)."""

import json
import shutil
import warnings

import pytest

from bertkit.model_settings import FolderSettings, folder_settings, resolve_encode_defaults

TRANSFORMER = {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}
POOLING = {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
NORMALIZE = {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
DENSE = {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}


def st_folder(tmp_path, tiny_model_dir, files: dict, name="st") -> str:
    """A copy of the tiny model plus hand-written sentence-transformers files
    (relative path -> object written as JSON, or str written as is)."""
    folder = tmp_path / name
    shutil.copytree(tiny_model_dir, folder)
    for rel, content in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return str(folder)


def no_warnings(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args, **kwargs)


def test_bundled_model_folder_settings(default_model_dir):
    # all-MiniLM-L6-v2: max_seq_length 256, mean pooling, a Normalize module.
    modules = json.loads(open(f"{default_model_dir}/modules.json").read())
    assert modules[-1]["type"].endswith("Normalize")
    for model in (None, default_model_dir, "sentence-transformers/all-MiniLM-L6-v2"):
        s = no_warnings(folder_settings, model)
        assert (s.max_length, s.pooling, s.normalize) == (256, "mean", True)
        assert s.unsupported == [] and s.problems == []
        assert s.source == {"max_length": "sentence_bert_config.json",
                            "pooling": "1_Pooling/config.json", "normalize": "modules.json"}


def test_cls_and_normalize_new_format(tmp_path, tiny_model_dir):
    # bge/e5-style: CLS pooling, normalized; sentence-transformers >= 6 writes pooling_mode.
    folder = st_folder(tmp_path, tiny_model_dir, {
        "modules.json": [TRANSFORMER, POOLING, NORMALIZE],
        "sentence_bert_config.json": {"max_seq_length": 48, "do_lower_case": False},
        "1_Pooling/config.json": {"embedding_dimension": 32, "pooling_mode": "cls", "include_prompt": True},
        "2_Normalize/config.json": {"module_input_name": "sentence_embedding"},
    })
    s = no_warnings(folder_settings, folder)
    assert (s.max_length, s.pooling, s.normalize) == (48, "cls", True)
    assert s.unsupported == [] and s.is_sentence_transformers


def test_max_pooling_legacy_keys_without_normalize(tmp_path, tiny_model_dir):
    folder = st_folder(tmp_path, tiny_model_dir, {
        "modules.json": [TRANSFORMER, POOLING],
        "1_Pooling/config.json": {"word_embedding_dimension": 32, "pooling_mode_cls_token": False,
                                  "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": True},
    })
    s = no_warnings(folder_settings, folder)
    # No sentence_bert_config.json: max_length is not set (the tokenizer's limit applies).
    assert (s.max_length, s.pooling, s.normalize) == (None, "max", False)
    assert s.source["normalize"] == "modules.json"


@pytest.mark.parametrize("config, phrase", [
    ({"pooling_mode": "weightedmean"}, "weightedmean pooling"),
    ({"pooling_mode": "lasttoken"}, "lasttoken pooling"),
    ({"pooling_mode_mean_sqrt_len_tokens": True}, "mean_sqrt_len_tokens pooling"),
    ({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True}, "cls+mean pooling, concatenated"),
])
def test_unreproducible_pooling_is_unsupported(tmp_path, tiny_model_dir, config, phrase):
    folder = st_folder(tmp_path, tiny_model_dir, {
        "modules.json": [TRANSFORMER, POOLING], "1_Pooling/config.json": config})
    s = no_warnings(folder_settings, folder)
    assert s.pooling is None
    assert len(s.unsupported) == 1 and s.unsupported[0].startswith(phrase)


def test_dense_module_and_default_prompt_are_unsupported(tmp_path, tiny_model_dir):
    folder = st_folder(tmp_path, tiny_model_dir, {
        "modules.json": [TRANSFORMER, POOLING, DENSE, dict(NORMALIZE, idx=3, path="3_Normalize")],
        "1_Pooling/config.json": {"pooling_mode": "mean"},
        "2_Dense/config.json": {"in_features": 32, "out_features": 16},
        "config_sentence_transformers.json": {"prompts": {"query": "query: ", "document": ""},
                                              "default_prompt_name": "query"},
    })
    s = no_warnings(folder_settings, folder)
    assert (s.pooling, s.normalize) == ("mean", True)
    assert s.unsupported[0] == "Dense module (2_Dense)"
    assert "default prompt 'query'" in s.unsupported[1]


def test_lowercasing_only_unsupported_when_the_tokenizer_does_not(tmp_path, tiny_model_dir):
    files = {"modules.json": [TRANSFORMER, POOLING], "1_Pooling/config.json": {"pooling_mode": "mean"},
             "sentence_bert_config.json": {"max_seq_length": 32, "do_lower_case": True}}
    assert folder_settings(st_folder(tmp_path, tiny_model_dir, files)).unsupported == []
    tok = json.loads(open(f"{tiny_model_dir}/tokenizer_config.json").read())
    files["tokenizer_config.json"] = dict(tok, do_lower_case=False)
    s = folder_settings(st_folder(tmp_path, tiny_model_dir, files, name="cased"))
    assert len(s.unsupported) == 1 and s.unsupported[0].startswith("do_lower_case")


def test_corrupt_modules_json_warns_and_keeps_the_rest(tmp_path, tiny_model_dir):
    folder = st_folder(tmp_path, tiny_model_dir, {
        "modules.json": '[{"idx": 0, "type": ',
        "sentence_bert_config.json": {"max_seq_length": 40},
        "1_Pooling/config.json": {"pooling_mode": "cls"},
    })
    with pytest.warns(UserWarning, match="modules.json is not valid JSON"):
        s = folder_settings(folder)
    assert (s.max_length, s.pooling, s.normalize) == (40, None, None)
    assert s.problems and s.problems[0].startswith("modules.json")


@pytest.mark.parametrize("rel, content", [
    ("sentence_bert_config.json", "{max_seq_length: 40"),
    ("1_Pooling/config.json", b"\xff\xfe\x00garbage"),
    ("modules.json", {"not": "a list"}),
])
def test_other_corrupt_files_warn_not_raise(tmp_path, tiny_model_dir, rel, content):
    files = {"modules.json": [TRANSFORMER, POOLING, NORMALIZE],
             "sentence_bert_config.json": {"max_seq_length": 40},
             "1_Pooling/config.json": {"pooling_mode": "cls"}}
    folder = st_folder(tmp_path, tiny_model_dir, files)
    path = f"{folder}/{rel}"
    if isinstance(content, bytes):
        open(path, "wb").write(content)
    else:
        open(path, "w").write(content if isinstance(content, str) else json.dumps(content))
    with pytest.warns(UserWarning, match=rel):
        s = folder_settings(folder)
    assert rel not in s.source.values()
    assert s.problems[0].startswith(rel)
    quiet = no_warnings(folder_settings, folder, warn=False)
    assert quiet == s


def test_plain_hugging_face_folder_sets_nothing(tiny_model_dir):
    s = no_warnings(folder_settings, tiny_model_dir)
    assert s == FolderSettings()
    assert (s.max_length, s.pooling, s.normalize) == (None, None, None)
    assert not s.is_sentence_transformers


def test_hub_id_read_from_the_cache_and_absent_offline(tmp_path, tiny_model_dir, monkeypatch):
    from huggingface_hub import constants

    snapshot = tmp_path / "hub" / "models--org--st-model" / "snapshots" / ("a" * 40)
    (snapshot / "1_Pooling").mkdir(parents=True)
    (snapshot / "modules.json").write_text(json.dumps([TRANSFORMER, POOLING, NORMALIZE]))
    (snapshot / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "cls"}))
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    s = no_warnings(folder_settings, "org/st-model", download=False)
    assert (s.max_length, s.pooling, s.normalize) == (None, "cls", True)
    # Not cached and offline (HF_HUB_OFFLINE=1 in conftest): nothing is set, nothing raised.
    assert no_warnings(folder_settings, "org/not-cached") == FolderSettings()


def test_explicit_arguments_win():
    folder = FolderSettings(max_length=256, pooling="cls", normalize=True,
                            source={"max_length": "sentence_bert_config.json",
                                    "pooling": "1_Pooling/config.json", "normalize": "modules.json"})
    got = resolve_encode_defaults(folder, max_length=128, pooling="max", normalize=False, model_limit=512)
    assert (got["max_length"], got["pooling"], got["normalize"]) == (128, "max", False)
    assert set(got["source"].values()) == {"argument"}
    got = resolve_encode_defaults(folder, pooling="mean", model_limit=512)
    assert (got["max_length"], got["pooling"], got["normalize"]) == (256, "mean", True)
    assert got["source"]["max_length"] == "sentence-transformers config (sentence_bert_config.json)"
    assert got["source"]["pooling"] == "argument"


def test_fallbacks_and_position_cap():
    got = resolve_encode_defaults(FolderSettings(), model_limit=512)
    assert (got["max_length"], got["pooling"], got["normalize"]) == (512, "mean", False)
    assert got["source"] == {"max_length": "model limit", "pooling": "bertkit default",
                             "normalize": "bertkit default"}
    assert resolve_encode_defaults(None)["max_length"] is None
    # A folder max_length above the model's positions is capped (it would not run).
    capped = resolve_encode_defaults(FolderSettings(max_length=1024), model_limit=512)
    assert capped["max_length"] == 512
    unsupported = resolve_encode_defaults(FolderSettings(unsupported=["Dense module (2_Dense)"]))
    assert unsupported["unsupported"] == ["Dense module (2_Dense)"]


@pytest.mark.integration
def test_folder_settings_reproduce_sentence_transformers_on_a_long_text(default_model_dir, one_torch_thread):
    # A ~300-token text: the folder's max_length 256 (not the model's 512) makes it match.
    import numpy as np
    import pandas as pd

    st_mod = pytest.importorskip("sentence_transformers")
    from bertkit import Encoder
    from bertkit.labelled import example_data

    enc = Encoder(device="cpu")
    texts = pd.read_csv(f"{example_data()}/topics_test.csv")["text"].tolist()
    long_text = ""
    for t in texts:
        if len(enc.tokenizer(long_text)["input_ids"]) >= 300:
            break
        long_text = f"{long_text} {t}".strip()
    assert 300 <= len(enc.tokenizer(long_text)["input_ids"]) < 512
    d = resolve_encode_defaults(folder_settings(None), model_limit=enc.max_length)
    theirs = st_mod.SentenceTransformer(default_model_dir, device="cpu").encode([long_text])[0]
    enc.max_length = d["max_length"]
    with pytest.warns(UserWarning, match="cut"):
        ours = enc.encode(long_text, pooling=d["pooling"], normalize=d["normalize"])
    assert float(ours @ theirs) >= 0.99999 and abs(np.linalg.norm(ours) - 1) < 1e-5
