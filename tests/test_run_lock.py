"""One writer per run folder: two real `moderate batch` processes into the same --out.

The first reads standard input that the test keeps open, so it is live (holding the folder) for as
long as the test wants; the second must stop with one line naming the holder, touch nothing, and
the first must then finish as if alone.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import POSTS, read_lines

from moderator.rundir import LOCK, RunDir


def argv(tiny, *args: str) -> list[str]:
    return [sys.executable, "-m", "moderator", "batch", *args, "--classifier", str(tiny.classifier), "--no-rewrite",
            "--batch-size", "2", "-q"]


def wait_for_holder(out: Path, process: subprocess.Popen, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        try:
            return json.loads((out / LOCK).read_text())
        except (OSError, ValueError):
            time.sleep(0.2)
    raise AssertionError("the first run never took the folder's lock")


def test_a_second_run_into_a_live_run_folder_is_refused_and_the_first_finishes(tiny, tmp_path):
    out = tmp_path / "night"
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"id": f"o{i}", "text": t}) + "\n" for i, t in enumerate(POSTS)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = subprocess.Popen(argv(tiny, "-", "--out", str(out)), stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdout=subprocess.PIPE, env=env)
    try:
        first.stdin.write(b"".join(json.dumps({"id": f"s{i}", "text": t}).encode() + b"\n"
                                   for i, t in enumerate(POSTS[:3])))
        first.stdin.flush()
        holder = wait_for_holder(out, first)
        assert holder["pid"] == first.pid

        second = subprocess.run(argv(tiny, str(other), "--out", str(out), "--overwrite"), capture_output=True,
                                text=True, env=env, timeout=300)
        assert second.returncode == 4, second.stderr
        assert "Traceback" not in second.stderr
        [line] = [x for x in second.stderr.splitlines() if x.startswith("Error:")]
        assert str(out) in line and "another moderator run is writing here" in line and f"pid {first.pid}" in line

        first.stdin.write(b"".join(json.dumps({"id": f"s{i}", "text": t}).encode() + b"\n"
                                   for i, t in enumerate(POSTS[3:], start=3)))
        first.stdin.close()
        assert first.wait(timeout=300) == 0, first.stderr.read()
    finally:
        if first.poll() is None:
            first.kill()
    audit = read_lines(out / "audit.jsonl")
    assert [line["id"] for line in audit] == [f"s{i}" for i in range(len(POSTS))]  # the second wrote nothing
    assert sorted(p.name for p in out.iterdir()) == ["audit.jsonl", "manifest.json", "output", "quarantine.jsonl"]


def test_the_lock_is_released_with_the_process_and_a_failed_run_leaves_no_folder(tiny, tmp_path):
    out = tmp_path / "never"
    missing = subprocess.run(argv(tiny, str(tmp_path / "missing.jsonl"), "--out", str(out)), capture_output=True,
                             text=True, timeout=300)
    assert missing.returncode == 3, missing.stderr
    assert not out.exists()  # the folder made for the lock went with the failed run

    held = tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from moderator.rundir import RunDir\n"
        f"with RunDir(Path({str(held)!r})).locked():\n"
        "    print('locked', flush=True); time.sleep(600)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        holder.kill()  # SIGKILL: no clean-up ran, the OS dropped the lock
        holder.wait(timeout=30)
        with RunDir(held).locked():
            assert (held / LOCK).exists()
        assert not (held / LOCK).exists()
    finally:
        if holder.poll() is None:
            holder.kill()
