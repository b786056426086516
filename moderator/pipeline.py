"""A run: find the inputs, decide whether to resume, open the outputs, hand the batches to an
executor, commit.

    read -> prepare -> (prefilter) -> classify -> policy -> rewrite -> verify -> write

The steps and the models they load are `steps.py`; what moves the batches through them is an
executor (`executors/`: `local` in threads of this process, or `ray` on Ray Data); what a run
writes is `outputs.Outputs` (parts, audit log, quarantine, checkpoints); resuming is
`checkpoint.py`; the manifest written last is `manifest.py`; the run folder and its lock are
`rundir.py`.

    result = run(JobConfig.load("job.toml"), ["dump.parquet"])
    print(result.manifest["counts"])
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from moderator import manifest, readers
from moderator.auditchain import ChainStart, chain_start
from moderator.checkpoint import Checkpoint, check_models, identity, resume_or_start
from moderator.config import InputConfig, JobConfig
from moderator.errors import ModeratorError, OutputError
from moderator.executors import EXECUTORS, Executor, Work
from moderator.outputs import Outputs, output_format
from moderator.rundir import RunDir, default_output
from moderator.state import CarryOver, StateStore, fingerprint
from moderator.steps import Models, Steps, build_steps, load_models


@dataclass
class RunResult:
    path: Path
    manifest: dict[str, Any]
    skipped: bool = False  # True when the output was already complete and left untouched
    partial: bool = False  # True when more records were quarantined than [output] max_quarantine_share


@dataclass
class RunPlan:
    """A run as decided before its models load: what it reads, where it writes, where it starts."""

    config: JobConfig
    files: list[readers.InputFile]
    rundir: RunDir
    executor: Executor
    checkpoint: Checkpoint  # the interrupted run's when `resume`, else a new run's
    resume: bool
    resumable: bool  # whether checkpoints are taken (not for standard input, which cannot be read again)
    chain: ChainStart  # where the audit chain starts: a new chain, or an earlier run's head
    total: int | None  # input rows, where every input says how many it holds (for the progress bar)
    clock: float  # time.perf_counter() when the run started
    replaced: dict[str, Any] | None  # what an --overwrite replaces (`manifest.replaced_run`)
    progress: bool
    stdin: BinaryIO | None
    models: Models | None  # models a caller loaded already
    command: list[str] | None
    force: bool  # with a state store: score every post again


def run(config: JobConfig, inputs: list[str], out: Path | None = None, **options: Any) -> RunResult:
    """Moderate `inputs` into the run folder `out` (default: beside the first input); see `_moderate`.

    The run folder is locked for the whole run (`RunDir.locked`): a second run into the same folder
    stops with an `OutputError` naming the run that holds it, before it reads or writes anything.
    """
    out = Path(out) if out is not None else default_output(inputs)
    with RunDir(out, config.output.file_permissions).locked():
        return _moderate(config, inputs, out, **options)


def _moderate(
    config: JobConfig,
    inputs: list[str],
    out: Path | None = None,
    *,
    overwrite: bool = False,
    progress: bool = False,
    stdin: BinaryIO | None = None,
    models: Models | None = None,
    command: list[str] | None = None,
    force: bool = False,
    break_chain: bool = False,
) -> RunResult:
    """Moderate `inputs` into the run folder `out` (default: beside the first input).

    Raises `ModeratorError` subclasses for bad input, output, configuration or models; the run
    folder then holds no finished output. A run that was killed or failed is continued from its
    checkpoint by the same call (see `checkpoint.py`). `models` lets a caller reuse loaded models.
    With `[state] path` set, posts decided by an earlier run are carried over (`state.py`) unless `force`.

    `overwrite` replaces a finished run, but not one whose audit chain a later run beside it
    continues (`auditchain.continuing_runs`): that is refused before anything is written, since the
    later run's chain would no longer verify. `break_chain` overwrites anyway, with a warning, and
    the manifest records what was replaced and whose chain broke (`replaces`). Decisions the
    replaced run made are never carried over into its replacement: they would point at a run that
    no longer exists (and the DSA export would skip them).
    """
    started, clock = manifest.now(), time.perf_counter()
    files = readers.discover(inputs, exclude=out)  # a run folder inside the input folder is not input
    executor = EXECUTORS[config.runtime.executor]
    executor.check(config, files)  # before anything is written
    out = Path(out) if out is not None else default_output(inputs)
    rundir = RunDir(out, config.output.file_permissions)
    if not overwrite and (finished := _finished(rundir, config, files)) is not None:
        return finished
    replaced = manifest.replaced_run(rundir, break_chain) if overwrite else None
    total = _check_inputs(config, files)
    chain = chain_start(config.output.audit_chain_from, out)  # before models load: a wrong folder fails fast
    current = identity(config, files, force)
    checkpoint, resume = resume_or_start(rundir, current, files, started)
    rundir.start(overwrite, resume=resume)
    plan = RunPlan(config, files, rundir, executor, checkpoint, resume, current is not None, chain, total, clock,
                   replaced, progress, stdin, models, command, force)
    try:
        with _state_store(config) as store:
            return _run(plan, store)
    except BaseException as exc:
        rundir.fail(f"{type(exc).__name__}: {exc}")
        raise


def _finished(rundir: RunDir, config: JobConfig, files: list[readers.InputFile]) -> RunResult | None:
    """The finished run in `rundir`, left untouched, when it moderated these inputs; None when there is none."""
    finished = rundir.finished()
    if finished is None:
        return None
    done = [i.get("path") for i in finished.get("inputs", [])]
    if done != [f.abspath for f in files]:
        raise OutputError(
            f"{rundir.path}: holds the finished output of other inputs ({', '.join(map(str, done[:3]))}); "
            "choose another --out, or --overwrite to replace it"
        )
    above = manifest.quarantine_share(finished.get("counts", {}), config.output.max_quarantine_share)["above_max"]
    return RunResult(rundir.path, finished, skipped=True, partial=above)


def _check_inputs(config: JobConfig, files: list[readers.InputFile]) -> int | None:
    """Refuse inputs without the text column (or with ids a state store cannot use), before anything
    is written; the input rows, where every input says how many it holds."""
    known_rows = [readers.check_schema(f, config.input.text_column) for f in files]
    readers.check_id_column(files, config.input.id_column, config.input.id_column != InputConfig.id_column,
                            bool(config.state.path))
    return None if any(r is None for r in known_rows) else sum(known_rows)  # type: ignore[arg-type]


@contextmanager
def _state_store(config: JobConfig) -> Iterator[StateStore | None]:
    """The state store of an incremental run (`[state] path`), closed at the end; None without one."""
    store = (StateStore(Path(config.state.path).expanduser(), config.output.file_permissions)
             if config.state.path else None)
    try:
        yield store
    finally:
        if store is not None:
            store.close()


def _run(plan: RunPlan, store: StateStore | None) -> RunResult:
    """Load the models, moderate every batch into the staging folder, then commit it with its manifest."""
    config, rundir = plan.config, plan.rundir
    timings: Counter = Counter()
    steps = _load_steps(plan, timings)
    plan.checkpoint, plan.resume = check_models(plan.checkpoint, plan.resume, steps.model_ids(), rundir)
    checkpoint = plan.checkpoint
    fmt = output_format(config.output.format, plan.files)
    outputs = _open_outputs(plan, steps, fmt)
    done_before = outputs.counts.input_rows  # rows an interrupted process of this run already moderated
    carry = _carry_over(plan, steps, store)
    start = checkpoint.position if plan.resume else (0, 0)
    with _progress(plan.total, plan.progress) as bar:
        bar.update(outputs.counts.input_rows)
        plan.executor.execute(Work(config, plan.files, steps, start, carry, plan.stdin), outputs, timings, bar)
    t = time.perf_counter()
    parts = outputs.close()
    timings["write"] += time.perf_counter() - t
    counts = outputs.counts
    if counts.input_rows != counts.output_rows + counts.quarantined_rows or outputs.audit.writer.rows != counts.input_rows:
        raise ModeratorError(f"internal error: counts do not reconcile ({counts.to_dict()})")
    state = None if carry is None else {"path": str(store.path), "fingerprint": carry.fingerprint,  # type: ignore[union-attr]
                                        "force": plan.force}
    timings["total"] = time.perf_counter() - plan.clock
    result = manifest.complete(config, checkpoint, steps, outputs, fmt=fmt, parts=parts, command=plan.command,
                               state=state, timings=timings, done_before=done_before, replaced=plan.replaced)
    replaced = plan.replaced
    if carry is not None and replaced and replaced.get("run_id"):
        store.forget(replaced["run_id"])  # type: ignore[union-attr]  # its posts this run did not see: scored again
    rundir.commit(result)
    return RunResult(rundir.path, result, partial=result["quarantine"]["above_max"])


def _load_steps(plan: RunPlan, timings: Counter) -> Steps:
    """The run's steps around its models. An executor that rewrites elsewhere (Ray's actors) gets the
    scoring side only; the rewriter's models are then resolved and hashed for the record, not loaded."""
    t0 = time.perf_counter()
    here = plan.executor.rewrites_here
    steps = build_steps(plan.config, plan.models or load_models(plan.config, rewriter=here), rewriting=here)
    timings["load_models"] = time.perf_counter() - t0
    return steps


def _open_outputs(plan: RunPlan, steps: Steps, fmt: str) -> Outputs:
    """The run's outputs in its staging folder, continued from the checkpoint when resuming; the first
    checkpoint is saved at once (it records the models, the run id and when the run was resumed)."""
    config, checkpoint, resume = plan.config, plan.checkpoint, plan.resume
    audit = (plan.chain, checkpoint.run_id, config.policy.thresholds, steps.model_ids(), config.output.audit_text)
    outputs = Outputs(plan.rundir.staging, fmt, config.output.rows_per_shard, config.output.compression,
                      config.output.file_permissions, audit, steps.labels, checkpoint, resume,
                      checkpoints=plan.resumable)
    outputs.save_checkpoint(checkpoint.position if resume else (0, 0))
    return outputs


def _carry_over(plan: RunPlan, steps: Steps, store: StateStore | None) -> CarryOver | None:
    """With a state store: the posts an earlier run decided with the same text, policy and models are
    carried over (never from the run an --overwrite replaces)."""
    if store is None:
        return None
    cascade = bool((steps.classifier_info.get("cascade") or {}).get("active"))
    gone = {plan.replaced["run_id"]} if plan.replaced and plan.replaced.get("run_id") else set()
    return CarryOver(store, fingerprint(plan.config, steps.model_ids(), cascade), plan.checkpoint.run_id,
                     steps.labels, plan.force, gone)


def _progress(total: int | None, enabled: bool):  # type: ignore[no-untyped-def]
    import sys

    from tqdm import tqdm

    return tqdm(total=total, unit=" posts", desc="moderating", file=sys.stderr, dynamic_ncols=True,
                mininterval=0.5, disable=None if enabled else True)  # None: only on a terminal
