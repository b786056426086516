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

from moderator.errors import InputError
from moderator.records import ACTIONS, ANNOTATION
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


def _clip(text: str | None, width: int) -> str:
    return textwrap.shorten(text or "", width=width, placeholder=" ...") if text else "-"


def format_run(run_dir: Path, actions: tuple[str, ...] = ACTIONS, limit: int = 5, width: int = 100) -> str:
    manifest = RunDir(run_dir).finished()
    if manifest is None:
        raise InputError(f"{run_dir}: no finished run here ({MANIFEST} missing or incomplete)")
    counts = manifest["counts"]
    lines = [f"{run_dir}: {counts['input_rows']} posts, run {manifest['run_id']}",
             "  " + ", ".join(f"{a} {counts['actions'][a]}" for a in ACTIONS)
             + f", quarantine {counts['quarantined_rows']}"]
    text_column = manifest["config"]["input"]["text_column"]
    shown = {a: 0 for a in actions}
    for text, m in iter_rows(run_dir, text_column):
        action = m["action"]
        if action not in shown or shown[action] >= limit:
            continue
        shown[action] += 1
        lines.append(f"\n[{action}: {m['reason']}] {m['id']}  toxicity {m['toxicity']:.2f}")
        lines.append(f"  post:    {_clip(text, width)}")
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
