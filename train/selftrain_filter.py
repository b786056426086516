"""Self-training, stage 2: keep the rewrite candidates that pass the product's checks, strictly.

    python -m train selftrain-filter runs/selftrain/candidates.jsonl --out runs/selftrain/kept.jsonl \\
        --preferences runs/selftrain/preferences.jsonl

Every candidate of `selftrain-candidates` is scored with the product's own models, as
moderator/verify.py scores a rewrite: toxicity by the classifier (bundled unless named), similarity to
its source by the embedder (cosine of all-MiniLM-L6-v2 embeddings), both in float32 so the result does
not depend on the CPU. A candidate passes when, checked in this order (the first failure is its reason):

- empty: it has text;
- copy: it is not the source's words (`moderator.verify.same_words`: case, spacing, punctuation aside);
- kept_insult: it keeps none of the phrases raters marked toxic in its forum sentence (whole words,
  any case): the failure this stage is about, which a lenient classifier can miss;
- still_toxic: its toxicity is below `max_toxicity` (0.1; the product publishes below 0.5);
- dissimilar: its similarity to the source is at least `min_similarity` (0.75; the product: 0.5);
- length: its word count is `min_length_ratio`..`max_length_ratio` (0.6..1.6) times the source's.

Why strict: the model is trained on its own outputs, so whatever slips through here is amplified in
the next round; a pair given up costs little, there are many more texts than the model can learn from
in an hour. Measured on 400 ParaDetox training pairs with the bundled models, the crowd's own rewrites
pass toxicity < 0.1 in 90% of the cases, similarity >= 0.75 in 63%, the length ratio in 82%, all three
in 51%: the filter gives up half of what people write, for rewrites that keep the sentence and drop
its toxicity. Of the rewrites the product published for 200 ParaDetox dev sentences (bundled models,
4 candidates, benchmarks/paradetox_product.py), 59% also pass these. The similarity bar is the one
that favours light edits (drop the insult, keep the rest), which is what forum readers need
(benchmarks/forum_posts.py measures the characters kept).

A source the classifier itself does not score at least `min_source_toxicity` (0.5) is skipped whole
(source_not_toxic): for it a low-toxicity candidate proves nothing was removed, and a near copy would
pass and teach the model to copy.

Writes:
- kept (JSONL): per source text, the best passing candidate by (1 - toxicity) x similarity, as verify
  picks, as {"toxic", "neutral", "source", "toxicity", "similarity", "candidate"} (`candidate`: its
  index, 0 = the greedy one). `python -m train detox --extra-pairs` reads it.
- preferences (JSONL): for every text with a passing candidate, one pair per candidate that failed
  as a copy, kept_insult, still_toxic or dissimilar: {"prompt_text" (the post, before the prompt
  template), "chosen", "rejected", "rejected_why", "source"}, for a later DPO/ORPO stage.
- stats (JSON, beside kept: kept.stats.json): thresholds, models, candidates seen, kept share per
  source, greedy pass rate, rejections by reason.

With `references` (`--human-rewrites`: the crowd's rewrites of ParaDetox training sentences), a text
that people rewrote is judged against what they wrote too: among its passing candidates the kept one is
the closest to their rewrites by chrF (sacrebleu, as the evaluation's chrF column; ties by (1 -
toxicity) x similarity), and each other passing candidate at least `CHRF_MARGIN` further from them
becomes a preference pair too (rejected_why `unlike_people`): the stock phrases the model falls back
on ("You are not smart.") lose to the light edits people make. Only training sentences carry
references: the dev split's are never read.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from moderator.verify import same_words

log = logging.getLogger(__name__)

PREFERENCE_REASONS = ("copy", "kept_insult", "still_toxic", "dissimilar")
UNLIKE_PEOPLE = "unlike_people"  # a passing candidate much further from the human rewrites than the kept one
CHRF_MARGIN = 0.1  # chrF (0..1) by which the kept candidate must be closer to the human rewrites


@dataclass(frozen=True)
class Thresholds:
    max_toxicity: float = 0.1
    min_similarity: float = 0.75
    min_length_ratio: float = 0.6
    max_length_ratio: float = 1.6
    min_source_toxicity: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.max_toxicity <= 1.0 or not 0.0 <= self.min_source_toxicity <= 1.0:
            raise ValueError("toxicity thresholds must lie in (0, 1]")
        if not -1.0 <= self.min_similarity <= 1.0:
            raise ValueError("min similarity must lie in [-1, 1]")
        if not 0.0 <= self.min_length_ratio <= self.max_length_ratio:
            raise ValueError("length ratios: need 0 <= min <= max")


class Scorer(Protocol):
    def toxicity(self, texts: list[str]) -> np.ndarray: ...

    def embed(self, texts: list[str]) -> np.ndarray: ...


class ProductScorer:
    """The product's classifier and embedder (bundled unless named), in float32."""

    def __init__(self, classifier: str | None = None, embedder: str | None = None, threads: int = 0) -> None:
        from moderator import models
        from moderator.classify import Classifier
        from moderator.config import ClassifierConfig, RuntimeConfig
        from moderator.embed import Embedder

        runtime = RuntimeConfig(threads=threads)
        self.classifier = Classifier(ClassifierConfig(model=classifier, dtype="float32", cascade="off"), runtime)
        self.embedder = Embedder(embedder, models.pick_device(runtime.device), dtype="float32")

    def toxicity(self, texts: list[str]) -> np.ndarray:
        return self.classifier.toxicity(self.classifier.predict(texts))

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.embedder.encode(texts)

    def identity(self) -> dict:
        return {"classifier": self.classifier.model_ref.to_dict(), "embedder": self.embedder.model_ref.to_dict()}


@dataclass
class Judged:
    """One source text and the verdict on each of its candidates."""

    source: str
    text: str
    source_toxicity: float
    candidates: list[str]
    toxicity: list[float]
    similarity: list[float]
    why: list[str | None]  # None: passes
    skipped: str | None = None  # source_not_toxic, no_candidates
    chrf: list[float] | None = None  # per candidate, chrF (0..1) against the human rewrites, where known

    def best(self) -> int | None:
        """The passing candidate with the highest (1 - toxicity) x similarity (the first on a tie); where
        the human rewrites are known, the passing one closest to them by chrF first."""
        if self.skipped:
            return None
        passing = [k for k, why in enumerate(self.why) if why is None]
        if not passing:
            return None
        near = self.chrf or [0.0] * len(self.candidates)
        return max(passing, key=lambda k: (near[k], (1 - self.toxicity[k]) * self.similarity[k], -k))


def kept_insult(insults: list[str], candidate: str) -> bool:
    lowered = candidate.casefold()
    return any(re.search(r"(?<!\w)" + re.escape(i.casefold()) + r"(?!\w)", lowered) for i in insults)


def verdict(source: str, candidate: str, toxicity: float, similarity: float, insults: list[str],
            limits: Thresholds) -> str | None:
    """The reason a candidate fails, or None when it passes."""
    if not candidate.strip():
        return "empty"
    if same_words(source, candidate):
        return "copy"
    if kept_insult(insults, candidate):
        return "kept_insult"
    if toxicity >= limits.max_toxicity:
        return "still_toxic"
    if similarity < limits.min_similarity:
        return "dissimilar"
    ratio = len(candidate.split()) / max(1, len(source.split()))
    if not limits.min_length_ratio <= ratio <= limits.max_length_ratio:
        return "length"
    return None


def read_candidates(path: Path) -> Iterator[dict]:
    """The records of a candidates file, each text once. A last line cut off mid-write is skipped."""
    lines = path.read_text(encoding="utf-8").split("\n")
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            text, candidates = record["text"], record["candidates"]
            if not isinstance(text, str) or not isinstance(candidates, list):
                raise TypeError
        except (json.JSONDecodeError, KeyError, TypeError):
            if number == len(lines):  # no newline after it: cut off
                log.warning("%s:%d: skipping a last line cut off mid-write", path, number)
                continue
            raise ValueError(f"{path}:{number}: not a candidates line ({{\"text\", \"candidates\": [...]}})") from None
        if text not in seen:
            seen.add(text)
            yield record


def human_rewrites(data_dir: str | Path) -> dict[str, tuple[str, ...]]:
    """The crowd's rewrites of every ParaDetox training sentence, by its normalised text (dev sentences
    are left out: their rewrites are the evaluation's references)."""
    from train import data

    return {data.normalize(p.toxic): tuple(p.neutral) for p in data.paradetox_pairs(data_dir) if p.split == "train"}


def chrf_scores(candidates: list[str], references: tuple[str, ...]) -> list[float]:
    """sacrebleu's sentence chrF of each candidate against the references, on 0..1."""
    from sacrebleu.metrics import CHRF

    metric = CHRF()
    return [metric.sentence_score(c, list(references)).score / 100 for c in candidates]


def judge(records: list[dict], scorer: Scorer, limits: Thresholds,
          references: dict[str, tuple[str, ...]] | None = None) -> list[Judged]:
    """Score a block of records (one classifier and one embedder pass) and judge every candidate; with
    `references` (by normalised text), also each candidate's chrF against its text's human rewrites."""
    from train import data

    texts = [r["text"] for r in records]
    source_toxicity = scorer.toxicity(texts) if texts else np.zeros(0)
    judged, flat = [], []  # flat: (record index, candidate)
    for i, record in enumerate(records):
        candidates = [str(c) for c in record["candidates"]]
        skipped = ("no_candidates" if not candidates else
                   "source_not_toxic" if source_toxicity[i] < limits.min_source_toxicity else None)
        judged.append(Judged(record.get("source", "unknown"), texts[i], float(source_toxicity[i]), candidates,
                             [0.0] * len(candidates), [0.0] * len(candidates), [None] * len(candidates), skipped))
        if skipped is None:
            flat.extend((i, k) for k, c in enumerate(candidates) if c.strip())
    if flat:
        owners = sorted({i for i, _ in flat})
        row = {i: n for n, i in enumerate(owners)}
        source_vectors = scorer.embed([texts[i] for i in owners])
        candidate_texts = [judged[i].candidates[k] for i, k in flat]
        toxicity = scorer.toxicity(candidate_texts)
        similarity = (source_vectors[[row[i] for i, _ in flat]] * scorer.embed(candidate_texts)).sum(axis=1)
        for (i, k), t, s in zip(flat, toxicity.tolist(), np.clip(similarity, -1.0, 1.0).tolist()):
            judged[i].toxicity[k], judged[i].similarity[k] = t, s
    for j, record in zip(judged, records):
        if j.skipped is None:
            insults = [str(x) for x in record.get("insults") or []]
            scored = zip(j.candidates, j.toxicity, j.similarity)
            j.why = [verdict(j.text, c, t, s, insults, limits) for c, t, s in scored]
            people = (references or {}).get(data.normalize(j.text))
            if people:
                j.chrf = chrf_scores(j.candidates, people)
    return judged


def preference_pairs(j: Judged) -> list[dict]:
    """(chosen, rejected) pairs of one text: its best candidate against each that failed for a reason a
    preference stage should learn (a copy, a kept insult, still toxic, drifting away)."""
    best = j.best()
    if best is None:
        return []
    chosen = j.candidates[best]
    pairs = [{"prompt_text": j.text, "chosen": chosen, "rejected": c, "rejected_why": why, "source": j.source}
             for c, why in zip(j.candidates, j.why) if why in PREFERENCE_REASONS and not same_words(c, chosen)]
    if j.chrf:
        pairs += [{"prompt_text": j.text, "chosen": chosen, "rejected": c, "rejected_why": UNLIKE_PEOPLE,
                   "source": j.source}
                  for c, why, near in zip(j.candidates, j.why, j.chrf)
                  if why is None and j.chrf[best] - near >= CHRF_MARGIN and not same_words(c, chosen)]
    return pairs


class Tally:
    """The counts that go into the stats file."""

    def __init__(self) -> None:
        self.per_source: dict[str, Counter] = defaultdict(Counter)
        self.reasons: dict[str, Counter] = defaultdict(Counter)
        self.preferences: Counter = Counter()
        self.referenced = 0  # texts judged against human rewrites too

    def add(self, j: Judged, pairs: list[dict]) -> None:
        self.referenced += bool(j.chrf)
        counts = self.per_source[j.source]
        counts["texts"] += 1
        counts["candidates"] += len(j.candidates)
        if j.skipped:
            self.reasons[j.source][j.skipped] += 1
            return
        counts["judged_texts"] += 1
        self.reasons[j.source].update(why for why in j.why if why is not None)
        best = j.best()
        counts["kept"] += best is not None
        counts["greedy_passed"] += bool(j.why) and j.why[0] is None
        counts["kept_greedy"] += best == 0
        self.preferences.update(p["rejected_why"] for p in pairs)

    def summary(self) -> dict:
        def share(a: int, b: int) -> float | None:
            return round(a / b, 4) if b else None

        per_source = {}
        for name, c in sorted(self.per_source.items()):
            per_source[name] = {**{k: c[k] for k in ("texts", "candidates", "judged_texts", "kept", "greedy_passed")},
                                "kept_share": share(c["kept"], c["texts"]),
                                "kept_share_of_judged": share(c["kept"], c["judged_texts"]),
                                "greedy_pass_share": share(c["greedy_passed"], c["judged_texts"]),
                                "kept_is_greedy_share": share(c["kept_greedy"], c["kept"]),
                                "rejected": dict(self.reasons[name].most_common())}
        total: Counter = sum(self.per_source.values(), Counter())
        reasons: Counter = sum(self.reasons.values(), Counter())
        return {"texts": total["texts"], "candidates": total["candidates"], "judged_texts": total["judged_texts"],
                "kept": total["kept"], "kept_share": share(total["kept"], total["texts"]),
                "greedy_pass_share": share(total["greedy_passed"], total["judged_texts"]),
                "rejected": dict(reasons.most_common()), "per_source": per_source,
                "preferences": {"pairs": sum(self.preferences.values()), "rejected_why": dict(self.preferences)}}


def run(candidates: Path, out: Path, scorer: Scorer, limits: Thresholds = Thresholds(),
        preferences: Path | None = None, block: int = 512,
        references: dict[str, tuple[str, ...]] | None = None) -> dict:
    """Judge every candidate of `candidates`; write the kept pairs (and preference pairs); return the
    stats also written beside `out` (kept.stats.json). `references`: see `human_rewrites`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(out.name + ".tmp")
    tmp_pref = preferences.with_name(preferences.name + ".tmp") if preferences else None
    tally, start, done = Tally(), time.perf_counter(), 0
    records = read_candidates(candidates)
    with open(tmp_out, "w", encoding="utf-8") as kept, \
            (open(tmp_pref, "w", encoding="utf-8") if tmp_pref else open(os.devnull, "w")) as pref:
        while chunk := [r for _, r in zip(range(block), records)]:
            for j in judge(chunk, scorer, limits, references):
                pairs = preference_pairs(j)
                tally.add(j, pairs)
                best = j.best()
                if best is not None:
                    kept.write(json.dumps({"toxic": j.text, "neutral": j.candidates[best], "source": j.source,
                                           "toxicity": round(j.toxicity[best], 5),
                                           "similarity": round(j.similarity[best], 5), "candidate": best},
                                          ensure_ascii=False) + "\n")
                pref.writelines(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs)
            done += len(chunk)
            log.info("judged %d texts (%.1f texts/s)", done, done / (time.perf_counter() - start))
    os.replace(tmp_out, out)
    if preferences and tmp_pref:
        os.replace(tmp_pref, preferences)
    stats = {"candidates_file": str(candidates), "kept_file": out.name,
             "preferences_file": preferences.name if preferences else None,
             "generated_by": generated_by(candidates), "thresholds": asdict(limits),
             "human_rewrites": ({"texts": len(references), "judged_against": tally.referenced,
                                 "chrf_margin": CHRF_MARGIN} if references is not None else None),
             "models": scorer.identity() if hasattr(scorer, "identity") else None,
             **tally.summary(), "seconds": round(time.perf_counter() - start, 1)}
    text = json.dumps(stats, indent=2) + "\n"
    out.with_suffix(".stats.json").write_text(text)
    if preferences:  # beside the pairs too: preference tuning records whose candidates it learned from
        preferences.with_suffix(".stats.json").write_text(text)
    return stats


def generated_by(candidates: Path) -> dict | None:
    """The model that sampled a candidates file (base and adapter, with their sha256), from the stats
    selftrain-candidates wrote beside it; None where there are none."""
    stats = candidates.with_suffix(".stats.json")
    if not stats.exists():
        return None
    models = json.loads(stats.read_text()).get("models") or {}
    return {"base": models.get("base"), "adapter": models.get("adapter")}


def sampled_by(pairs: Path) -> dict | None:
    """The adapter that sampled the candidates behind a filter's output (kept or preference pairs), from
    the stats the filter wrote beside it (`generated_by`); None where there is nothing to read it from."""
    stats = pairs.with_suffix(".stats.json")
    if not stats.exists():
        return None
    return (json.loads(stats.read_text()).get("generated_by") or {}).get("adapter")
