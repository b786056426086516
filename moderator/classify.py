"""Classify: score every post's toxicity with a transformers sequence classifier.

Built once (loads the model), then called per record batch. Posts are tokenized once, sorted by
length and cut into model batches padded only to their own longest post (dynamic padding), which
on forum text of mixed lengths does several times less arithmetic than padding to a fixed length.
A token budget (`max_batch_tokens`) caps each batch's padded size, and rows and lengths are rounded
up to a few steps so that the CPU kernels see a bounded set of shapes (memory, see batching.py).

Single-label models (softmax): toxicity = the summed probability of the toxic labels.
Multi-label models (sigmoid per label): toxicity = the highest toxic label's probability. A model may
name its toxicity labels itself (`toxicity_labels` in its config, as the bundled one does: `toxic`,
`threat` and `identity_attack`); its labels that are known categories (CATEGORY_NAMES: insult,
threat, ...) are reported in `scores` for the policy and the DSA export, and only those among its
toxicity labels raise the toxicity score. A model folder's
`calibration.json` (moderator.calibration) rescales the logits before the sigmoid or softmax.

Posts of more than one sentence are also scored sentence by sentence (sentences.py), in the same
forward passes as the posts: the policy rewrites only the toxic sentences of a long post. A post
longer than the classifier's window (`max_length` tokens) is read in full: every text (post or
sentence) longer than the window is scored in overlapping windows and takes its most toxic window's
score, and such a post's toxicity is the highest of that and its sentences' scores, so harmless
padding (or one endless run-on sentence) cannot hide toxic text past the window. A post that fits keeps its own score: a sentence read
out of context is more often mistaken for toxic than the post it stands in.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow as pa

from moderator import deobfuscate, models, records, sentences
from moderator.blend import Blend, blend_input
from moderator.calibration import Calibration
from moderator.batching import padded_batches
from moderator.config import ClassifierConfig, RuntimeConfig
from moderator.errors import ConfigError, ModelError
from moderator.records import Stage

log = logging.getLogger(__name__)

TOXIC_NAMES = re.compile(
    r"toxic|hate|offensive|obscene|insult|threat|abuse|abusive|harass|profan|severe|identity_attack|sexual_explicit",
    re.IGNORECASE,
)
# Category labels a model may carry beside toxicity: records.CATEGORIES (the bundled model's, which the
# policy and the DSA export read), and Jigsaw/Detoxify-style names, reported as they are.
CATEGORY_NAMES = frozenset(records.CATEGORIES) | {"identity_hate", "sexual_explicit"}
SENTENCES_TYPE = pa.list_(pa.struct([pa.field("start", pa.int32()), pa.field("end", pa.int32()),
                                     pa.field("toxicity", pa.float32())]))


class Classifier:
    """A toxicity classifier step: adds `toxicity` and per-label `scores` to each batch."""

    def __init__(self, config: ClassifierConfig, runtime: RuntimeConfig) -> None:
        import torch
        from transformers import AutoTokenizer

        self.config = config
        self.model_ref = models.resolve(config.model or models.bundled("classifier"), "classifier")
        self.device = models.pick_device(runtime.device)
        self.dtype = models.pick_dtype(config.dtype, self.device, cpu_bf16=True)
        models.set_threads(runtime.threads)
        path = self.model_ref.path
        self.model, tokenizer_path = self._load(path)
        self.model.to(self.device).eval()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
        except (OSError, ValueError) as exc:
            raise ModelError(f"classifier {self.model_ref.ref!r}: cannot load its tokenizer ({exc})") from None
        model_config = self.model.config
        self.labels = [str(model_config.id2label[i]) for i in range(model_config.num_labels)]
        self.multi_label = (
            config.multi_label
            if config.multi_label is not None
            else model_config.problem_type == "multi_label_classification"
        )
        self.toxic_index = self._toxic_index(config.toxic_labels or tuple(getattr(model_config, "toxicity_labels", ())))
        self.categories = [label for label in self.labels if label in CATEGORY_NAMES]
        self.calibration = Calibration.load(path) if config.calibrate else None
        self._calibration = None
        if self.calibration is not None:
            self.calibration.check(self.labels, f"classifier {self.model_ref.ref!r}")
            if not self.multi_label and len(self.labels) != 2:
                raise ModelError(f"classifier {self.model_ref.ref!r}: calibration needs a multi-label model or a "
                                 f"two-label softmax one (labels: {self.labels})")
            self._calibration = tuple(torch.tensor(v, device=self.device) for v in self.calibration.vectors(self.labels))
        self.blend, self._ngram = self._load_blend(path) if config.blend != "off" else (None, None)
        self.max_length = min(config.max_length, self.tokenizer.model_max_length or config.max_length)
        self._torch = torch
        # One caller at a time: the local executor scores in one thread and verifies rewrites (which
        # calls `predict`) in another, and a fast tokenizer must not be used by two threads at once.
        self._lock = threading.Lock()
        log.info(
            "classifier %s: labels %s, toxic %s, %s, on %s",
            self.model_ref.ref, self.labels, [self.labels[i] for i in self.toxic_index],
            "multi-label" if self.multi_label else "single-label", self.device,
        )

    def _load_blend(self, path: Path):  # -> (Blend, cascade.Prefilter) or (None, None)
        """The folder's blend.json (moderator.blend) and the n-gram model it blends with (the cascade's
        first stage, whose files it needs), or (None, None) when the folder has no blend."""
        from moderator.cascade import Prefilter

        blend = Blend.load(path)
        if blend is None:
            return None, None
        source = f"classifier {self.model_ref.ref!r}"
        if not Prefilter.present(path):
            raise ModelError(f"{source}: blend.json needs the cascade's n-gram model (cascade.json, cascade.npz) "
                             "beside it; set [classifier] blend = off to read the transformer alone")
        if blend.label not in self.labels or not self.multi_label:
            raise ModelError(f"{source}: blend.json blends label {blend.label!r}, which needs a multi-label model "
                             f"with that label (labels: {self.labels})")
        return blend, Prefilter(path)

    def _load(self, path: Path):  # -> (model, tokenizer folder)
        from transformers import AutoConfig, AutoModelForSequenceClassification

        try:
            if not models.is_peft_adapter(path):
                model = AutoModelForSequenceClassification.from_pretrained(path, dtype=self.dtype)
                return model, path
            # A PEFT adapter (LoRA plus a trained head) saved next to the classification config.
            from peft import PeftModel

            adapter_config = models.read_json(path / "adapter_config.json")
            base = models.resolve_path(adapter_config["base_model_name_or_path"], "classifier base")
            config = AutoConfig.from_pretrained(path if (path / "config.json").exists() else base)
            model = AutoModelForSequenceClassification.from_pretrained(base, config=config, dtype=self.dtype)
            model = PeftModel.from_pretrained(model, path).merge_and_unload()
            tokenizer_path = path if (path / "tokenizer_config.json").exists() else base
            return model, tokenizer_path
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"classifier {self.model_ref.ref!r}: cannot load ({str(exc).splitlines()[0]})") from None

    def _toxic_index(self, toxic_labels: tuple[str, ...]) -> list[int]:
        if toxic_labels:
            unknown = [label for label in toxic_labels if label not in self.labels]
            if unknown:
                raise ConfigError(
                    f"[classifier] toxic_labels {unknown} are not labels of {self.model_ref.ref!r} "
                    f"(its labels: {self.labels})"
                )
            return [self.labels.index(label) for label in toxic_labels]
        named = [i for i, label in enumerate(self.labels) if TOXIC_NAMES.search(label)]
        non_toxic = re.compile(r"^(non|not|no)[-_ ]?", re.IGNORECASE)
        named = [i for i in named if not non_toxic.match(self.labels[i])]
        if named:
            return named
        if len(self.labels) == 2 and not self.multi_label:
            return [1]  # the usual convention for binary classifiers: label 1 is the positive class
        raise ConfigError(
            f"cannot tell which labels of classifier {self.model_ref.ref!r} mean toxic (labels: {self.labels}); "
            "set [classifier] toxic_labels or --toxic-label"
        )

    def predict(self, texts: list[str]) -> np.ndarray:
        """Per-label probabilities, shape (len(texts), number of labels), in input order."""
        return self.predict_windowed(texts)[0]

    def predict_windowed(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per-label probabilities, and for each text whether it filled the model's window (it may have
        been cut)."""
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32), np.zeros(0, dtype=bool)
        with self._lock:
            return self._predict(texts)

    def _predict(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Every text is read to its end: one longer than the window is cut into overlapping windows
        (the tokenizer's overflow, a quarter of the window shared), and its probabilities are those of
        its most toxic window. `full`: the text did not fit one window."""
        # NFKC: full-width, mathematical and other compatibility letters read as the letters they
        # show ("ｉｄｉｏｔ", "𝐢𝐝𝐢𝐨𝐭" -> "idiot"); then spaced-out letters, leetspeak and look-alike
        # letters of other scripts read as the words they spell (moderator.deobfuscate).
        read = [deobfuscate.classifier_input(t) if self.config.deobfuscate else unicodedata.normalize("NFKC", t)
                for t in texts]
        # A word left unknown that is a slip of several words is read as each (deobfuscate.readings); a text
        # scores as its most toxic reading, as a long one scores as its most toxic window.
        others = [deobfuscate.readings(t, self.config.slip_readings) if self.config.deobfuscate else [] for t in texts]
        owner = np.array([*range(len(texts)), *(i for i, alts in enumerate(others) for _ in alts)])
        probs, full = self._predict_model(read + [a for alts in others for a in alts])
        if self.blend is not None:  # the toxicity averaged in log-odds with the n-gram model's (moderator.blend),
            toxicity = self._model_toxicity(probs)  # which reads the texts as written (NFKC), as it was trained
            ngram = self._ngram.probability(blend_input(texts))
            probs[:, self.labels.index(self.blend.label)] = self.blend.apply(toxicity, ngram[owner])
        if len(owner) == len(texts):
            return probs, full
        return probs[most_toxic(self.toxicity(probs), owner, len(texts))], full[: len(texts)]

    def _predict_model(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The transformer's probabilities of texts already read (`_predict`), window by window."""
        torch = self._torch
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=False,
                                 return_overflowing_tokens=True, stride=self.max_length // 4)
        owner = encoded.pop("overflow_to_sample_mapping", None)  # window -> text (fast tokenizers)
        if owner is None:  # a slow tokenizer: one window per text, cut at the window
            owner = list(range(len(texts)))
        window_probs = np.empty((len(owner), len(self.labels)), dtype=np.float32)
        with torch.inference_mode():
            for chunk, batch in padded_batches(self.tokenizer, encoded, self.config.batch_size,
                                               self.config.max_batch_tokens, self.max_length):
                batch = {k: v.to(self.device) for k, v in batch.items()}
                logits = self.model(**batch).logits[: len(chunk)].float()
                p = self._probabilities(logits)
                window_probs[chunk] = p.cpu().numpy()
        owner = np.asarray(owner)
        if len(owner) == len(texts):  # nothing overflowed: windows are the texts
            full = np.array([len(ids) >= self.max_length for ids in encoded["input_ids"]], dtype=bool)
            return window_probs, full
        probs = window_probs[most_toxic(self._model_toxicity(window_probs), owner, len(texts))]
        full = np.bincount(owner, minlength=len(texts)) > 1
        return probs, full

    def _probabilities(self, logits):  # type: ignore[no-untyped-def]
        torch = self._torch
        if self.multi_label:
            if self._calibration is not None:
                scale, bias = self._calibration
                logits = logits * scale + bias
            return torch.sigmoid(logits)
        if self._calibration is None:
            return torch.softmax(logits, dim=-1)
        # Two labels: calibrate the toxic label's log-odds, the other label takes the rest.
        toxic = self.toxic_index[0]
        scale, bias = self._calibration
        p = torch.sigmoid((logits[:, toxic] - logits[:, 1 - toxic]) * scale[toxic] + bias[toxic])
        return torch.stack([1 - p, p] if toxic == 1 else [p, 1 - p], dim=-1)

    def toxicity(self, probs: np.ndarray) -> np.ndarray:
        """Each text's toxicity: with a blend, its label's (blended) score; else the highest of the toxic labels'
        probabilities (or, for a softmax model, their sum)."""
        if self.blend is not None:
            return probs[:, self.labels.index(self.blend.label)].clip(0.0, 1.0)
        return self._model_toxicity(probs)

    def _model_toxicity(self, probs: np.ndarray) -> np.ndarray:
        toxic = probs[:, self.toxic_index]
        return (toxic.max(axis=1) if self.multi_label else toxic.sum(axis=1)).clip(0.0, 1.0)

    def scores_array(self, probs: np.ndarray, present: np.ndarray) -> pa.StructArray:
        fields = [pa.field(label, pa.float32()) for label in self.labels]
        mask = pa.array(~present)
        children = [pa.array(probs[:, i], pa.float32()) for i in range(len(self.labels))]
        return pa.StructArray.from_arrays(children, fields=fields, mask=mask)

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Score every post that has text and was not already cleared by the cascade's first stage."""
        texts = batch.column(records.TEXT).to_pylist()
        n = len(texts)
        prior = batch.column(records.TOXICITY).to_pylist() if records.TOXICITY in batch.schema.names else [None] * n
        stage = batch.column(records.STAGE).to_pylist() if records.STAGE in batch.schema.names else [None] * n
        todo = np.array([t is not None and p is None for t, p in zip(texts, prior)], dtype=bool)
        index = np.flatnonzero(todo)
        probs = np.zeros((n, len(self.labels)), dtype=np.float32)
        spans: list[list[sentences.Span] | None] = [None] * n
        units = [texts[i] for i in index]  # every post, then the sentences of the posts that have several
        for i in index:
            spans[i] = sentences.split(texts[i])
            if len(spans[i]) > 1:
                units.extend(sentences.texts(texts[i], spans[i]))
        unit_probs, full = self.predict_windowed(units)
        unit_toxicity = self.toxicity(unit_probs)
        probs[index] = unit_probs[: len(index)]
        per_sentence: list[list[dict] | None] = [None] * n
        cursor = len(index)
        for k, post in enumerate(index):
            count = len(spans[post]) if len(spans[post]) > 1 else 0
            scores = unit_toxicity[cursor: cursor + count] if count else unit_toxicity[k: k + 1]
            per_sentence[post] = [{"start": a, "end": b, "toxicity": float(t)} for (a, b), t in zip(spans[post], scores)]
            if count and full[k] and scores.max() > unit_toxicity[k]:
                probs[post] = unit_probs[cursor + int(np.argmax(scores))]  # past the window: the most toxic sentence
            cursor += count
        scored = self.toxicity(probs)
        toxicity = [float(scored[i]) if todo[i] else prior[i] for i in range(n)]
        stage = [Stage.CLASSIFIER if todo[i] else stage[i] for i in range(n)]
        batch = records.set_column(batch, records.TOXICITY, pa.array(toxicity, pa.float32()))
        batch = records.set_column(batch, records.STAGE, pa.array(stage, pa.string()))
        batch = records.set_column(batch, records.SENTENCES, pa.array(per_sentence, SENTENCES_TYPE))
        return records.set_column(batch, records.SCORES, self.scores_array(probs, todo))


def most_toxic(toxicity: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Per text 0..n-1, the row of highest toxicity among the rows it owns (`owner[row]`: the text a
    window or a reading belongs to); on a tie the first such row. Every text must own a row."""
    best = np.full(n, -1)
    for row, text in enumerate(owner):
        if best[text] < 0 or toxicity[row] > toxicity[best[text]]:
            best[text] = row
    return best
