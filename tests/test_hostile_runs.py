"""Nights that cannot be fooled (issue 18): an overwrite that breaks a later night's chain, DSA
statements lost to `--overwrite`, forged manifest counts and cut output parts.

Every test drives the real CLI (`moderate run`, `batch`, `audit verify`, `report`, `show`) on real
runs of the tiny classifier, then tampers with the files the way a person with write access would.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import POSTS, read_lines, write_jsonl
from test_jobs import job_file as nightly_job

from moderator.cli import cli


def moderate(*args) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def errors(result) -> list[str]:
    assert "Traceback" not in result.output
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


def manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def job_file(tmp_path: Path, tiny, policy: str = "") -> Path:
    """A nightly job (test_jobs.py's): one dump per date, one run folder per date, one audit chain, a state
    store; every quarantined record allowed."""
    return nightly_job(tmp_path, tiny, f"[output]\nmax_quarantine_share = 1.0\n[policy]\n{policy}")


def dump(tmp_path: Path, date: str, posts: list[tuple[str, str]]) -> None:
    write_jsonl(tmp_path / "dumps" / date / "comments.jsonl", [{"id": i, "text": t} for i, t in posts])


def night(prefix: str, texts: list[str]) -> list[tuple[str, str]]:
    return [(f"{prefix}{i}", t) for i, t in enumerate(texts)]


# ---------------------------------------------------------------------------------------------------
# 2. Overwriting an earlier night


def test_an_overwrite_that_would_break_a_later_night_is_refused_and_report_agrees_with_verify(
        tiny, tmp_path, monkeypatch):
    job = job_file(tmp_path, tiny)
    runs = tmp_path / "runs"
    dump(tmp_path, "2026-11-27", night("a", POSTS))
    dump(tmp_path, "2026-11-28", night("b", POSTS[:3]))
    assert moderate("run", job, "--date", "2026-11-27", "-q").exit_code == 0
    assert moderate("run", job, "--date", "2026-11-28", "-q").exit_code == 0
    first, second = runs / "2026-11-27", runs / "2026-11-28"
    before = (first / "manifest.json").read_bytes()
    dump(tmp_path, "2026-11-27", night("a", POSTS[::-1]))  # the dump changed since

    # Refused before anything is written, and before the models load.
    import moderator.pipeline

    def no_models(*args, **kwargs):
        raise AssertionError("models must not load for a refused overwrite")

    monkeypatch.setattr(moderator.pipeline, "load_models", no_models)
    refused = moderate("run", job, "--date", "2026-11-27", "--overwrite", "-q")
    assert refused.exit_code == 4, refused.output
    [line] = errors(refused)
    assert "2026-11-28" in line and manifest(second)["run_id"] in line and "--break-chain" in line
    assert (first / "manifest.json").read_bytes() == before and not (first / ".partial").exists()
    assert moderate("run", job, "--date", "2026-11-27", "--break-chain").exit_code == 2  # needs --overwrite
    monkeypatch.undo()

    # --break-chain: done, loudly, and recorded.
    old_id = manifest(first)["run_id"]
    broken = moderate("run", job, "--date", "2026-11-27", "--overwrite", "--break-chain", "-q")
    assert broken.exit_code == 0, broken.output
    assert "BREAKS THE AUDIT CHAIN" in broken.stderr and "2026-11-28" in broken.stderr
    replaces = manifest(first)["replaces"]
    assert replaces["run_id"] == old_id and replaces["broke_chain_of"] == [
        {"path": str(second.resolve()), "run_id": manifest(second)["run_id"]}]

    # audit verify and the report say the same thing, in chain order.
    verified = moderate("audit", "verify", first, second)
    assert verified.exit_code == 6
    [line] = errors(verified)
    assert line.startswith(f"Error: {second / 'audit.jsonl'}: line 1: chain_start: ")
    summary_path = tmp_path / "summary.json"
    reported = moderate("report", runs, "--json", summary_path, "--markdown", tmp_path / "r.md")
    assert reported.exit_code == 6, reported.output
    summary = json.loads(summary_path.read_text())
    assert [r["label"] for r in summary["runs"]] == ["2026-11-27", "2026-11-28"]  # not by start time
    assert summary["audit_verified"] is False
    assert [r["audit"]["intact"] for r in summary["runs"]] == [True, False]
    assert "chain_start" in summary["runs"][1]["audit"]["problem"]
    assert [line for line in errors(reported) if "2026-11-28" in line and "chain_start" in line]
    assert "AUDIT CHAIN BROKEN" in (tmp_path / "r.md").read_text()

    # Re-running the later night (it has no later night) rebuilds the chain: everything agrees again.
    assert moderate("run", job, "--date", "2026-11-28", "--overwrite", "-q").exit_code == 0
    assert moderate("audit", "verify", first, second).exit_code == 0
    reported = moderate("report", runs, "--json", summary_path)
    assert reported.exit_code == 0, reported.output
    assert json.loads(summary_path.read_text())["audit_verified"] is True


# ---------------------------------------------------------------------------------------------------
# 3. --overwrite and the DSA export


def statements(tmp_path: Path, *runs: Path) -> list[dict]:
    out = tmp_path / "sor.jsonl"
    result = moderate("report", *runs, "--dsa-sor", out)
    assert result.exit_code == 0, result.output
    return read_lines(out)


def test_overwrite_keeps_the_dsa_statements_and_never_carries_over_from_the_replaced_run(tiny, tmp_path):
    job = job_file(tmp_path, tiny, "rewrite_threshold = 0.0\nremove_threshold = 0.0\n")  # remove every post
    runs = tmp_path / "runs"
    posts = night("p", POSTS)
    dump(tmp_path, "2026-11-27", posts)
    assert moderate("run", job, "--date", "2026-11-27", "-q").exit_code == 0
    first = runs / "2026-11-27"
    old_id = manifest(first)["run_id"]
    original = statements(tmp_path, first)
    assert len(original) == len(POSTS)

    # The same night again, overwritten: every decision is its own again, none carried over from the
    # run it replaces, and the DSA export still holds one statement per removed post.
    again = moderate("run", job, "--date", "2026-11-27", "--overwrite", "-q")
    assert again.exit_code == 0, again.output
    assert len(statements(tmp_path, first)) == len(original)
    new = manifest(first)
    assert new["run_id"] != old_id and new["counts"]["carried_over"] == 0
    assert not [line for line in read_lines(first / "audit.jsonl") if line.get("carried_from")]

    # Overwritten with one post fewer: the replaced run's decision on it leaves the store too, so a
    # later night that sees that post again decides it itself (and exports its statement).
    dump(tmp_path, "2026-11-27", posts[1:])
    assert moderate("run", job, "--date", "2026-11-27", "--overwrite", "-q").exit_code == 0
    with sqlite3.connect(runs / "state.sqlite") as db:
        origins = {run_id for (run_id,) in db.execute("SELECT DISTINCT run_id FROM decisions")}
    assert origins == {manifest(first)["run_id"]}
    dump(tmp_path, "2026-11-28", posts[:1])
    assert moderate("run", job, "--date", "2026-11-28", "-q").exit_code == 0
    second = runs / "2026-11-28"
    assert manifest(second)["counts"]["carried_over"] == 0
    assert len(statements(tmp_path, first, second)) == len(POSTS)


# ---------------------------------------------------------------------------------------------------
# 6. Forged counts, cut and swapped output parts


@pytest.fixture
def run(tiny, tmp_path) -> Path:
    """A finished run of 61 input records (one quarantined): output parts of 51 and 9 rows."""
    posts = write_jsonl(tmp_path / "posts.jsonl", [{"id": f"p{i}", "text": POSTS[i % len(POSTS)] + f" #{i}"}
                                                   for i in range(60)], [b'{"id": "bad", "text": null}\n'])
    config = tmp_path / "job.toml"
    config.write_text("[output]\nrows_per_shard = 51\nmax_quarantine_share = 1.0\n")
    out = tmp_path / "run"
    result = moderate("batch", posts, "--out", out, "--config", config, "--classifier", tiny.classifier,
                      "--no-rewrite", "-q")
    assert result.exit_code == 0, result.output
    assert [p["rows"] for p in manifest(out)["output"]["parts"]] == [51, 9]
    return out


def assert_rejected(run: Path, file: Path, kind: str, *fragments: str) -> None:
    """`audit verify`, `report` and `show` all refuse the run, naming the same problem."""
    verified = moderate("audit", "verify", run)
    assert verified.exit_code == 6, verified.output
    [line] = errors(verified)
    assert line.startswith(f"Error: {file}: {kind}: "), line
    assert all(f in line for f in fragments), line
    as_json = json.loads(moderate("audit", "verify", run, "--json").stdout)
    assert as_json["ok"] is False and as_json["runs"][0]["problem"]["kind"] == kind
    summary = run.parent / "summary.json"
    reported = moderate("report", run, "--json", summary)
    assert reported.exit_code == 6, reported.output
    assert json.loads(summary.read_text())["audit_verified"] is False
    assert any(kind in line for line in errors(reported))
    dsa_only = moderate("report", run, "--dsa-sor", run.parent / "sor.jsonl")
    assert dsa_only.exit_code == 6, dsa_only.output


def test_the_manifest_records_each_parts_sha256_and_rows(run):
    output = manifest(run)["output"]
    import hashlib

    assert output["sha256"] == {p["file"]: hashlib.sha256((run / "output" / p["file"]).read_bytes()).hexdigest()
                                for p in output["parts"]}
    result = moderate("audit", "verify", run)
    assert result.exit_code == 0 and "Note:" not in result.stderr, result.output
    assert moderate("report", run, "--json", run.parent / "s.json").exit_code == 0


def test_forged_counts_are_found_and_not_shown(run):
    data = manifest(run)
    counts = data["counts"]
    real = dict(counts["actions"])
    counts["actions"]["allow"] += 7  # seven more posts "allowed" than the log says
    (run / "manifest.json").write_text(json.dumps(data))
    assert_rejected(run, run / "manifest.json", "counts", f"actions.allow {real['allow'] + 7}",
                    f"(audit log: {real['allow']})")
    shown = moderate("show", run)
    assert shown.exit_code == 6 and shown.stdout == ""  # the forged numbers are not shown as counts
    [line] = errors(shown)
    assert "counts" in line and "audit verify" in line


def test_a_forged_post_count_is_found(run):
    data = manifest(run)
    data["counts"]["input_rows"] = 50
    (run / "manifest.json").write_text(json.dumps(data))
    assert_rejected(run, run / "manifest.json", "counts", "input_rows 50 (audit log: 61)")


def test_a_cut_output_part_is_found(run):
    part = run / "output" / "part-00000.jsonl"
    lines = part.read_bytes().splitlines(keepends=True)
    assert len(lines) == 51
    part.write_bytes(b"".join(lines[:10]))
    assert_rejected(run, part, "output", "it holds 10 rows, the manifest says 51", "sha256")


def test_an_edited_removed_or_added_part_is_found(run):
    part = run / "output" / "part-00001.jsonl"
    original = part.read_bytes()
    part.write_bytes(original.replace(b'"action":"allow"', b'"action":"remove"', 1)
                     if b'"action":"allow"' in original else original.replace(b'"action":"', b'"action":"x', 1))
    assert_rejected(run, part, "output", "its sha256 is not the manifest's")
    part.write_bytes(original)
    extra = run / "output" / "part-00002.jsonl"
    extra.write_bytes(original)
    assert_rejected(run, run / "output", "output", "part-00002.jsonl")
    extra.unlink()
    part.unlink()
    assert_rejected(run, part, "output", "missing")


def test_a_rewritten_parquet_part_is_found(tiny, tmp_path):
    posts = write_jsonl(tmp_path / "posts.jsonl", [{"id": f"p{i}", "text": t} for i, t in enumerate(POSTS * 9)])
    out = tmp_path / "run"
    result = moderate("batch", posts, "--out", out, "--format", "parquet", "--classifier", tiny.classifier,
                      "--no-rewrite", "-q")
    assert result.exit_code == 0, result.output
    [part] = sorted((out / "output").iterdir())
    table = pq.read_table(part)
    pq.write_table(table.slice(0, 10), part)
    assert_rejected(out, part, "output", f"it holds 10 rows, the manifest says {table.num_rows}")
    part.write_bytes(b"not parquet")
    assert_rejected(out, part, "output", "no longer a readable Parquet file")


def test_older_manifests_are_checked_as_far_as_they_go(run):
    data = manifest(run)
    del data["output"]["sha256"]  # written before parts were hashed
    (run / "manifest.json").write_text(json.dumps(data))
    result = moderate("audit", "verify", run)
    assert result.exit_code == 0, result.output
    assert "Note:" in result.stderr and "not checkable" in result.stderr and "no sha256 per part" in result.stderr
    summary = run.parent / "s.json"
    assert moderate("report", run, "--json", summary).exit_code == 0
    assert "no sha256 per part" in json.loads(summary.read_text())["runs"][0]["audit"]["notes"][0]
    assert moderate("show", run).exit_code == 0
    # Row counts are still checked without hashes.
    part = run / "output" / "part-00000.jsonl"
    part.write_bytes(b"".join(part.read_bytes().splitlines(keepends=True)[:10]))
    assert_rejected(run, part, "output", "it holds 10 rows, the manifest says 51")

    del data["output"], data["counts"]  # older still: nothing to hold the log against
    (run / "manifest.json").write_text(json.dumps(data))
    result = moderate("audit", "verify", run)
    assert result.exit_code == 0, result.output
    assert "counts not checkable" in result.stderr and "output parts not checkable" in result.stderr
