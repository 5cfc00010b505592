import pytest

from bertkit.data import (default_text_column, file_format, iter_table, parse_columns,
                          read_table, require_columns)
from bertkit.errors import DataError


def test_txt_one_text_a_line(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("first line\nsecond, with comma\n\nNA\n", encoding="utf-8")
    frame = read_table(f)
    assert frame["text"].tolist() == ["first line", "second, with comma", "", "NA"]


def test_headerless_tsv_with_columns(tmp_path):
    f = tmp_path / "cola.tsv"
    f.write_text("gj04\t1\t\tOur friends won't buy this.\ngj04\t0\t*\tThey drank the pub.\n")
    frame = read_table(f, columns="source,label,mark,sentence")
    assert frame.columns.tolist() == ["source", "label", "mark", "sentence"]
    assert frame["sentence"].tolist() == ["Our friends won't buy this.", "They drank the pub."]
    assert frame["mark"].tolist() == ["", "*"]


def test_quoted_tsv_fields(tmp_path):
    f = tmp_path / "snli.tsv"
    f.write_text('premise\thypothesis\tlabel\n"A man says ""hi"" loudly."\tA man talks.\t0\n')
    frame = read_table(f)
    assert frame.loc[0, "premise"] == 'A man says "hi" loudly.'
    assert frame.loc[0, "label"] == "0"


def test_jsonl_and_parquet(tmp_path):
    import pandas as pd

    rows = pd.DataFrame({"text": ["a", "b", "c"], "label": [1, 0, 1]})
    rows.to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    rows.to_parquet(tmp_path / "d.parquet")
    for name in ("d.jsonl", "d.parquet"):
        frame = read_table(tmp_path / name)
        assert frame["text"].tolist() == ["a", "b", "c"]


def test_chunks_cover_every_row(tmp_path):
    f = tmp_path / "big.csv"
    f.write_text("text\n" + "".join(f"row {i}\n" for i in range(25)))
    sizes = [len(c) for c in iter_table(f, chunk_size=10)]
    assert sizes == [10, 10, 5]


def test_non_utf8_is_clear(tmp_path):
    f = tmp_path / "latin1.txt"
    f.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="not valid UTF-8"):
        read_table(f)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="Cannot tell the format"):
        file_format("data.xlsx")


def test_require_columns_names_flag_and_columns(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("sentence,label\nhi,1\n")
    frame = read_table(f)
    with pytest.raises(DataError, match=r"Column 'text' \(--text-column\).*sentence, label"):
        require_columns(frame, {"--text-column": "text"}, f)
    assert default_text_column(frame, f) == "sentence"


def test_parse_columns():
    assert parse_columns("a, b,c") == ["a", "b", "c"]
    with pytest.raises(DataError):
        parse_columns("a,a")
