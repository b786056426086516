"""Checking one audit log's chain in one streaming pass, and naming the first change and its kind.

Each line is kept as a `Link` (its position, its own hash, its `seq` and `prev_sha256`); the
manifest stands in for the line after the last. At the first broken link `diagnose` tells an
edited line from a deleted, inserted or reordered one, or a log cut short, from that link and its
neighbours, without keeping the log in memory.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moderator.auditchain.chain import line_sha256
from moderator.errors import InputError
from moderator.records import Stage


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
