"""The files of one run, written together: output parts, audit log, quarantine, counts, checkpoints.

A processed batch is written in pieces that end where an output part fills up, so that at the end
of each piece that completes a part, nothing is half-written anywhere: the part has its final name,
and the audit log and the quarantine file hold exactly the lines of the rows before the same input
position. That is where a checkpoint is taken (see `checkpoint.py`).

Each part is hashed (sha256) as soon as it is complete, while it is still in the page cache; the
manifest records the hashes (`output.sha256`, beside `output.parts` with each part's rows) so that
`moderate audit verify` can tell a part that was cut, edited or swapped after the run. Parts kept
from before a resume are hashed when the run finishes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from moderator import memory, records
from moderator.audit import AuditLog
from moderator.auditchain import ChainStart, ChainWriter
from moderator.checkpoint import Checkpoint
from moderator.errors import OutputError
from moderator.faults import fault
from moderator.hashing import file_sha256
from moderator.readers import InputFile
from moderator.rundir import AUDIT, OUTPUT, QUARANTINE
from moderator.writers import JsonLinesWriter, PartWriter, quarantine_records


@dataclass
class Counts:
    input_rows: int = 0
    output_rows: int = 0
    quarantined_rows: int = 0
    carried_over: int = 0  # output rows whose decision an earlier run made (state.py)
    actions: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    quarantine_reasons: Counter = field(default_factory=Counter)

    def add(self, batch: pa.RecordBatch) -> None:
        quarantine = batch.column(records.QUARANTINE).to_pylist()
        actions = batch.column(records.ACTION).to_pylist()
        reasons = batch.column(records.REASON).to_pylist()
        stages = batch.column(records.STAGE).to_pylist() if records.STAGE in batch.schema.names else []
        self.carried_over += stages.count(records.Stage.CARRIED_OVER)
        self.input_rows += batch.num_rows
        for q, action, reason in zip(quarantine, actions, reasons):
            if q is not None:
                self.quarantined_rows += 1
                self.quarantine_reasons[q] += 1
            else:
                self.output_rows += 1
                self.actions[action] += 1
                self.reasons[reason] += 1

    @classmethod
    def from_dict(cls, counts: dict[str, Any]) -> Counts:
        """The counts `to_dict` gave (a checkpoint's), to count on from."""
        return cls(input_rows=counts.get("input_rows", 0), output_rows=counts.get("output_rows", 0),
                   quarantined_rows=counts.get("quarantined_rows", 0), carried_over=counts.get("carried_over", 0),
                   actions=Counter({k: v for k, v in counts.get("actions", {}).items() if v}),
                   reasons=Counter(counts.get("reasons", {})),
                   quarantine_reasons=Counter(counts.get("quarantine_reasons", {})))

    def summary(self) -> dict[str, int]:
        return {**{a: self.actions.get(a, 0) for a in records.ACTIONS},
                records.Action.QUARANTINE: self.quarantined_rows}

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_rows": self.input_rows,
            "output_rows": self.output_rows,
            "quarantined_rows": self.quarantined_rows,
            "carried_over": self.carried_over,
            "actions": {a: self.actions.get(a, 0) for a in records.ACTIONS},
            "reasons": dict(sorted(self.reasons.items())),
            "quarantine_reasons": dict(sorted(self.quarantine_reasons.items())),
        }


class Outputs:
    """Everything a run writes into its staging folder, continued from `checkpoint` when `resume`.

    `checkpoints` is off for runs that cannot resume (standard input): nothing is recorded then.
    """

    def __init__(self, staging: Path, fmt: str, rows_per_shard: int, compression: str, file_mode: int,
                 audit: tuple[ChainStart, str, dict[str, float], dict[str, str | None], bool],
                 labels: list[str], checkpoint: Checkpoint, resume: bool, checkpoints: bool = True) -> None:
        chain, run_id, thresholds, model_ids, include_text = audit
        self.staging, self.file_mode, self.labels = staging, file_mode, labels
        self.checkpoint, self.checkpoints = checkpoint, checkpoints
        self.parts = PartWriter(staging / OUTPUT, fmt, rows_per_shard, compression, file_mode,
                                done=checkpoint.parts if resume else None)
        self.quarantine = JsonLinesWriter(staging / QUARANTINE, file_mode, checkpoint.quarantine if resume else None)
        self.audit = AuditLog(ChainWriter(staging / AUDIT, chain, file_mode, checkpoint.audit if resume else None),
                              run_id, thresholds, model_ids, include_text=include_text)
        self.counts = Counts.from_dict(checkpoint.counts) if resume else Counts()
        self.inputs_done: list[dict[str, Any]] = list(checkpoint.inputs_done) if resume else []
        self._finished_parts = len(self.parts.parts)
        self.part_sha256: dict[str, str] = {}  # part file -> sha256, filled as parts complete

    def write(self, batch: pa.RecordBatch, file_index: int, first_row: int) -> None:
        """Write a processed batch whose first row is row `first_row` of input file `file_index`."""
        active = [q is None for q in batch.column(records.QUARANTINE).to_pylist()]
        start = 0
        while start < batch.num_rows:
            end, room = start, self.parts.room()
            while end < batch.num_rows and room > 0:  # up to the row that fills the open part
                room -= active[end]
                end += 1
            self._write_rows(batch.slice(start, end - start))
            start = end
            if not self.parts.is_open and len(self.parts.parts) > self._finished_parts:
                self._finished_parts = len(self.parts.parts)
                fault("shard")
                self.save_checkpoint((file_index, first_row + end))
        memory.release()  # the batch is written: what its steps freed goes back to the OS

    def _write_rows(self, batch: pa.RecordBatch) -> None:
        self.audit.write(batch)
        output_rows, quarantined = records.finalize(batch, self.labels)
        self.parts.write(output_rows)
        self.quarantine.write(quarantine_records(quarantined))
        self.counts.add(batch)

    def file_done(self, stats: dict[str, Any]) -> None:
        self.inputs_done.append(stats)

    def _hash_parts(self) -> None:
        """Hash every complete part not hashed yet (the open part, if any, is not complete)."""
        done = self.parts.parts[:-1] if self.parts.is_open else self.parts.parts
        for part in done:
            if part["file"] not in self.part_sha256:
                path = self.parts.folder / part["file"]
                try:
                    self.part_sha256[part["file"]] = file_sha256(path)
                except OSError as exc:
                    raise OutputError(f"{path}: cannot read back ({exc.strerror})") from None

    def save_checkpoint(self, position: tuple[int, int]) -> None:
        self._hash_parts()
        if not self.checkpoints:
            return
        cp = self.checkpoint
        cp.audit, cp.quarantine = self.audit.writer.sync(), self.quarantine.sync()
        cp.position, cp.parts = position, [dict(p) for p in self.parts.parts]
        cp.counts, cp.inputs_done = self.counts.to_dict(), list(self.inputs_done)
        cp.save(self.staging, self.file_mode)
        fault("checkpoint")

    def close(self) -> list[dict[str, Any]]:
        parts = self.parts.close()
        for name in self.parts.rewritten:  # given the common schema on closing: hashed again
            self.part_sha256.pop(name, None)
        self._hash_parts()
        self.quarantine.close()
        self.audit.close()
        return parts

    def output_summary(self, fmt: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
        """The manifest's `output` section: the parts with their rows, and each part's sha256."""
        return {"format": fmt, "folder": OUTPUT, "parts": parts,
                "sha256": {p["file"]: self.part_sha256[p["file"]] for p in parts}}


def output_format(setting: str, files: list[InputFile]) -> str:
    """The output parts' format: `[output] format`, or with `auto` JSONL when every input is JSONL,
    else Parquet."""
    if setting != "auto":
        return setting
    return "jsonl" if all(f.format == "jsonl" for f in files) else "parquet"
