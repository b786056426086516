"""The steps of a run: loading the models once, and the callables a record batch goes through.

    prepare -> (prefilter) -> classify -> policy        the scoring side: `Steps.scoring`
        -> rewrite -> verify                           the rewriting side (the decoder): `Steps.rewriting`

Every step is a plain callable record batch -> record batch (`records.py` says what each adds).
`load_models` loads the models (the slow part); `build_steps` wraps them into the steps of a run
and gathers what the run records about them (content hashes, engine, classifier labels). The three
functions at the end are what happens to one batch, whichever executor drives it
(`executors/local.py` in threads of this process, `executors/ray.py` in Ray actors):
`score_batch`, `rewrite_batch`, then `merge_carried` for the posts an earlier run decided.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from moderator import records
from moderator.config import JobConfig
from moderator.errors import ConfigError
from moderator.faults import fault
from moderator.models import ModelRef, pick_device
from moderator.state import CarryOver

if TYPE_CHECKING:
    from moderator.cascade import Prefilter
    from moderator.classify import Classifier
    from moderator.embed import Embedder
    from moderator.rewritability import Rewritability
    from moderator.rewrite import Rewriter

log = logging.getLogger(__name__)

Step = Callable[[pa.RecordBatch], pa.RecordBatch]
NamedSteps = list[tuple[str, Step]]
Carried = tuple[pa.RecordBatch, list[int], list[int]]  # carried rows, scored positions, carried positions

# The step names: keys of the run's timings and fault points (faults.py).
PREPARE, PREFILTER, CLASSIFY, POLICY, REWRITE, VERIFY = "prepare", "prefilter", "classify", "policy", "rewrite", "verify"
REWRITING = (REWRITE, VERIFY)  # the steps after the policy: only they touch the decoder


@dataclass
class Models:
    """The loaded models of a run. Loading is the slow part; steps are cheap to build from these."""

    classifier: Classifier
    rewriter: Rewriter | None = None  # when rewriting is on
    embedder: Embedder | None = None  # when rewriting is on
    prefilter: Prefilter | None = None  # when the classifier ships one
    rewritability: Rewritability | None = None  # unless [policy] rewritability_model = "off"

    def scoring_refs(self) -> dict[str, ModelRef | None]:
        """The models of the scoring side: the classifier, and the rewritability model when it is on."""
        refs: dict[str, ModelRef | None] = {"classifier": self.classifier.model_ref}
        if self.rewritability is not None:
            refs["rewritability"] = self.rewritability.model_ref
        return refs

    def refs(self) -> dict[str, ModelRef | None]:
        """Every loaded model, by the name the manifest gives it."""
        refs = self.scoring_refs()
        if self.rewriter is not None:
            refs.update(rewriter_base=self.rewriter.base, adapter=self.rewriter.adapter,
                        embedder=self.embedder.model_ref)  # type: ignore[union-attr]  # loaded with the rewriter
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


def load_rewritability(config: JobConfig) -> Rewritability | None:
    """The model that tells whether a toxic text can be rewritten ([policy] rewritability_model)."""
    setting = config.policy.rewritability_model
    if setting == "off":
        return None
    from moderator.rewritability import Rewritability

    return Rewritability.load(setting)


def cascade_active(config: JobConfig, prefilter: Prefilter | None) -> bool:
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

    steps: NamedSteps
    labels: list[str]
    models: dict[str, ModelRef | None]
    engine: str | None
    classifier_info: dict[str, Any] = field(default_factory=dict)
    served_rewriter: dict[str, Any] | None = None  # what vLLM loaded, when it serves the adapter merged

    @property
    def scoring(self) -> NamedSteps:
        """prepare, (prefilter), classify, policy: the CPU-side steps."""
        return [(name, step) for name, step in self.steps if name not in REWRITING]

    @property
    def rewriting(self) -> NamedSteps:
        """rewrite and verify (when rewriting is on): the decoder's side."""
        return [(name, step) for name, step in self.steps if name in REWRITING]

    def model_ids(self) -> dict[str, str | None]:
        """Content hash per model: what the audit lines, checkpoints and state fingerprints record."""
        return model_ids(self.models)


def model_ids(refs: dict[str, ModelRef | None]) -> dict[str, str | None]:
    """Content hash per model reference (None for a model the run does not use, such as no adapter)."""
    return {name: (ref.sha256 if ref else None) for name, ref in refs.items()}


def scoring_steps(config: JobConfig, models: Models) -> NamedSteps:
    from moderator.policy import Policy

    steps: NamedSteps = [(PREPARE, records.Prepare(config.input.text_column, config.input.id_column))]
    if cascade_active(config, models.prefilter):
        steps.append((PREFILTER, models.prefilter))  # type: ignore[arg-type]
    return steps + [
        (CLASSIFY, models.classifier),
        (POLICY, Policy(config.policy, rewrite_enabled=config.rewriter.enabled, rewritability=models.rewritability)),
    ]


def rewriting_steps(config: JobConfig, models: Models) -> NamedSteps:
    if not config.rewriter.enabled:
        return []
    from moderator.policy import unrewritable_threshold
    from moderator.verify import Verify

    if models.rewriter is None:
        raise ValueError("rewriting is on, but the models were loaded without a rewriter")
    verify = Verify(config.policy, models.classifier, models.embedder,
                    unrewritable_threshold(config.policy, models.rewritability), models.rewritability)
    # verify's candidate check screens the greedy rewrites; the rewriter's sample_when says whether it is used
    return [(REWRITE, functools.partial(models.rewriter, screen=verify.passes, guarded=verify.hopeless_rows)),
            (VERIFY, verify)]


def build_steps(config: JobConfig, models: Models, rewriting: bool = True) -> Steps:
    """The steps for `config`, around already loaded models (thresholds always come from `config`).

    `rewriting=False`: the scoring steps only, around models loaded with `load_models(config,
    rewriter=False)`, but with the rewriter's models and engine recorded as a run that rewrites
    elsewhere (the Ray executor's driver) must record them: resolved and hashed, not loaded.
    """
    steps = scoring_steps(config, models)
    refs = models.scoring_refs()
    engine = served = None  # served: known where the engine runs (not on the Ray driver)
    if config.rewriter.enabled and rewriting:
        steps += rewriting_steps(config, models)
        refs = models.refs()
        engine = models.rewriter.engine.name  # type: ignore[union-attr]
        served = _served_rewriter(models.rewriter.engine)  # type: ignore[union-attr]
    elif config.rewriter.enabled:
        engine = _unloaded_rewriter(config, refs)
    return Steps(steps, models.classifier.labels, refs, engine, _classifier_info(config, models), served)


def _unloaded_rewriter(config: JobConfig, refs: dict[str, ModelRef | None]) -> str:
    """Add the rewriting side's models to `refs` as `Models.refs` names them, resolved and hashed but
    not loaded; the engine that will load them."""
    from moderator.embed import DEFAULT_EMBEDDER
    from moderator.engines import engine_name
    from moderator.models import resolve
    from moderator.rewrite import resolve_models

    base, adapter = resolve_models(config.rewriter)
    refs.update(rewriter_base=base, adapter=adapter,
                embedder=resolve(config.verify.embedder or DEFAULT_EMBEDDER, "embedder"))
    return engine_name(config.rewriter, base)


def _classifier_info(config: JobConfig, models: Models) -> dict[str, Any]:
    """The manifest's `classifier` section: labels, which count as toxic, and the cascade."""
    classifier, prefilter = models.classifier, models.prefilter
    return {
        "labels": classifier.labels,
        "toxic_labels": [classifier.labels[i] for i in classifier.toxic_index],
        "multi_label": classifier.multi_label,
        "cascade": None if prefilter is None else {
            "active": cascade_active(config, prefilter),
            "threshold": prefilter.threshold,
            "calibrated_for_rewrite_threshold": prefilter.calibrated_for,
            "met_target": prefilter.meets_target,
        },
    }


def _served_rewriter(engine: Any) -> dict[str, Any] | None:
    """How the engine applies the adapter, and the merged model it loaded (base and adapter keep their
    own entries under `models`; the merged one is derived from them)."""
    mode = getattr(engine, "lora_serving", None)
    if mode is None:
        return None
    return {"lora_serving": mode, "checkpoint": engine.served.to_dict() if mode == "merged" else None,
            "compiled": getattr(engine, "compiled", None)}


# What happens to one batch, whichever executor drives it.

def score_batch(steps: NamedSteps, carry: CarryOver | None, batch: pa.RecordBatch,
                clock: Counter) -> tuple[pa.RecordBatch, Carried | None]:
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


def rewrite_batch(steps: NamedSteps, batch: pa.RecordBatch, clock: Counter) -> pa.RecordBatch:
    """Rewrite and verify (the engine sees only the rows the policy sent to `rewrite`)."""
    return apply_steps(steps, batch, clock) if batch.num_rows else batch


def merge_carried(carry: CarryOver, scored: pa.RecordBatch, carried: Carried, clock: Counter) -> pa.RecordBatch:
    """Carried-over posts back among the scored ones, in input order (this stores the new decisions)."""
    t = time.perf_counter()
    batch = carry.merge(scored, *carried)
    clock["carry_over"] += time.perf_counter() - t
    return batch


def apply_steps(steps: NamedSteps, batch: pa.RecordBatch, timings: Counter) -> pa.RecordBatch:
    for name, step in steps:
        fault(name)
        t = time.perf_counter()
        batch = step(batch)
        timings[name] += time.perf_counter() - t
    return batch
