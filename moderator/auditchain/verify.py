"""`moderate audit verify`: a finished run's log, counts and output parts, and a chain of runs.

`verify_run` checks one run: its log's chain (`links.check_log`), then the manifest's counts
against the log and its output parts against the manifest (`manifest_checks`). `verify_runs` also
checks that each run continues the chain of the one before; `moderate report` runs it on each chain.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from moderator.auditchain.chain import GENESIS, is_sha256
from moderator.auditchain.links import Problem, check_log
from moderator.auditchain.manifest_checks import check_counts, check_outputs
from moderator.errors import InputError
from moderator.rundir import AUDIT, MANIFEST, RunDir


@dataclass
class Verdict:
    run_dir: str
    run_id: str | None
    lines: int  # lines read from audit.jsonl
    head_sha256: str  # sha256 of its last line (the chain start when it is empty)
    chain_from: str
    manifest_lines: int
    manifest_head_sha256: str
    previous_run_id: str | None
    problem: Problem | None = None  # the first one: a broken link to the run before comes first
    file: str = AUDIT
    notes: list[str] = field(default_factory=list)  # what could not be checked (older manifests), and why

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def where(self) -> str:
        """The file the problem is about (the audit log unless the problem names another)."""
        return self.problem.file if self.problem is not None and self.problem.file else self.file

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _manifest_audit(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    manifest = RunDir(run_dir).finished()
    if manifest is None:
        if not run_dir.is_dir():
            raise InputError(f"{run_dir}: no such folder")
        raise InputError(f"{run_dir}: no finished run here ({MANIFEST} missing or incomplete)")
    audit = manifest.get("audit")
    if audit is None:
        raise InputError(f"{run_dir / MANIFEST}: records no audit chain (written by an older moderator); "
                         "nothing to verify")
    if not (isinstance(audit, dict) and is_sha256(audit.get("chain_from")) and is_sha256(audit.get("head_sha256"))
            and type(audit.get("lines")) is int and audit["lines"] >= 0):
        raise InputError(f"{run_dir / MANIFEST}: its audit section is malformed (needs chain_from, head_sha256 "
                         "and lines)")
    return manifest, audit


def verify_run(run_dir: Path, outputs: bool = True) -> Verdict:
    """Check one run's audit log against itself and its manifest, the manifest's counts against the
    log, and (with `outputs`) its output parts against the manifest. The first problem is kept:
    a broken chain, else forged counts, else a changed output part."""
    manifest, audit = _manifest_audit(run_dir)
    path = run_dir / AUDIT
    if not path.is_file():
        raise InputError(f"{path}: missing")
    tally: Counter = Counter()
    read, last, problem = check_log(path, audit["chain_from"], audit["lines"], audit["head_sha256"], tally)
    previous = audit.get("previous_run") if isinstance(audit.get("previous_run"), dict) else {}
    verdict = Verdict(str(run_dir), manifest.get("run_id"), read, last, audit["chain_from"], audit["lines"],
                      audit["head_sha256"], previous.get("run_id"), problem, str(path))
    if problem is None:  # a changed log explains any count: counts are only held against an intact one
        verdict.problem = check_counts(run_dir, manifest, tally, read, verdict.notes)
    if verdict.problem is None and outputs:
        verdict.problem = check_outputs(run_dir, manifest, verdict.notes)
    return verdict


def _unreadable(run_dir: Path, error: InputError) -> Verdict:
    """A run that cannot be checked at all, as a failed verdict (for `verify_runs(keep_going=True)`)."""
    return Verdict(str(run_dir), None, 0, "", "", 0, "", None, Problem(0, "unreadable", str(error)),
                   str(run_dir / AUDIT))


def verify_runs(run_dirs: list[Path], keep_going: bool = False) -> list[Verdict]:
    """Check each run (`verify_run`), and that each run after the first continues the chain of the one
    before: the checks of `moderate audit verify`, which `moderate report` runs on each chain too.

    A run that cannot be checked (no manifest, no log) raises `InputError`, or with `keep_going`
    becomes a failed verdict of kind `unreadable`, so that a report can still name it."""
    verdicts = []
    for d in run_dirs:
        try:
            verdicts.append(verify_run(Path(d)))
        except InputError as exc:
            if not keep_going:
                raise
            verdicts.append(_unreadable(Path(d), exc))
    for before, after in zip(verdicts, verdicts[1:]):
        if not (before.manifest_head_sha256 and after.chain_from):
            continue  # an unreadable run: nothing to link
        if after.chain_from != before.manifest_head_sha256:
            linked = "starts a new chain" if after.chain_from == GENESIS else (
                f"continues run {after.previous_run_id}" if after.previous_run_id else "continues another chain")
            after.problem = Problem(1, "chain_start", f"this run does not continue the one named before it "
                                                      f"({before.run_dir}, run {before.run_id}): it {linked} at "
                                                      f"{after.chain_from[:12]}..., that run's log ends at "
                                                      f"{before.manifest_head_sha256[:12]}...")
    return verdicts
