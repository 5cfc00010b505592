"""Loading labelled data: columns, pairs, quoting, label maps, bad rows, stratified splits."""

import json
import os

import pandas as pd
import pytest

from bertkit.errors import DataError, InputError
from bertkit.labelled import (encode_labels, example_data, label_names, label_string,
                              load_labelled, stratified_split)

FIX = os.path.join(os.path.dirname(__file__), "fixtures")


def test_headerless_tsv_with_columns():
    d = load_labelled(os.path.join(FIX, "train_cola_like.tsv"), columns="source,label,mark,sentence",
                      text_column="sentence", label_column="label")
    assert len(d) == 10 and d.n_rows == 10 and not d.skipped
    assert d.texts[2] == "They drank the pub." and d.labels[:3] == ["1", "1", "0"]
    assert d.pairs is None and d.rows[0] == 1


def test_quoted_pair_tsv():
    d = load_labelled(os.path.join(FIX, "train_pairs.tsv"), text_column="premise",
                      pair_column="hypothesis", quoting="csv")
    assert d.texts[0] == 'A man is reading "Lotos." outside.'
    assert d.texts[2] == 'A sign says "no\tentry".'  # a quoted TAB stays inside the field
    assert d.pairs[1] == "The dogs are asleep."
    assert d.labels == ["0", "2", "0", "1"]


def test_bad_rows_counted_or_fatal():
    path = os.path.join(FIX, "train_bad_rows.csv")
    d = load_labelled(path)
    assert d.texts == ["the team won the match", "we ate the sweet food", "the rain and the night"]
    assert d.skipped == {"missing text": [2, 5], "missing label": [4]}
    assert d.n_skipped == 3
    assert "3 of 6 rows skipped" in d.skipped_summary() and "rows 2, 5" in d.skipped_summary()
    with pytest.raises(DataError, match=r"Row 2 .* column 'text' \(--text-column\)"):
        load_labelled(path, strict=True)


def test_missing_columns_name_the_flag(tmp_path):
    path = os.path.join(FIX, "train_topics.csv")
    with pytest.raises(DataError, match="--label-column"):
        load_labelled(path, label_column="target")
    with pytest.raises(DataError, match="--pair-column"):
        load_labelled(path, pair_column="second")
    # without labels required, a file with no label column loads for prediction
    p = tmp_path / "t.csv"
    p.write_text("text\nhello\n")
    d = load_labelled(p, require_labels=False)
    assert d.labels is None and d.texts == ["hello"]


def test_labels_same_across_formats(tmp_path):
    frame = pd.DataFrame({"text": ["a b", "c d", "e f"], "label": [1, 0, 10]})
    frame.to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    frame.to_parquet(tmp_path / "d.parquet")
    frame.to_csv(tmp_path / "d.csv", index=False)
    got = [load_labelled(tmp_path / f"d.{ext}").labels for ext in ("jsonl", "parquet", "csv")]
    assert got[0] == got[1] == got[2] == ["1", "0", "10"]
    assert label_names(got[0]) == ["0", "1", "10"]  # numeric order, not "0", "1", "10" by luck
    assert label_names(["2", "10", "1"]) == ["1", "2", "10"]
    assert label_names(["b", "a", "B"]) == ["B", "a", "b"]
    assert label_string(1.0) == "1" and label_string(" x ") == "x" and label_string(float("nan")) is None
    d = load_labelled(frame)  # a DataFrame works too
    assert d.source == "<dataframe>" and d.labels == ["1", "0", "10"]


def test_unseen_label_is_a_clear_error():
    d = load_labelled(os.path.join(FIX, "train_topics.csv"))
    assert encode_labels(d, {"food": 0, "sky": 1, "sport": 2})[:2] == [0, 2]
    with pytest.raises(DataError, match=r"Label 'sky' .* not seen in training.*'food', 'sport'"):
        encode_labels(d, {"food": 0, "sport": 1})


def test_stratified_split_is_seeded_and_keeps_shares():
    labels = ["a"] * 70 + ["b"] * 30 + ["c"]
    train, val = stratified_split(labels, 0.1, seed=3)
    assert sorted(train + val) == list(range(101)) and not set(train) & set(val)
    assert [labels[i] for i in val].count("a") == 7 and [labels[i] for i in val].count("b") == 3
    assert 100 in train  # a label with one example stays in training
    assert stratified_split(labels, 0.1, seed=3) == (train, val)
    assert stratified_split(labels, 0.1, seed=4)[1] != val
    with pytest.raises(InputError, match="'val_split' parameter"):
        stratified_split(labels, 1.5, seed=0)


def test_example_data_ships():
    train = load_labelled(example_data("topics_train.csv"))
    test = load_labelled(example_data("topics_test.csv"))
    assert len(train) == 360 and len(test) == 120
    assert label_names(train.labels) == ["cooking", "sports", "technology"]
    assert not set(train.texts) & set(test.texts)
    pairs = load_labelled(example_data("pairs_train.tsv"), text_column="first", pair_column="second")
    assert len(pairs) == 240 and set(pairs.labels) == {"same", "different"}
    with pytest.raises(InputError, match="topics_train.csv"):
        example_data("nope.csv")
    json.dumps(train.skipped)


# -- issue 14, item 2: too few --columns no longer shifts the label column silently
def test_columns_fewer_than_fields_is_an_error(tmp_path):
    cola = os.path.join(FIX, "train_cola_like.tsv")
    with pytest.raises(DataError, match=r"--columns gives 3 names but .* has 4 fields"):
        load_labelled(cola, columns="source,label,sentence", text_column="sentence",
                      label_column="label")
    frame = pd.DataFrame({"a": ["x"], "b": ["1"], "c": ["y"]})
    with pytest.raises(DataError, match=r"2 names but '<dataframe>' has 3 fields"):
        load_labelled(frame, columns="text,label")


# -- issue 14, item 10: --strict wording, and one policy for numbers in a text column
def test_strict_message_says_what_is_missing():
    path = os.path.join(FIX, "train_bad_rows.csv")
    d = load_labelled(path, text_column="text")
    assert d.skipped["missing label"] == [4]
    frame = pd.read_csv(path, keep_default_na=False, dtype=str)
    frame = frame[frame["text"].str.strip() != ""]  # keep only the row without a label as bad
    with pytest.raises(DataError, match=r"Row \d+ of '<dataframe>' has no label: column 'label' "
                                        r"\(--label-column\) is empty"):
        load_labelled(frame, strict=True)
    with pytest.raises(DataError, match=r"Row 2 of '.*' has no text: column 'text'"):
        load_labelled(path, strict=True)


def test_numeric_text_column_is_refused_like_embed(tmp_path):
    frame = pd.DataFrame({"text": ["a b", "c d"], "code": [5, 7], "label": [1, 0]})
    frame.to_parquet(tmp_path / "d.parquet")
    with pytest.raises(DataError, match=r"Row 1 of column 'code' \(--text-column\) in '.*d.parquet' "
                                        r"is int \(5\), not text"):
        load_labelled(tmp_path / "d.parquet", text_column="code")
    with pytest.raises(DataError, match=r"Row 1 of column 'code' \(--pair-column\)"):
        load_labelled(frame, pair_column="code")
    assert load_labelled(tmp_path / "d.parquet").texts == ["a b", "c d"]  # labels may be numbers


# -- issue 9: the shared empty-row policy (bertkit.data) is available to train's reader
def test_on_empty_follows_the_shared_policy():
    path = os.path.join(FIX, "train_bad_rows.csv")
    with pytest.raises(DataError, match=r"2 of 6 rows of column 'text' in '.*train_bad_rows.csv' are "
                                        r"empty \(rows 2, 5\).*--skip-empty"):
        load_labelled(path, on_empty="error")
    skipped = load_labelled(path, on_empty="skip")
    assert skipped.skipped == {"missing text": [2, 5], "missing label": [4]}
    # with strict, empty texts are still skipped under on_empty="skip"; a missing label is fatal
    with pytest.raises(DataError, match=r"Row 4 of '.*' has no label"):
        load_labelled(path, on_empty="skip", strict=True)
    with pytest.raises(InputError, match=r"'on_empty' parameter of load_labelled"):
        load_labelled(path, on_empty="drop")
