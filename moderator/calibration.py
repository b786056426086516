"""Calibration: the probability the product prints means what it says.

A classifier's raw probability says how sure the network is on data like its training mix, where half
the posts are toxic; on a forum where one post in ten is, 0.9 does not mean "nine in ten posts scored
so are toxic". A classifier folder may hold `calibration.json`, fitted on held-out data at a stated
prior (`python -m train calibrate`), with one Platt scaling per label applied to the model's logit z:

    p = sigmoid(scale * z + bias)        scale > 0, so the order of posts never changes

For a multi-label model (a sigmoid per label) z is each label's logit; for a two-label softmax model
z is the toxic label's log-odds (logit[toxic] - logit[other]). The file:

    {"format": "moderator-calibration/1", "labels": {"toxic": {"scale": 0.8, "bias": -1.9}, ...},
     "prior": 0.1, "fitted_on": "...", "ece": {...}}

Labels the file does not name keep their raw probability. `[classifier] calibrate = false` reads the
raw probabilities of a calibrated model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moderator.errors import ModelError

FILE = "calibration.json"
FORMAT = "moderator-calibration/1"


def read_model_file(path: Path, file_format: str) -> dict | None:
    """The JSON object a model folder's file holds, checked to be of `file_format`; None when there is no
    such file. Raises ValueError (or OSError) for the caller to turn into one clear error."""
    if not path.is_file():
        return None
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or raw.get("format") != file_format:
        raise ValueError(f"format is {raw.get('format') if isinstance(raw, dict) else None!r}, "
                         f"expected {file_format!r}")
    return raw


@dataclass(frozen=True)
class Calibration:
    scale: dict[str, float]
    bias: dict[str, float]
    meta: dict = field(default_factory=dict)  # prior, data, metrics: for model cards and `moderate config`

    @classmethod
    def load(cls, folder: Path) -> Calibration | None:
        """The calibration in a model folder, or None when it has none."""
        path = Path(folder) / FILE
        try:
            raw = read_model_file(path, FORMAT)
            if raw is None:
                return None
            scale = {label: float(v["scale"]) for label, v in raw["labels"].items()}
            bias = {label: float(v["bias"]) for label, v in raw["labels"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelError(f"{path}: not a calibration file ({exc})") from None
        bad = [label for label, s in scale.items() if not (s > 0 and math.isfinite(s) and math.isfinite(bias[label]))]
        if bad:
            raise ModelError(f"{path}: scale must be a positive number (order-preserving) for {bad}")
        return cls(scale, bias, {k: v for k, v in raw.items() if k not in ("format", "labels")})

    def check(self, labels: list[str], source: str) -> None:
        unknown = sorted(set(self.scale) - set(labels))
        if unknown:
            raise ModelError(f"{source}: {FILE} calibrates {unknown}, which are not labels of the model {labels}")

    def vectors(self, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per-label scale and bias, in the model's label order (1 and 0 for uncalibrated labels)."""
        scale = np.array([self.scale.get(label, 1.0) for label in labels], dtype=np.float32)
        bias = np.array([self.bias.get(label, 0.0) for label in labels], dtype=np.float32)
        return scale, bias

    def to_dict(self) -> dict:
        return {"format": FORMAT,
                "labels": {label: {"scale": self.scale[label], "bias": self.bias[label]} for label in self.scale},
                **self.meta}

    def save(self, folder: Path) -> Path:
        path = Path(folder) / FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path


def fit_platt(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    """Scale and bias of sigmoid(scale * z + bias) that minimise the (weighted) log loss."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1e6, max_iter=1000)
    model.fit(np.asarray(logits, dtype=np.float64).reshape(-1, 1), np.asarray(labels, dtype=int), sample_weight=weights)
    scale, bias = float(model.coef_[0, 0]), float(model.intercept_[0])
    if scale <= 0:
        raise ValueError("the fitted scale is not positive: the scores do not rank the labels on this data")
    return scale, bias


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None,
                               bins: int = 15) -> float:
    """ECE over equal-width probability bins: the (weighted) mean gap between a bin's mean probability
    and its share of positives."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    weights = np.ones_like(probs) if weights is None else np.asarray(weights, dtype=np.float64)
    index = np.minimum((probs * bins).astype(int), bins - 1)
    total, error = weights.sum(), 0.0
    for b in range(bins):
        inside = index == b
        w = weights[inside].sum()
        if w > 0:
            error += w / total * abs(np.average(probs[inside], weights=weights[inside])
                                     - np.average(labels[inside], weights=weights[inside]))
    return float(error)


def reliability(probs: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None,
                bins: int = 10) -> list[dict]:
    """Per bin: its range, mean probability, share of positives and weight (for reliability plots)."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    weights = np.ones_like(probs) if weights is None else np.asarray(weights, dtype=np.float64)
    index = np.minimum((probs * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        inside = index == b
        w = weights[inside]
        if w.sum() > 0:
            rows.append({"low": b / bins, "high": (b + 1) / bins, "n": int(inside.sum()),
                         "mean_probability": float(np.average(probs[inside], weights=w)),
                         "positive_share": float(np.average(labels[inside], weights=w))})
    return rows
