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


def test_shards_with_different_schemas_go_to_separate_parts_without_coercion(tiny, tmp_path):
    write_parquet(tmp_path / "dump" / "a.parquet", {"text": POSTS[:3], "score": [1, 2, 3]})
    write_parquet(tmp_path / "dump" / "b.parquet", {"text": POSTS[3:], "score": ["x", "y", "z"], "extra": [1.0] * 3})
    assert moderate(tiny, str(tmp_path / "dump"), "--out", str(tmp_path / "run")).exit_code == 0
    reconcile(tmp_path / "run", 6)
    parts = sorted((tmp_path / "run" / "output").glob("part-*.parquet"))
    assert [pq.read_table(p).column("score").type for p in parts] == [pa.int64(), pa.string()]


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
