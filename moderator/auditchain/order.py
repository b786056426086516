"""Runs in chain order, and the runs that continue a run (which `--overwrite` would break)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moderator.auditchain.chain import GENESIS, is_sha256
from moderator.rundir import RunDir


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
    by_head = {facts[d][2]: d for d in runs if is_sha256(facts[d][2])}
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
        if (is_sha256(head) and chain_from == head) or (previous and Path(previous).resolve() == folder):
            found.append((sibling, manifest.get("run_id")))
    return found
