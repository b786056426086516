"""Resuming a run that was killed: the checkpoint in `DIR/.partial/checkpoint.json`.

A run takes a checkpoint every time an output part is complete (every `rows_per_shard` output
rows): the part is fsynced and renamed into place (`writers.PartWriter`), the audit log and the
quarantine file are fsynced, and then this file is replaced atomically. It records

    position        the next input row to process: input file number and row within that file
    inputs_done     the manifest entries (size, sha256, rows) of the inputs read to the end
    parts           the finished output parts
    audit           bytes, lines and chain head of audit.jsonl at that point
    quarantine      bytes and records of quarantine.jsonl at that point
    counts          the run's counts at that point
    identity        what must not change for the checkpoint to be resumed (below)

Running the same command again finds the checkpoint and continues from it: the audit log and the
quarantine file are cut back to the recorded length, parts written after the checkpoint are
removed, the input is read again from the recorded position (the batch that holds it is read and
processed whole, so every batch sees the same rows as in an uninterrupted run, and the rows before
the position are then dropped) and the audit chain continues from the recorded head. The finished
output equals an uninterrupted run's, and so do its audit lines but for `run_id` and `time`: the run keeps
the interrupted run's `run_id` and `started`, lines written after the resume carry the time they were
written, and the manifest lists when the run was resumed (`resumed`).

The identity: moderator's version, the resolved config (every setting: thresholds, models, batch
sizes, output format...), and each input's path, size and modification time. When the run resumes,
the inputs the interrupted run had read to the end are read once more to compare their sha256, and
the models' content hashes are compared once they are loaded. Any difference and the unfinished
output is discarded (with a log line) and the run starts over. Standard input (`-`) cannot be read
again, so a run that reads it never resumes. The decision is `resume_or_start`, then
`check_models` once the models are loaded.

The fault-injection tests stop a real run at exact places with the test hook of `faults.py`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from moderator import __version__, readers
from moderator.config import JobConfig
from moderator.rundir import AUDIT, OUTPUT, QUARANTINE, RunDir, write_json_atomic
from moderator.files import PRIVATE

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.json"
FORMAT = 1  # the checkpoint file's own format; a checkpoint of another format is not resumed


def identity(config: JobConfig, files: list[readers.InputFile], force: bool = False) -> dict[str, Any] | None:
    """What a run must share with an interrupted one to continue it; None when it cannot resume."""
    if any(f.is_stdin for f in files):
        return None
    inputs = []
    for item in files:
        stat = os.stat(item.path)
        inputs.append({"path": item.abspath, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    # [report] settings only shape reports made later: changing them does not make a run different.
    settings = json.dumps({k: v for k, v in config.to_dict().items() if k != "report"}, sort_keys=True,
                          default=str).encode()
    return {"format": FORMAT, "moderator_version": __version__,
            "config_sha256": hashlib.sha256(settings).hexdigest(), "force": force, "inputs": inputs}


@dataclass
class Checkpoint:
    identity: dict[str, Any]
    run_id: str
    started: str
    models: dict[str, str | None]  # content hash per model
    position: tuple[int, int] = (0, 0)  # (input file number, row within it): the next row to process
    inputs_done: list[dict[str, Any]] = field(default_factory=list)
    parts: list[dict[str, Any]] = field(default_factory=list)
    audit: tuple[int, int, str] = (0, 0, "")  # bytes, lines, chain head
    quarantine: tuple[int, int] = (0, 0)  # bytes, records
    counts: dict[str, Any] = field(default_factory=dict)
    resumed: list[str] = field(default_factory=list)  # when the run was resumed, oldest first

    def save(self, staging: Path, file_mode: int = PRIVATE) -> None:
        write_json_atomic(staging / CHECKPOINT, asdict(self), file_mode)

    @classmethod
    def load(cls, staging: Path) -> Checkpoint | None:
        """The checkpoint in a staging folder, or None when there is none or it cannot be used."""
        try:
            data = json.loads((staging / CHECKPOINT).read_text())
            checkpoint = cls(**data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.warning("%s: unreadable checkpoint (%s); starting over", staging / CHECKPOINT, exc)
            return None
        checkpoint.position = tuple(checkpoint.position)  # type: ignore[assignment]
        checkpoint.audit = tuple(checkpoint.audit)  # type: ignore[assignment]
        checkpoint.quarantine = tuple(checkpoint.quarantine)  # type: ignore[assignment]
        return checkpoint

    def why_not(self, current: dict[str, Any] | None, files: list[readers.InputFile], staging: Path) -> str | None:
        """Why this checkpoint cannot be continued by a run with identity `current`, or None when it can.

        Reads the inputs that the interrupted run had finished once more, to compare their sha256.
        """
        if current is None:
            return "this run reads standard input, which cannot be read again"
        if self.identity.get("format") != FORMAT or self.identity.get("moderator_version") != __version__:
            return "it was written by another version of moderator"
        if (self.identity.get("config_sha256"), self.identity.get("force")) != (current["config_sha256"], current["force"]):
            return "the settings changed"
        if self.identity.get("inputs") != current["inputs"]:
            return "the inputs changed (paths, sizes or modification times)"
        for name, size in ((AUDIT, self.audit[0]), (QUARANTINE, self.quarantine[0])):
            if not (staging / name).is_file() or (staging / name).stat().st_size < size:
                return f"its {name} is missing or shorter than recorded"
        if any(not (staging / OUTPUT / p["file"]).is_file() for p in self.parts):
            return "an output part it recorded is missing"
        for item, done in zip(files, self.inputs_done):
            if not os.path.isfile(item.path):  # a device or pipe (a link to /dev/zero) may never end
                return f"{item.path} is not a regular file, so it cannot be read again to check it"
            if readers.content_sha256(item) != done.get("sha256"):
                return f"{item.path} changed (its sha256 differs)"
        return None


def resume_or_start(rundir: RunDir, current: dict[str, Any] | None, files: list[readers.InputFile],
                    started: str) -> tuple[Checkpoint, bool]:
    """The run's checkpoint, and whether the run continues it: the unfinished run's in `rundir` when
    it can be continued by a run of identity `current`, else a new run's (a new run id)."""
    previous = _resumable(rundir, current, files)
    if previous is None:
        run_id = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]
        return Checkpoint(current or {}, run_id, started, {}), False
    previous.resumed.append(started)
    log.info("resuming run %s from its checkpoint: %d rows done, %d output parts", previous.run_id,
             previous.counts.get("input_rows", 0), len(previous.parts))
    return previous, True


def _resumable(rundir: RunDir, current: dict[str, Any] | None, files: list[readers.InputFile]) -> Checkpoint | None:
    """The checkpoint of an unfinished run of the same job in `rundir`, if it can be continued."""
    previous = Checkpoint.load(rundir.staging) if rundir.staging.is_dir() else None
    if previous is None:
        return None
    reason = previous.why_not(current, files, rundir.staging)
    if reason is not None:
        log.warning("not resuming the unfinished run %s in %s: %s; starting over", previous.run_id, rundir.path, reason)
        return None
    return previous


def check_models(checkpoint: Checkpoint, resume: bool, model_ids: dict[str, str | None],
                 rundir: RunDir) -> tuple[Checkpoint, bool]:
    """The checkpoint once the models are loaded: a resumed run whose models differ from the
    interrupted run's starts over (same run id, a fresh staging folder); either way the checkpoint
    records this run's `model_ids`."""
    if resume and checkpoint.models != model_ids:
        log.warning("not resuming the unfinished run %s: its models differ from this run's; starting over",
                    checkpoint.run_id)
        rundir.start(overwrite=True)
        checkpoint = Checkpoint(checkpoint.identity, checkpoint.run_id, checkpoint.resumed[-1], model_ids)
        resume = False
    checkpoint.models = model_ids
    return checkpoint, resume
