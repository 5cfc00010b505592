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


def test_quoted_tsv_fields_with_quoting_csv(tmp_path):
    f = tmp_path / "snli.tsv"
    f.write_text('premise\thypothesis\tlabel\n"A man says ""hi"" loudly."\tA man talks.\t0\n')
    frame = read_table(f, quoting="csv")
    assert frame.loc[0, "premise"] == 'A man says "hi" loudly.'
    assert frame.loc[0, "label"] == "0"
    # By default a .tsv is read as written: the quotes are part of the text.
    assert read_table(f).loc[0, "premise"] == '"A man says ""hi"" loudly."'


def test_tsv_quotes_inside_texts_keep_every_row(tmp_path):
    # A text that opens with a quote and another that holds one: with CSV quoting the quote
    # would swallow the rows between (4 rows read as 2); the TSV default keeps all four.
    f = tmp_path / "merge.tsv"
    f.write_text('sentence\tlabel\n"quoted start and more\t1\nsecond row\t0\n'
                 'third " row\t1\nfourth\t0\n')
    frame = read_table(f)
    assert frame["sentence"].tolist() == ['"quoted start and more', "second row", 'third " row',
                                          "fourth"]
    assert frame["label"].tolist() == ["1", "0", "1", "0"]
    with pytest.raises(DataError, match=r"4 data lines but quoting joined them into 2 rows.*"
                                        r"--quoting none"):
        read_table(f, quoting="csv")


def test_glue_tsv_with_bom_and_quotes(tmp_path):
    # MRPC as distributed: a UTF-8 BOM before the header, unbalanced quotes inside texts.
    f = tmp_path / "mrpc.tsv"
    f.write_bytes('\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n'
                  '1\t1\t2\tHe said "no.\tShe said "yes" twice.\n'
                  '0\t3\t4\t"Quoted" start\tplain\n'.encode("utf-8"))
    frame = read_table(f)
    assert frame.columns.tolist() == ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
    assert frame["#1 String"].tolist() == ['He said "no.', '"Quoted" start']
    assert frame["#2 String"].tolist() == ['She said "yes" twice.', "plain"]


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


@pytest.mark.parametrize("name", ["bad.csv", "bad.tsv", "bad.txt", "bad.jsonl"])
def test_decode_error_names_line_byte_offset_and_flag(tmp_path, name):
    # A bad byte far into the file (past pandas' first read block would be): the error
    # points at its line and its offset in the file, and names --encoding.
    f = tmp_path / name
    good = "text\n" if not name.endswith(".jsonl") else ""
    line = '{"text": "ok"}\n' if name.endswith(".jsonl") else "ok\n"
    head = (good + line * 3000).encode("utf-8")
    bad = '{"text": "caf\xe9"}\n' if name.endswith(".jsonl") else "caf\xe9\n"
    f.write_bytes(head + bad.encode("latin-1") + line.encode())
    n_line = head.count(b"\n") + 1
    offset = len(head) + bad.encode("latin-1").index(b"\xe9")
    with pytest.raises(DataError, match=rf"not valid UTF-8 \(--encoding utf-8\): byte b'\\xe9' "
                                        rf"on line {n_line} \(byte offset {offset} of the file\);"
                                        r" pass its encoding with --encoding"):
        read_table(f)


def test_latin1_file_with_encoding(tmp_path):
    f = tmp_path / "latin1.tsv"
    f.write_bytes("sentence\tlabel\ncaf\xe9 cr\xe8me\t1\nna\xefve \"x\t0\n".encode("latin-1"))
    frame = read_table(f, encoding="latin-1")
    assert frame["sentence"].tolist() == ["caf\xe9 cr\xe8me", 'na\xefve "x']
    g = tmp_path / "cp.txt"
    g.write_bytes("\u201cquoted\u201d \u2013 dash\n".encode("cp1252"))
    assert read_table(g, encoding="cp1252")["text"].tolist() == ["\u201cquoted\u201d \u2013 dash"]
    with pytest.raises(DataError, match=r"Unknown encoding 'klingon' \(--encoding\)"):
        read_table(g, encoding="klingon")


def test_utf8_bom_is_not_text_in_txt(tmp_path):
    f = tmp_path / "bom.txt"
    f.write_bytes("\ufefffirst\nsecond\n".encode("utf-8"))
    assert read_table(f)["text"].tolist() == ["first", "second"]


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="Cannot tell the format.*--format"):
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


# -- issue 14, item 2: --columns must name every field (pandas would shift them silently)
def test_columns_must_match_the_number_of_fields(tmp_path):
    f = tmp_path / "cola.tsv"
    f.write_text("gj04\t1\t\tOur friends won't buy this.\ngj04\t0\t*\tThey drank the pub.\n")
    with pytest.raises(DataError, match=r"--columns gives 3 names but '.*cola.tsv' has 4 fields"):
        read_table(f, columns="source,label,sentence")
    with pytest.raises(DataError, match=r"--columns gives 5 names but .* has 4 fields"):
        read_table(f, columns="source,label,mark,sentence,extra")
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("x\ty\t1\n")
    with pytest.raises(DataError, match=r"2 names but .* 3 fields"):
        read_table(pairs, columns="a,b")
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"t": "a", "l": 1, "m": 2}\n')
    with pytest.raises(DataError, match=r"2 names but .* 3 fields"):
        read_table(jsonl, columns="text,label")
    assert read_table(jsonl, columns="text,label,mark").columns.tolist() == ["text", "label", "mark"]


def test_rows_longer_than_the_header_are_refused(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("text,label\nhello,world,1\nbye,you,0\n")  # an unquoted comma in the text
    with pytest.raises(DataError, match=r"has 3 fields a row but its header names 2 columns"):
        read_table(f)


# -- issue 14, item 10: compressed text inputs are decompressed; folders are named as such
def test_gzipped_text_formats_are_decompressed(tmp_path):
    import gzip

    import pandas as pd

    texts = ["first line", "second, with comma", "NA"]
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress(("\n".join(texts) + "\n").encode()))
    pd.DataFrame({"text": texts, "label": [1, 0, 1]}).to_csv(tmp_path / "a.csv.gz", index=False)
    (tmp_path / "a.tsv.gz").write_bytes(gzip.compress("".join(f"{t}\t1\n" for t in texts).encode()))
    (tmp_path / "a.jsonl.gz").write_bytes(
        gzip.compress("".join(f'{{"text": "{t}"}}\n' for t in texts).encode()))
    for name, cols in (("a.txt.gz", None), ("a.csv.gz", None), ("a.tsv.gz", "text,label"),
                       ("a.jsonl.gz", None)):
        assert read_table(tmp_path / name, columns=cols)["text"].tolist() == texts, name
    (tmp_path / "cut.txt.gz").write_bytes(gzip.compress(b"a\nb\n" * 1000)[:40])
    with pytest.raises(DataError, match="Could not read"):
        read_table(tmp_path / "cut.txt.gz")
    with pytest.raises(DataError, match=r"Parquet files are compressed inside"):
        file_format("a.parquet.gz")


def test_a_folder_is_not_a_file(tmp_path):
    (tmp_path / "d.csv").mkdir()
    # An empty folder (or one of CSV files) is no folder format: say it is a folder and
    # which layouts a folder can have.
    with pytest.raises(DataError, match=r"'.*d.csv' is a folder, not a file\. A folder can be "
                                        r"read as: class sub-folders.*"
                                        r"--format folder.*--format hf.*--format parquet"):
        read_table(tmp_path / "d.csv")
    (tmp_path / "d.csv" / "part1.csv").write_text("text\na\n")
    with pytest.raises(DataError, match=r"is a folder, not a file"):
        read_table(tmp_path / "d.csv")
    with pytest.raises(DataError, match=r"is a folder, but --format csv reads a file"):
        read_table(tmp_path / "d.csv", format="csv")


def test_text_kind_policy():
    import math

    from bertkit.data import text_kind

    assert [text_kind(v) for v in ("a", " ", None, math.nan, 5, 1.5, True)] == [
        "text", "empty", "empty", "empty", "other", "other", "other"]


# -- issue 9: one text reader, one empty-row policy (read_texts / scan_texts / load_texts)
def _texts_csv(tmp_path, texts):
    import pandas as pd

    path = tmp_path / "t.csv"
    pd.DataFrame({"id": range(len(texts)), "review": texts}).to_csv(path, index=False)
    return path


def test_read_texts_chunks_with_row_numbers(tmp_path):
    from bertkit.data import read_texts

    path = _texts_csv(tmp_path, [f"text {i}" for i in range(7)])
    chunks = list(read_texts(path, text_column="review", chunk_size=3))
    assert [c.texts for c in chunks] == [["text 0", "text 1", "text 2"], ["text 3", "text 4", "text 5"],
                                         ["text 6"]]
    assert [c.rows for c in chunks] == [[1, 2, 3], [4, 5, 6], [7]]
    assert [(c.start, c.n_rows, c.column) for c in chunks] == [(0, 3, "review"), (3, 3, "review"),
                                                               (6, 1, "review")]
    txt = tmp_path / "t.txt"
    txt.write_text("a\nb\n")
    assert [c.column for c in read_texts(txt)] == ["text"]  # the default column


def test_empty_rows_are_an_error_naming_count_rows_and_flag(tmp_path):
    from bertkit.data import read_texts

    texts = ["ok", "fine", "good", "", "x", " ", "", "", "", "", "y"]  # 6 empty, first in chunk 2
    path = _texts_csv(tmp_path, texts)
    reader = read_texts(path, text_column="review", chunk_size=3)
    assert next(reader).texts == ["ok", "fine", "good"]  # chunks before the first empty row come
    with pytest.raises(DataError, match=r"^6 of 11 rows of column 'review' in '.*t.csv' are empty "
                                        r"\(first rows 4, 6, 7, 8, 9\); remove them, or pass "
                                        r"--skip-empty \(on_empty='skip'\)"):
        next(reader)  # ... and the error counts the whole file, past the chunk that has one
    one = _texts_csv(tmp_path, ["ok", "  "])
    with pytest.raises(DataError, match=r"1 of 2 rows .* is empty \(row 2\)"):
        list(read_texts(one, text_column="review"))


def test_skipped_empty_rows_are_counted(tmp_path):
    from bertkit.data import load_texts, read_texts, scan_texts

    path = _texts_csv(tmp_path, ["ok", "", "good", "  ", "fine"])
    chunks = list(read_texts(path, text_column="review", on_empty="skip", chunk_size=2))
    assert [c.skipped for c in chunks] == [[2], [4], []]
    assert [c.rows for c in chunks] == [[1], [3], [5]]
    scan = scan_texts(path, text_column="review", on_empty="skip")
    assert (scan.n_rows, scan.n_empty, scan.n_texts, scan.first_empty) == (5, 2, 3, [2, 4])
    assert scan.note() == f"left out 2 empty row(s) of column 'review' in '{path}' (rows 2, 4; --skip-empty)"
    everything = load_texts(path, text_column="review", on_empty="skip")
    assert everything.texts == ["ok", "good", "fine"] and everything.rows == [1, 3, 5]
    assert everything.skipped == [2, 4] and everything.n_rows == 5
    assert everything.scan.note() == scan.note() and everything.scan.n_empty == 2
    with pytest.raises(DataError, match=r"2 of 5 rows .* are empty \(rows 2, 4\)"):
        scan_texts(path, text_column="review")


def test_reader_refuses_non_text_all_empty_and_no_rows(tmp_path):
    from bertkit.data import load_texts, read_texts

    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"text": "ok"}\n{"text": null}\n{"text": 5}\n')
    with pytest.raises(DataError, match=r"Row 3 of column 'text' \(--text-column\) .* is int \(5\)"):
        load_texts(jsonl, on_empty="skip")
    empty = _texts_csv(tmp_path, ["", " "])
    with pytest.raises(DataError, match=r"All 2 rows of column 'review' .* are empty"):
        load_texts(empty, text_column="review", on_empty="skip")
    (tmp_path / "none.txt").write_text("")
    with pytest.raises(DataError, match=r"has no rows of text"):
        load_texts(tmp_path / "none.txt")
    with pytest.raises(DataError, match=r"Column 'sentence' \(--text-column\) is not in"):
        load_texts(empty, text_column="sentence")
    from bertkit.errors import InputError

    with pytest.raises(InputError, match=r"'on_empty' parameter .* Got 'drop'"):
        read_texts(empty, on_empty="drop")  # at the call, not at the first chunk
