"""Bad input, kind by kind: each stops the run with one line that names the file and a documented exit
code, or becomes a quarantine record with a reason, and every run that finishes reconciles
(input records = output rows + quarantined records = audit lines).

Single cases of several kinds also live in test_readers.py and test_cli.py; this is the full list.
"""

import gzip
import json
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import POSTS, read_lines, write_parquet

from moderator.cli import cli


def moderate(tiny, *args: str, input: bytes | None = None):
    argv = ["batch", *args, "--classifier", str(tiny.classifier), "--no-rewrite", "--max-quarantine-share", "1"]
    return CliRunner().invoke(cli, argv, input=input, catch_exceptions=False)


def assert_one_line_error(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def reconcile(run_dir: Path, records: int) -> tuple[list[dict], list[dict]]:
    """Check input = output + quarantine = audit = manifest; return (output rows, quarantine records)."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    rows = [row for part in sorted((run_dir / "output").iterdir()) for row in read_output_part(part)]
    quarantine = read_lines(run_dir / "quarantine.jsonl")
    audit = read_lines(run_dir / "audit.jsonl")
    counts = manifest["counts"]
    assert records == counts["input_rows"] == len(rows) + len(quarantine) == len(audit)
    assert (counts["output_rows"], counts["quarantined_rows"]) == (len(rows), len(quarantine))
    assert [a["action"] == "quarantine" for a in audit].count(True) == len(quarantine)
    return rows, quarantine


def read_output_part(part: Path) -> list[dict]:
    return pq.read_table(part).to_pylist() if part.suffix == ".parquet" else read_lines(part)


def jsonl(path: Path, *lines: bytes) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


GOOD = json.dumps({"id": "ok", "text": POSTS[1]}).encode()

# kind -> (lines of a JSONL file after one good line, expected quarantine reason)
QUARANTINED = {
    "line_not_json": (b"{this is not json", "invalid_json"),
    "truncated_json_line": (b'{"id": "x", "text": "cut of', "invalid_json"),
    "json_array_not_object": (b'["an", "array"]', "not_an_object"),
    "json_scalar_not_object": (b"42", "not_an_object"),
    "json_string_not_object": (b'"just a string"', "not_an_object"),
    "text_is_a_number": (b'{"id": "x", "text": 12}', "text_not_string"),
    "text_is_an_object": (b'{"id": "x", "text": {"body": "hi"}}', "text_not_string"),
    "text_missing": (b'{"id": "x", "body": "wrong key"}', "text_missing"),
    "text_null": (b'{"id": "x", "text": null}', "text_null"),
    "text_empty": (b'{"id": "x", "text": ""}', "text_empty"),
    "text_whitespace_only": (b'{"id": "x", "text": " \\t\\n "}', "text_empty"),
    "invalid_utf8": (b'{"id": "x", "text": "caf\xe9"}', "invalid_utf8"),
    "lone_surrogate_escape": (b'{"id": "x", "text": "half \\ud83d emoji"}', "invalid_unicode"),
    "reserved_key": (b'{"id": "x", "text": "hi", "__mod_action": "allow"}', "not_an_object"),
    "nested_too_deeply": (b'{"text": ' + b"[" * 100000 + b"]" * 100000 + b"}", "invalid_json"),
}


@pytest.mark.parametrize("kind", sorted(QUARANTINED))
def test_bad_records_are_quarantined_with_a_reason(tiny, tmp_path, kind):
    line, reason = QUARANTINED[kind]
    path = jsonl(tmp_path / "posts.jsonl", GOOD, line)
    result = moderate(tiny, str(path), "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    rows, quarantine = reconcile(tmp_path / "run", 2)
    assert [r["moderation"]["id"] for r in rows] == ["ok"]
    [record] = quarantine
    assert record["reason"] == reason and record["detail"] and record["source"] == "posts.jsonl"
    assert record["line"] == 2 and record["raw"]  # the original line is kept, for a person to look at


def test_parquet_null_and_empty_texts_are_quarantined(tiny, tmp_path):
    path = write_parquet(tmp_path / "posts.parquet", {"id": ["a", "b", "c", "d"], "text": [POSTS[0], None, "", "  "]})
    assert moderate(tiny, str(path), "--out", str(tmp_path / "run")).exit_code == 0
    _, quarantine = reconcile(tmp_path / "run", 4)
    assert [(q["id"], q["reason"]) for q in quarantine] == [("b", "text_null"), ("c", "text_empty"), ("d", "text_empty")]
    assert quarantine[0]["record"] == {"id": "b", "text": None}  # Parquet rows keep their columns


def truncated_parquet(tmp_path: Path) -> Path:
    path = write_parquet(tmp_path / "posts.parquet", {"text": POSTS * 50})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def corrupt_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "posts.parquet"
    path.write_bytes(b"PAR1" + os.urandom(200) + b"PAR1")
    return path


def empty_parquet_file(tmp_path: Path) -> Path:
    path = tmp_path / "posts.parquet"
    path.write_bytes(b"")
    return path


def missing_text_column(tmp_path: Path) -> Path:
    return write_parquet(tmp_path / "posts.parquet", {"body": POSTS})


def text_column_of_numbers(tmp_path: Path) -> Path:
    return write_parquet(tmp_path / "posts.parquet", {"text": list(range(6))})


def no_matching_files(tmp_path: Path) -> Path:
    folder = tmp_path / "dump"
    folder.mkdir()
    (folder / "notes.txt").write_text("not an input")
    return folder


def glob_without_matches(tmp_path: Path) -> str:
    return str(tmp_path / "dump" / "*.jsonl")


def unknown_extension(tmp_path: Path) -> Path:
    path = tmp_path / "posts.csv"
    path.write_text("id,text\n1,hello\n")
    return path


def missing_file(tmp_path: Path) -> Path:
    return tmp_path / "nope.parquet"


def corrupt_gzip(tmp_path: Path) -> Path:
    path = tmp_path / "posts.jsonl.gz"
    path.write_bytes(gzip.compress(GOOD + b"\n" * 2000)[:40])
    return path


def moderator_output_as_input(tmp_path: Path) -> Path:
    return write_parquet(tmp_path / "posts.parquet", {"text": POSTS, "moderation": [None] * len(POSTS)})


# kind -> (how to make the input, exit code, fragments of the error line besides the file name)
STOPPED = {
    "truncated_parquet": (truncated_parquet, 3, "cannot read as Parquet"),
    "corrupt_parquet": (corrupt_parquet, 3, "cannot read as Parquet"),
    "empty_parquet_file": (empty_parquet_file, 3, "cannot read as Parquet"),
    "missing_text_column": (missing_text_column, 3, "no column 'text'"),
    "text_column_not_strings": (text_column_of_numbers, 3, "not a string column"),
    "folder_without_inputs": (no_matching_files, 3, "holds no .parquet or .jsonl"),
    "glob_without_matches": (glob_without_matches, 3, "no files match"),
    "unknown_extension": (unknown_extension, 3, "unknown format"),
    "missing_file": (missing_file, 3, "no such file"),
    "corrupt_gzip": (corrupt_gzip, 3, "cannot read"),
    "already_moderated_input": (moderator_output_as_input, 3, "a name moderator writes itself"),
}


@pytest.mark.parametrize("kind", sorted(STOPPED))
def test_unusable_inputs_stop_with_one_line(tiny, tmp_path, kind):
    make, code, fragment = STOPPED[kind]
    path = make(tmp_path)
    out = tmp_path / "run"
    result = moderate(tiny, str(path), "--out", str(out))
    assert_one_line_error(result, code, str(path), fragment)
    assert not (out / "manifest.json").exists()


def test_an_empty_jsonl_file_is_a_run_of_zero_records(tiny, tmp_path):
    path = tmp_path / "posts.jsonl"
    path.write_bytes(b"")
    assert moderate(tiny, str(path), "--out", str(tmp_path / "run")).exit_code == 0
    reconcile(tmp_path / "run", 0)


def test_a_byte_order_mark_is_not_part_of_the_first_record(tiny, tmp_path):
    path = jsonl(tmp_path / "posts.jsonl", b"\xef\xbb\xbf" + GOOD, GOOD.replace(b'"ok"', b'"ok2"'))
    assert moderate(tiny, str(path), "--out", str(tmp_path / "run")).exit_code == 0
    rows, quarantine = reconcile(tmp_path / "run", 2)
    assert [r["id"] for r in rows] == ["ok", "ok2"] and quarantine == []


def test_a_one_megabyte_post_is_moderated(tiny, tmp_path):
    huge = ("this is a very long post " * 42000)[:1_000_000]
    path = write_parquet(tmp_path / "posts.parquet", {"id": ["huge", "small"], "text": [huge, POSTS[0]]})
    assert moderate(tiny, str(path), "--out", str(tmp_path / "run")).exit_code == 0
    rows, _ = reconcile(tmp_path / "run", 2)
    assert len(rows[0]["text"]) == 1_000_000 and rows[0]["moderation"]["action"] in ("allow", "review", "remove")


def test_duplicate_ids_are_all_kept_and_audited(tiny, tmp_path):
    path = write_parquet(tmp_path / "posts.parquet", {"id": ["same"] * 3 + ["other"], "text": POSTS[:4]})
    assert moderate(tiny, str(path), "--out", str(tmp_path / "run")).exit_code == 0
    rows, _ = reconcile(tmp_path / "run", 4)
    assert [r["moderation"]["id"] for r in rows] == ["same", "same", "same", "other"]
    assert [r["text"] for r in rows] == POSTS[:4]


def test_shards_with_different_schemas_come_out_as_one_readable_dataset(tiny, tmp_path):
    """Parts with drifted types are unified on closing: no value lost, 3 and "3" kept apart (JSON text)."""
    write_parquet(tmp_path / "dump" / "a.parquet", {"text": POSTS[:3], "score": [1, 2, 3]})
    write_parquet(tmp_path / "dump" / "b.parquet", {"text": POSTS[3:], "score": ["x", "y", "3"], "extra": [1.0] * 3})
    assert moderate(tiny, str(tmp_path / "dump"), "--out", str(tmp_path / "run")).exit_code == 0
    reconcile(tmp_path / "run", 6)
    parts = sorted((tmp_path / "run" / "output").glob("part-*.parquet"))
    assert {pq.read_schema(p).remove_metadata().to_string() for p in parts} == {pq.read_schema(parts[0]).remove_metadata().to_string()}
    table = pq.read_table(tmp_path / "run" / "output")
    assert table.column("score").to_pylist() == ["1", "2", "3", '"x"', '"y"', '"3"']
    assert table.column("extra").to_pylist() == [None] * 3 + [1.0] * 3


def test_mixed_types_across_jsonl_records_are_kept_as_json_text(tiny, tmp_path):
    path = jsonl(tmp_path / "posts.jsonl", b'{"id": 1, "text": "a post", "meta": 5}',
                 b'{"id": "two", "text": "another post", "meta": "five"}')
    assert moderate(tiny, str(path), "--out", str(tmp_path / "run")).exit_code == 0
    rows, _ = reconcile(tmp_path / "run", 2)
    assert [r["moderation"]["id"] for r in rows] == ["1", "two"]  # the id keeps its text (was '"two"')
    assert [r["meta"] for r in rows] == ["5", '"five"']  # other keys: JSON text, so 5 and "5" stay apart


def test_bad_lines_on_standard_input_are_quarantined(tiny, tmp_path):
    data = GOOD + b"\nnot json\n" + b'{"text": null}\n'
    assert moderate(tiny, "-", "--out", str(tmp_path / "run"), input=data).exit_code == 0
    _, quarantine = reconcile(tmp_path / "run", 3)
    assert [(q["source"], q["reason"]) for q in quarantine] == [("stdin", "invalid_json"), ("stdin", "text_null")]


@contextmanager
def mounted_tmpfs(path: Path, options: str):
    """A small tmpfs at `path` (needs root, else the test is skipped): a real full or read-only disk."""
    path.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.decode().strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_an_unwritable_output_folder_stops_with_exit_4(tiny, tmp_path):
    path = write_parquet(tmp_path / "posts.parquet", {"text": POSTS})
    if os.geteuid() == 0:  # root writes through permission bits: use a read-only filesystem instead
        with mounted_tmpfs(tmp_path / "ro", "size=64k,ro") as folder:
            result = moderate(tiny, str(path), "--out", str(folder / "run"))
    else:
        folder = tmp_path / "ro"
        folder.mkdir(mode=0o500)
        result = moderate(tiny, str(path), "--out", str(folder / "run"))
    assert_one_line_error(result, 4, str(folder / "run"), "cannot write here")


def test_a_full_disk_stops_with_exit_4_and_leaves_no_finished_output(tiny, tmp_path):
    texts = [f"{POSTS[i % len(POSTS)]} number {i}" for i in range(3000)]
    path = write_parquet(tmp_path / "posts.parquet", {"text": texts})
    with mounted_tmpfs(tmp_path / "small", "size=256k") as disk:
        result = moderate(tiny, str(path), "--out", str(disk / "run"), "--audit-text", "--format", "jsonl")
        assert_one_line_error(result, 4, str(disk / "run"), "No space left on device")
        assert not (disk / "run" / "manifest.json").exists()


# Issue 18, "Nights that cannot be fooled": run folders read back as input, records without bounds,
# view-typed Parquet text, and messages that count wrong.


def three_shards(folder: Path, fmt: str) -> Path:
    for f in range(3):
        rows = {"id": [f"{f}-{i}" for i in range(5)], "text": [POSTS[(f + i) % len(POSTS)] for i in range(5)]}
        if fmt == "parquet":
            write_parquet(folder / f"day{f}.parquet", rows)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            jsonl(folder / f"day{f}.jsonl", *(json.dumps({"id": i, "text": t}).encode()
                                             for i, t in zip(rows["id"], rows["text"])))
    return folder


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_run_folder_inside_the_input_folder_is_not_read_back(tiny, tmp_path, fmt):
    dump = three_shards(tmp_path / "dump", fmt)
    first = moderate(tiny, str(dump), "--out", str(dump / "out"))
    assert first.exit_code == 0, first.output
    reconcile(dump / "out", 15)
    # An unfinished run in the folder too: its staged files are not input either.
    crashed = dump / "crashed" / ".partial"
    (crashed / "output").mkdir(parents=True)
    (crashed / "audit.jsonl").write_bytes((dump / "out" / "audit.jsonl").read_bytes())
    for part in (dump / "out" / "output").iterdir():
        (crashed / "output" / part.name).write_bytes(part.read_bytes())
    for spec in (str(dump), str(dump / "**" / f"*.{fmt}")):
        out = tmp_path / f"next-{len(spec)}"
        result = moderate(tiny, spec, "--out", str(out))
        assert result.exit_code == 0, result.output
        reconcile(out, 15)  # was 45 records (10 of 15 quarantined) for JSONL; for Parquet, a refused input
        assert f"skipping {dump / 'out'}, a moderator run folder" in result.stderr
        if spec == str(dump):  # (a glob's ** does not enter hidden folders such as .partial anyway)
            assert f"skipping {dump / 'crashed'}, a moderator run folder" in result.stderr
    again = moderate(tiny, str(dump), "--out", str(dump / "out"))  # the same command: finished, left as it is
    assert again.exit_code == 0, again.output
    assert "holds the finished output of other inputs" not in again.output


@pytest.mark.parametrize("name", ["audit.jsonl", "quarantine.jsonl", "output/part-00000.jsonl", "."])
def test_a_run_folders_own_file_named_as_input_is_refused(tiny, tmp_path, name):
    path = jsonl(tmp_path / "posts.jsonl", GOOD)
    assert moderate(tiny, str(path), "--out", str(tmp_path / "run"), "--format", "jsonl").exit_code == 0
    named = tmp_path / "run" / name
    result = moderate(tiny, str(named), "--out", str(tmp_path / "again"))
    assert_one_line_error(result, 3, str(named), "moderator run folder", "moderate the original input instead")


def small_records(tmp_path: Path, limit: int = 1000) -> Path:
    """A config that caps records at `limit` bytes, so that the tests need no big files."""
    path = tmp_path / "small.toml"
    path.write_text(f"[input]\nmax_record_bytes = {limit}\n")
    return path


def test_an_oversized_line_is_quarantined_without_its_content_and_reading_goes_on(tiny, tmp_path):
    export = json.dumps([{"id": i, "text": POSTS[i % 6]} for i in range(200)]).encode()  # one array, ~15 KB
    path = jsonl(tmp_path / "posts.jsonl", GOOD, export, GOOD.replace(b'"ok"', b'"ok2"'))
    with path.open("ab") as handle:
        handle.write(b'{"text": "' + b"y" * 3000 + b'"}')  # the last line, over the limit, without a newline
    result = moderate(tiny, str(path), "--out", str(tmp_path / "run"), "--config", str(small_records(tmp_path)))
    assert result.exit_code == 0, result.output
    rows, quarantine = reconcile(tmp_path / "run", 4)
    assert [r["id"] for r in rows] == ["ok", "ok2"]
    assert [(q["line"], q["reason"]) for q in quarantine] == [(2, "record_too_large"), (4, "record_too_large")]
    assert f"line of {len(export)} bytes is over [input] max_record_bytes = 1000" in quarantine[0]["detail"]
    assert quarantine[0]["raw"] == export[:1000].decode() and len(quarantine[1]["raw"]) == 1000  # a prefix only


def test_a_line_that_never_ends_ends_its_file_not_the_machine(tiny, tmp_path):
    """A link to /dev/zero: one line without end. Reading it stops after 64 times the limit; the file
    ends in a quarantine record that says so, the next file is read, and the run finishes. Run in a
    child with its address space capped, so that a reader that keeps the line fails fast instead of
    filling this machine's memory."""
    import resource
    import sys

    zero = tmp_path / "zero.jsonl"
    zero.symlink_to("/dev/zero")
    good = jsonl(tmp_path / "good.jsonl", GOOD)
    argv = [sys.executable, "-m", "moderator", "batch", str(zero), str(good), "--out", str(tmp_path / "run"),
            "--classifier", str(tiny.classifier), "--no-rewrite", "--device", "cpu", "--max-quarantine-share", "1",
            "--config", str(small_records(tmp_path))]

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))

    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, preexec_fn=cap)
    assert done.returncode == 0, done.stderr
    assert f"{zero}: line 1 has not ended after 64000 bytes; stopped reading this file there" in done.stderr
    rows, quarantine = reconcile(tmp_path / "run", 2)
    assert [r["id"] for r in rows] == ["ok"]
    [record] = quarantine
    assert record["source"] == "zero.jsonl" and record["reason"] == "record_too_large"
    assert record["detail"].startswith("line longer than 64000 bytes, not read to its end")
    assert len(record["raw"]) == 1000


def test_an_oversized_parquet_text_is_quarantined_and_not_carried(tiny, tmp_path):
    texts = [POSTS[0], "z" * 5000, POSTS[1]]
    plain = write_parquet(tmp_path / "dump" / "plain.parquet", {"id": ["a", "b", "c"], "text": texts})
    coded = write_parquet(tmp_path / "dump" / "coded.parquet",
                          {"id": ["d", "e", "f"], "text": pa.array(texts).dictionary_encode()})
    assert plain.exists() and coded.exists()
    result = moderate(tiny, str(tmp_path / "dump"), "--out", str(tmp_path / "run"),
                      "--config", str(small_records(tmp_path)))
    assert result.exit_code == 0, result.output
    rows, quarantine = reconcile(tmp_path / "run", 6)
    assert [r["id"] for r in rows] == ["d", "f", "a", "c"]
    assert [(q["id"], q["reason"], q["record"]["text"]) for q in quarantine] == [("e", "record_too_large", None),
                                                                                 ("b", "record_too_large", None)]
    assert quarantine[0]["detail"].startswith("text of 5000 bytes is over [input] max_record_bytes = 1000")
    for part in (tmp_path / "run" / "output").iterdir():  # the long text is not in a part's dictionary either
        assert b"z" * 100 not in part.read_bytes()


@pytest.mark.parametrize("text_type", [pa.string_view(), pa.large_string()])
def test_view_and_large_string_columns_are_moderated(tiny, tmp_path, text_type):
    path = write_parquet(tmp_path / "posts.parquet", {
        "id": pa.array(["a", "b", "c"], pa.string_view()),
        "text": pa.array(POSTS[:3], text_type),
        "blob": pa.array([b"1", b"2", None], pa.binary_view()),
    })
    result = moderate(tiny, str(path), "--out", str(tmp_path / "run"))  # was: exit 1 after the models loaded
    assert result.exit_code == 0, result.output
    rows, _ = reconcile(tmp_path / "run", 3)
    assert [(r["id"], r["text"], r["blob"]) for r in rows] == [("a", POSTS[0], b"1"), ("b", POSTS[1], b"2"),
                                                              ("c", POSTS[2], None)]
    assert not (tmp_path / "run" / ".partial").exists()


def test_invalid_json_details_say_at_column_once(tiny, tmp_path):
    path = tmp_path / "posts.jsonl"
    path.write_bytes(GOOD + b'\n{"text": "bell \x07"}\n{"id": "x", "text": "cut')  # the last line: no newline
    assert moderate(tiny, str(path), "--out", str(tmp_path / "run")).exit_code == 0
    _, quarantine = reconcile(tmp_path / "run", 3)
    assert [q["detail"] for q in quarantine] == ["Invalid control character at column 16",  # was "at at column"
                                                "Unterminated string starting at column 21"]


def test_a_truncated_gzip_says_how_many_rows_were_read(tiny, tmp_path):
    import zlib

    lines = [json.dumps({"id": i, "text": f"post number {i}"}).encode() for i in range(3000)]
    packed = gzip.compress(b"".join(line + b"\n" for line in lines))
    path = tmp_path / "posts.jsonl.gz"
    path.write_bytes(packed[: len(packed) // 2])
    decodable = zlib.decompressobj(31).decompress(path.read_bytes()).count(b"\n")  # what gunzip would give
    result = moderate(tiny, str(path), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, 3, str(path), "cannot read (Truncated compressed stream) after")
    read = int(result.stderr.split(" after ")[1].split()[0])  # was "after 0 rows"
    assert decodable - 8192 // len(lines[0]) - 1 <= read <= decodable
    assert not (tmp_path / "run" / "manifest.json").exists()
