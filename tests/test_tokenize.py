import pytest

from bertkit.errors import InputError
from bertkit.tokenize import tokenize


def test_pieces_and_specials(tiny_model_dir):
    t = tokenize("granola bars", model=tiny_model_dir)
    assert t.tokens == ["[CLS]", "gran", "##ola", "bars", "[SEP]"]
    assert t.word_ids == [None, 0, 0, 1, None]
    assert t.attention_mask == [1] * 5
    assert t.token_type_ids == [0] * 5
    assert t.n_truncated == 0


def test_pair_has_segment_ids(tiny_model_dir):
    t = tokenize("the cat", pair="the dog ran", model=tiny_model_dir)
    assert t.tokens == ["[CLS]", "the", "cat", "[SEP]", "the", "dog", "ran", "[SEP]"]
    assert t.token_type_ids == [0, 0, 0, 0, 1, 1, 1, 1]
    assert t.sequence_ids == [None, 0, 0, None, 1, 1, 1, None]


def test_truncation_is_counted(tiny_model_dir):
    t = tokenize("the cat sat on the mat in the sun", model=tiny_model_dir, max_length=6)
    assert len(t.input_ids) == 6
    assert t.tokens[-1] == "[SEP]"
    assert t.n_truncated == 11 - 6


def test_pair_truncation_cuts_longer_side_first(tiny_model_dir):
    t = tokenize("the cat", pair="the dog ran in the park on a blue day", model=tiny_model_dir,
                 max_length=9)
    assert t.sequence_ids.count(0) == 2  # the short first text is kept whole
    assert t.sequence_ids.count(1) == 9 - 3 - 2
    assert t.n_truncated == 6


def test_default_max_length_is_models_limit(tiny_model_dir):
    assert tokenize("the cat", model=tiny_model_dir).max_length == 64


@pytest.mark.parametrize("text", ["", "   ", None, 3])
def test_bad_text(tiny_model_dir, text):
    with pytest.raises(InputError, match="'text'"):
        tokenize(text, model=tiny_model_dir)


def test_max_length_too_small(tiny_model_dir):
    with pytest.raises(InputError, match="max_length"):
        tokenize("the cat", model=tiny_model_dir, max_length=2)


@pytest.mark.integration
def test_granola_on_default_model():
    t = tokenize("granola bars")
    assert t.input_ids == [101, 12604, 6030, 6963, 102]
    assert t.tokens == ["[CLS]", "gran", "##ola", "bars", "[SEP]"]


TEXTS = [("granola bars", None, None),
         ("Héllo WORLD, naïve café 中文 don't x-ray 3.14!", "It's   tired\tnow.", None),
         ("the cat sat on the mat in the sun", "the dog ran in the park on a blue day", 9),
         ("a " * 90, None, None), ("[CLS] the [MASK] cat", "[SEP]", 7)]


@pytest.mark.parametrize("text,pair,max_length", TEXTS)
def test_tokenizers_path_equals_transformers(tiny_model_dir, text, pair, max_length):
    from bertkit.model_files import fast_tokenizer
    from bertkit.tokenize import _tokenize_transformers

    assert fast_tokenizer(tiny_model_dir) is not None  # the fast path is the one tested
    assert (tokenize(text, pair, model=tiny_model_dir, max_length=max_length)
            == _tokenize_transformers(text, pair, tiny_model_dir, max_length, None))


@pytest.mark.integration
@pytest.mark.parametrize("text,pair,max_length", TEXTS)
def test_tokenizers_path_equals_transformers_on_default_model(text, pair, max_length):
    from bertkit.tokenize import _tokenize_transformers

    assert tokenize(text, pair, max_length=max_length) == _tokenize_transformers(
        text, pair, None, max_length, None)


def test_tokenize_needs_no_weights(tmp_path, tiny_model_dir):
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")  # never opened
    assert tokenize("granola bars", model=str(folder)).tokens == ["[CLS]", "gran", "##ola", "bars", "[SEP]"]


def test_cli_tokenize_and_info_import_neither_torch_nor_transformers(tiny_model_dir):
    import json
    import subprocess
    import sys

    code = ("import sys, json; from bertkit.cli import cli\n"
            "for args in (['tokenize', 'granola bars', '--model', sys.argv[1]],"
            "             ['info', '--model', sys.argv[1], '--json']):\n"
            "    try: cli(args, standalone_mode=False)\n"
            "    except SystemExit: pass\n"
            "print(json.dumps([m for m in ('torch', 'transformers') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code, tiny_model_dir], capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []
