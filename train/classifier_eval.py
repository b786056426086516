"""Evaluate toxicity classifiers per source, at the product's flag decision, beside alt-profanity-check.

Each classifier is run through moderator's own `Classifier` (the code path `moderate batch` uses, with
the calibration its folder ships), on the dev split of every source of the training mix
(train/classifier_data.py; the robustness templates are judged by benchmarks/robustness.py, and the
counterfactual copies have no dev split). Per source:

- ROC-AUC of the toxicity score (how well it ranks);
- at the flag decision (toxicity >= the policy's rewrite threshold): the false-positive rate (clean
  posts flagged) and the recall (toxic posts caught), and F1;
- the expected calibration error at a realistic prior (toxic posts weighted to `prior` of the source).

And per category of a model that has categories: ROC-AUC on the dev examples whose source knows it.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from moderator.calibration import expected_calibration_error
from moderator.config import PolicyConfig
from train import classifier_data
from train.calibrate import EXCLUDED_SOURCES, PRIOR, prior_weights

log = logging.getLogger(__name__)

THRESHOLD = PolicyConfig().rewrite_threshold
BASELINE = "alt-profanity-check"
TARGET_FPR, TARGET_RECALL, TARGET_ECE = 0.03, 0.85, 0.05
MIN_POSITIVES = 20  # a category with fewer known positives on dev gets no ROC-AUC


def metrics(labels: np.ndarray, scores: np.ndarray, threshold: float = THRESHOLD, prior: float = PRIOR) -> dict:
    from sklearn.metrics import f1_score, roc_auc_score

    labels = np.asarray(labels, dtype=bool)
    flagged = scores >= threshold
    both = labels.any() and not labels.all()
    return {
        "roc_auc": round(float(roc_auc_score(labels, scores)), 4) if both else None,
        "fpr": round(float(flagged[~labels].mean()), 4) if (~labels).any() else None,
        "recall": round(float(flagged[labels].mean()), 4) if labels.any() else None,
        "f1": round(float(f1_score(labels, flagged)), 4),
        "ece": round(expected_calibration_error(scores, labels, prior_weights(labels, prior)), 4) if both else None,
        "n": int(len(labels)),
        "toxic": int(labels.sum()),
    }


def profanity_check_scores(texts: list[str]) -> np.ndarray:
    from profanity_check import predict_prob

    return np.asarray(predict_prob(texts), dtype=np.float64)


def model_scores(model: str, texts: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Toxicity, and per category the probability (empty for a model without categories)."""
    from moderator.classify import Classifier
    from moderator.config import ClassifierConfig, RuntimeConfig

    classifier = Classifier(ClassifierConfig(model=model, batch_size=128, dtype="float32"), RuntimeConfig())
    probs = classifier.predict(texts)
    categories = {c: probs[:, classifier.labels.index(c)].astype(np.float64) for c in classifier.categories}
    return classifier.toxicity(probs).astype(np.float64), categories


def evaluate(named_models: dict[str, str], data_dir: str, split: str = "dev",
             examples: list[classifier_data.Example] | None = None) -> dict:
    """{"sources": {source: {system: metrics}}, "categories": {system: {category: roc_auc}}, ...}."""
    from sklearn.metrics import roc_auc_score

    examples = examples if examples is not None else classifier_data.examples(data_dir, augment=False)
    examples = [e for e in examples if e.split == split and e.source not in EXCLUDED_SOURCES]
    texts = [e.text for e in examples]
    known = np.array([e.labels for e in examples])
    has_toxicity = known[:, 0] >= 0  # toxicity known (not a hate set's not-hate post): the toxicity metrics
    labels = known[has_toxicity, 0] == 1
    sources = np.array([e.source for e in examples])[has_toxicity]
    systems: dict[str, np.ndarray] = {}
    categories: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    for name, model in named_models.items():
        start = time.perf_counter()
        toxicity, category_scores = model_scores(model, texts)
        systems[name] = toxicity[has_toxicity]
        seconds[name] = round(time.perf_counter() - start, 1)
        log.info("scored %d texts with %s in %.1f s", len(texts), name, seconds[name])
        categories[name] = {}
        for category, scores in category_scores.items():
            column = classifier_data.LABELS.index(category)
            mask = known[:, column] >= 0
            y = known[mask, column]
            if y.sum() >= MIN_POSITIVES and y.sum() < len(y):
                categories[name][category] = {"roc_auc": round(float(roc_auc_score(y, scores[mask])), 4),
                                              "n": int(mask.sum()), "positives": int(y.sum())}
    start = time.perf_counter()
    systems[BASELINE] = profanity_check_scores([t for t, known_toxicity in zip(texts, has_toxicity) if known_toxicity])
    seconds[BASELINE] = round(time.perf_counter() - start, 1)
    table: dict = {"split": split, "threshold": THRESHOLD, "prior": PRIOR, "seconds": seconds, "sources": {},
                   "categories": categories,
                   "targets": {"fpr": TARGET_FPR, "recall": TARGET_RECALL, "ece": TARGET_ECE}}
    for source in [*sorted(set(sources)), "all"]:
        mask = np.ones(len(labels), bool) if source == "all" else sources == source
        table["sources"][source] = {name: metrics(labels[mask], scores[mask]) for name, scores in systems.items()}
    table["operating_points"] = {name: operating_points(labels, sources, scores) for name, scores in systems.items()}
    return table


THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def operating_points(labels: np.ndarray, sources: np.ndarray, scores: np.ndarray) -> list[dict]:
    """Per flag threshold: FPR and recall over all dev texts, and the worst source's FPR and recall
    (what choosing the default threshold trades)."""
    rows = []
    names = sorted(set(sources))
    for t in THRESHOLDS:
        flagged = scores >= t
        fpr = {s: float(flagged[(sources == s) & ~labels].mean()) for s in names if ((sources == s) & ~labels).any()}
        recall = {s: float(flagged[(sources == s) & labels].mean()) for s in names if ((sources == s) & labels).any()}
        rows.append({"threshold": t, "fpr": round(float(flagged[~labels].mean()), 4),
                     "recall": round(float(flagged[labels].mean()), 4),
                     "worst_fpr": round(max(fpr.values()), 4), "worst_fpr_source": max(fpr, key=fpr.get),
                     "worst_recall": round(min(recall.values()), 4), "worst_recall_source": min(recall, key=recall.get)})
    return rows


def rename(table: dict, old: str, new: str) -> dict:
    """The table with system `old` called `new` (in every source, the categories, the timings and the
    operating points)."""
    def swap(mapping: dict) -> dict:
        return {new if k == old else k: v for k, v in mapping.items()}

    return {**table, "sources": {s: swap(row) for s, row in table["sources"].items()},
            "categories": swap(table.get("categories", {})), "seconds": swap(table.get("seconds", {})),
            "operating_points": swap(table.get("operating_points", {}))}


def _cell(m: dict) -> str:
    def f(v, fmt):  # type: ignore[no-untyped-def]
        return "-" if v is None else format(v, fmt)
    return f"{f(m['roc_auc'], '.4f')} / {f(m['fpr'], '.3f')} / {f(m['recall'], '.3f')} / {f(m['ece'], '.3f')}"


def format_table(table: dict) -> str:
    names = list(next(iter(table["sources"].values())))
    header = f"{'source':<14} {'n':>6}  " + "  ".join(f"{n[:32]:>32}" for n in names)
    lines = [f"split: {table['split']}; ROC-AUC / FPR / recall at toxicity >= {table['threshold']} / ECE at prior "
             f"{table['prior']}", header]
    for source, row in table["sources"].items():
        n = next(iter(row.values()))["n"]
        lines.append(f"{source:<14} {n:>6}  " + "  ".join(_cell(row[name]).rjust(32) for name in names))
    for name, points in table.get("operating_points", {}).items():
        lines.append(f"operating points ({name}): " + ", ".join(
            f"{p['threshold']:.1f}: FPR {p['fpr']:.3f} recall {p['recall']:.3f}" for p in points))
    for name, per_category in table["categories"].items():
        if per_category:
            lines.append(f"categories ({name}), ROC-AUC: " + ", ".join(
                f"{c} {v['roc_auc']:.4f} (n {v['n']}, {v['positives']} positive)" for c, v in per_category.items()))
    return "\n".join(lines)
