"""The local executor: four stages in threads and the caller's, joined by bounded queues.

    on GPUs: read (thread) -> score: prepare..policy (thread) -> rewrite + verify (thread) -> write (caller)
    on CPUs: read (thread) -> score, rewrite + verify, write (caller, one batch after the other)

Each stage handles one batch at a time, in input order, so the output, the audit chain and the
checkpoints are exactly those of running every batch through every step in turn. On a GPU, while
the engine generates (torch and vLLM release the GIL), the next batches are read and scored and
the previous one is written. On a CPU both models already use every core, so they take turns
(`models_overlap`), in the caller's thread: the one that loaded them (called from another
thread, vLLM-CPU's engine generated 7-14% slower; it binds OpenMP threads to cores in the thread
that starts it, which we suspect but did not prove is the cause); reading still runs ahead. At
most `[runtime] queue_depth` batches wait between two stages, so memory stays bounded whatever the
input size. An exception travels down the queues behind the batches before it: the batches read
before the failure are written (and checkpointed) first, as in a sequential run, then it is raised.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from moderator import readers
from moderator.config import JobConfig, RuntimeConfig
from moderator.executors.base import Work, file_stats, write_batch
from moderator.faults import fault
from moderator.models import pick_device
from moderator.outputs import Outputs
from moderator.state import CarryOver
from moderator.steps import Carried, NamedSteps, merge_carried, rewrite_batch, score_batch

Stage = Callable[[Any], Any]


@dataclass
class _Batch:
    file: int  # input file number
    first: int  # the batch's first row in that file
    skip: int  # rows of the file already done before a checkpoint (not written again)
    batch: pa.RecordBatch
    carried: Carried | None = None  # with a state store: the rows set aside for `merge_carried`


@dataclass
class _FileDone:
    file: int
    stats: dict[str, Any]


class LocalExecutor:
    """The run's batches through its steps in this process (`[runtime] executor = "local"`)."""

    rewrites_here = True

    def check(self, config: JobConfig, files: list[readers.InputFile]) -> None:
        """Nothing to refuse: every input and setting a run accepts works here."""

    def execute(self, work: Work, outputs: Outputs, timings: Counter, bar: Any) -> None:
        clocks = [Counter() for _ in range(3)]  # one per stage (and thread): read, score, rewrite
        stages = [_score_stage(work.steps.scoring, work.carry, clocks[1])]
        if work.steps.rewriting or work.carry is not None:
            stages.append(_rewrite_stage(work.steps.rewriting, work.carry, clocks[2]))
        source = _read_stage(work, clocks[0])
        runtime = work.config.runtime
        threaded, inline = (stages, []) if models_overlap(runtime) else ([], stages)
        try:
            with contextlib.closing(staged(source, threaded, runtime.queue_depth)) as items:
                for item in items:
                    for stage in inline:
                        item = stage(item)
                    if isinstance(item, _FileDone):
                        outputs.file_done(item.stats)
                    else:
                        write_batch(outputs, item.batch, item.file, item.first, item.skip, timings, bar)
        finally:
            for clock in clocks:
                timings.update(clock)


def models_overlap(runtime: RuntimeConfig) -> bool:
    """Whether the scoring and the rewriting stage run in threads of their own and may compute at
    once (`[runtime] overlap_models`).

    On a CPU each model already spreads over every core (torch's and vLLM's thread pools), so two
    of them at once only take cores from each other: they take turns in the caller's thread, and
    reading runs ahead. On a GPU the classifier's CPU-side work and the engine's generation run
    side by side."""
    if runtime.overlap_models != "auto":
        return runtime.overlap_models == "on"
    return pick_device(runtime.device) != "cpu"


def _read_stage(work: Work, clock: Counter) -> Iterator[_Batch | _FileDone]:
    """Every input's batches from the start position on (file, row), then its stats.

    Files before the position are done (their stats are in the checkpoint); in the file that holds
    it, batches that end before it are read but not passed on, and the batch that holds it is passed
    on whole, so that it is scored exactly as in an uninterrupted run.
    """
    inputs = work.config.input
    for index, item in enumerate(work.files):
        if index < work.start[0]:
            continue
        skip = work.skip(index)
        reader = readers.open_reader(item, inputs.batch_size, inputs.text_column, work.stdin,
                                     inputs.id_column, inputs.max_record_bytes)
        for first, batch in reader.batches_from(skip, clock):
            fault("read")
            yield _Batch(index, first, skip, batch)
        yield _FileDone(index, file_stats(item, reader.stats.rows, reader.stats.size, reader.stats.sha256))


def _score_stage(steps: NamedSteps, carry: CarryOver | None, clock: Counter) -> Stage:
    def score(item: Any) -> Any:
        if isinstance(item, _FileDone):
            return item
        item.batch, item.carried = score_batch(steps, carry, item.batch, clock)
        return item
    return score


def _rewrite_stage(steps: NamedSteps, carry: CarryOver | None, clock: Counter) -> Stage:
    def rewrite(item: Any) -> Any:
        if isinstance(item, _FileDone):
            return item
        item.batch = rewrite_batch(steps, item.batch, clock)
        if item.carried is not None:
            item.batch = merge_carried(carry, item.batch, item.carried, clock)  # type: ignore[arg-type]
            item.carried = None
        return item
    return rewrite


def staged(source: Iterator[Any], stages: list[Stage], depth: int) -> Iterator[Any]:
    """`source`'s items through `stages` in order, each stage in its own thread (and the source too),
    joined by queues of `depth` items; `depth` 0 runs everything in the caller's thread, item by item.

    Items come out in source order. An exception raised by the source or a stage comes out after the
    items before it. Closing the generator early stops the threads (each finishes its current item).
    """
    if depth == 0:
        for item in source:
            for stage in stages:
                item = stage(item)
            yield item
        return
    line = _Line(len(stages), depth)
    threads = line.start(source, stages)
    try:
        while True:
            item = line.queues[-1].get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        line.stop.set()
        for thread in threads:
            thread.join()


class _Failed:
    """An exception on its way down the queues, behind the items that came before it."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


class _Line:
    """The threads of `staged`: the source's and one per stage, each passing its items to the next
    queue until the end, a failure, or `stop`."""

    def __init__(self, stages: int, depth: int) -> None:
        self.stop = threading.Event()
        self.queues: list[queue.Queue] = [queue.Queue(maxsize=depth) for _ in range(stages + 1)]

    def start(self, source: Iterator[Any], stages: list[Stage]) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.feed, args=(source,), name="moderator-read", daemon=True)]
        threads += [threading.Thread(target=self.work, args=(stage, self.queues[i], self.queues[i + 1]), daemon=True,
                                     name=f"moderator-stage-{i + 1}") for i, stage in enumerate(stages)]
        for thread in threads:
            thread.start()
        return threads

    def put(self, q: queue.Queue, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def get(self, q: queue.Queue) -> Any:
        while not self.stop.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                pass
        return _END

    def feed(self, source: Iterator[Any]) -> None:
        try:
            for item in source:
                if not self.put(self.queues[0], item):
                    return
        except BaseException as exc:  # noqa: BLE001  (handed to the caller's thread)
            self.put(self.queues[0], _Failed(exc))
            return
        self.put(self.queues[0], _END)

    def work(self, stage: Stage, inbox: queue.Queue, outbox: queue.Queue) -> None:
        while True:
            item = self.get(inbox)
            if item is _END or isinstance(item, _Failed):
                self.put(outbox, item)
                return
            try:
                item = stage(item)
            except BaseException as exc:  # noqa: BLE001
                self.put(outbox, _Failed(exc))
                return
            if not self.put(outbox, item):
                return
