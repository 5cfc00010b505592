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
