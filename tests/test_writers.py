import datetime as dt
import decimal
import json

import pyarrow as pa
import pyarrow.parquet as pq

from moderator import records
from moderator.writers import JsonLinesWriter, PartWriter, conform, json_line, quarantine_records


def test_parts_rotate_by_rows(tmp_path):
    writer = PartWriter(tmp_path / "out", "parquet", rows_per_shard=4)
    for start in range(0, 10, 3):
        writer.write(pa.RecordBatch.from_pydict({"x": list(range(start, min(start + 3, 10)))}))
    parts = writer.close()
    assert [p["rows"] for p in parts] == [4, 4, 2]
    values = [v for p in parts for v in pq.read_table(tmp_path / "out" / p["file"]).column("x").to_pylist()]
    assert values == list(range(10))


def test_new_part_when_schema_cannot_be_conformed(tmp_path):
    writer = PartWriter(tmp_path / "out", "parquet", rows_per_shard=100)
    writer.write(pa.RecordBatch.from_pydict({"a": [1], "b": ["x"]}))
    writer.write(pa.RecordBatch.from_pydict({"a": [2]}))  # b missing: filled with null, same part
    writer.write(pa.RecordBatch.from_pydict({"a": [3], "b": pa.nulls(1)}))  # null-typed b: same part
    writer.write(pa.RecordBatch.from_pydict({"a": ["four"]}))  # a changed type: new part, nothing coerced
    parts = writer.close()
    assert [p["rows"] for p in parts] == [3, 1]
    first = pq.read_table(tmp_path / "out" / parts[0]["file"])
    assert first.column("b").to_pylist() == ["x", None, None]
    # on closing, both parts were given one schema: a as JSON text (1 and "1" would stay apart)
    assert first.column("a").to_pylist() == ["1", "2", "3"]
    assert pq.read_table(tmp_path / "out" / parts[1]["file"]).column("a").to_pylist() == ['"four"']


def test_conform():
    schema = pa.schema([("a", pa.int64()), ("b", pa.string())])
    assert conform(pa.RecordBatch.from_pydict({"c": [1]}), schema) is None
    assert conform(pa.RecordBatch.from_pydict({"b": ["x"]}), schema).column("a").to_pylist() == [None]


def test_jsonl_parts_and_non_json_values(tmp_path):
    writer = PartWriter(tmp_path / "out", "jsonl", rows_per_shard=100)
    writer.write(pa.RecordBatch.from_pydict({
        "when": [dt.datetime(2026, 11, 24, 12, 0)],
        "blob": [b"\x00\x01"],
        "price": pa.array([decimal.Decimal("1.50")]),
        "tags": [["a", "b"]],
    }))
    [part] = writer.close()
    row = json.loads((tmp_path / "out" / part["file"]).read_text())
    assert row == {"when": "2026-11-24T12:00:00", "blob": "AAE=", "price": "1.50", "tags": ["a", "b"]}


def test_json_lines_writer_counts(tmp_path):
    writer = JsonLinesWriter(tmp_path / "log.jsonl")
    writer.write([{"a": 1}, {"b": "é"}])
    writer.close()
    assert writer.rows == 2
    assert (tmp_path / "log.jsonl").read_text(encoding="utf-8") == '{"a":1}\n{"b":"é"}\n'
    assert json_line({"x": None}) == '{"x":null}\n'


def test_quarantine_records_keep_everything():
    batch = pa.RecordBatch.from_pydict({
        "text": [None, None],
        "lang": ["en", None],
        records.ID: ["a", "f.jsonl:1"],
        records.SOURCE: ["f.parquet", "f.jsonl"],
        records.ROW: [0, 1],
        records.RAW: [None, "not json"],
        records.QUARANTINE: ["text_null", "invalid_json"],
        records.DETAIL: [None, "Expecting value at column 1"],
    })
    first, second = quarantine_records(batch)
    assert first == {"id": "a", "source": "f.parquet", "row": 0, "reason": "text_null",
                     "detail": "the text is null", "record": {"text": None, "lang": "en"}}
    assert second["raw"] == "not json" and second["line"] == 2 and second["reason"] == "invalid_json"


def test_non_finite_numbers_are_written_as_null_so_every_line_stays_json():
    def strict(line: str):
        return json.loads(line, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))

    row = {"a": float("nan"), "b": [1.5, float("inf")], "c": {"d": float("-inf")}, "e": 2.0}
    assert strict(json_line(row)) == {"a": None, "b": [1.5, None], "c": {"d": None}, "e": 2.0}
    assert json_line({"x": 1}) == '{"x":1}\n'


def test_nan_and_infinity_in_a_jsonl_input_come_out_as_valid_json(tiny, tmp_path):
    """Python's json reads NaN/Infinity from a JSONL input; the JSONL output must not write them back bare."""
    from click.testing import CliRunner
    from conftest import POSTS

    from moderator.cli import cli

    posts = tmp_path / "posts.jsonl"
    posts.write_text('{"id": "a", "text": "%s", "score": NaN, "w": [Infinity, 1]}\n{"id": "b", "text": "%s", '
                     '"score": 0.5, "w": [2, 3]}\n' % (POSTS[1], POSTS[3]))
    result = CliRunner().invoke(cli, ["batch", str(posts), "--out", str(tmp_path / "run"), "--classifier",
                                      str(tiny.classifier), "--no-rewrite"])
    assert result.exit_code == 0, result.output
    rows = []
    for name in ("output/part-00000.jsonl", "audit.jsonl"):
        for line in (tmp_path / "run" / name).read_text().splitlines():
            rows.append(json.loads(line, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c))))
    assert [(r["score"], r["w"]) for r in rows[:2]] == [(None, [None, 1.0]), (0.5, [2.0, 3.0])]


def test_parts_with_drifted_column_types_are_unified_and_read_back_as_one_dataset(tmp_path):
    writer = PartWriter(tmp_path / "out", "parquet", rows_per_shard=100)
    writer.write(pa.RecordBatch.from_pydict({"a": [1, 2], "n": [1, 2], "s": [{"k": 1}, None]}))
    writer.write(pa.RecordBatch.from_pydict({"a": ["three"], "n": [3.5], "s": ["text"]}))  # drifted: new part
    writer.write(pa.RecordBatch.from_pydict({"a": [4], "n": [4], "s": [None]}))
    parts = writer.close()
    assert [p["rows"] for p in parts] == [2, 1, 1]  # each drift started a part
    schemas = {pq.read_schema(tmp_path / "out" / p["file"]).remove_metadata().to_string() for p in parts}
    assert len(schemas) == 1
    table = pq.read_table(tmp_path / "out")  # one dataset
    assert table.column("a").to_pylist() == ["1", "2", '"three"', "4"]  # JSON text: 4 and "4" stay apart
    assert table.column("n").to_pylist() == [1.0, 2.0, 3.5, 4.0]
    assert table.column("s").to_pylist() == ['{"k":1}', None, '"text"', None]


def test_parquet_inputs_with_different_column_types_give_one_readable_output(tiny, tmp_path):
    from click.testing import CliRunner
    from conftest import POSTS, write_parquet

    from moderator.cli import cli

    inputs = tmp_path / "in"
    inputs.mkdir()
    write_parquet(inputs / "a.parquet", {"text": POSTS[:3], "score": [1, 2, 3]})
    write_parquet(inputs / "b.parquet", {"text": POSTS[3:], "score": ["high", "low", None]})
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["batch", str(inputs), "--out", str(out), "--classifier", str(tiny.classifier),
                                      "--no-rewrite"])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out / "output")
    assert table.num_rows == len(POSTS)
    assert table.column("score").to_pylist() == ["1", "2", "3", '"high"', '"low"', None]
    verified = CliRunner().invoke(cli, ["audit", "verify", str(out)])
    assert verified.exit_code == 0, verified.output


def test_parts_unified_on_closing_keep_a_verifiable_manifest(tiny, tmp_path):
    """A part rewritten to the common schema after it was hashed is hashed again: `audit verify` passes."""
    from click.testing import CliRunner
    from conftest import POSTS, write_parquet

    from moderator.cli import cli

    inputs = tmp_path / "in"
    inputs.mkdir()
    write_parquet(inputs / "a.parquet", {"text": POSTS[:3], "n": [1, 2, 3]})
    write_parquet(inputs / "b.parquet", {"text": POSTS[3:], "n": ["x", "y", None]})
    job = tmp_path / "job.toml"
    job.write_text("[output]\nrows_per_shard = 2\n")  # parts complete (and are hashed) before the drift
    out = tmp_path / "run"
    args = ["batch", str(inputs), "--out", str(out), "--classifier", str(tiny.classifier), "--no-rewrite",
            "--config", str(job), "--batch-size", "2"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert pq.read_table(out / "output").column("n").to_pylist() == ["1", "2", "3", '"x"', '"y"', None]
    verified = CliRunner().invoke(cli, ["audit", "verify", str(out)])
    assert verified.exit_code == 0, verified.output
