"""Fit a classifier's calibration on held-out data at a realistic prior, and say how well it holds.

    python -m train calibrate runs/classifier-lora --prior 0.2

The dev split of the training mix (train/classifier_data.py; the robustness templates and the
counterfactual copies left out: they are not a site's posts; so are texts whose toxicity is unknown) is scored with the classifier's raw
probabilities, through moderator's own `Classifier`. Every example is weighted so that toxic posts
make up `prior` of the weight (real forum dumps hold 5-20% toxic posts; the dev mix about 45%). The
default, 0.2, makes the product's default flag decision (toxicity >= 0.5, "more likely toxic than not
on a forum where one post in five is") the dev operating point nearest the targets FPR <= 3% with
recall >= 85%: calibrated at 0.1, the decision 0.5 caught 0.77 of the toxic dev posts at FPR 0.018,
and 0.3 caught 0.84 at FPR 0.032 (the model card has the table of operating points). One
Platt scaling per label is fitted with those weights (moderator.calibration): the toxicity label on
every dev example, each category on the examples whose source knows it. Written into the folder:
calibration.json (the scalings, the prior, expected calibration error before and after, overall and
per source at the same prior, and the reliability bins) and calibration.png (reliability plots).
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import numpy as np

from moderator.calibration import Calibration, expected_calibration_error, fit_platt, reliability
from train import classifier_data

log = logging.getLogger(__name__)

PRIOR = 0.2
EXCLUDED_SOURCES = ("robustness", "counterfactual")
EPS = 1e-6


def dev_examples(data_dir: str, examples: list[classifier_data.Example] | None = None) -> list[classifier_data.Example]:
    examples = examples if examples is not None else classifier_data.examples(data_dir, augment=False)
    return [e for e in examples if e.split == "dev" and e.source not in EXCLUDED_SOURCES]


def prior_weights(toxic: np.ndarray, prior: float) -> np.ndarray:
    """Weights under which toxic examples make up `prior` of the total (each class keeps its own mix)."""
    toxic = np.asarray(toxic, dtype=bool)
    n_toxic, n_clean = toxic.sum(), (~toxic).sum()
    if not n_toxic or not n_clean:
        return np.ones(len(toxic))
    return np.where(toxic, prior / n_toxic, (1 - prior) / n_clean) * len(toxic)


def raw_scores(model: str, texts: list[str]) -> tuple[np.ndarray, list[str], list[str]]:
    """Uncalibrated per-label probabilities, the labels, and the toxicity labels."""
    from moderator.classify import Classifier
    from moderator.config import ClassifierConfig, RuntimeConfig

    classifier = Classifier(ClassifierConfig(model=model, batch_size=128, dtype="float32", calibrate=False),
                            RuntimeConfig())
    if not classifier.multi_label:
        raise SystemExit(f"{model}: calibration here fits multi-label models (the bundled kind)")
    return classifier.predict(texts), classifier.labels, [classifier.labels[i] for i in classifier.toxic_index]


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


COLLAPSED_SPREAD = 1e-3  # raw toxic probabilities all within this of each other: one output for every text


def check_not_collapsed(model_dir: Path, toxic_probability: np.ndarray, toxic_label: np.ndarray) -> float | None:
    """The dev ROC-AUC of the raw toxic probability (texts of known toxicity), logged; SystemExit when the
    model gives every dev text the same probability. A model that collapsed so (LoRA on every layer at
    learning rate 1e-3 did) calibrates perfectly, to a constant, and nothing else in training notices."""
    from sklearn.metrics import roc_auc_score

    spread = float(np.ptp(toxic_probability)) if len(toxic_probability) else 0.0
    if spread < COLLAPSED_SPREAD:
        raise SystemExit(f"{model_dir}: the model gives every one of {len(toxic_probability):,} dev texts the same "
                         f"toxic probability (spread {spread:.2g}): training collapsed; train again with a lower "
                         "learning rate (--lr), and do not ship this folder")
    known = toxic_label >= 0
    if not (toxic_label[known] == 1).any() or not (toxic_label[known] == 0).any():
        return None
    auc = float(roc_auc_score(toxic_label[known] == 1, toxic_probability[known]))
    (log.warning if auc < 0.75 else log.info)("%s: dev ROC-AUC of the raw toxic probability %.4f on %d texts%s",
                                               model_dir, auc, int(known.sum()),
                                               " (barely above chance: check the training)" if auc < 0.75 else "")
    return auc


def calibrate(model_dir: Path, data_dir: str, prior: float = PRIOR,
              examples: list[classifier_data.Example] | None = None, command: str = "") -> Calibration:
    dev = dev_examples(data_dir, examples)
    texts = [e.text for e in dev]
    probs, labels, toxicity_labels = raw_scores(str(model_dir), texts)
    if "toxic" not in labels:
        raise SystemExit(f"{model_dir}: calibration needs a `toxic` label, the model has {labels}")
    known = np.array([e.labels for e in dev])  # columns in classifier_data.LABELS order
    check_not_collapsed(model_dir, probs[:, labels.index("toxic")], known[:, 0])
    sources = np.array([e.source for e in dev])
    toxic = known[:, 0] == 1
    has_toxicity = known[:, 0] >= 0  # not a hate set's not-hate post
    # The toxicity label: weighted among texts whose toxicity is known. Categories: every text whose
    # source knows the category, a text of unknown toxicity weighted as a clean one.
    toxicity_weights = np.zeros(len(dev))
    toxicity_weights[has_toxicity] = prior_weights(toxic[has_toxicity], prior)
    category_weights = prior_weights(toxic, prior)
    scale, bias, metrics = {}, {}, {}
    for label in labels:
        column = classifier_data.LABELS.index(label) if label in classifier_data.LABELS else None
        if column is None:
            continue
        mask = known[:, column] >= 0
        y = known[mask, column]
        if y.min() == y.max() or y.sum() < 20:
            log.info("label %s: %d positives among %d known, not calibrated", label, int(y.sum()), len(y))
            continue
        z = logit(probs[mask, labels.index(label)])
        w = (toxicity_weights if column == 0 else category_weights)[mask]
        scale[label], bias[label] = fit_platt(z, y, w)
        after = sigmoid(scale[label] * z + bias[label])
        metrics[label] = {
            "n": int(mask.sum()), "positives": int(y.sum()),
            "ece_raw": round(expected_calibration_error(sigmoid(z), y, w), 4),
            "ece": round(expected_calibration_error(after, y, w), 4),
            "reliability_raw": reliability(sigmoid(z), y, w), "reliability": reliability(after, y, w),
        }
        log.info("label %s: scale %.3f bias %.3f, ECE %.4f -> %.4f at prior %.2f", label, scale[label], bias[label],
                 metrics[label]["ece_raw"], metrics[label]["ece"], prior)
    columns = [labels.index(t) for t in toxicity_labels]  # the product's toxicity: the highest of these
    raw_toxicity = probs[:, columns].max(axis=1)
    calibrated = np.stack([sigmoid(scale[labels[c]] * logit(probs[:, c]) + bias[labels[c]]) if labels[c] in scale
                           else probs[:, c] for c in columns], axis=1).max(axis=1)
    per_source = {}
    for source in sorted(set(sources)):
        inside = (sources == source) & has_toxicity
        if toxic[inside].all() or not toxic[inside].any():
            continue  # one class only (forum posts are all toxic): no calibration error at a prior
        w = prior_weights(toxic[inside], prior)
        per_source[source] = {"n": int(inside.sum()),
                              "ece_raw": round(expected_calibration_error(raw_toxicity[inside], toxic[inside], w), 4),
                              "ece": round(expected_calibration_error(calibrated[inside], toxic[inside], w), 4)}
    calibration = Calibration(scale, bias, {
        "method": "platt",
        "prior": prior,
        "fitted_on": f"dev split of the training mix (train/classifier_data.py), {len(dev)} texts from "
                     f"{len(per_source) + (1 if 'forum' in set(sources) else 0)} sources; robustness templates "
                     "and counterfactual copies left out",
        "metrics": metrics,
        "per_source": per_source,
        "command": command,
        "fitted": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    calibration.save(model_dir)
    plot_reliability(metrics, model_dir / "calibration.png", prior)
    return calibration


def plot_reliability(metrics: dict, path: Path, prior: float) -> Path:
    """One panel per calibrated label: the share of positives against the mean probability per bin,
    before (raw) and after calibration, beside the diagonal."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    labels = list(metrics)
    figure = Figure(figsize=(2.6 * len(labels), 2.8), dpi=100, layout="constrained")
    for k, label in enumerate(labels):
        axis = figure.add_subplot(1, len(labels), k + 1)
        axis.plot([0, 1], [0, 1], color="#999999", linewidth=0.8)
        for key, style, name in (("reliability_raw", "--", "raw"), ("reliability", "-", "calibrated")):
            bins = metrics[label][key]
            axis.plot([b["mean_probability"] for b in bins], [b["positive_share"] for b in bins], style,
                      marker="o", markersize=3, label=name)
        axis.set_title(f"{label}\nECE {metrics[label]['ece_raw']:.3f} -> {metrics[label]['ece']:.3f}", fontsize=9)
        axis.set_xlim(0, 1), axis.set_ylim(0, 1)
        axis.set_xlabel("predicted probability", fontsize=8)
        if k == 0:
            axis.set_ylabel(f"share positive (prior {prior:g})", fontsize=8)
            axis.legend(fontsize=7, loc="upper left")
        axis.tick_params(labelsize=7)
    figure.savefig(path, format="png", metadata={"Software": None})
    return path
