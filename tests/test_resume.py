"""Resume: a run that is killed or fails continues from its checkpoint to exactly the uninterrupted result.

The fault-injection test runs real `moderate batch` processes and kills them with SIGKILL at named
points (the MODERATOR_FAULT test hook, see moderator/checkpoint.py); the in-process tests stop a run
with an exception in a model and check what the next run reuses.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import POSTS, read_lines, read_output, tiny_config, write_jsonl, write_parquet

from moderator.checkpoint import CHECKPOINT, Checkpoint
from moderator.cli import cli
from moderator.errors import ModeratorError
from moderator.pipeline import run

VOLATILE = ("run_id", "time", "prev_sha256")  # audit fields that differ between two runs of the same job


def make_inputs(folder: Path) -> list[Path]:
    """A Parquet file and a JSONL file with bad lines: 68 records, several batches and shards each."""
    texts = [f"{POSTS[i % len(POSTS)]} #{i}" for i in range(40)]
    texts[7] = None
    texts[21] = "   "
    a = write_parquet(folder / "a.parquet", {"id": [f"a{i}" for i in range(40)], "text": texts,
                                              "n": list(range(40))})
    rows = [{"id": f"b{i}", "text": f"{POSTS[(i * 5) % len(POSTS)]} ({i})", "n": i} for i in range(26)]
    b = write_jsonl(folder / "b.jsonl", rows, [b"not json\n", b'["an", "array"]\n'])
    return [a, b]


def snapshot(run_dir: Path) -> dict:
    """What must be equal between an uninterrupted and a resumed run."""
    table = read_output(run_dir)
    rows = {r["moderation"]["id"]: r for r in table.to_pylist()}
    assert len(rows) == table.num_rows  # no duplicates
    manifest = json.loads((run_dir / "manifest.json").read_text())
    audit = [{k: v for k, v in line.items() if k not in VOLATILE} for line in read_lines(run_dir / "audit.jsonl")]
    return {
        "rows": rows,
        "order": table.column("moderation").to_pylist(),
        "quarantine": read_lines(run_dir / "quarantine.jsonl"),
        "audit": audit,
        "parts": manifest["output"]["parts"],
        "counts": manifest["counts"],
        "inputs": manifest["inputs"],
        "audit_lines": manifest["audit"]["lines"],
    }


def assert_same_run(resumed: Path, uninterrupted: Path) -> None:
    got, want = snapshot(resumed), snapshot(uninterrupted)
    assert got["rows"].keys() == want["rows"].keys()
    for key in want:
        assert got[key] == want[key], key
    verified = CliRunner().invoke(cli, ["audit", "verify", str(resumed)])
    assert verified.exit_code == 0, verified.output
    assert not (resumed / ".partial").exists()


def moderate_argv(tiny, inputs: list[Path], out: Path, job: Path) -> list[str]:
    return [sys.executable, "-m", "moderator", "batch", *map(str, inputs), "--out", str(out), "--config", str(job),
            "--classifier", str(tiny.classifier), "--rewriter-base", str(tiny.decoder), "--adapter", str(tiny.adapter),
            "--engine", "hf", "--batch-size", "8", "--rewrite-threshold", "0", "--remove-threshold", "1", "-q"]


def moderate(tiny, inputs: list[Path], out: Path, job: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "MODERATOR_FAULT": fault or ""}
    return subprocess.run(moderate_argv(tiny, inputs, out, job), env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_sigkill_at_every_kind_of_point_then_resume_equals_an_uninterrupted_run(tiny, tmp_path):
    inputs = make_inputs(tmp_path / "in")
    job = tmp_path / "job.toml"
    job.write_text('[output]\nrows_per_shard = 5\nformat = "parquet"\n')
    clean = moderate(tiny, inputs, tmp_path / "uninterrupted", job)
    assert clean.returncode == 7, clean.stderr  # 4 of 68 records quarantined: finished, partial

    out = tmp_path / "resumed"
    positions, run_ids = [], set()
    # Each run is killed at a different kind of point, each resuming from the last one's checkpoint.
    # The local executor reads ahead of the models and the writer (queue_depth), so a kill at a read
    # lands before anything new was written; on a CPU the models and the writer take turns in one
    # thread, so a kill at a step or at the writer's points (`shard`, `checkpoint`; a run's first
    # checkpoint is the one it saves on starting) carries the run a known way further, into the
    # second input. Every kill must land before the run finishes.
    for fault in ("read:3", "classify:4", "rewrite:3", "shard:2", "checkpoint:2", "shard:3", "checkpoint:2",
                  "read:1"):
        killed = moderate(tiny, inputs, out, job, fault)
        assert killed.returncode == -signal.SIGKILL, (fault, killed.returncode, killed.stderr)
        assert not (out / "manifest.json").exists()
        checkpoint = Checkpoint.load(out / ".partial")
        positions.append(checkpoint.position)
        run_ids.add(checkpoint.run_id)
    assert positions == sorted(positions) and positions[-1] > positions[0]  # progress was kept, never lost
    assert positions[-1][0] == 1, positions  # the last kills happened in the second input
    finished = moderate(tiny, inputs, out, job)
    assert finished.returncode == 7, finished.stderr
    assert_same_run(out, tmp_path / "uninterrupted")
    manifest = json.loads((out / "manifest.json").read_text())
    assert {manifest["run_id"]} == run_ids and len(manifest["resumed"]) == 8


@pytest.fixture
def corpus(tmp_path):
    return make_inputs(tmp_path / "in")


def small_shards(tiny, **sections):
    return tiny_config(tiny, input={"batch_size": 8}, output={"rows_per_shard": 5, "format": "parquet"},
                       policy={"rewrite_threshold": 0.0, "remove_threshold": 1.0}, **sections)


class Boom(RuntimeError):
    pass


def fail_on_call(monkeypatch, step, nth: int) -> list[int]:
    """Make `step` raise on its `nth` call; returns the row counts of the batches it saw."""
    seen: list[int] = []
    original = type(step).__call__

    def failing(self, batch, **options):  # options: the rewrite step's screen
        seen.append(batch.num_rows)
        if len(seen) == nth:
            raise Boom("model crashed")
        return original(self, batch, **options)

    monkeypatch.setattr(type(step), "__call__", failing)
    return seen


def test_a_failed_run_resumes_from_its_checkpoint_without_redoing_finished_batches(tiny, hf_models, corpus,
                                                                                   tmp_path, monkeypatch, caplog):
    config = small_shards(tiny)
    run(config, list(map(str, corpus)), tmp_path / "uninterrupted", models=hf_models)
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        fail_on_call(patch, hf_models.classifier, 6)
        with pytest.raises(Boom):
            run(config, list(map(str, corpus)), out, models=hf_models)
    checkpoint = Checkpoint.load(out / ".partial")
    # a.parquet's 40 rows hold 38 output rows: 7 parts of 5 are done, up to its row 37 (rows 7 and 21 are
    # quarantined); its last batch (rows 32-39) is processed again on resume, but only rows 37-39 are written.
    assert checkpoint.position == (0, 37) and len(checkpoint.parts) == 7
    assert "Boom" in (out / ".partial" / "error.txt").read_text()
    seen = fail_on_call(monkeypatch, hf_models.classifier, 0)
    with caplog.at_level("INFO", logger="moderator"):
        result = run(config, list(map(str, corpus)), out, models=hf_models)
    assert "resuming run" in caplog.text
    assert seen == [8, 8, 8, 8, 4]  # a.parquet's last batch, then b.jsonl's 28 lines
    assert result.manifest["run_id"] == checkpoint.run_id and len(result.manifest["resumed"]) == 1
    assert_same_run(out, tmp_path / "uninterrupted")


def test_a_checkpoint_of_other_settings_or_inputs_is_discarded(tiny, hf_models, corpus, tmp_path, monkeypatch,
                                                               caplog):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        fail_on_call(patch, hf_models.classifier, 3)
        with pytest.raises(Boom):
            run(small_shards(tiny), list(map(str, corpus)), out, models=hf_models)
    before = Checkpoint.load(out / ".partial")
    assert before.parts  # something to resume
    changed = small_shards(tiny, verify={"batch_size": 7})
    with caplog.at_level("WARNING", logger="moderator"):
        result = run(changed, list(map(str, corpus)), out, models=hf_models)
    assert "not resuming" in caplog.text and "the settings changed" in caplog.text
    assert result.manifest["run_id"] != before.run_id and result.manifest["resumed"] == []
    run(changed, list(map(str, corpus)), tmp_path / "fresh", models=hf_models)
    assert_same_run(out, tmp_path / "fresh")

    # A changed input (same size, new content) is caught by its sha256 once the run read it to the end.
    with monkeypatch.context() as patch:
        fail_on_call(patch, hf_models.classifier, 7)
        with pytest.raises(Boom):
            run(small_shards(tiny), list(map(str, corpus)), out, overwrite=True, models=hf_models)
    assert Checkpoint.load(out / ".partial").inputs_done
    data = corpus[0].read_bytes()
    stat = corpus[0].stat()
    corpus[0].write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    os.utime(corpus[0], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    caplog.clear()
    with caplog.at_level("WARNING", logger="moderator"):
        try:  # the flipped byte may or may not make a.parquet unreadable; either way it is not resumed
            run(small_shards(tiny), list(map(str, corpus)), out, overwrite=True, models=hf_models)
        except ModeratorError:
            pass
    assert "a.parquet changed (its sha256 differs)" in caplog.text


def test_standard_input_never_resumes(tiny, hf_models, tmp_path, caplog):
    data = "".join(json.dumps({"text": t}) + "\n" for t in POSTS * 3).encode()
    out = tmp_path / "run"
    staging = out / ".partial"
    staging.mkdir(parents=True)
    Checkpoint({"format": 1}, "20260101T000000Z-deadbeef", "2026-01-01", {}).save(staging)
    import io

    with caplog.at_level("WARNING", logger="moderator"):
        result = run(small_shards(tiny), ["-"], out, stdin=io.BytesIO(data), models=hf_models)
    assert "standard input, which cannot be read again" in caplog.text
    assert result.manifest["run_id"] != "20260101T000000Z-deadbeef"
    assert result.manifest["counts"]["input_rows"] == 18 and not staging.exists()


def test_parts_appear_whole_and_the_checkpoint_matches_them(tiny, hf_models, corpus, tmp_path, monkeypatch):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        fail_on_call(patch, hf_models.classifier, 4)
        with pytest.raises(Boom):
            run(small_shards(tiny), list(map(str, corpus)), out, models=hf_models)
    staging = out / ".partial"
    checkpoint = json.loads((staging / CHECKPOINT).read_text())
    files = sorted(p.name for p in (staging / "output").iterdir())
    # The finished parts under their final names; the open one only under a temporary name.
    assert [p["file"] for p in checkpoint["parts"]] == [f for f in files if f.startswith("part-")]
    assert all(p["rows"] == 5 for p in checkpoint["parts"])
    assert [f for f in files if not f.startswith("part-")] == [f".part-{len(files) - 1:05d}.parquet.tmp"]
    lines, head = checkpoint["audit"][1], checkpoint["audit"][2]
    audit = (staging / "audit.jsonl").read_bytes()[: checkpoint["audit"][0]].splitlines()
    assert len(audit) == lines == checkpoint["counts"]["input_rows"] == checkpoint["position"][1]
    import hashlib

    assert hashlib.sha256(audit[-1]).hexdigest() == head


def test_a_resumed_run_says_how_many_rows_it_moderated_itself(tiny, corpus, tmp_path):
    """The summary of a resumed run does not claim the rows of the process that was killed, nor their speed."""
    job = tmp_path / "job.toml"
    job.write_text('[output]\nrows_per_shard = 5\nformat = "parquet"\n')
    out = tmp_path / "resumed"
    killed = moderate(tiny, corpus, out, job, "checkpoint:2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    before = Checkpoint.load(out / ".partial").counts["input_rows"]
    assert before > 0
    argv = [a for a in moderate_argv(tiny, corpus, out, job) if a != "-q"]
    finished = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 7, finished.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    total = manifest["counts"]["input_rows"]
    assert manifest["rows_this_process"] == total - before
    assert f"moderated the last {total - before} of {total} posts" in finished.stderr, finished.stderr
    assert f"moderated {total} posts in" not in finished.stderr


def test_resuming_never_reads_an_endless_input_again(tmp_path):
    """A finished input that is a device (a link to /dev/zero) cannot be hashed again to check it: the
    checkpoint is not continued (the run starts over) instead of reading forever."""
    from moderator.checkpoint import identity
    from moderator.config import JobConfig
    from moderator.readers import InputFile

    zero = tmp_path / "zero.jsonl"
    zero.symlink_to("/dev/zero")
    files = [InputFile(str(zero), "zero.jsonl", "jsonl")]
    current = identity(JobConfig(), files)
    checkpoint = Checkpoint(current, "run", "now", {}, inputs_done=[{"sha256": "0" * 64}])
    staging = tmp_path / "staging"
    (staging / "output").mkdir(parents=True)
    for name in ("audit.jsonl", "quarantine.jsonl"):
        (staging / name).write_bytes(b"")
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("hashing /dev/zero never ends"))
    signal.alarm(30)
    try:
        reason = checkpoint.why_not(current, files, staging)
    finally:
        signal.alarm(0)
    assert reason == f"{zero} is not a regular file, so it cannot be read again to check it"
