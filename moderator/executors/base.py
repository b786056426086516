"""What every executor is given, what it must do, and the few things all of them do the same way.

An executor drives a run's record batches through its steps (`steps.py`) into its outputs
(`outputs.Outputs`), in input order, from the run's start position on:

    check(config, files)                  refuse what it cannot do, before anything is written
    execute(work, outputs, timings, bar)  every batch: read, score, rewrite, `write_batch`;
                                          every input file read to its end: `outputs.file_done`

It never decides anything about the run itself (inputs, resuming, the run folder, the manifest:
`pipeline.py`), so that the same run is the same output whichever executor moved its batches.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

import pyarrow as pa

from moderator.config import JobConfig
from moderator.outputs import Outputs
from moderator.readers import InputFile
from moderator.state import CarryOver
from moderator.steps import Steps


@dataclass
class Work:
    """What an executor moderates: the inputs from `start` on, through `steps`."""

    config: JobConfig
    files: list[InputFile]
    steps: Steps  # on an executor that rewrites elsewhere, the scoring side (and every model's hash)
    start: tuple[int, int]  # (input file number, row in it): (0, 0), or the checkpoint a resumed run continues
    carry: CarryOver | None  # with a state store: the posts an earlier run decided are carried over
    stdin: BinaryIO | None  # standard input, when an input is "-"

    def skip(self, file: int) -> int:
        """Rows of input file `file` done before the start position (read again, not written again)."""
        return self.start[1] if file == self.start[0] else 0


class Executor(Protocol):
    # Whether the run's own process loads the decoder and the embedder: the Ray executor loads them in
    # its actors, and the run then only resolves and hashes them for the manifest.
    rewrites_here: bool

    def check(self, config: JobConfig, files: list[InputFile]) -> None:
        """Refuse what this executor cannot do (a ConfigError), before anything is written."""
        ...

    def execute(self, work: Work, outputs: Outputs, timings: Counter, bar: Any) -> None:
        """Moderate `work` into `outputs` in input order, adding seconds per step to `timings` and
        rows to the progress `bar`; an error is raised after the batches before it were written."""
        ...


def write_batch(outputs: Outputs, batch: pa.RecordBatch, file: int, first: int, skip: int,
                timings: Counter, bar: Any) -> None:
    """Write a processed batch whose first row is row `first` of input file `file`, without its rows
    before row `skip` of that file: a resumed run processes the batch that holds its checkpoint's row
    whole, so that it is scored exactly as in an uninterrupted run, and writes only the rest."""
    t = time.perf_counter()
    outputs.write(batch.slice(max(skip - first, 0)), file, max(first, skip))
    timings["write"] += time.perf_counter() - t
    bar.update(first + batch.num_rows - max(first, skip))
    bar.set_postfix(outputs.counts.summary(), refresh=False)


def file_stats(item: InputFile, rows: int, size: int, sha256: str) -> dict[str, Any]:
    """The manifest's entry for an input file read to its end (`outputs.file_done`)."""
    return {"path": item.abspath, "name": item.name, "format": item.format, "rows": rows, "size": size,
            "sha256": sha256}
