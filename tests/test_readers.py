import io
import json

import pyarrow as pa
import pytest
from conftest import write_jsonl, write_parquet

from moderator import readers, records
from moderator.errors import InputError


def read_all(item, batch_size=2, text_column="text", stdin=None):
    reader = readers.open_reader(item, batch_size, text_column, stdin)
    batches = list(reader)
    table = pa.Table.from_batches(batches) if batches else None
    return reader, batches, table


def test_discover_files_folders_globs_and_stdin(tmp_path):
    a = write_parquet(tmp_path / "day" / "a.parquet", {"text": ["x"]})
    b = write_jsonl(tmp_path / "day" / "sub" / "b.jsonl.gz", [{"text": "y"}])
    (tmp_path / "day" / "notes.txt").write_text("ignored")
    found = readers.discover([str(tmp_path / "day"), "-"])
    assert [(f.name, f.format) for f in found] == [("a.parquet", "parquet"), ("sub/b.jsonl.gz", "jsonl"),
                                                   ("stdin", "jsonl")]
    globbed = readers.discover([str(tmp_path / "day" / "**" / "*.jsonl.gz"), str(a)])
    assert [f.name for f in globbed] == ["sub/b.jsonl.gz", "a.parquet"]
    assert [f.path for f in readers.discover([str(a), str(a)])] == [str(a)]  # named twice, read once
    assert b.exists()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: str(p / "missing.parquet"), "no such file or folder"),
        (lambda p: str(p / "*.parquet"), "no files match this pattern"),
        (lambda p: (p / "empty").mkdir() or str(p / "empty"), "folder holds no .parquet or .jsonl"),
        (lambda p: (p / "x.csv").write_text("a") and str(p / "x.csv"), "unknown format"),
    ],
)
def test_discover_errors_name_the_input(tmp_path, make, message):
    spec = make(tmp_path)
    with pytest.raises(InputError) as error:
        readers.discover([spec])
    assert message in str(error.value) and spec in str(error.value)


def test_parquet_batches_keep_columns_and_number_rows(tmp_path):
    path = write_parquet(tmp_path / "p.parquet", {"id": [10, 11, 12], "text": ["a", "b", "c"], "n": [1.0, 2.0, 3.0]})
    [item] = readers.discover([str(path)])
    assert readers.check_schema(item, "text") == 3
    reader, batches, table = read_all(item)
    assert [b.num_rows for b in batches] == [2, 1]  # bounded batches
    assert table.column("n").to_pylist() == [1.0, 2.0, 3.0]
    assert table.column(records.ROW).to_pylist() == [0, 1, 2]
    assert table.column(records.SOURCE).to_pylist() == ["p.parquet"] * 3
    assert reader.stats.rows == 3 and reader.stats.size == path.stat().st_size and len(reader.stats.sha256) == 64


@pytest.mark.parametrize(
    "columns, message",
    [
        ({"body": ["a"]}, "no column 'text' (columns: body); use --text-column"),
        ({"text": [1, 2]}, "column 'text' is int64, not a string column"),
        ({"text": ["a"], "moderation": ["b"]}, "a name moderator writes itself"),
    ],
)
def test_parquet_schema_problems_are_refused_up_front(tmp_path, columns, message):
    path = write_parquet(tmp_path / "p.parquet", columns)
    [item] = readers.discover([str(path)])
    with pytest.raises(InputError) as error:
        readers.check_schema(item, "text")
    assert message in str(error.value) and str(path) in str(error.value)


def test_corrupt_and_truncated_parquet_are_input_errors(tmp_path):
    good = write_parquet(tmp_path / "good.parquet", {"text": ["a"] * 100})
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(good.read_bytes()[:-20])
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"this is not parquet at all")
    for path in (truncated, garbage):
        [item] = readers.discover([str(path)])
        with pytest.raises(InputError, match="cannot read as Parquet") as error:
            readers.check_schema(item, "text")
        assert str(path) in str(error.value)


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.zst"])
def test_jsonl_formats(tmp_path, suffix):
    rows = [{"id": i, "text": f"post {i}"} for i in range(5)]
    [item] = readers.discover([str(write_jsonl(tmp_path / f"p{suffix}", rows))])
    reader, batches, table = read_all(item)
    assert table.column("text").to_pylist() == [f"post {i}" for i in range(5)]
    assert table.column("id").to_pylist() == list(range(5))
    assert reader.stats.rows == 5 and len(reader.stats.sha256) == 64


def test_jsonl_bad_lines_become_rows_with_reasons_and_keep_the_line(tmp_path):
    raw = [
        b"not json\n",
        b"[1, 2]\n",
        b'{"text": 5}\n',
        b'{"body": "no text"}\n',
        b'{"text": "caf\xe9"}\n',  # Latin-1, not UTF-8
        b"\n",  # blank lines are not records
        b'{"text": "fine", "__mod_x": 1}\n',
        b'{"text": "half an emoji \\ud83d here"}\n',  # valid JSON, but no valid string
        b'{"text": "a whole one \\ud83d\\ude00"}\n',
    ]
    path = write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "text": "ok"}], raw)
    [item] = readers.discover([str(path)])
    _, _, table = read_all(item, batch_size=100)
    reasons = table.column(records.QUARANTINE).to_pylist()
    assert reasons == [None, "invalid_json", "not_an_object", "text_not_string", "text_missing", "invalid_utf8",
                       "not_an_object", "invalid_unicode", None]
    assert table.column(records.ROW).to_pylist() == [0, 1, 2, 3, 4, 5, 7, 8, 9]  # line numbers - 1, blank skipped
    assert table.column("text").to_pylist()[8] == "a whole one \U0001F600"
    assert table.column(records.RAW).to_pylist()[1] == "not json"
    assert table.column(records.RAW).to_pylist()[5] == '{"text": "caf\\xe9"}'
    assert table.column("body").to_pylist()[4] == "no text"


def test_jsonl_union_of_keys_order_and_mixed_types(tmp_path, caplog):
    rows = [{"id": 1, "text": "a"}, {"text": "b", "extra": {"k": 1}, "score": 1}, {"text": "c", "score": "high"}]
    [item] = readers.discover([str(write_jsonl(tmp_path / "p.jsonl", rows))])
    _, _, table = read_all(item, batch_size=10)
    user = [n for n in table.column_names if not n.startswith(records.PREFIX)]
    assert user == ["id", "text", "extra", "score"]  # first appearance order; no key dropped
    assert table.column("extra").to_pylist() == [None, {"k": 1}, None]
    assert table.column("score").to_pylist() == [None, "1", '"high"']  # mixed types kept as JSON text
    assert "mixed types" in caplog.text


def test_jsonl_byte_order_mark_and_crlf(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "first"}\r\n{"text": "second"}\r\n')
    [item] = readers.discover([str(path)])
    _, _, table = read_all(item)
    assert table.column("text").to_pylist() == ["first", "second"]
    assert table.column(records.QUARANTINE).to_pylist() == [None, None]


def test_stdin(tmp_path):
    [item] = readers.discover(["-"])
    stream = io.BytesIO(b"".join(json.dumps({"text": t}).encode() + b"\n" for t in ["a", "b", "c"]))
    reader, _, table = read_all(item, stdin=stream)
    assert table.column("text").to_pylist() == ["a", "b", "c"]
    assert table.column(records.SOURCE).to_pylist() == ["stdin"] * 3
    assert reader.stats.rows == 3 and reader.stats.size == len(stream.getvalue())


def test_corrupt_gzip_is_an_input_error_naming_the_file(tmp_path):
    path = tmp_path / "p.jsonl.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage-not-gzip" * 10)
    [item] = readers.discover([str(path)])
    with pytest.raises(InputError) as error:
        read_all(item)
    assert str(path) in str(error.value)


def test_empty_files_give_no_rows(tmp_path):
    empty_jsonl = tmp_path / "e.jsonl"
    empty_jsonl.write_bytes(b"")
    empty_parquet = write_parquet(tmp_path / "e.parquet", {"text": pa.array([], pa.string())})
    for path in (empty_jsonl, empty_parquet):
        [item] = readers.discover([str(path)])
        reader, batches, _ = read_all(item)
        assert batches == [] and reader.stats.rows == 0


def test_prepare_ids_and_text_checks():
    batch = pa.RecordBatch.from_pydict({
        "id": [7, None, 9, 10],
        "text": ["hello", "  ", None, "fine"],
        records.SOURCE: ["f.parquet"] * 4,
        records.ROW: [0, 1, 2, 3],
    })
    out = records.Prepare("text", "id")(batch)
    assert out.column(records.ID).to_pylist() == ["7", "f.parquet:1", "9", "10"]
    assert out.column(records.QUARANTINE).to_pylist() == [None, "text_empty", "text_null", None]
    assert out.column(records.TEXT).to_pylist() == ["hello", None, None, "fine"]


def test_prepare_without_id_column_derives_stable_ids():
    batch = pa.RecordBatch.from_pydict({"text": ["a", "b"], records.SOURCE: ["d/x.jsonl"] * 2, records.ROW: [4, 9]})
    out = records.Prepare("text", "id")(batch)
    assert out.column(records.ID).to_pylist() == ["d/x.jsonl:4", "d/x.jsonl:9"]


def test_discover_skips_run_folders_but_reads_lookalikes(tmp_path, caplog):
    day = tmp_path / "day"
    write_jsonl(day / "a.jsonl", [{"text": "x"}])
    run = day / "run"  # a finished run: moderator's manifest
    write_jsonl(run / "audit.jsonl", [{"id": "a"}])
    write_jsonl(run / "output" / "part-00000.jsonl", [{"text": "x", "moderation": {}}])
    (run / "manifest.json").write_text(json.dumps({"moderator_version": "1", "run_id": "r", "status": "complete"},
                                                  indent=2))
    write_jsonl(day / "crashed" / ".partial" / "audit.jsonl", [{"id": "a"}])  # an unfinished one
    write_jsonl(day / "other" / "b.jsonl", [{"text": "y"}])  # another tool's manifest: not a run folder
    (day / "other" / "manifest.json").write_text('{"files": ["b.jsonl"]}')
    write_jsonl(day / "mine" / "c.jsonl", [{"text": "z"}])  # this run's own output folder
    caplog.set_level("INFO", logger="moderator.readers")
    found = readers.discover([str(day)], exclude=day / "mine")
    assert [f.name for f in found] == ["a.jsonl", "other/b.jsonl"]
    assert f"skipping {day / 'crashed'}, a moderator run folder" in caplog.text
    assert f"skipping {run}, a moderator run folder" in caplog.text
    assert f"skipping {day / 'mine'}, this run's output folder" in caplog.text
    globbed = readers.discover([str(day / "*" / "*.jsonl")], exclude=day / "mine")
    assert [f.name for f in globbed] == ["other/b.jsonl"]
    for spec in (run, run / "audit.jsonl", run / "output" / "part-00000.jsonl", day / "crashed" / ".partial"):
        with pytest.raises(InputError, match="moderator run folder") as error:
            readers.discover([str(spec)])
        assert str(error.value).startswith(f"{spec}: is ")
    with pytest.raises(InputError, match="every file that matches is in a moderator run folder"):
        readers.discover([str(run / "*.jsonl")])


def test_jsonl_lines_over_the_limit_are_skipped_in_bounded_pieces(tmp_path, caplog):
    data = (b'{"text": "a"}\n' + b'{"text": "' + b"x" * 500 + b'"}\r\n' + b'{"text": "' + b"y" * 88 + b'"}\n'
            + b'{"text": "b"}\n' + b"z" * 100_000 + b'\n{"text": "never read"}\n')
    [item] = readers.discover(["-"])
    reader = readers.open_reader(item, 2, "text", io.BytesIO(data), max_record_bytes=100)
    table = pa.Table.from_batches(list(reader))
    assert table.column(records.ROW).to_pylist() == [0, 1, 2, 3, 4]
    assert table.column(records.QUARANTINE).to_pylist() == [None, "record_too_large", None, None, "record_too_large"]
    details = table.column(records.DETAIL).to_pylist()
    assert details[1] == "line of 513 bytes is over [input] max_record_bytes = 100; raw holds its first 100 bytes"
    assert details[4].startswith("line longer than 6400 bytes, not read to its end")  # 64 times the limit
    assert [len(raw) for raw in table.column(records.RAW).to_pylist()] == [13, 100, 100, 13, 100]
    assert reader.stats.rows == 5 and "has not ended after 6400 bytes; stopped reading this file" in caplog.text


def test_parquet_view_types_are_read_as_large_types(tmp_path):
    path = write_parquet(tmp_path / "p.parquet", {"text": pa.array(["a", "b"], pa.string_view()),
                                                  "tags": pa.array([["x"], []], pa.list_view(pa.string_view()))})
    [item] = readers.discover([str(path)])
    assert readers.check_schema(item, "text") == 2
    _, _, table = read_all(item)
    assert table.schema.field("text").type == pa.large_string()
    assert table.schema.field("tags").type == pa.large_list(pa.large_string())
    assert table.column("tags").to_pylist() == [["x"], []]
    assert table.filter(pa.array([True, False])).column("text").to_pylist() == ["a"]  # no kernel for views


def test_looking_for_the_id_column_reads_a_bounded_head(tmp_path):
    """The id-column check peeks at a JSONL file's first records, never more than a few MB (a link to
    /dev/zero is a file of one endless line)."""
    import time

    from moderator.readers import InputFile, has_column

    zero = tmp_path / "zero.jsonl"
    zero.symlink_to("/dev/zero")
    start = time.monotonic()
    assert has_column(InputFile(str(zero), "zero.jsonl", "jsonl"), "id") is False
    assert time.monotonic() - start < 5
    posts = tmp_path / "posts.jsonl"
    posts.write_text('not json\n{"text": "a"}\n{"post_id": 1, "text": "b"}\n')
    assert has_column(InputFile(str(posts), "posts.jsonl", "jsonl"), "post_id") is True
    assert has_column(InputFile(str(posts), "posts.jsonl", "jsonl"), "id") is False
