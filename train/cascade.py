"""Train and calibrate the cascade's first stage against a trained transformer classifier.

    python -m train cascade --classifier runs/classifier-lora

The linear model is fit on 90% of the training split. Its clearing threshold is calibrated on the
other 10%, per source: the highest threshold at which at most `margin` of the posts the transformer
flags (toxicity >= the policy's rewrite threshold) would have been cleared; the lowest of the
per-source thresholds is kept. It is then measured on the
dev split of every source: the share of posts it clears, and the share of the transformer's toxic
flags it loses. It "meets its target" when the loss is at most `target` on every dev source.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path

import numpy as np

from moderator.cascade import META, WEIGHTS, Prefilter, featurize, make_vectorizers
from train import classifier_data, data

log = logging.getLogger(__name__)

FEATURES = {
    "vectorizers": [
        {"analyzer": "word", "ngram_range": [1, 2], "n_features": 2**18},
        {"analyzer": "char_wb", "ngram_range": [2, 5], "n_features": 2**18},
    ]
}


def transformer_toxicity(classifier_dir: Path, texts: list[str]) -> np.ndarray:
    from moderator.classify import Classifier
    from moderator.config import ClassifierConfig, RuntimeConfig

    classifier = Classifier(ClassifierConfig(model=str(classifier_dir), batch_size=128, cascade="off", dtype="float32"), RuntimeConfig())
    return classifier.toxicity(classifier.predict(texts))


def calibrate(p1: np.ndarray, flagged: np.ndarray, margin: float) -> float:
    """The highest threshold t with mean(p1[flagged] < t) <= margin."""
    scores = np.sort(p1[flagged])
    if len(scores) == 0:
        return 0.0
    allowed = int(np.floor(margin * len(scores)))  # this many flagged posts may fall under t
    return float(scores[allowed]) if allowed < len(scores) else 1.0


def train(data_dir: str, classifier_dir: Path, seed: int = 0, max_train: int | None = None,
          rewrite_threshold: float = 0.5, margin: float = 0.005, target: float = 0.01, c: float = 8.0) -> dict:
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    examples = [e for e in classifier_data.examples(data_dir, augment=False) if e.toxic >= 0]
    train_set = [e for e in examples if e.split == "train"]
    if max_train is not None and max_train < len(train_set):
        train_set = random.Random(seed).sample(train_set, max_train)
    fit_set = [e for e in train_set if data.split_of("calibrate:" + e.text) == "train"]
    calibration = [e for e in train_set if data.split_of("calibrate:" + e.text) == "dev"]
    vectorizers = make_vectorizers(FEATURES)
    model = LogisticRegression(C=c, solver="liblinear", max_iter=200)
    model.fit(featurize(vectorizers, [e.text for e in fit_set]), [e.toxic for e in fit_set])
    (classifier_dir / META).unlink(missing_ok=True)
    np.savez_compressed(classifier_dir / WEIGHTS, coef=model.coef_[0].astype(np.float16),
                        intercept=np.float32(model.intercept_[0]))
    meta = {"features": FEATURES, "threshold": 0.0, "rewrite_threshold": rewrite_threshold}
    (classifier_dir / META).write_text(json.dumps(meta))
    prefilter = Prefilter(classifier_dir)  # score through the stored (float16) weights, as inference will
    cal_texts = [e.text for e in calibration]
    flagged = transformer_toxicity(classifier_dir, cal_texts) >= rewrite_threshold
    cal_p1 = prefilter.probability(cal_texts)
    cal_sources = np.array([e.source for e in calibration])
    # The target holds per source, so calibrate per source and keep the most careful threshold.
    per_source_thresholds = {src: calibrate(cal_p1[cal_sources == src], flagged[cal_sources == src], margin)
                             for src in sorted(set(cal_sources))}
    threshold = min(per_source_thresholds.values())
    dev = [e for e in examples if e.split == "dev"]
    dev_texts = [e.text for e in dev]
    dev_p1 = prefilter.probability(dev_texts)
    dev_flagged = transformer_toxicity(classifier_dir, dev_texts) >= rewrite_threshold
    sources = np.array([e.source for e in dev])
    per_source = {}
    for source in [*sorted(set(sources)), "all"]:
        mask = np.ones(len(dev), bool) if source == "all" else sources == source
        cleared = dev_p1[mask] < threshold
        flags = dev_flagged[mask]
        per_source[source] = {
            "n": int(mask.sum()),
            "cleared_share": round(float(cleared.mean()), 4),
            "transformer_flags": int(flags.sum()),
            "flags_lost": int((cleared & flags).sum()),
            "flag_loss": round(float((cleared & flags).sum() / max(1, flags.sum())), 4),
        }
    meets = all(v["flag_loss"] <= target for v in per_source.values())
    meta.update({
        "threshold": threshold,
        "per_source_thresholds": per_source_thresholds,
        "margin": margin,
        "target_flag_loss": target,
        "meets_target": meets,
        "fit_examples": len(fit_set),
        "calibration_examples": len(calibration),
        "calibration_flags": int(flagged.sum()),
        "dev": per_source,
        "C": c,
        "seconds": round(time.perf_counter() - start, 1),
    })
    (classifier_dir / META).write_text(json.dumps(meta, indent=2) + "\n")
    log.info("cascade: threshold %.4f, dev %s, meets target: %s", threshold, per_source["all"], meets)
    return meta
