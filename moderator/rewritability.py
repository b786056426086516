"""Can this toxic text be rewritten at all? The judge that lets the policy remove instead of rewrite.

Rewriting is the default for a toxic post, but some texts have nothing left once the toxicity is
gone: pure abuse or obscenity, a threat, hate against a group. Rewriting those either changes their
meaning (the rewrite "verifies", yet says something the author never said) or launders the harm
into polite words. This model gives, per text, the probability that no faithful non-toxic rewrite
exists. The model ships two thresholds, both chosen on held-out data for precision, since a wrong
"not rewritable" deletes a post that could have been kept: from `sure_threshold` (precision 0.9) on
the policy removes a toxic post untried; from `threshold` (precision 0.8) on it tries a rewrite first
and removes the post only when no rewrite passes verification. A model folder without a sure
threshold (trained before it existed) has one threshold for both.

It is a logistic regression on hashed word and character n-grams (scikit-learn's stateless
HashingVectorizer, as in the cascade's first stage), so the folder holds only numbers, no pickles:

    config.json   feature settings, threshold, training data and dev metrics
    model.npz     coef (float32, one weight per hashed feature) and intercept
    README.md     model card

Most training text is lower-cased and tokenised ("you 're an idiot ."), while real posts are cased
and written ("You're an idiot."). `prepare` maps both spellings to the same string before any
n-gram is taken, so the model sees real input the way it saw its training data.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import numpy as np

from moderator import models
from moderator.errors import ModelError

CONFIG, WEIGHTS = "config.json", "model.npz"
FORMAT = "moderator-rewritability/1"

_SPLIT_NEGATION = re.compile(r"(\w) n't\b")  # "do n't" -> "don't"
_SPLIT_CLITIC = re.compile(r"(\w) '(s|re|ve|ll|d|m|t)\b")  # "you 're" -> "you're"
_INNER_APOSTROPHE = re.compile(r"(?<=\w)'(?=\w)")  # "you're" -> "youre", as the data often writes it
_PUNCTUATION = re.compile(r"([^\w\s])")


def prepare(text: str) -> str:
    """One spelling for cased prose and lower-cased tokenised text: lower case, apostrophes inside
    words dropped ("you 're", "you're", "youre" all become "youre"), other punctuation spaced out;
    look-alike letters (full-width, mathematical) read as the letters they show (NFKC), as the
    classifier reads them."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'").replace("\u2018", "'")
    text = _SPLIT_NEGATION.sub(r"\1n't", text)
    text = _SPLIT_CLITIC.sub(r"\1'\2", text)
    text = _INNER_APOSTROPHE.sub("", text)
    return " ".join(_PUNCTUATION.sub(r" \1 ", text).split())


PREPROCESSORS = {"prepare": prepare}


def make_vectorizers(features: dict) -> list:
    from sklearn.feature_extraction.text import HashingVectorizer

    preprocessor = PREPROCESSORS[features["preprocessor"]]
    return [
        HashingVectorizer(analyzer=spec["analyzer"], ngram_range=tuple(spec["ngram_range"]),
                          n_features=spec["n_features"], preprocessor=preprocessor, alternate_sign=False,
                          norm="l2", dtype=np.float32)
        for spec in features["vectorizers"]
    ]


def featurize(vectorizers: list, texts: list[str]):  # -> scipy.sparse.csr_matrix
    from scipy.sparse import hstack

    return hstack([v.transform(texts) for v in vectorizers], format="csr")


class Rewritability:
    """The bundled (or a trained) rewritability model. Build with `Rewritability.load(folder)`."""

    def __init__(self, model_ref: models.ModelRef, config: dict, coef: np.ndarray, intercept: float) -> None:
        self.model_ref = model_ref
        self.config = config
        self.threshold = float(config["threshold"])
        self.sure_threshold = max(self.threshold, float(config.get("sure_threshold", self.threshold)))
        self.vectorizers = make_vectorizers(config["features"])
        self.coef = coef
        self.intercept = intercept

    @classmethod
    def load(cls, folder: str | Path | None = None) -> Rewritability:
        """From a folder written by `python -m train rewritability`; None: the one bundled with moderator."""
        ref = models.bundled("rewritability") if folder is None else str(folder)
        path = Path(ref).expanduser()
        if not path.is_dir():
            raise ModelError(f"rewritability model {ref!r}: no such folder")
        config = models.read_json(path / CONFIG) if (path / CONFIG).is_file() else {}
        if config.get("format") != FORMAT or not (path / WEIGHTS).is_file():
            raise ModelError(f"rewritability model {ref!r}: not a rewritability model folder "
                             f"(expected {CONFIG} with format {FORMAT!r} and {WEIGHTS}; train one with "
                             "`python -m train rewritability`)")
        with np.load(path / WEIGHTS) as weights:
            coef = weights["coef"].astype(np.float32)
            intercept = float(weights["intercept"])
        if config["features"].get("preprocessor") not in PREPROCESSORS:
            raise ModelError(f"rewritability model {ref!r}: unknown preprocessor "
                             f"{config['features'].get('preprocessor')!r} (known: {', '.join(PREPROCESSORS)})")
        expected = sum(spec["n_features"] for spec in config["features"]["vectorizers"])
        if coef.shape != (expected,):
            raise ModelError(f"rewritability model {ref!r}: {WEIGHTS} holds {coef.shape} weights, "
                             f"{CONFIG} describes {expected}")
        path = path.resolve()
        return cls(models.ModelRef(ref=ref, path=path, sha256=models.tree_sha256(path)), config, coef, intercept)

    @property
    def ref(self) -> str:
        return self.model_ref.ref

    @property
    def sha256(self) -> str:
        return self.model_ref.sha256

    def predict(self, texts: list[str]) -> np.ndarray:
        """Per text, the probability (float32) that it cannot be rewritten without losing its meaning."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        logits = featurize(self.vectorizers, list(texts)) @ self.coef + np.float32(self.intercept)
        return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)

    def not_rewritable(self, texts: list[str]) -> np.ndarray:
        return self.predict(texts) >= self.threshold
