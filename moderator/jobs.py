"""Jobs: a TOML file that says what to moderate every night, run by `moderate run JOB.toml --date D`.

    [job]
    inputs = ["/srv/dumps/{date}/*.jsonl.gz"]   # {date} becomes YYYY-MM-DD
    output_root = "/srv/moderation/nightly"     # the run folder is OUTPUT_ROOT/YYYY-MM-DD
    # state = "..."                             # default OUTPUT_ROOT/state.sqlite; "off" disables
    # chain_audit = true                        # continue the previous date's audit chain

    [policy]                                    # any section of `moderate config`
    rewrite_threshold = 0.5

A job run is a `moderate batch` run with three things filled in: the run folder of the date, the
state store of the job (incremental runs, state.py), and the audit chain start, taken from the
latest earlier date's finished run under OUTPUT_ROOT, so that the nights form one chain that
`moderate audit verify OUTPUT_ROOT/*` checks end to end. Re-running a date resumes it after a crash
(checkpoint.py) or leaves it untouched when it is finished.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path

from moderator.config import JobConfig, JobSection, load_job
from moderator.errors import ConfigError
from moderator.rundir import RunDir

DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class JobRun:
    """One date of a job, resolved: what `pipeline.run` is called with."""

    config: JobConfig
    inputs: list[str]
    out: Path
    previous: Path | None  # the earlier run whose audit chain this one continues


def parse_date(value: str | None) -> str:
    """YYYY-MM-DD, checked; today (local time) when not given."""
    if value is None:
        return dt.date.today().isoformat()
    try:
        if not DATE.fullmatch(value):
            raise ValueError
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ConfigError(f"--date {value!r} is not a date written YYYY-MM-DD (e.g. 2026-11-25)") from None


def previous_run(root: Path, date: str) -> Path | None:
    """The latest finished run under `root` for a date before `date`."""
    if not root.is_dir():
        return None
    earlier = sorted((p for p in root.iterdir() if p.is_dir() and DATE.fullmatch(p.name) and p.name < date),
                     key=lambda p: p.name, reverse=True)
    return next((p for p in earlier if RunDir(p).finished() is not None), None)


def plan(job_file: Path, date: str | None) -> JobRun:
    job, config = load_job(job_file)
    day = parse_date(date)
    base = job_file.resolve().parent

    def resolve(path: str) -> Path:
        return Path(os.path.normpath(base / Path(path).expanduser()))  # an absolute path replaces base

    root = resolve(job.output_root)
    inputs = [str(resolve(spec.replace("{date}", day))) for spec in job.inputs]
    previous = previous_run(root, day) if job.chain_audit and not config.output.audit_chain_from else None
    layer: dict[str, dict] = {}
    if previous is not None:
        layer["output"] = {"audit_chain_from": str(previous)}
    if job.state != "off":
        layer["state"] = {"path": str(resolve(job.state) if job.state else root / "state.sqlite")}
    return JobRun(config.merged(layer, source=str(job_file)), inputs, root / day, previous)


__all__ = ["JobRun", "JobSection", "parse_date", "plan", "previous_run"]
