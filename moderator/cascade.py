"""The cascade's cheap first stage: clear posts that are confidently clean before the transformer.

A linear model on hashed word and character n-grams (scikit-learn's stateless HashingVectorizer,
so nothing but the weights is stored: no pickles) scores each post in microseconds. A post whose
first-stage toxicity is under the calibrated threshold is cleared (`allow`, reason
`cleared_by_prefilter`); every other post goes to the transformer as usual.

The threshold was calibrated at training time so that at most a set share of the posts the
transformer flags (toxicity >= the rewrite threshold it was calibrated for) would be cleared; the
files live beside the classifier they were calibrated against:

    cascade.json   features, threshold, calibration and dev metrics, whether it met its target
    cascade.npz    weights (float16) and intercept
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from moderator import records
from moderator.records import Stage

META, WEIGHTS = "cascade.json", "cascade.npz"


def make_vectorizers(features: dict) -> list:
    from sklearn.feature_extraction.text import HashingVectorizer

    return [
        HashingVectorizer(analyzer=spec["analyzer"], ngram_range=tuple(spec["ngram_range"]),
                          n_features=spec["n_features"], alternate_sign=False, norm="l2", lowercase=True,
                          dtype=np.float32)
        for spec in features["vectorizers"]
    ]


def featurize(vectorizers: list, texts: list[str]):  # -> scipy.sparse.csr_matrix
    from scipy.sparse import hstack

    return hstack([v.transform(texts) for v in vectorizers], format="csr")


class Prefilter:
    def __init__(self, folder: Path) -> None:
        self.meta = json.loads((folder / META).read_text())
        with np.load(folder / WEIGHTS) as weights:
            self.coef = weights["coef"].astype(np.float32)
            self.intercept = float(weights["intercept"])
        self.vectorizers = make_vectorizers(self.meta["features"])
        self.threshold = float(self.meta["threshold"])
        self.calibrated_for = float(self.meta["rewrite_threshold"])
        self.meets_target = bool(self.meta.get("meets_target"))

    @staticmethod
    def present(folder: Path) -> bool:
        return (folder / META).is_file() and (folder / WEIGHTS).is_file()

    def probability(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0, dtype=np.float32)
        logits = featurize(self.vectorizers, texts) @ self.coef + self.intercept
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)

    def clears(self, probabilities: np.ndarray) -> np.ndarray:
        return probabilities < self.threshold

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Score every post; cleared posts get their toxicity and stage "prefilter", others stay null."""
        texts = batch.column(records.TEXT).to_pylist()
        present = [i for i, t in enumerate(texts) if t is not None]
        toxicity: list[float | None] = [None] * batch.num_rows
        stage: list[str | None] = [None] * batch.num_rows
        if present:
            probabilities = self.probability([texts[i] for i in present])
            for i, p, cleared in zip(present, probabilities.tolist(), self.clears(probabilities)):
                if cleared:
                    toxicity[i], stage[i] = p, Stage.PREFILTER
        batch = records.set_column(batch, records.TOXICITY, pa.array(toxicity, pa.float32()))
        return records.set_column(batch, records.STAGE, pa.array(stage, pa.string()))
