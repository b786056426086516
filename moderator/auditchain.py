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

The same pass counts the log's lines per action, reason and quarantine reason, and `verify_run`
holds the manifest's `counts` against them (a forged count is a `counts` problem), then re-hashes
and re-counts every output part against the manifest's `output` section (`parts` rows and
`sha256` per part; a part cut, edited, removed or added is an `output` problem). A manifest written
before parts were hashed is checked as far as it goes, with a note saying what was not checkable.
`verify_runs` is the one check behind both `moderate audit verify` and `moderate report`.

A chain proves that a log changed after it was written, not who wrote it: whoever can rewrite both
a log and its manifest can rebuild the chain. Continuing each night's chain from the previous run,
and keeping the heads somewhere else too (the scheduler's log), closes that gap: a rebuilt log no
longer ends at the head the next run started from.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from moderator.errors import ConfigError, InputError
from moderator.records import Stage
from moderator.rundir import AUDIT, MANIFEST, OUTPUT, RunDir
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
    decision: tuple[Any, Any, bool] | None = None  # (action, reason, carried over): what the counts check tallies


@dataclass(frozen=True)
class Problem:
    line: int  # 1-based line of audit.jsonl where the log first differs from what was written; 0: not a line
    kind: str  # edited, deleted, inserted, reordered, truncated, chain_start, manifest; counts, output; unreadable
    detail: str
    file: str | None = None  # the file it is about, when not the audit log (manifest.json, an output part)

    def describe(self) -> str:
        """One line: `line N: kind: detail`, or `kind: detail` for a problem that is not on a line."""
        return f"line {self.line}: {self.kind}: {self.detail}" if self.line else f"{self.kind}: {self.detail}"


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
    decision = (obj.get("action"), obj.get("reason"), obj.get("stage") == Stage.CARRIED_OVER)
    return Link(position, digest, seq, prev, None, cut, decision=decision)


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


def check_log(path: Path, chain_from: str, lines: int, head: str,
              tally: Counter | None = None) -> tuple[int, str, Problem | None]:
    """(lines read, sha256 of the last line, the first problem or None), in one streaming pass.

    Only the last three links are kept; at the first broken one, two more are read ahead for the
    diagnosis, and the rest of the file is only counted and hashed. `tally` (if given) counts the
    (action, reason, carried over) of every line up to the first broken one.
    """
    recent: deque[Link] = deque(maxlen=3)
    links = _links(path, lines, head)
    problem = None
    for link in links:
        if tally is not None and link.decision is not None:
            tally[link.decision] += 1
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
        verdict.problem = _check_counts(run_dir, manifest, tally, read, verdict.notes)
    if verdict.problem is None and outputs:
        verdict.problem = _check_outputs(run_dir, manifest, verdict.notes)
    return verdict


def _key(value: Any) -> str:
    return "null" if value is None else str(value)  # how json.dump writes a dict key


def _check_counts(run_dir: Path, manifest: dict[str, Any], tally: Counter, lines: int,
                  notes: list[str]) -> Problem | None:
    """The manifest's `counts` against what the audit log holds (one line per input record)."""
    counts = manifest.get("counts")
    if not isinstance(counts, dict):
        notes.append("counts not checkable: the manifest records none")
        return None
    actions: Counter = Counter()
    reasons: Counter = Counter()
    quarantine: Counter = Counter()
    carried = 0
    for (action, reason, carried_over), n in tally.items():
        if action == "quarantine":
            quarantine[_key(reason)] += n
        else:
            actions[_key(action)] += n
            reasons[_key(reason)] += n
            carried += n if carried_over else 0
    quarantined = sum(quarantine.values())
    found: dict[str, Any] = {"input_rows": lines, "output_rows": lines - quarantined,
                             "quarantined_rows": quarantined, "carried_over": carried}
    differ = [f"{name} {counts[name]!r} (audit log: {value})" for name, value in found.items()
              if name in counts and counts[name] != value]
    for name, tallied in (("actions", actions), ("reasons", reasons), ("quarantine_reasons", quarantine)):
        recorded = counts.get(name)
        if name not in counts:
            continue
        if not isinstance(recorded, dict):
            differ.append(f"{name} is not a table")
            continue
        for key in sorted(set(recorded) | set(tallied)):
            if (recorded.get(key) or 0) != tallied.get(key, 0):
                differ.append(f"{name}.{key} {recorded.get(key, 0)!r} (audit log: {tallied.get(key, 0)})")
    if not differ:
        return None
    more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
    return Problem(0, "counts", f"the manifest's counts disagree with the audit log: {', '.join(differ[:3])}{more}",
                   str(run_dir / MANIFEST))


def _read_part(path: Path) -> tuple[str, int | None]:
    """(sha256, rows) of one output part, in one read: a JSONL part's rows are its lines; a Parquet
    part's come from its footer (None when it is no longer a readable Parquet file)."""
    digest, lines, tail = hashlib.sha256(), 0, b"\n"
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
                lines += chunk.count(b"\n")
                tail = chunk[-1:]
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if path.suffix != ".parquet":
        return digest.hexdigest(), lines + (tail != b"\n")
    import pyarrow.parquet as pq

    try:
        return digest.hexdigest(), pq.ParquetFile(path).metadata.num_rows
    except Exception:  # noqa: BLE001  (pyarrow's errors for a file that is not Parquet any more)
        return digest.hexdigest(), None


def _check_outputs(run_dir: Path, manifest: dict[str, Any], notes: list[str]) -> Problem | None:
    """Every output part the manifest lists is there, with its rows and (newer manifests) its sha256;
    no other file is in the output folder; the parts' rows add up to `counts.output_rows`."""
    output = manifest.get("output")
    parts = output.get("parts") if isinstance(output, dict) else None
    if not isinstance(parts, list):
        notes.append("output parts not checkable: the manifest lists none")
        return None
    hashes = output.get("sha256")
    if not isinstance(hashes, dict):
        notes.append("output parts not checkable for edits: the manifest records no sha256 per part (written by "
                     "an older moderator); only their presence and row counts were checked")
        hashes = None
    folder = run_dir / OUTPUT
    listed: set[str] = set()
    total = 0
    for part in parts:
        name = part.get("file") if isinstance(part, dict) else None
        if not isinstance(name, str) or not name or Path(name).name != name or name.startswith("."):
            return Problem(0, "output", f"the manifest lists a part that is not a file name: {part!r}",
                           str(run_dir / MANIFEST))
        listed.add(name)
        path, rows = folder / name, part.get("rows")
        if not path.is_file():
            return Problem(0, "output", f"{name} is missing: the manifest lists it with {rows} rows", str(path))
        sha256, counted = _read_part(path)
        changed = hashes is not None and hashes.get(name) != sha256
        if counted is None:
            return Problem(0, "output", f"{name} was changed after the run: it is no longer a readable Parquet file",
                           str(path))
        if changed or counted != rows:
            why = [] if not changed else ["its sha256 is not the manifest's" if name in hashes
                                          else "the manifest records no sha256 for it"]
            why += [] if counted == rows else [f"it holds {counted} rows, the manifest says {rows}"]
            return Problem(0, "output", f"{name} was changed after the run: {'; '.join(why)}", str(path))
        total += counted
    extra = sorted(p.name for p in folder.iterdir() if p.name not in listed) if folder.is_dir() else []
    if extra:
        return Problem(0, "output", f"{folder}: holds files that are not parts of the run: {', '.join(extra[:3])}",
                       str(folder))
    counts = manifest.get("counts") if isinstance(manifest.get("counts"), dict) else {}
    if "output_rows" in counts and counts["output_rows"] != total:
        return Problem(0, "output", f"the output parts hold {total} rows, the manifest's counts say output_rows "
                                    f"{counts['output_rows']!r}", str(run_dir / MANIFEST))
    return None


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


# ---------------------------------------------------------------------------------------------------
# Runs in chain order, and the runs that continue a run


def _chain_facts(run_dir: Path) -> tuple[str, str | None, str | None, str | None]:
    """(started, chain_from, head, previous run's folder) from a run's manifest; None for what it lacks
    (or holds as something other than text: a manifest is not trusted to be well-formed)."""
    manifest = RunDir(run_dir).finished() or {}
    audit = manifest.get("audit") if isinstance(manifest.get("audit"), dict) else {}
    previous = audit.get("previous_run") if isinstance(audit.get("previous_run"), dict) else {}

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) and value else None

    return (text(manifest.get("started")) or "", text(audit.get("chain_from")), text(audit.get("head_sha256")),
            text(previous.get("path")))


def chain_order(run_dirs: list[Path]) -> list[list[Path]]:
    """The runs grouped into chains, each chain in order, the chains by their first run's start time.

    A run comes after the run whose head its chain starts from, or (when that run was overwritten
    since, so the head no longer matches) after the run in the folder its manifest names as the
    previous run; `verify_runs` on the group then names the broken link. Runs linked to none of
    the others start a chain of their own, in start-time order.
    """
    facts = {d: _chain_facts(d) for d in run_dirs}
    runs = sorted(run_dirs, key=lambda d: (facts[d][0], str(d)))
    by_head = {facts[d][2]: d for d in runs if _is_sha256(facts[d][2])}
    by_path = {str(Path(d).resolve()): d for d in runs}
    parent: dict[Path, Path] = {}
    for d in runs:
        _, chain_from, _, previous = facts[d]
        before = by_head.get(chain_from) if chain_from != GENESIS else None
        if before is None and previous:
            before = by_path.get(str(Path(previous).resolve()))
        if before is not None and before != d:
            parent[d] = before
    children: dict[Path, list[Path]] = {}
    for d in runs:  # in start order: a fork's branches come out oldest first
        if d in parent:
            children.setdefault(parent[d], []).append(d)
    placed: set[Path] = set()
    groups: list[list[Path]] = []
    for root in [d for d in runs if d not in parent] + runs:  # then runs in a cycle (forged), if any
        if root in placed:
            continue
        group, stack = [], [root]
        while stack:
            d = stack.pop()
            if d in placed:
                continue
            placed.add(d)
            group.append(d)
            stack.extend(reversed(children.get(d, [])))
        groups.append(group)
    return groups


def continuing_runs(run_dir: Path) -> list[tuple[Path, str | None]]:
    """The finished runs beside `run_dir` (the other dates of a job's output root) whose audit chain
    starts from this run's head, or that name this folder as their previous run: (folder, run id).
    Overwriting `run_dir` would break their chain."""
    head = _chain_facts(Path(run_dir))[2]
    folder = Path(run_dir).resolve()
    found = []
    try:
        siblings = sorted(p for p in folder.parent.iterdir() if p.is_dir() and p.resolve() != folder)
    except OSError:
        return []
    for sibling in siblings:
        manifest = RunDir(sibling).finished()
        if manifest is None:
            continue
        _, chain_from, _, previous = _chain_facts(sibling)
        if (_is_sha256(head) and chain_from == head) or (previous and Path(previous).resolve() == folder):
            found.append((sibling, manifest.get("run_id")))
    return found
