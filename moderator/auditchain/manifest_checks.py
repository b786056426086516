"""A finished run's manifest against what it describes: its counts against the audit log's lines,
its `output` section (rows and sha256 per part) against the output parts on disk."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

from moderator.auditchain.links import Problem
from moderator.errors import InputError
from moderator.records import Action
from moderator.rundir import MANIFEST, OUTPUT


def _key(value: Any) -> str:
    return "null" if value is None else str(value)  # how json.dump writes a dict key


def check_counts(run_dir: Path, manifest: dict[str, Any], tally: Counter, lines: int,
                 notes: list[str]) -> Problem | None:
    """The manifest's `counts` against what the audit log holds (one line per input record)."""
    counts = manifest.get("counts")
    if not isinstance(counts, dict):
        notes.append("counts not checkable: the manifest records none")
        return None
    differ = count_differences(counts, log_counts(tally, lines))
    if not differ:
        return None
    more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
    return Problem(0, "counts", f"the manifest's counts disagree with the audit log: {', '.join(differ[:3])}{more}",
                   str(run_dir / MANIFEST))


def log_counts(tally: Counter, lines: int) -> dict[str, Any]:
    """The manifest's `counts`, as the audit log gives them: from `lines` (its line count) and `tally`
    ((action, reason, carried over) -> lines, from `links.check_log`)."""
    actions: Counter = Counter()
    reasons: Counter = Counter()
    quarantine: Counter = Counter()
    carried = 0
    for (action, reason, carried_over), n in tally.items():
        if action == Action.QUARANTINE:
            quarantine[_key(reason)] += n
        else:
            actions[_key(action)] += n
            reasons[_key(reason)] += n
            carried += n if carried_over else 0
    quarantined = sum(quarantine.values())
    return {"input_rows": lines, "output_rows": lines - quarantined, "quarantined_rows": quarantined,
            "carried_over": carried, "actions": actions, "reasons": reasons, "quarantine_reasons": quarantine}


def count_differences(recorded: dict[str, Any], found: dict[str, Any]) -> list[str]:
    """Each count in `recorded` (a manifest's `counts`) that differs from `found` (`log_counts`), as
    `name recorded (audit log: found)`. Tables (actions, reasons) are compared key by key, a key
    missing on one side counting as 0; a count the manifest does not record is not held against it."""
    differ = []
    for name, value in found.items():
        if name not in recorded:
            continue
        if not isinstance(value, dict):
            if recorded[name] != value:
                differ.append(f"{name} {recorded[name]!r} (audit log: {value})")
            continue
        table = recorded[name]
        if not isinstance(table, dict):
            differ.append(f"{name} is not a table")
            continue
        for key in sorted(set(table) | set(value)):
            if (table.get(key) or 0) != value.get(key, 0):
                differ.append(f"{name}.{key} {table.get(key, 0)!r} (audit log: {value.get(key, 0)})")
    return differ


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


def check_outputs(run_dir: Path, manifest: dict[str, Any], notes: list[str]) -> Problem | None:
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
