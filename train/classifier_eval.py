"""Evaluate toxicity classifiers per source, beside alt-profanity-check.

Each classifier is run through moderator's own `Classifier` (the code path `moderate batch` uses),
on the dev split of every source. Metrics: ROC-AUC of the toxicity score, and F1 and accuracy at
the policy's default rewrite threshold (0.5).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from train import data

log = logging.getLogger(__name__)

THRESHOLD = 0.5
BASELINE = "alt-profanity-check"


def metrics(labels: np.ndarray, scores: np.ndarray, threshold: float = THRESHOLD) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    predicted = scores >= threshold
    return {
        "roc_auc": round(float(roc_auc_score(labels, scores)), 4),
        "f1": round(float(f1_score(labels, predicted)), 4),
        "accuracy": round(float(accuracy_score(labels, predicted)), 4),
        "n": int(len(labels)),
    }


def profanity_check_scores(texts: list[str]) -> np.ndarray:
    from profanity_check import predict_prob

    return np.asarray(predict_prob(texts), dtype=np.float64)


def model_scores(model: str, texts: list[str]) -> np.ndarray:
    from moderator.classify import Classifier
    from moderator.config import ClassifierConfig, RuntimeConfig

    classifier = Classifier(ClassifierConfig(model=model, batch_size=128, dtype="float32"), RuntimeConfig())
    return classifier.toxicity(classifier.predict(texts)).astype(np.float64)


def evaluate(named_models: dict[str, str], data_dir: str, split: str = "dev") -> dict:
    """{source: {system: metrics}} for each named model and the baseline, plus "all" sources."""
    examples = [e for e in data.toxicity_examples(data_dir) if e.split == split]
    texts = [e.text for e in examples]
    labels = np.array([e.label for e in examples])
    sources = np.array([e.source for e in examples])
    systems: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    for name, model in named_models.items():
        start = time.perf_counter()
        systems[name] = model_scores(model, texts)
        seconds[name] = round(time.perf_counter() - start, 1)
        log.info("scored %d texts with %s in %.1f s", len(texts), name, seconds[name])
    start = time.perf_counter()
    systems[BASELINE] = profanity_check_scores(texts)
    seconds[BASELINE] = round(time.perf_counter() - start, 1)
    table: dict = {"split": split, "seconds": seconds, "sources": {}}
    for source in [*sorted(set(sources)), "all"]:
        mask = np.ones(len(labels), bool) if source == "all" else sources == source
        table["sources"][source] = {name: metrics(labels[mask], scores[mask]) for name, scores in systems.items()}
    return table


def format_table(table: dict) -> str:
    names = list(next(iter(table["sources"].values())))
    header = f"{'source':<10} {'n':>6}  " + "  ".join(f"{n[:26]:>26}" for n in names)
    lines = [f"split: {table['split']}; ROC-AUC / F1 / accuracy at threshold {THRESHOLD}", header]
    for source, row in table["sources"].items():
        n = next(iter(row.values()))["n"]
        cells = "  ".join(f"{row[name]['roc_auc']:.4f} / {row[name]['f1']:.3f} / {row[name]['accuracy']:.3f}".rjust(26)
                          for name in names)
        lines.append(f"{source:<10} {n:>6}  {cells}")
    return "\n".join(lines)
