"""Incremental runs: a post moderated before, with the same text under the same policy and models, is
carried over instead of being scored again.

The state store is one SQLite file (stdlib `sqlite3`, WAL journal) with one row per post id:

    id            the post's id (the id column, or the derived `file:row`)
    text_sha256   sha256 of the text that was moderated
    fingerprint   sha256 of everything that decides a post's fate: the policy thresholds, the content
                  hash of every model (classifier, rewriter base, adapter, embedder), the settings of
                  the classifier and rewriter that change results, whether the cascade is active, and
                  moderator's version (see `fingerprint`)
    decision      the `moderation` values it got (toxicity, stage, scores, action, reason, rewrite,
                  rewrite_toxicity, similarity), as JSON
    run_id        the run that decided it

`CarryOver` looks up each batch's posts after `Prepare`. A post whose id is there with the same text
hash and fingerprint, decided by an earlier run, gets the stored decision with stage `carried_over`
and does not go through the models; every other post is scored as usual, and its decision is stored
once the batch is done. A changed text, a new threshold, model or adapter re-scores the post;
`--force` re-scores every post (and refreshes the store).

Only decisions of *earlier* runs are carried over: a run never reuses what it stored itself. That
keeps a run that resumes after a crash (checkpoint.py) exactly equal to an uninterrupted one, and
makes a post that appears twice in one input scored twice, like without a store.

Nor are decisions of a run that is being replaced (`--overwrite`): carried over, they would name
as their origin a run that no longer exists, and the DSA export, which leaves carried-over
decisions to the run that made them, would lose their statements. The replacement scores those
posts again (and stores them under its own run id); once it finishes, the replaced run's other
decisions are dropped from the store (`forget`), so no later run carries one over either.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import sqlite3
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from moderator import __version__, records
from moderator.audit import sha256_text
from moderator.config import JobConfig
from moderator.errors import OutputError
from moderator.files import PRIVATE, make_folder

log = logging.getLogger(__name__)

DECISION = {  # stored field -> working column
    "toxicity": records.TOXICITY,
    "stage": records.STAGE,
    "scores": records.SCORES,
    "action": records.ACTION,
    "reason": records.REASON,
    "rewrite": records.REWRITE,
    "rewrite_toxicity": records.REWRITE_TOXICITY,
    "similarity": records.SIMILARITY,
    "unrewritable": records.UNREWRITABLE,
    "candidates": records.CANDIDATES,
    "rewritten_sentences": records.REWRITTEN_SENTENCES,
}
# Settings that only change speed, never a decision: they are not part of the fingerprint.
_SPEED_ONLY = {"batch_size", "max_batch_tokens", "model", "base", "adapter", "embedder", "engine", "lora_serving",
               "compile", "kv_cache_gib", "gpu_memory_utilization"}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id TEXT PRIMARY KEY,
    text_sha256 TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    decision TEXT NOT NULL,
    run_id TEXT NOT NULL,
    updated TEXT NOT NULL
)
"""


def fingerprint(config: JobConfig, model_ids: dict[str, str | None], cascade_active: bool) -> str:
    """What a stored decision must have been made under to be carried over (models by content hash)."""
    settings = {
        section: {k: v for k, v in asdict(getattr(config, section)).items() if k not in _SPEED_ONLY}
        for section in ("classifier", "policy", "rewriter", "verify")
    }
    data = {"moderator": __version__, "settings": settings, "models": model_ids, "cascade": cascade_active}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


class StateStore:
    """The SQLite file of an incremental job. One writer at a time (SQLite's own lock)."""

    def __init__(self, path: Path, file_mode: int = PRIVATE) -> None:
        """Open (or create) the store. A new store file gets `file_mode` whatever the umask (it holds ids,
        decisions and rewrites); SQLite gives its -wal and -shm files the mode of the database file."""
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            if not self.path.parent.is_dir():
                make_folder(self.path.parent, file_mode)
            if not self.path.exists():
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, file_mode)
                try:
                    os.fchmod(fd, file_mode)
                finally:
                    os.close(fd)
            # The local executor looks posts up in its scoring thread and stores decisions in its
            # rewriting thread: one connection, used by one thread at a time (self._lock).
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise OutputError(f"{self.path}: cannot open the state store ({exc})") from None

    def lookup(self, ids: list[str]) -> dict[str, tuple[str, str, str, str]]:
        """id -> (text_sha256, fingerprint, decision JSON, run_id) for the ids that are stored."""
        with self._lock:
            return self._lookup(ids)

    def _lookup(self, ids: list[str]) -> dict[str, tuple[str, str, str, str]]:
        found: dict[str, tuple[str, str, str, str]] = {}
        unique = list(dict.fromkeys(ids))
        try:
            for start in range(0, len(unique), 500):
                chunk = unique[start:start + 500]
                rows = self.db.execute(
                    f"SELECT id, text_sha256, fingerprint, decision, run_id FROM decisions WHERE id IN "
                    f"({','.join('?' * len(chunk))})", chunk)
                for row in rows:
                    found[row[0]] = row[1:]
        except sqlite3.Error as exc:
            raise OutputError(f"{self.path}: cannot read the state store ({exc})") from None
        return found

    def store(self, rows: list[tuple[str, str, str, str, str]]) -> None:
        """(id, text_sha256, fingerprint, decision JSON, run_id) rows, in one transaction."""
        with self._lock:
            self._store(rows)

    def _store(self, rows: list[tuple[str, str, str, str, str]]) -> None:
        if not rows:
            return
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        try:
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany(
                    "INSERT INTO decisions (id, text_sha256, fingerprint, decision, run_id, updated) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET text_sha256 = excluded.text_sha256, "
                    "fingerprint = excluded.fingerprint, decision = excluded.decision, run_id = excluded.run_id, "
                    "updated = excluded.updated", [(*row, now) for row in rows])
        except sqlite3.Error as exc:
            raise OutputError(f"{self.path}: cannot write the state store ({exc})") from None

    def forget(self, run_id: str) -> int:
        """Drop the decisions `run_id` made (a run that is being replaced); how many were dropped."""
        with self._lock:
            try:
                with self.db:
                    return self.db.execute("DELETE FROM decisions WHERE run_id = ?", (run_id,)).rowcount
            except sqlite3.Error as exc:
                raise OutputError(f"{self.path}: cannot write the state store ({exc})") from None

    def close(self) -> None:
        self.db.close()


class CarryOver:
    """Splits a prepared batch into posts decided by an earlier run and posts the models must score,
    and afterwards merges them back into input order and stores the new decisions."""

    def __init__(self, store: StateStore, fingerprint: str, run_id: str, labels: list[str], force: bool,
                 replaced: set[str] | frozenset[str] = frozenset()) -> None:
        """`replaced`: run ids whose decisions must not be carried over (the run an `--overwrite` replaces)."""
        self.store, self.fingerprint, self.run_id, self.force = store, fingerprint, run_id, force
        self.excluded = {run_id, *replaced}
        self.types = {f.name: f.type for f in records.annotation_type(labels)}

    def split(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, pa.RecordBatch, list[int], list[int]]:
        """(rows to score, carried-over rows with their decision columns, their positions in `batch`)."""
        n = batch.num_rows
        ids = batch.column(records.ID).to_pylist()
        texts = batch.column(records.TEXT).to_pylist()
        active = [q is None for q in batch.column(records.QUARANTINE).to_pylist()]
        stored = {} if self.force else self.store.lookup([ids[i] for i in range(n) if active[i]])
        decisions: dict[int, dict[str, Any]] = {}
        for i in range(n):
            hit = stored.get(ids[i]) if active[i] else None
            if hit and hit[0] == sha256_text(texts[i]) and hit[1] == self.fingerprint and hit[3] not in self.excluded:
                decisions[i] = json.loads(hit[2])
        carried = sorted(decisions)
        scored = [i for i in range(n) if i not in decisions]
        kept = batch.take(pa.array(carried, pa.int64()))
        for field, column in DECISION.items():
            values = [records.Stage.CARRIED_OVER if field == "stage" else decisions[i].get(field) for i in carried]
            kept = records.set_column(kept, column, pa.array(values, self.types[field]))
        kept = records.set_column(kept, records.CARRIED_FROM, pa.array([decisions[i].get("run_id") for i in carried],
                                                                         pa.string()))
        return batch.take(pa.array(scored, pa.int64())), kept, scored, carried

    def merge(self, scored: pa.RecordBatch, carried: pa.RecordBatch, scored_at: list[int],
              carried_at: list[int]) -> pa.RecordBatch:
        """Both parts back in input order, with the same columns; stores the scored part's decisions."""
        self._remember(scored)
        if carried.num_rows == 0:
            return scored
        if scored.num_rows == 0:
            return carried
        for name in carried.schema.names:
            if name not in scored.schema.names:
                scored = records.set_column(scored, name, pa.nulls(scored.num_rows, carried.schema.field(name).type))
        for name in scored.schema.names:
            if name not in carried.schema.names:
                carried = records.set_column(carried, name, pa.nulls(carried.num_rows, scored.schema.field(name).type))
        carried = pa.RecordBatch.from_arrays(
            [pc.cast(carried.column(name), scored.schema.field(name).type) for name in scored.schema.names],
            schema=scored.schema)
        positions = scored_at + carried_at
        order = pa.array(sorted(range(len(positions)), key=positions.__getitem__), pa.int64())
        table = pa.Table.from_batches([scored, carried]).take(order).combine_chunks()
        return table.to_batches(max_chunksize=table.num_rows)[0]

    def _remember(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        names = batch.schema.names
        columns = {field: batch.column(col).to_pylist() if col in names else [None] * batch.num_rows
                   for field, col in DECISION.items()}
        ids, texts = batch.column(records.ID).to_pylist(), batch.column(records.TEXT).to_pylist()
        quarantine = batch.column(records.QUARANTINE).to_pylist()
        rows = []
        for i in range(batch.num_rows):
            if quarantine[i] is not None:
                continue
            decision = {field: values[i] for field, values in columns.items()}
            decision["run_id"] = self.run_id
            rows.append((ids[i], sha256_text(texts[i]), self.fingerprint,
                         json.dumps(decision, separators=(",", ":")), self.run_id))
        self.store.store(rows)
