"""The audit log's hash chain, `moderate audit verify`, audit privacy and file permissions.

Runs are real `moderate batch` runs on small inputs with the tiny models; the logs are then
tampered with the way a person with write access would, and the verifier must name the line.
"""

import hashlib
import json
import os
import shutil
import stat
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import POSTS, read_lines, read_output, tiny_config, write_jsonl, write_parquet

from moderator.auditchain import GENESIS, ChainWriter, verify_run
from moderator.cli import cli
from moderator.pipeline import run as run_pipeline

GENESIS_HEX = "0" * 64


def batch(tiny, *args: str, rewrite: bool = False):
    """`moderate batch` with the tiny classifier (and the tiny rewriter when `rewrite`)."""
    models = ["--classifier", str(tiny.classifier)]
    if rewrite:
        models += ["--rewriter-base", str(tiny.decoder), "--adapter", str(tiny.adapter), "--engine", "hf"]
    else:
        models += ["--no-rewrite"]
    # Several inputs here hold a bad record on purpose: no exit 7 (partial) for that.
    result = CliRunner().invoke(cli, ["batch", *args, *models, "-q", "--max-quarantine-share", "1"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def verify(*run_dirs: Path, as_json: bool = False):
    args = ["audit", "verify", *map(str, run_dirs)] + (["--json"] if as_json else [])
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def assert_tampered(result, audit: Path, line: int, kind: str) -> None:
    """Exit 6 and one error naming the file, the line (0: a problem that is not on a line) and the kind."""
    assert result.exit_code == 6, result.output
    where = f"line {line}: {kind}: " if line else f"{kind}: "
    assert error_line(result).startswith(f"Error: {audit}: {where}"), result.stderr


def log_lines(run: Path) -> list[bytes]:
    return (run / "audit.jsonl").read_bytes().splitlines()


def write_log(run: Path, lines: list[bytes], final_newline: bool = True) -> None:
    (run / "audit.jsonl").write_bytes(b"\n".join(lines) + (b"\n" if final_newline else b""))


def manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def edit_manifest(run: Path, **audit) -> None:
    data = manifest(run)
    data["audit"].update(audit)
    (run / "manifest.json").write_text(json.dumps(data))


def reserialize(line: bytes, **fields) -> bytes:
    """The line with `fields` set, serialized like the writer does."""
    return json.dumps({**json.loads(line), **fields}, ensure_ascii=False, separators=(",", ":")).encode()


def edit_field(line: bytes, **fields) -> bytes:
    edited = reserialize(line, **fields)
    assert edited != line  # a tampering test whose edit changes nothing could not fail
    return edited


def flip_action(line: bytes) -> bytes:
    """The line with one field changed: its action."""
    return edit_field(line, action="allow" if json.loads(line)["action"] != "allow" else "remove")


def sha(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


@pytest.fixture(scope="module")
def pristine(tiny, tmp_path_factory) -> Path:
    """One finished run (14 input records, one quarantined), never modified: tests copy it."""
    root = tmp_path_factory.mktemp("audit-chain")
    posts = write_jsonl(root / "posts.jsonl", [{"id": f"p{i}", "text": t} for i, t in enumerate(POSTS * 2)],
                        [b'{"id": "bad", "text": null}\n', b'{"id": "p13", "text": "see you at the meetup"}\n'])
    batch(tiny, str(posts), "--out", str(root / "run"))
    return root / "run"


@pytest.fixture
def run(pristine, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(pristine, copy)
    return copy


def test_intact_log_verifies_and_the_hash_definition_holds(run):
    result = verify(run)
    assert result.exit_code == 0, result.output
    audit = manifest(run)["audit"]
    assert f"{run}: intact, 14 lines, head {audit['head_sha256']} (new chain)" in result.stdout
    # The definition in the README, re-checked with nothing but hashlib and json.
    lines = log_lines(run)
    prev = GENESIS_HEX
    for n, line in enumerate(lines, 1):
        obj = json.loads(line)
        assert list(obj)[:2] == ["seq", "prev_sha256"] and obj["seq"] == n and obj["prev_sha256"] == prev
        assert json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() == line  # compact, canonical
        prev = sha(line)
    assert GENESIS == GENESIS_HEX == audit["chain_from"] and audit["previous_run"] is None
    assert (audit["lines"], audit["head_sha256"]) == (14, prev) == (len(lines), sha(lines[-1]))
    assert json.loads(lines[12])["action"] == "quarantine"  # quarantined records are chained like the rest
    as_json = json.loads(verify(run, as_json=True).stdout)
    assert as_json["ok"] is True and as_json["runs"][0]["lines"] == 14 and as_json["runs"][0]["problem"] is None


def _edit_line_5(lines):
    lines[4] = flip_action(lines[4])
    return lines, 5, "edited"


def _delete_line_5(lines):
    del lines[4]
    return lines, 5, "deleted"


def _delete_lines_5_to_7(lines):
    del lines[4:7]
    return lines, 5, "deleted"


def _delete_line_1(lines):
    del lines[0]
    return lines, 1, "deleted"


def _insert_copy_at_5(lines):
    lines.insert(4, lines[1])
    return lines, 5, "inserted"


def _insert_forged_at_5(lines):
    """A line made to fit: right seq, right prev_sha256. The line after it gives it away."""
    forged = edit_field(lines[4], id="forged", seq=5, prev_sha256=sha(lines[3]))
    lines.insert(4, forged)
    return lines, 5, "inserted"


def _append_line(lines):
    lines.append(edit_field(lines[-1], id="extra"))
    return lines, 15, "inserted"


def _swap_lines_4_and_5(lines):
    lines[3], lines[4] = lines[4], lines[3]
    return lines, 4, "reordered"


def _swap_last_two(lines):
    lines[-2], lines[-1] = lines[-1], lines[-2]
    return lines, 13, "reordered"


def _move_line_2_to_the_end(lines):
    lines.append(lines.pop(1))
    return lines, 2, "reordered"


def _truncate_last_3(lines):
    return lines[:-3], 12, "truncated"


def _not_json_at_6(lines):
    lines[5] = b"this is not json"
    return lines, 6, "edited"


def _edit_first(lines):
    lines[0] = edit_field(lines[0], toxicity=json.loads(lines[0])["toxicity"] / 2)
    return lines, 1, "edited"


def _edit_last(lines):
    lines[-1] = edit_field(lines[-1], id="p13-edited")
    return lines, 14, "edited"


def _edit_prev_of_7(lines):
    lines[6] = edit_field(lines[6], prev_sha256="f" * 64)
    return lines, 7, "edited"


@pytest.mark.parametrize("tamper", [
    _edit_line_5, _edit_first, _edit_last, _edit_prev_of_7, _not_json_at_6,
    _delete_line_5, _delete_lines_5_to_7, _delete_line_1,
    _insert_copy_at_5, _insert_forged_at_5, _append_line,
    _swap_lines_4_and_5, _swap_last_two, _move_line_2_to_the_end,
    _truncate_last_3,
], ids=lambda f: f.__name__.strip("_"))
def test_tampering_is_found_at_the_right_line(run, tamper):
    lines, line, kind = tamper(log_lines(run))
    write_log(run, lines)
    assert_tampered(verify(run), run / "audit.jsonl", line, kind)
    result = json.loads(verify(run, as_json=True).stdout)
    assert result["ok"] is False and result["runs"][0]["problem"]["line"] == line
    assert result["runs"][0]["problem"]["kind"] == kind


def test_a_file_cut_mid_line_is_truncated(run):
    data = (run / "audit.jsonl").read_bytes()
    (run / "audit.jsonl").write_bytes(data[: len(data) - 40])
    assert_tampered(verify(run), run / "audit.jsonl", 14, "truncated")


def test_changed_manifest_is_found(run):
    head = manifest(run)["audit"]["head_sha256"]
    edit_manifest(run, head_sha256="0" * 63 + "1")
    assert_tampered(verify(run), run / "audit.jsonl", 14, "edited")  # the last line, or the head
    edit_manifest(run, head_sha256=head, lines=15)
    assert_tampered(verify(run), run / "audit.jsonl", 15, "manifest")
    edit_manifest(run, lines=14, chain_from="a" * 64)
    assert_tampered(verify(run), run / "audit.jsonl", 1, "chain_start")
    edit_manifest(run, chain_from=GENESIS)
    assert verify(run).exit_code == 0


def test_a_rebuilt_chain_passes_alone_but_breaks_the_next_run(tiny, pristine, tmp_path):
    """Continuing each run's chain from the previous one: rewriting a whole log and its manifest
    consistently is found by the next run, which started from the old head."""
    first = tmp_path / "2026-11-24"
    shutil.copytree(pristine, first)
    posts = write_parquet(tmp_path / "next.parquet", {"text": POSTS})
    second = tmp_path / "2026-11-25"
    batch(tiny, str(posts), "--out", str(second), "--audit-chain-from", str(first))
    audit = manifest(second)["audit"]
    assert audit["chain_from"] == manifest(first)["audit"]["head_sha256"]
    assert audit["previous_run"] == {"run_id": manifest(first)["run_id"], "path": str(first.resolve()),
                                     "head_sha256": audit["chain_from"]}
    assert json.loads(log_lines(second)[0])["prev_sha256"] == audit["chain_from"]
    result = verify(first, second)
    assert result.exit_code == 0, result.output
    assert f"continues run {manifest(first)['run_id']}" in result.stdout
    # Order matters: the later run must continue the earlier one.
    assert_tampered(verify(second, first), first / "audit.jsonl", 1, "chain_start")

    # An edited line in the previous run's log.
    original = log_lines(first)
    lines = list(original)
    lines[2] = flip_action(lines[2])
    write_log(first, lines)
    assert_tampered(verify(first, second), first / "audit.jsonl", 3, "edited")
    assert verify(second).exit_code == 0  # alone, the later run cannot see it

    # The same edit with the whole chain and manifest rebuilt: the first run alone looks fine.
    prev, rebuilt = GENESIS, []
    for line in lines:
        rebuilt.append(reserialize(line, prev_sha256=prev))
        prev = sha(rebuilt[-1])
    write_log(first, rebuilt)
    edit_manifest(first, head_sha256=prev)
    # The manifest's counts no longer match the rebuilt log: that alone gives it away...
    assert_tampered(verify(first), first / "manifest.json", 0, "counts")
    # ...unless the forger fixes the counts too: then the first run alone looks fine.
    data = manifest(first)
    old, new = json.loads(original[2])["action"], json.loads(lines[2])["action"]
    data["counts"]["actions"][old] -= 1
    data["counts"]["actions"][new] += 1
    (first / "manifest.json").write_text(json.dumps(data))
    assert verify(first).exit_code == 0
    assert_tampered(verify(first, second), second / "audit.jsonl", 1, "chain_start")


def test_chain_from_errors_are_one_line(tiny, pristine, tmp_path):
    posts = write_parquet(tmp_path / "posts.parquet", {"text": POSTS})
    for previous, fragment in [(tmp_path / "nope", "no finished run there"),
                               (tmp_path / "posts.moderated", "cannot continue its own chain")]:
        result = CliRunner().invoke(cli, ["batch", str(posts), "--no-rewrite", "--classifier", str(tiny.classifier),
                                          "--audit-chain-from", str(previous)])
        assert result.exit_code == 2 and fragment in error_line(result) and str(previous) in error_line(result)
    assert not (tmp_path / "posts.moderated").exists()


def test_verify_refuses_what_it_cannot_check(run, tmp_path):
    assert "no finished run here" in error_line(verify(tmp_path)) and verify(tmp_path).exit_code == 3
    assert verify(tmp_path / "missing").exit_code == 3 and "no such folder" in error_line(verify(tmp_path / "missing"))
    data = manifest(run)
    (run / "audit.jsonl").unlink()
    result = verify(run)
    assert result.exit_code == 3 and f"{run / 'audit.jsonl'}: missing" in error_line(result)
    del data["audit"]
    (run / "manifest.json").write_text(json.dumps(data))
    result = verify(run)
    assert result.exit_code == 3 and "records no audit chain" in error_line(result)
    help_text = CliRunner().invoke(cli, ["audit", "verify", "--help"]).output
    assert "moderate audit verify posts.moderated" in help_text and "Exit codes:" in help_text and "  6  " in help_text


def test_verify_streams_in_constant_memory(tmp_path):
    """A log much larger than what the verifier may hold: it keeps a few lines, not the file."""
    run = tmp_path / "big"
    run.mkdir()
    writer = ChainWriter(run / "audit.jsonl")
    for start in range(0, 60_000, 1000):
        writer.write({"id": f"post-{i}", "text_sha256": "ab" * 32, "action": "allow"} for i in range(start, start + 1000))
    writer.close()
    (run / "manifest.json").write_text(json.dumps({"status": "complete", "run_id": "big", "audit": writer.summary()}))
    size = (run / "audit.jsonl").stat().st_size
    data = bytearray((run / "audit.jsonl").read_bytes())
    cut = data.index(b'"post-41234"')
    data[cut + 6] = ord("X")  # one byte of line 41235 (id post-41234)
    (run / "audit.jsonl").write_bytes(bytes(data))
    del data
    tracemalloc.start()
    verdict = verify_run(run)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert size > 8_000_000 and peak < 1_000_000, (size, peak)
    assert (verdict.lines, verdict.problem.line, verdict.problem.kind) == (60_000, 41_235, "edited")


def test_audit_text_is_opt_in(tiny, tmp_path):
    posts = write_parquet(tmp_path / "posts.parquet", {"id": [f"p{i}" for i in range(6)], "text": POSTS})
    batch(tiny, str(posts), "--out", str(tmp_path / "default"))
    raw = (tmp_path / "default" / "audit.jsonl").read_text()
    assert all(post not in raw for post in POSTS)
    assert all("text" not in line and "rewrite" not in line for line in read_lines(tmp_path / "default" / "audit.jsonl"))

    batch(tiny, str(posts), "--out", str(tmp_path / "flag"), "--audit-text")
    audit = read_lines(tmp_path / "flag" / "audit.jsonl")
    assert [a["text"] for a in audit] == POSTS and {a["rewrite"] for a in audit} == {None}
    assert all(a["text_sha256"] == hashlib.sha256(a["text"].encode()).hexdigest() for a in audit)
    assert manifest(tmp_path / "flag")["config"]["output"]["audit_text"] is True
    assert verify(tmp_path / "flag").exit_code == 0

    job = tmp_path / "job.toml"
    job.write_text("[output]\naudit_text = true\n")
    batch(tiny, str(posts), "--out", str(tmp_path / "file"), "--config", str(job))
    assert [a["text"] for a in read_lines(tmp_path / "file" / "audit.jsonl")] == POSTS
    batch(tiny, str(posts), "--out", str(tmp_path / "off"), "--config", str(job), "--no-audit-text")
    assert "text" not in read_lines(tmp_path / "off" / "audit.jsonl")[0]
    assert "audit_text = false" in CliRunner().invoke(cli, ["config"]).output


def test_audit_text_keeps_the_rewrites(tiny, hf_models, tmp_path):
    posts = write_parquet(tmp_path / "posts.parquet", {"text": POSTS})
    config = tiny_config(tiny, output={"audit_text": True}, policy={"rewrite_threshold": 0.0, "remove_threshold": 1.0})
    result = run_pipeline(config, [str(posts)], tmp_path / "run", models=hf_models)
    audit = read_lines(result.path / "audit.jsonl")
    moderation = read_output(result.path).column("moderation").to_pylist()
    assert [a["rewrite"] for a in audit] == [m["rewrite"] for m in moderation]
    assert all(isinstance(a["rewrite"], str) for a in audit) and [a["text"] for a in audit] == POSTS
    assert all(a["rewrite_sha256"] == hashlib.sha256(a["rewrite"].encode()).hexdigest() for a in audit)


def _modes(run: Path) -> dict[str, int]:
    return {str(p.relative_to(run.parent)): stat.S_IMODE(p.stat().st_mode) for p in [run, *run.rglob("*")]}


def test_files_are_owner_only_whatever_the_umask(tiny, tmp_path):
    posts = write_parquet(tmp_path / "posts.parquet", {"text": POSTS + [""]})
    old = os.umask(0o002)
    try:
        batch(tiny, str(posts), "--out", str(tmp_path / "run"))
    finally:
        os.umask(old)
    modes = _modes(tmp_path / "run")
    assert {"run/output/part-00000.parquet", "run/audit.jsonl", "run/quarantine.jsonl", "run/manifest.json"} <= set(modes)
    for name, mode in modes.items():
        assert mode == (0o700 if (tmp_path / name).is_dir() else 0o600), (name, oct(mode))


def test_file_mode_can_be_configured(tiny, tmp_path):
    posts = write_jsonl(tmp_path / "posts.jsonl", [{"text": t} for t in POSTS])
    job = tmp_path / "job.toml"
    job.write_text('[output]\nfile_mode = "0640"\n')
    old = os.umask(0o077)
    try:
        batch(tiny, str(posts), "--out", str(tmp_path / "run"), "--config", str(job))
    finally:
        os.umask(old)
    modes = _modes(tmp_path / "run")
    assert "run/output/part-00000.jsonl" in modes
    for name, mode in modes.items():
        assert mode == (0o750 if (tmp_path / name).is_dir() else 0o640), (name, oct(mode))
    job.write_text('[output]\nfile_mode = "0044"\n')
    result = CliRunner().invoke(cli, ["batch", str(posts), "--config", str(job)])
    assert result.exit_code == 2 and "must let the owner read and write" in error_line(result)


def test_the_state_store_report_and_dsa_export_get_the_file_mode_too(tiny, tmp_path):
    """The state store holds ids, decisions and rewrites: owner-only under umask 022 like the run's files
    (it was 0644), SQLite's -wal/-shm files included; a configured group-readable mode applies to it too."""
    posts = write_jsonl(tmp_path / "posts.jsonl", [{"id": str(i), "text": t} for i, t in enumerate(POSTS)])
    old = os.umask(0o022)
    try:
        batch(tiny, str(posts), "--out", str(tmp_path / "run"), "--state", str(tmp_path / "state" / "db.sqlite"))
        report = CliRunner().invoke(cli, ["report", str(tmp_path / "run"), "--out", str(tmp_path / "r.json")])
        assert report.exit_code == 0, report.output
        job = tmp_path / "job.toml"
        job.write_text('[output]\nfile_mode = "0640"\n')
        batch(tiny, str(posts), "--out", str(tmp_path / "group"), "--config", str(job),
              "--state", str(tmp_path / "group-state.sqlite"))
    finally:
        os.umask(old)
    store = _modes(tmp_path / "state")
    assert "state/db.sqlite" in store
    for name, mode in store.items():
        assert mode == (0o700 if (tmp_path / name).is_dir() else 0o600), (name, oct(mode))
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "group-state.sqlite").stat().st_mode) == 0o640


def test_lines_stay_valid_utf8_and_verifiable_whatever_the_strings(tmp_path):
    """A lone surrogate (JSON input may escape one) cannot be written as UTF-8: that line gets \\u escapes."""
    run = tmp_path / "run"
    run.mkdir()
    writer = ChainWriter(run / "audit.jsonl")
    writer.write([{"text": "café"}, {"text": "half a pair: \ud800"}])
    writer.close()
    (run / "manifest.json").write_text(json.dumps({"status": "complete", "run_id": "x", "audit": writer.summary()}))
    first, second = (run / "audit.jsonl").read_bytes().decode("utf-8").splitlines()
    assert "café" in first and "\\ud800" in second and json.loads(second)["text"] == "half a pair: \ud800"
    assert verify_run(run).ok and verify_run(run).lines == 2
