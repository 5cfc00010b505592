"""The formats whose labels live outside a table (fastText lines, folders of classes, Hugging
Face ``save_to_disk`` folders, parquet shards) and ``format`` for odd extensions: each read
as the same ``text``/``label`` chunks that every command consumes."""

import json

import pytest

from bertkit.data import iter_table, read_table
from bertkit.errors import DataError
from bertkit.formats import FORMAT_NAMES, parse_fasttext
from bertkit.labelled import load_labelled
from bertkit.texts import load_texts, read_texts


def test_parse_fasttext_labels():
    assert parse_fasttext("__label__pos a fine film") == ("a fine film", "pos")
    assert parse_fasttext("__label__a __label__b  two labels") == ("two labels", "a|b")
    assert parse_fasttext("no label here") == ("no label here", "")
    # A __label__ word after the text starts is text, not a label.
    assert parse_fasttext("__label__x say __label__y") == ("say __label__y", "x")


def test_fasttext_file_with_format(tmp_path):
    f = tmp_path / "train.txt"
    f.write_text("__label__pos great film\n__label__neg dull \"plot\n__label__pos __label__funny laughs\n"
                 "unlabelled line\n")
    frame = read_table(f, format="fasttext")
    assert frame.columns.tolist() == ["text", "label"]
    assert frame["text"].tolist() == ["great film", 'dull "plot', "laughs", "unlabelled line"]
    assert frame["label"].tolist() == ["pos", "neg", "pos|funny", ""]
    data = load_labelled(f, format="fasttext")
    assert data.labels == ["pos", "neg", "pos|funny"] and data.skipped == {"missing label": [4]}
    # Read as plain .txt the labels stay in the text, and asking for a label column says
    # what to do instead of asking for --columns (which .txt ignores).
    with pytest.raises(DataError, match=r"Column 'label' \(--label-column\).*--format fasttext") as e:
        load_labelled(f)
    assert "--columns" not in str(e.value)


def test_folder_of_class_subfolders(tmp_path):
    for label, texts in {"pos": ["a lovely film\n", "superb"], "neg": ["awful\r\nreally\n"]}.items():
        (tmp_path / label).mkdir()
        for i, t in enumerate(texts):
            (tmp_path / label / f"{i}_7.txt").write_bytes(t.encode("utf-8"))
    (tmp_path / "urls_pos.txt").write_text("not a text\n")  # loose files beside classes: ignored
    # Any folder with sub-folders looks like this; read as one only when asked.
    with pytest.raises(DataError, match=r"is a folder, not a file\..*It holds sub-folders neg, "
                                        r"pos; if they are the classes, pass --format folder\."):
        read_table(tmp_path)
    frame = read_table(tmp_path, format="folder")
    assert frame["label"].tolist() == ["neg", "pos", "pos"]
    assert frame["text"].tolist() == ["awful\nreally", "a lovely film", "superb"]
    assert frame["file"].tolist() == ["neg/0_7.txt", "pos/0_7.txt", "pos/1_7.txt"]


def test_folder_of_files_per_class(tmp_path):
    # rt-polarity: one file per class, a text per line, latin-1, the extension is the label.
    (tmp_path / "rt-polarity.pos").write_bytes("a charming caf\xe9 film\nwarm\n".encode("latin-1"))
    (tmp_path / "rt-polarity.neg").write_bytes("flat\n".encode("latin-1"))
    data = load_labelled(tmp_path, encoding="latin-1", format="folder")
    assert data.texts == ["flat", "a charming caf\xe9 film", "warm"]
    assert data.labels == ["neg", "pos", "pos"]
    with pytest.raises(DataError, match=r"rt-polarity.pos' is not valid UTF-8.*line 1 \(byte offset 14 "):
        load_labelled(tmp_path, format="folder")
    # Different names: the name without its extension is the label.
    other = tmp_path / "named"
    other.mkdir()
    (other / "sport.txt").write_text("goal\n")
    (other / "food.txt").write_text("bread\nsoup\n")
    assert read_table(other, format="folder")["label"].tolist() == ["food", "food", "sport"]
    (other / "extra.csv").write_text("text,label\na,b\n")
    with pytest.raises(DataError, match=r"holds data tables \(extra.csv\)"):
        read_table(other, format="folder")


def _save_to_disk_folder(folder, columns: dict, features: dict, n_files: int = 1):
    """A folder laid out as datasets' Dataset.save_to_disk writes it (Arrow IPC streams,
    dataset_info.json with the features, state.json naming the data files)."""
    import pyarrow as pa

    folder.mkdir()
    table = pa.table(columns)
    per = -(-table.num_rows // n_files)
    names = []
    for k in range(n_files):
        name = f"data-{k:05d}-of-{n_files:05d}.arrow"
        with pa.OSFile(str(folder / name), "wb") as sink, \
                pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table.slice(k * per, per))
        names.append({"filename": name})
    (folder / "dataset_info.json").write_text(json.dumps({"features": features}))
    (folder / "state.json").write_text(json.dumps({"_data_files": names, "_split": "train"}))


def test_hf_save_to_disk_folder(tmp_path):
    folder = tmp_path / "sst2_train"
    _save_to_disk_folder(
        folder, {"sentence": ["good", "bad", "fine", "meh", "great"], "label": [1, 0, 1, 0, 1],
                 "tags": [[0], [0, 1], [], [1], [0]]},
        {"sentence": {"dtype": "string", "_type": "Value"},
         "label": {"names": ["negative", "positive"], "_type": "ClassLabel"},
         "tags": {"feature": {"names": ["x", "y"], "_type": "ClassLabel"}, "_type": "Sequence"}},
        n_files=2)
    frame = read_table(folder)
    assert frame["sentence"].tolist() == ["good", "bad", "fine", "meh", "great"]
    assert frame["label"].tolist() == ["positive", "negative", "positive", "negative", "positive"]
    assert frame["tags"].tolist() == ["x", "x|y", "", "y", "x"]
    # Chunks are exact across the Arrow files (embed --resume relies on chunk k at row k*size).
    assert [len(c) for c in iter_table(folder, chunk_size=2)] == [2, 2, 1]
    data = load_labelled(folder, text_column="sentence", format="hf")
    assert data.labels[:2] == ["positive", "negative"]


def test_hf_dataset_dict_names_its_splits(tmp_path):
    (tmp_path / "dd").mkdir()
    (tmp_path / "dd" / "dataset_dict.json").write_text('{"splits": ["train", "test"]}')
    for split in ("test", "train"):
        (tmp_path / "dd" / split).mkdir()
    with pytest.raises(DataError, match=r"DatasetDict with splits test, train; give one split's "
                                        r"folder, e.g. '.*dd/test'"):
        read_table(tmp_path / "dd")


def test_parquet_shards_folder_and_glob(tmp_path):
    import pandas as pd

    folder = tmp_path / "data"
    folder.mkdir()
    for k, part in enumerate((["a", "b", "c"], ["d", "e"])):
        pd.DataFrame({"text": part, "label": ["x"] * len(part)}).to_parquet(
            folder / f"train-{k:05d}-of-00002.parquet")
    assert read_table(folder)["text"].tolist() == ["a", "b", "c", "d", "e"]
    assert [len(c) for c in iter_table(folder, chunk_size=2)] == [2, 2, 1]
    pd.DataFrame({"text": ["t"], "label": ["x"]}).to_parquet(folder / "test-00000-of-00001.parquet")
    with pytest.raises(DataError, match=r"several splits \(test, train\); name one with a glob"):
        read_table(folder)
    glob = str(folder / "train-*.parquet")
    assert load_texts(glob).texts == ["a", "b", "c", "d", "e"]


def test_format_names_an_odd_extension(tmp_path):
    f = tmp_path / "train_5500.label"  # TREC: the first word is the label
    f.write_text("NUM:dist How far is it from Denver to Aspen ?\nDESC:manner How did serfdom "
                 "develop in and then leave Russia ?\n")
    with pytest.raises(DataError, match=r"Cannot tell the format of '.*train_5500.label'.*--format"):
        read_table(f)
    data = load_labelled(f, format="label-first")
    assert data.labels == ["NUM:dist", "DESC:manner"]
    assert data.texts[1] == "How did serfdom develop in and then leave Russia ?"
    g = tmp_path / "table.label"
    g.write_text("text\tlabel\nHow far is it ?\tNUM\n")
    assert read_table(g, format="tsv")["label"].tolist() == ["NUM"]
    g = tmp_path / "rt-polarity.neg"
    g.write_text('a "flat film\nboring\n')
    assert [c.texts for c in read_texts(g, format="txt")] == [['a "flat film', "boring"]]
    with pytest.raises(DataError, match=r"--format folder reads a folder, but '.*' is a file"):
        read_table(g, format="folder")
    with pytest.raises(DataError, match=r"--format\) must be one of csv, tsv"):
        read_table(g, format="xlsx")


def test_cli_format_choices_match_the_library():
    from bertkit.cli.options import FORMAT_NAMES as CLI_FORMATS, QUOTINGS
    from bertkit.data import QUOTING

    assert CLI_FORMATS == FORMAT_NAMES and QUOTINGS == QUOTING


def test_input_folder_error_names_folder_formats(tmp_path):
    from click.testing import CliRunner

    from bertkit.cli import cli

    (tmp_path / "notes.csv").write_text("text\na\n")
    result = CliRunner().invoke(cli, ["embed", "--input", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: '{tmp_path}' is a folder, not a file. A folder can")
    assert "class sub-folders" in result.stderr and "--format hf" in result.stderr
    assert "does not exist" not in result.stderr
