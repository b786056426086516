"""Evaluate detox rewriters on the ParaDetox dev split, side by side with simple references.

Per sentence: STA = the probability the project's classifier gives the output of being non-toxic;
SIM = cosine of all-MiniLM-L6-v2 embeddings of input and output; chrF = sacrebleu's chrF of the
output against the human rewrites (0..1). J = mean over sentences of STA x SIM x chrF.

The project's classifier and embedder also pick self-training's data, so they must not be the only
judge of a model trained on it: STA* = 1 - alt-profanity-check's probability (a TF-IDF + linear SVM
trained on other data) and J* = mean of STA* x SIM x chrF give the independent view. chrF against the
human rewrites is in both, so a rewriter that deletes words or empties the post loses on either.

Rows: copy the input; Delete (drop the words the classifier blames most, found by occlusion);
each model; and the human rewrites (the first rewrite scored against the others, on the sentences
that have at least two, so its n is smaller).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from moderator import models
from train import data

log = logging.getLogger(__name__)


class Scorer:
    """STA, SIM and chrF with the project's own classifier and the pip-shipped MiniLM."""

    def __init__(self, classifier: str | None = None) -> None:
        from moderator.classify import Classifier
        from moderator.config import ClassifierConfig, RuntimeConfig
        from moderator.embed import Embedder

        self.classifier = Classifier(ClassifierConfig(model=classifier, batch_size=128, cascade="off", dtype="float32"), RuntimeConfig())
        self.embedder = Embedder(None, "cpu", batch_size=128)

    def toxicity(self, texts: list[str]) -> np.ndarray:
        return self.classifier.toxicity(self.classifier.predict(texts)).astype(np.float64)

    def sentences(self, inputs: list[str], outputs: list[str], references: list[tuple[str, ...]]) -> dict[str, np.ndarray]:
        """STA, SIM and chrF per sentence (an empty output scores SIM 0 and chrF 0)."""
        from sacrebleu.metrics import CHRF

        outputs = [o or "" for o in outputs]
        empty = np.array([not o.strip() for o in outputs])
        sta = 1.0 - self.toxicity([o or " " for o in outputs])
        sim = np.clip(self.embedder.similarity(inputs, [o or " " for o in outputs]), 0.0, 1.0)
        sim[empty] = 0.0
        chrf_metric = CHRF()
        chrf = np.array([chrf_metric.sentence_score(o, list(refs)).score / 100 for o, refs in zip(outputs, references)])
        chrf[empty] = 0.0
        sta_judge = 1.0 - independent_toxicity(outputs)
        return {"STA": sta, "SIM": sim, "chrF": chrf, "J": sta * sim * chrf,
                "STA*": sta_judge, "J*": sta_judge * sim * chrf}

    def score(self, inputs: list[str], outputs: list[str], references: list[tuple[str, ...]]) -> dict[str, float]:
        """Means over sentences; J is the mean of the per-sentence products."""
        per_sentence = self.sentences(inputs, outputs, references)
        return {**{k: round(float(v.mean()), 4) for k, v in per_sentence.items()}, "n": len(outputs)}


def independent_toxicity(texts: list[str]) -> np.ndarray:
    """alt-profanity-check's probability that each text is profane: the judge that picked no data."""
    from profanity_check import predict_prob

    return np.asarray(predict_prob([t or "" for t in texts]), dtype=np.float64) if texts else np.zeros(0)


def delete_baseline(scorer: Scorer, texts: list[str], rounds: int = 3, threshold: float = 0.5) -> list[str]:
    """Drop, up to `rounds` times, the word whose removal lowers the toxicity most, while still toxic."""
    words = [t.split() for t in texts]
    for _ in range(rounds):
        todo = [i for i, w in enumerate(words) if len(w) > 1]
        current = scorer.toxicity([" ".join(words[i]) for i in todo])
        todo = [i for i, tox in zip(todo, current) if tox >= threshold]
        if not todo:
            break
        variants, owners = [], []
        for i in todo:
            for j in range(len(words[i])):
                variants.append(" ".join(words[i][:j] + words[i][j + 1:]))
                owners.append((i, j))
        scores = scorer.toxicity(variants)
        best: dict[int, tuple[float, int]] = {}
        for (i, j), score in zip(owners, scores):
            if i not in best or score < best[i][0]:
                best[i] = (score, j)
        for i, (_, j) in best.items():
            del words[i][j]
    return [" ".join(w) for w in words]


def rewrite_with(spec: str, posts: list[str], engine: str) -> list[str]:
    """Rewrites from a trained model folder: a PEFT adapter (its base from adapter_config.json) or a
    fully fine-tuned model."""
    from moderator.config import RewriterConfig, RuntimeConfig
    from moderator.rewrite import Rewriter

    path = models.resolve_path(spec, "rewriter")
    config = (RewriterConfig(adapter=str(path), engine=engine, dtype="float32") if models.is_peft_adapter(path)
              else RewriterConfig(base=str(path), engine=engine, dtype="float32"))
    rewriter = Rewriter(config, RuntimeConfig())
    return rewriter.rewrite(posts)


def evaluate(named_models: dict[str, str], data_dir: str, limit: int | None = None, engine: str = "auto",
             classifier: str | None = None) -> dict:
    dev = [p for p in data.paradetox_pairs(data_dir) if p.split == "dev"][:limit]
    inputs = [p.toxic for p in dev]
    references = [p.neutral for p in dev]
    scorer = Scorer(classifier)
    rows: dict[str, dict] = {}
    start = time.perf_counter()
    rows["copy input"] = scorer.score(inputs, inputs, references)
    start = time.perf_counter()
    deleted = delete_baseline(scorer, inputs)
    rows["Delete"] = {**scorer.score(inputs, deleted, references), "seconds": round(time.perf_counter() - start, 1)}
    samples = {"input": inputs[:8], "Delete": deleted[:8]}
    for name, spec in named_models.items():
        start = time.perf_counter()
        outputs = rewrite_with(spec, inputs, engine)
        seconds = round(time.perf_counter() - start, 1)
        rows[name] = {**scorer.score(inputs, outputs, references), "seconds": seconds}
        samples[name] = outputs[:8]
        stats = Path(models.resolve_path(spec, "rewriter")) / "train_stats.json"
        if stats.exists():
            import json

            info = json.loads(stats.read_text())
            rows[name]["training"] = {k: info["stats"][k] for k in ("trainable_params", "total_params", "seconds",
                                                                    "peak_rss_mb", "steps")}
            rows[name]["training"].update({k: info[k] for k in ("method", "command", "code", "precision",
                                                                "extra_pairs", "extra_pairs_file", "note")
                                              if info.get(k)})
            rows[name]["training"]["weights_mb"] = round(sum(
                f.stat().st_size for f in stats.parent.glob("*.safetensors")) / 1e6, 1)
        log.info("%s: %s", name, rows[name])
    multi = [i for i, refs in enumerate(references) if len(refs) >= 2]
    rows["human rewrites"] = scorer.score([inputs[i] for i in multi], [references[i][0] for i in multi],
                                          [references[i][1:] for i in multi])
    return {"split": "dev", "sentences": len(dev), "rows": rows, "samples": samples}


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_table(table: dict) -> str:
    width = max([24, *(len(name) for name in table["rows"])])
    lines = [f"ParaDetox dev, {table['sentences']} sentences: STA, SIM, chrF, J = mean(STA x SIM x chrF); "
             "STA*, J*: the same with alt-profanity-check as the toxicity judge",
             f"{'system':<{width}} {'STA':>6} {'SIM':>6} {'chrF':>6} {'J':>6} {'STA*':>6} {'J*':>6} {'n':>6}"
             "  trainable params  weights MB  train s  peak MB"]
    for name, row in table["rows"].items():
        t = row.get("training", {})
        extra = (f"  {t['trainable_params']:>16,}  {_cell(t.get('weights_mb')):>10}  {t['seconds']:>7.0f}"
                 f"  {t['peak_rss_mb']:>7.0f}" if t else "")
        independent = (f" {row['STA*']:>6.3f} {row['J*']:>6.3f}" if "J*" in row else f" {'-':>6} {'-':>6}")
        lines.append(f"{name:<{width}} {row['STA']:>6.3f} {row['SIM']:>6.3f} {row['chrF']:>6.3f} {row['J']:>6.3f}"
                     f"{independent} {row['n']:>6}{extra}")
    return "\n".join(lines)
