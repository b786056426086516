"""Fit a classifier's blend with its cascade's n-gram model on held-out data (moderator/blend.py).

    python -m train blend moderator/bundled/classifier            # after `train calibrate` and `train cascade`

The dev split that `train calibrate` uses (the training mix's, robustness templates and counterfactual
copies left out; texts of unknown toxicity too) is scored through moderator's own `Classifier` (its
toxicity, calibrated, blend off: the highest of the toxic, threat and identity-attack probabilities) and
by the n-gram model of the cascade's first stage, on the text as written. For each
weight of the grid, z = weight * logit(toxicity) + (1 - weight) * logit(n-gram) is ranked against the
labels per source (ROC-AUC); for the weight kept, a Platt scaling of z is fitted with toxic posts
weighted to `prior` of the weight, as the calibration is. The weight kept is the one with the
highest mean ROC-AUC over the sources with both classes among the weights that lower no source's
ROC-AUC below the classifier's alone (weight 1.0: no blend, which is always allowed); with weight
1.0 no blend.json is written. Written into the folder: blend.json (weight, scaling, prior, and every
weight's per-source ROC-AUC, for the model card).
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import numpy as np

from moderator.blend import FILE, Blend, blend_input, logit
from moderator.calibration import expected_calibration_error, fit_platt
from train import classifier_data
from train.calibrate import PRIOR, dev_examples, prior_weights

log = logging.getLogger(__name__)

WEIGHTS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)


def scores(model_dir: Path, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The classifier's toxicity (calibrated, blend off: the highest of its toxicity labels' probabilities)
    and the n-gram model's probability, per text."""
    from moderator.cascade import Prefilter
    from moderator.classify import Classifier
    from moderator.config import ClassifierConfig, RuntimeConfig

    if not Prefilter.present(model_dir):
        raise SystemExit(f"{model_dir}: no cascade n-gram model to blend with (train one: python -m train cascade "
                         f"--classifier {model_dir})")
    classifier = Classifier(ClassifierConfig(model=str(model_dir), batch_size=128, cascade="off", blend="off"),
                            RuntimeConfig())
    if "toxic" not in classifier.labels or not classifier.multi_label:
        raise SystemExit(f"{model_dir}: the blend needs a multi-label model with a `toxic` label")
    ngram = Prefilter(model_dir).probability(blend_input(texts))  # as written, as the product reads them
    return classifier.toxicity(classifier.predict(texts)), ngram


def per_source_auc(z: np.ndarray, toxic: np.ndarray, sources: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    out = {}
    for source in sorted(set(sources)):
        inside = sources == source
        if toxic[inside].all() or not toxic[inside].any():
            continue
        out[str(source)] = round(float(roc_auc_score(toxic[inside], z[inside])), 4)
    return out


def choose(table: dict[float, dict[str, float]]) -> float:
    """The weight with the highest mean per-source ROC-AUC among those lowering no source's below
    weight 1.0's."""
    alone = table[1.0]
    allowed = [w for w, aucs in table.items() if all(aucs[s] >= alone[s] for s in alone)]
    return max(allowed, key=lambda w: (float(np.mean(list(table[w].values()))), w))


def fit(model_dir: Path, data_dir: str, prior: float = PRIOR, weights: tuple[float, ...] = WEIGHTS,
        examples: list[classifier_data.Example] | None = None, command: str = "") -> Blend | None:
    dev = [e for e in dev_examples(data_dir, examples) if e.toxic in (0, 1)]
    texts = [e.text for e in dev]
    toxic = np.array([e.toxic == 1 for e in dev])
    sources = np.array([e.source for e in dev])
    toxicity, ngram = scores(model_dir, texts)
    weights = tuple(sorted(set(weights) | {1.0}, reverse=True))
    table = {w: per_source_auc(w * logit(toxicity) + (1 - w) * logit(ngram), toxic, sources) for w in weights}
    for w, aucs in table.items():
        log.info("weight %.2f: mean ROC-AUC %.4f; %s", w, np.mean(list(aucs.values())), aucs)
    weight = choose(table)
    if weight == 1.0:
        log.info("no weight ranks every source at least as well as the classifier alone: no blend")
        (model_dir / FILE).unlink(missing_ok=True)
        return None
    z = weight * logit(toxicity) + (1 - weight) * logit(ngram)
    w = prior_weights(toxic, prior)
    scale, bias = fit_platt(z, toxic.astype(int), w)
    blended = 1 / (1 + np.exp(-(scale * z + bias)))
    blend = Blend("toxic", weight, float(scale), float(bias), {
        "prior": prior,
        "fitted_on": f"dev split of the training mix (train/classifier_data.py), {len(dev)} texts of known "
                     "toxicity; robustness templates and counterfactual copies left out",
        "ece": round(expected_calibration_error(blended, toxic, w), 4),
        "roc_auc": {str(k): aucs for k, aucs in table.items()},
        "command": command,
        "fitted": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    blend.save(model_dir)
    return blend
