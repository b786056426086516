"""The audit log: one JSON line per input record, quarantined records included.

Each line says what was decided about which post, why, with which scores, under which thresholds
and by which models (content hashes). Post text is not stored, only its sha256, so the log can be
kept longer than the posts themselves; the rewrite is likewise stored as a hash. Teams whose
retention policy wants the log to stand alone turn on `[output] audit_text` (`--audit-text`), which
adds the text and the rewrite beside their hashes.

Lines are written through `auditchain.ChainWriter`, which numbers them and links each to the one
before (`seq`, `prev_sha256`), so that `moderate audit verify` can tell a log changed afterwards.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import pyarrow as pa

from moderator import records
from moderator.auditchain import ChainWriter


def sha256_text(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


class AuditLog:
    def __init__(self, writer: ChainWriter, run_id: str, thresholds: dict[str, float],
                 model_ids: dict[str, str | None], include_text: bool = False) -> None:
        self.writer = writer
        self.run_id = run_id
        self.thresholds = thresholds
        self.model_ids = model_ids
        self.include_text = include_text

    def lines(self, batch: pa.RecordBatch) -> list[dict[str, Any]]:
        """Audit lines for a processed batch (before it is split into output and quarantine)."""
        def column(name: str) -> list:
            return batch.column(name).to_pylist() if name in batch.schema.names else [None] * batch.num_rows

        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
        ids, sources, rows = column(records.ID), column(records.SOURCE), column(records.ROW)
        texts, quarantine = column(records.TEXT), column(records.QUARANTINE)
        toxicity, scores, stage = column(records.TOXICITY), column(records.SCORES), column(records.STAGE)
        actions, reasons = column(records.ACTION), column(records.REASON)
        rewrites = column(records.REWRITE)
        rewrite_toxicity, similarity = column(records.REWRITE_TOXICITY), column(records.SIMILARITY)
        carried_from = column(records.CARRIED_FROM)
        unrewritable, candidates = column(records.UNREWRITABLE), column(records.CANDIDATES)
        rewritten_sentences = column(records.REWRITTEN_SENTENCES)
        out = []
        for i in range(batch.num_rows):
            quarantined = quarantine[i] is not None
            line = {
                "run_id": self.run_id,
                "time": now,
                "id": ids[i],
                "source": sources[i],
                "row": rows[i],
                "text_sha256": sha256_text(texts[i]),
                "action": records.Action.QUARANTINE if quarantined else actions[i],
                "reason": quarantine[i] if quarantined else reasons[i],
                "toxicity": _round(toxicity[i]),
                "stage": stage[i],
                "scores": None if scores[i] is None else {k: _round(v) for k, v in scores[i].items()},
                "rewrite_sha256": sha256_text(rewrites[i]),
                "rewrite_toxicity": _round(rewrite_toxicity[i]),
                "similarity": _round(similarity[i]),
                "unrewritable": _round(unrewritable[i]),
                "candidates": candidates[i],
                "rewritten_sentences": rewritten_sentences[i],
                "thresholds": self.thresholds,
                "models": self.model_ids,
            }
            if carried_from[i] is not None:  # decided by an earlier run, carried over (state.py)
                line["carried_from"] = carried_from[i]
            if self.include_text:
                line.update(text=texts[i], rewrite=rewrites[i])
            out.append(line)
        return out

    def write(self, batch: pa.RecordBatch) -> None:
        self.writer.write(self.lines(batch))

    def close(self) -> None:
        self.writer.close()
