"""A quick look at a finished run in the terminal: counts, then a few decisions per action.

    moderate show posts.moderated --action rewrite --limit 5
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from moderator.errors import AuditChainError, InputError
from moderator.records import ACTIONS, ANNOTATION, categories_of
from moderator.rundir import MANIFEST, OUTPUT, RunDir


def iter_rows(run_dir: Path, text_column: str) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """(text, moderation) for every output row of a run, reading one part at a time."""
    for part in sorted((run_dir / OUTPUT).iterdir()):
        if part.suffix == ".parquet":
            for batch in pq.ParquetFile(part).iter_batches(columns=[text_column, ANNOTATION]):
                yield from zip(batch.column(text_column).to_pylist(), batch.column(ANNOTATION).to_pylist())
        elif part.suffix == ".jsonl":
            with open(part, encoding="utf-8") as handle:
                for line in handle:
                    row = json.loads(line)
                    yield row.get(text_column), row[ANNOTATION]


# Control characters (ESC sequences, BEL, backspace, C1) and bidi overrides would reach the terminal
# as commands or reorder what it shows: they are printed as escapes (\x1b, \u202e) instead.
_BIDI = {0x200E, 0x200F, 0x061C, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}
_VISIBLE = {c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"
            for c in [*range(0x00, 0x20), *range(0x7F, 0xA0), *_BIDI] if chr(c) not in "\t\n"}


def visible(text: Any) -> str:
    """`text` safe to print on a terminal: every control and bidi character as a visible escape."""
    return str(text).translate(_VISIBLE)


def _clip(text: str | None, width: int) -> str:
    return textwrap.shorten(visible(text), width=width, placeholder=" ...") if text else "-"


def check_counts(run_dir: Path) -> str | None:
    """Refuse (exit 6) to show counts that `moderate audit verify` would reject: the manifest's counts
    are only shown when they match an intact audit log. Output parts are not re-hashed here (a quick
    look stays quick); `audit verify` does that. A note when there is no log to check them against."""
    from moderator.auditchain import verify_run

    try:
        verdict = verify_run(run_dir, outputs=False)
    except InputError as exc:
        return f"  (counts not checked against the audit log: {visible(exc)})"
    if verdict.problem is not None:
        raise AuditChainError(f"{verdict.where}: {verdict.problem.describe()}; not showing this run's counts "
                              f"(see `moderate audit verify {run_dir}`)")
    return None


def format_run(run_dir: Path, actions: tuple[str, ...] = ACTIONS, limit: int = 5, width: int = 100) -> str:
    manifest = RunDir(run_dir).finished()
    if manifest is None:
        raise InputError(f"{run_dir}: no finished run here ({MANIFEST} missing or incomplete)")
    note = check_counts(run_dir)  # before any number is shown
    counts = manifest["counts"]
    lines = [f"{visible(run_dir)}: {counts['input_rows']} posts, run {visible(manifest['run_id'])}",
             "  " + ", ".join(f"{a} {counts['actions'][a]}" for a in ACTIONS)
             + f", quarantine {counts['quarantined_rows']}"]
    lines += [note] if note else []
    text_column = manifest["config"]["input"]["text_column"]
    shown = {a: 0 for a in actions}
    for text, m in iter_rows(run_dir, text_column):
        action = m["action"]
        if action not in shown or shown[action] >= limit:
            continue
        shown[action] += 1
        lines.append(f"\n[{visible(action)}: {visible(m['reason'])}] {visible(m['id'])}  toxicity {m['toxicity']:.2f}")
        lines.append(f"  post:    {_clip(text, width)}")
        categories = categories_of(m.get("scores"))
        if categories:  # a classifier that scores categories; highest first
            ranked = sorted(categories.items(), key=lambda kv: -kv[1])
            lines.append("  categories: " + ", ".join(f"{name} {score:.2f}" for name, score in ranked))
        if m["rewrite"] is not None:
            lines.append(f"  rewrite: {_clip(m['rewrite'], width)}")
            scored = (f"toxicity {m['rewrite_toxicity']:.2f}, similarity {m['similarity']:.2f}"
                      if m.get("rewrite_toxicity") is not None else "not scored")
            tried = m.get("candidates")
            sentences = m.get("rewritten_sentences")
            extra = "" if tried is None else f"; {sentences} span(s) rewritten, {tried} candidate(s) tried"
            lines.append(f"           {scored}{extra}")
        if all(n >= limit for n in shown.values()):
            break
    return "\n".join(lines) + "\n"
