"""The audit log's hash chain: how lines are linked when a run writes them, and how a log is checked.

Every line of `audit.jsonl` is one compact JSON object (UTF-8, no spaces, fields in a fixed order)
that starts with two fields:

    "seq": N              the line's number in the file, from 1
    "prev_sha256": HEX    sha256 of the previous line's bytes, without its newline

Line 1's `prev_sha256` is the chain start: GENESIS (64 zeros) for a run that starts a new chain, or
the head of the previous run's log when the run continues it (`--audit-chain-from`). The manifest's
`audit` section records the chain start (`chain_from`), the line count (`lines`) and the head
(`head_sha256`, the sha256 of the last line). Editing, deleting, inserting or reordering a line, or
cutting the file short, therefore breaks a link. Anyone can re-check a log without moderator:

    audit = json.load(open("RUN/manifest.json"))["audit"]
    prev, n = audit["chain_from"], 0
    for n, line in enumerate(open("RUN/audit.jsonl", "rb"), 1):
        line = line.removesuffix(b"\\n")
        assert json.loads(line)["prev_sha256"] == prev, f"broken at line {n}"
        prev = hashlib.sha256(line).hexdigest()
    assert (prev, n) == (audit["head_sha256"], audit["lines"])

`verify_run` does the same in one streaming pass (constant memory, whatever the log's size) and
says which line was changed first and how. `seq` is there for that diagnosis: a line that holds the
wrong number tells a deleted line from an edited one without keeping the log in memory.

A chain proves that a log changed after it was written, not who wrote it: whoever can rewrite both
a log and its manifest can rebuild the chain. Continuing each night's chain from the previous run,
and keeping the heads somewhere else too (the scheduler's log), closes that gap: a rebuilt log no
longer ends at the head the next run started from.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from moderator.errors import ConfigError, InputError
from moderator.rundir import AUDIT, MANIFEST, RunDir
from moderator.writers import PRIVATE, JsonLinesWriter, json_default

GENESIS = "0" * 64
HASH_DEFINITION = (
    "sha256 (hex) of each line's bytes without its newline; line N's prev_sha256 is line N-1's sha256, "
    "line 1's is chain_from; head_sha256 is the last line's sha256 (chain_from when there are no lines)"
)
_HEX = frozenset("0123456789abcdef")


def line_sha256(line: bytes) -> str:
    """The hash of one audit line: sha256 of its exact bytes, without the trailing newline."""
    return hashlib.sha256(line).hexdigest()


def encode_line(obj: dict[str, Any]) -> bytes:
    """One audit line's bytes, without the newline. The same object always gives the same bytes.

    UTF-8 as is, except a line whose strings hold lone surrogates (only JSONL input escaped as
    "\\ud800" can produce them), which is written with \\u escapes instead, so that every line
    stays valid UTF-8.
    """
    try:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=json_default).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":"), default=json_default).encode("ascii")


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


# ---------------------------------------------------------------------------------------------------
# Writing


@dataclass(frozen=True)
class ChainStart:
    """Where a run's chain starts: GENESIS, or the head of the previous run of the same job."""

    sha256: str = GENESIS
    previous_run: dict[str, Any] | None = None  # run_id, path and head_sha256 of that run


def chain_start(previous: str | None, out: Path) -> ChainStart:
    """The chain start for a run into `out` that continues the run in folder `previous` (if any).

    Only the previous run's manifest is read; `moderate audit verify PREVIOUS RUN` checks both logs
    and the link between them.
    """
    if not previous:
        return ChainStart()
    where = f"[output] audit_chain_from / --audit-chain-from {previous}"
    path = Path(previous).expanduser()
    if path.resolve() == Path(out).resolve():
        raise ConfigError(f"{where}: a run cannot continue its own chain; name the previous run's folder")
    manifest = RunDir(path).finished()
    if manifest is None:
        raise ConfigError(f"{where}: no finished run there ({MANIFEST} missing or incomplete)")
    head = (manifest.get("audit") or {}).get("head_sha256")
    if not _is_sha256(head):
        raise ConfigError(f"{where}: that run's manifest records no audit chain head (written by an older "
                          "moderator?); leave audit_chain_from unset to start a new chain")
    return ChainStart(head, {"run_id": manifest.get("run_id"), "path": str(path.resolve()), "head_sha256": head})


class ChainWriter(JsonLinesWriter):
    """Writes audit lines, each carrying its number and the sha256 of the line before it."""

    def __init__(self, path: Path, start: ChainStart | None = None, file_mode: int = PRIVATE,
                 resume_at: tuple[int, int, str] | None = None) -> None:
        """`resume_at` = (bytes, lines, head) from a checkpoint: continue the log after its first
        `bytes` bytes, numbering and linking the next line to the checkpoint's last one."""
        super().__init__(path, file_mode, None if resume_at is None else resume_at[:2])
        self.start = start or ChainStart()
        self.head = self.start.sha256 if resume_at is None else resume_at[2]

    def write(self, objects: Iterable[dict[str, Any]]) -> None:
        chunks = []
        for obj in objects:
            line = encode_line({"seq": self.rows + 1, "prev_sha256": self.head, **obj})
            self.head = line_sha256(line)
            self.rows += 1
            chunks.append(line + b"\n")
        self._write_bytes(b"".join(chunks))

    def sync(self) -> tuple[int, int, str]:  # type: ignore[override]
        """Make what was written durable: (bytes, lines, head) for a checkpoint."""
        return (*super().sync(), self.head)

    def summary(self) -> dict[str, Any]:
        """The manifest's `audit` section: what `moderate audit verify` checks the log against."""
        return {
            "file": self.path.name,
            "lines": self.rows,
            "head_sha256": self.head,
            "chain_from": self.start.sha256,
            "previous_run": self.start.previous_run,
            "hash": HASH_DEFINITION,
        }


# ---------------------------------------------------------------------------------------------------
# Verifying


@dataclass(frozen=True)
class Link:
    """What verification keeps of one line: where it is, its own hash, and its two chain fields.

    The manifest stands in for the line after the last one (`end`): its `prev` is the recorded
    head and its `seq` the recorded line count + 1, so a log cut short or a changed head breaks
    a link like any other.
    """

    position: int
    sha256: str | None
    seq: int | None
    prev: str | None
    invalid: str | None = None  # why the line is not an audit line, if it is not
    cut: bool = False  # the file's last line, without its newline
    end: bool = False


@dataclass(frozen=True)
class Problem:
    line: int  # 1-based line of audit.jsonl where the log first differs from what was written
    kind: str  # edited, deleted, inserted, reordered, truncated, chain_start, manifest
    detail: str


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

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _parse(position: int, raw: bytes) -> Link:
    cut = not raw.endswith(b"\n")
    line = raw if cut else raw[:-1]
    digest = line_sha256(line)
    if not line.strip():
        return Link(position, digest, None, None, "an empty line", cut)
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):  # also bytes that are not UTF-8, and absurdly deep nesting
        return Link(position, digest, None, None, "not valid JSON", cut)
    if not isinstance(obj, dict):
        return Link(position, digest, None, None, "not a JSON object", cut)
    seq, prev = obj.get("seq"), obj.get("prev_sha256")
    if type(seq) is not int or not isinstance(prev, str):
        return Link(position, digest, None, None, "no seq or prev_sha256 field", cut)
    return Link(position, digest, seq, prev, None, cut)


def _links(path: Path, lines: int, head: str) -> Iterator[Link]:
    """Every line of the log as a Link, then the manifest's stand-in for the line after the last."""
    position = 0
    try:
        with open(path, "rb") as handle:
            for position, raw in enumerate(handle, 1):
                yield _parse(position, raw)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    yield Link(position + 1, None, lines + 1, head, end=True)


def _broken(link: Link, before: str) -> bool:
    return link.invalid is not None or link.seq != link.position or link.prev != before


def diagnose(near: dict[int, Link], k: int, chain_from: str) -> Problem:
    """The most likely change, from the first broken link (at line `k`) and its neighbours.

    `near` holds the links of lines k-3 .. k+2 that exist. The patterns, tried in this order:
    lines k and k+1 swapped; line k inserted (line k+1 links to line k-1); line k-1 inserted with a
    forged link (line k repeats its number and links to line k-2); line k not an audit line; line
    k-1 edited (line k's number is right, its link is not); line k's number edited (its link is
    right); lines deleted (line k holds a later number); a line moved here (an earlier number).
    """
    def sha(i: int) -> str | None:
        return chain_from if i == 0 else (near[i].sha256 if i in near else None)

    cur, nxt, after = near[k], near.get(k + 1), near.get(k + 2)
    if cur.end:
        return _diagnose_end(cur, k, sha(k - 1))
    if (nxt is not None and nxt.sha256 is not None and cur.seq == k + 1 and nxt.seq == k
            and nxt.prev == sha(k - 1) and cur.prev == nxt.sha256 and (after is None or after.prev == cur.sha256)):
        return Problem(k, "reordered", f"lines {k} and {k + 1} are swapped")
    if nxt is not None and nxt.prev == sha(k - 1):
        return Problem(k, "inserted", f"line {k + 1} links straight to line {k - 1}")
    if cur.invalid is None and k >= 2 and cur.seq == k - 1 and cur.prev == sha(k - 2):
        return Problem(k - 1, "inserted", f"line {k} repeats its seq and links to line {k - 2}: line {k - 1} "
                                          "was added with a forged link")
    if cur.invalid is not None:
        if cur.cut:
            return Problem(k, "truncated", f"{cur.invalid} and no newline at the end: the file was cut here")
        return Problem(k, "edited", cur.invalid)
    if cur.seq == k:
        if nxt is not None and nxt.prev != cur.sha256:  # its own hash changed too: one edit explains both
            return Problem(k, "edited", f"neither its prev_sha256 nor its sha256 (in line {k + 1}) match")
        if k == 1:
            return Problem(1, "chain_start", "its prev_sha256 is not the manifest's chain_from: chain_from was "
                                             "changed, or the log belongs to another chain")
        return Problem(k - 1, "edited", f"its sha256 no longer matches the prev_sha256 of line {k}")
    if cur.prev == sha(k - 1):
        return Problem(k, "edited", f"it links correctly, but its seq was changed to {cur.seq}")
    if cur.seq is not None and cur.seq > k:
        return Problem(k, "deleted", f"line {k} holds what was line {cur.seq}: "
                                     f"{'1 line' if cur.seq == k + 1 else f'{cur.seq - k} lines'} missing")
    return Problem(k, "reordered", f"line {k} holds what was line {cur.seq}")


def _diagnose_end(end: Link, k: int, last_sha: str | None) -> Problem:
    """Every line links to the one before it; the log disagrees with the manifest at its end."""
    lines, recorded = end.seq - 1, k - 1  # what the manifest says, what the file has
    if lines != recorded and end.prev == last_sha:
        return Problem(min(lines, recorded) + 1, "manifest", f"the manifest says {lines} lines, the log has "
                                                             f"{recorded} and ends at its head: the count was changed")
    if lines > recorded:
        return Problem(k, "truncated", f"the log ends after line {recorded}; the manifest says {lines} lines")
    if lines < recorded:
        return Problem(lines + 1, "inserted", f"the log has {recorded} lines; the manifest says {lines}: lines "
                                              f"were appended after line {lines}")
    return Problem(max(recorded, 1), "edited", "the last line no longer matches the manifest's head_sha256: "
                                               "it was edited, or head_sha256 was changed")


def check_log(path: Path, chain_from: str, lines: int, head: str) -> tuple[int, str, Problem | None]:
    """(lines read, sha256 of the last line, the first problem or None), in one streaming pass.

    Only the last three links are kept; at the first broken one, two more are read ahead for the
    diagnosis, and the rest of the file is only counted and hashed.
    """
    recent: deque[Link] = deque(maxlen=3)
    links = _links(path, lines, head)
    problem = None
    for link in links:
        if _broken(link, recent[-1].sha256 if recent else chain_from):
            ahead = list(itertools.islice(links, 2))
            problem = diagnose({x.position: x for x in (*recent, link, *ahead)}, link.position, chain_from)
            last = _last_line(itertools.chain(recent, [link], ahead, links))
            if problem.kind == "deleted" and last is not None and last.position >= lines:
                # Nothing is missing after all: the lines that seemed deleted come later in the file.
                problem = Problem(problem.line, "reordered", f"line {link.position} holds what was line {link.seq}, "
                                                             "and no line is missing: lines were moved")
            break
        recent.append(link)
    else:
        last = _last_line(recent)
    return (last.position, last.sha256 or chain_from, problem) if last else (0, chain_from, problem)


def _last_line(links: Iterable[Link]) -> Link | None:
    last = None
    for link in links:
        if not link.end:
            last = link
    return last


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
    if not (isinstance(audit, dict) and _is_sha256(audit.get("chain_from")) and _is_sha256(audit.get("head_sha256"))
            and type(audit.get("lines")) is int and audit["lines"] >= 0):
        raise InputError(f"{run_dir / MANIFEST}: its audit section is malformed (needs chain_from, head_sha256 "
                         "and lines)")
    return manifest, audit


def verify_run(run_dir: Path) -> Verdict:
    """Check one run's audit log against itself and its manifest."""
    manifest, audit = _manifest_audit(run_dir)
    path = run_dir / AUDIT
    if not path.is_file():
        raise InputError(f"{path}: missing")
    read, last, problem = check_log(path, audit["chain_from"], audit["lines"], audit["head_sha256"])
    previous = audit.get("previous_run") if isinstance(audit.get("previous_run"), dict) else {}
    return Verdict(str(run_dir), manifest.get("run_id"), read, last, audit["chain_from"], audit["lines"],
                   audit["head_sha256"], previous.get("run_id"), problem, str(path))


def verify_runs(run_dirs: list[Path]) -> list[Verdict]:
    """Check each run's log, and that each run after the first continues the chain of the one before."""
    verdicts = [verify_run(Path(d)) for d in run_dirs]
    for before, after in zip(verdicts, verdicts[1:]):
        if after.chain_from != before.manifest_head_sha256:
            linked = "starts a new chain" if after.chain_from == GENESIS else (
                f"continues run {after.previous_run_id}" if after.previous_run_id else "continues another chain")
            after.problem = Problem(1, "chain_start", f"this run does not continue the one named before it "
                                                      f"({before.run_dir}, run {before.run_id}): it {linked} at "
                                                      f"{after.chain_from[:12]}..., that run's log ends at "
                                                      f"{before.manifest_head_sha256[:12]}...")
    return verdicts
