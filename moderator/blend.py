"""Blend: the transformer's toxic score averaged, in log-odds, with an n-gram model's.

The classifier (a small transformer with a LoRA adapter) and the cascade's first stage (a logistic
regression on hashed word and character n-grams, `moderator/cascade.py`) err on different posts: the
transformer reads context, the n-gram model counts words it has seen in toxic posts across the whole
training mix. Averaged in log-odds, they rank real posts better than either alone (see the classifier's
model card). A classifier folder that ships the cascade's files may also hold `blend.json`, fitted on
held-out data (`python -m train blend`):

    z = weight * logit(toxicity) + (1 - weight) * logit(p_ngram)
    toxicity' = sigmoid(scale * z + bias)          scale > 0: the order of posts by z is kept

toxicity is the transformer's (the highest of its toxicity labels' probabilities after
`calibration.json`: toxic, threat, identity attack); p_ngram the n-gram model's on the same text as
written (`blend_input`: NFKC only; the cascade's model was trained on texts as written). The blended toxicity is the post's toxicity, and
is reported as the `label` (toxic) score; the categories (threat, identity attack, ...) stay the
transformer's. A classifier whose folder has no `blend.json` scores as before. The file:

    {"format": "moderator-blend/1", "label": "toxic", "weight": 0.8, "scale": 1.1, "bias": -0.3,
     "prior": 0.2, "fitted_on": "...", "metrics": {...}}

`[classifier] blend = "off"` reads the transformer alone.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moderator.calibration import read_model_file
from moderator.errors import ModelError

FILE = "blend.json"
FORMAT = "moderator-blend/1"
EPS = 1e-6  # probabilities are clipped to [EPS, 1 - EPS] before their log-odds are taken


def blend_input(texts: list[str]) -> list[str]:
    """What the n-gram model reads: the text as written, its compatibility letters as the letters they show
    (NFKC: "ｉｄｉｏｔ", "𝐢𝐝𝐢𝐨𝐭" -> "idiot"), as the cascade's model was trained on written text."""
    import unicodedata

    return [unicodedata.normalize("NFKC", t) for t in texts]


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class Blend:
    label: str
    weight: float
    scale: float
    bias: float
    meta: dict = field(default_factory=dict)  # prior, data, metrics: for model cards

    @classmethod
    def load(cls, folder: Path) -> Blend | None:
        """The blend in a model folder, or None when it has none."""
        path = Path(folder) / FILE
        try:
            raw = read_model_file(path, FORMAT)
            if raw is None:
                return None
            blend = cls(str(raw["label"]), float(raw["weight"]), float(raw["scale"]), float(raw["bias"]),
                        {k: v for k, v in raw.items() if k not in ("format", "label", "weight", "scale", "bias")})
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelError(f"{path}: not a blend file ({exc})") from None
        if not (0.0 <= blend.weight <= 1.0 and blend.scale > 0 and math.isfinite(blend.scale)
                and math.isfinite(blend.bias)):
            raise ModelError(f"{path}: weight must lie in [0, 1] and scale be a positive number")
        return blend

    def save(self, folder: Path) -> Path:
        path = Path(folder) / FILE
        body = {"format": FORMAT, "label": self.label, "weight": self.weight, "scale": self.scale,
                "bias": self.bias, **self.meta}
        path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
        return path

    def apply(self, p_model: np.ndarray, p_ngram: np.ndarray) -> np.ndarray:
        """The blended toxicity of each text, from the transformer's toxicity and the n-gram model's."""
        z = self.weight * logit(p_model) + (1 - self.weight) * logit(p_ngram)
        return (1.0 / (1.0 + np.exp(-(self.scale * z + self.bias)))).astype(np.float32)
