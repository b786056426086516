"""Verify: pick the best rewrite candidate of every target, put the post back together, check it.

A candidate passes when it is not empty, does not repeat the toxic text (the same words, whatever
the case, spacing and punctuation), scores under `max_rewrite_toxicity` with the classifier that
flagged the post, and keeps at least `min_similarity` of its meaning (cosine of sentence
embeddings). Of the candidates that pass, the one with the highest (1 - toxicity) x similarity is
kept. In a post of several sentences a toxic sentence for which no candidate passes may be deleted
instead (`[policy] delete_sentences`). The post is then reassembled around the chosen rewrites, every
other sentence byte for byte (sentences.py), and the whole rewritten post is checked the same way;
when only some of its sentences were rewritten, it passes the toxicity check when each of its
sentences scores under `max_rewrite_toxicity` and the whole post under
`max_rewrite_context_toxicity` (the classifier scores long news comments high as a whole even when
none of their sentences is toxic). A partly rewritten post that fails that check is tried once more
without its rewritten sentences, where the policy lets them be deleted (the rewritten sentences each
passed alone, but the post still reads toxic around them).

A post whose targets cannot all be rewritten, or whose reassembled rewrite fails, goes to
`[policy] on_rewrite_failure` (review, or remove) with the reason of what failed; the rewrite built
from the first (greedy) candidates is kept for the reviewer. A post the rewritability model judged
likely not rewritable as a whole (at or above `[policy] rewritability_threshold`, under its sure
threshold: the policy tried it first) is removed instead (not_rewritable), or sent to review
(uncertain_not_rewritable) under `[policy] sure_toxicity`: the model and the rewriter agree. For
such a post a candidate also fails when the rewritability model still judges the candidate itself
likely not rewritable: "He should resign and go hang himself in shame." rewritten "He should
resign and go hang himself." keeps the harm, which the classifier does not see.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

from moderator import records, sentences
from moderator.classify import Classifier
from moderator.config import PolicyConfig
from moderator.embed import Embedder
from moderator.policy import not_rewritable
from moderator.records import Action

_NON_WORD = re.compile(r"[\W_]+")


def same_words(a: str, b: str) -> bool:
    """Whether two texts are the same words (case, spacing and punctuation aside): a copy."""
    return _NON_WORD.sub(" ", a.casefold()).strip() == _NON_WORD.sub(" ", b.casefold()).strip()


class Verify:
    def __init__(self, policy: PolicyConfig, classifier: Classifier, embedder: Embedder,
                 unrewritable_at: float = np.inf, rewritability=None) -> None:  # type: ignore[no-untyped-def]
        self.policy = policy
        self.classifier = classifier
        self.embedder = embedder
        self.unrewritable_at = unrewritable_at  # the policy's: from it on, a sentence may be deleted, a post removed
        self.rewritability = rewritability  # moderator.rewritability.Rewritability, or None

    def check(self, original: str, candidate: str, toxicity: float, similarity: float,
              max_toxicity: float | None = None) -> str | None:
        """The reason a candidate fails, or None when it passes (toxic from `max_toxicity` on, by default
        the policy's max_rewrite_toxicity)."""
        if not candidate.strip():
            return "rewrite_empty"
        if same_words(original, candidate):
            return "rewrite_copied"
        if np.float32(toxicity) >= (self.policy.max_rewrite_toxicity if max_toxicity is None else max_toxicity):
            return "rewrite_still_toxic"
        if np.float32(similarity) < self.policy.min_similarity:
            return "rewrite_dissimilar"
        return None

    def score(self, originals: list[str], candidates: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Toxicity of each candidate and its similarity to its original (empty ones score 0, 0)."""
        toxicity = np.zeros(len(candidates), dtype=np.float32)
        similarity = np.zeros(len(candidates), dtype=np.float32)
        filled = [k for k, c in enumerate(candidates) if c.strip()]
        if filled:
            toxicity[filled] = self.classifier.toxicity(self.classifier.predict([candidates[k] for k in filled]))
            similarity[filled] = np.clip(self.embedder.similarity([originals[k] for k in filled],
                                                                  [candidates[k] for k in filled]), -1.0, 1.0)
        return toxicity, similarity

    def passes(self, originals: list[str], candidates: list[str], guarded: list[bool] | None = None) -> list[bool]:
        """Whether each candidate passes the candidate check against its original (one classifier and one
        embedder pass): the rewrite step's screen before it samples more candidates. Where `guarded` (the
        target's post is one of `hopeless_rows`), a candidate the rewritability model still judges not
        rewritable fails too, as in `choose`."""
        toxicity, similarity = self.score(originals, candidates)
        ok = [self.check(o, c, t, s) is None for o, c, t, s in zip(originals, candidates, toxicity, similarity)]
        judged = [j for j, passed in enumerate(ok) if passed and guarded and guarded[j]]
        for j, harm in zip(judged, self.keeps_harm([candidates[j] for j in judged])):
            ok[j] = not harm
        return ok

    def keeps_harm(self, rewrites: list[str]) -> list[bool]:
        """Whether the rewritability model still judges each rewrite not rewritable (at or above the
        policy's threshold): for a post it judged so, such a rewrite keeps the harm. All False without a model."""
        if self.rewritability is None or not rewrites:
            return [False] * len(rewrites)
        return [bool(q >= self.unrewritable_at) for q in self.rewritability.predict(rewrites)]

    def hopeless_rows(self, batch: pa.RecordBatch) -> list[bool]:
        """Per row, whether the rewritability model judged the post, as a whole, likely not rewritable (its
        targets are the whole post and its unrewritable score is at or above the policy's threshold): such
        a post's rewrites must also convince that model, and when none does it is removed."""
        n = batch.num_rows
        targets = records.targets(batch)
        spans = (batch.column(records.SENTENCES).to_pylist() if records.SENTENCES in batch.schema.names
                 else [None] * n)
        unrewritable = (batch.column(records.UNREWRITABLE).to_pylist() if records.UNREWRITABLE in batch.schema.names
                        else [None] * n)
        return [bool(targets[i]) and not self.partly_rewritten(targets[i], spans[i])
                and (unrewritable[i] or 0.0) >= self.unrewritable_at for i in range(n)]

    @staticmethod
    def partly_rewritten(targets: list[dict], spans: list[dict] | None) -> bool:
        """Whether a post's targets are some of its sentences, not all of them and not the post as a whole."""
        sentence_spans = {(s["start"], s["end"]) for s in spans or []}
        target_spans = {(t["start"], t["end"]) for t in targets}
        return target_spans < sentence_spans

    def sentence_toxicity(self, texts: list[str]) -> np.ndarray:
        """The toxicity of each text's most toxic sentence, every sentence of the batch in one pass."""
        spans = [sentences.split(text) for text in texts]
        units = [unit for text, row in zip(texts, spans) for unit in sentences.texts(text, row)]
        scores = self.classifier.toxicity(self.classifier.predict(units)) if units else np.zeros(0, np.float32)
        out = np.zeros(len(texts), dtype=np.float32)
        cursor = 0
        for k, row in enumerate(spans):
            if row:
                out[k] = scores[cursor: cursor + len(row)].max()
            cursor += len(row)
        return out

    def failed(self, failure: str, hopeless: bool, toxicity: float) -> tuple[str, str]:
        """Action and reason of a toxic post none of whose rewrites passed: `hopeless` when the
        rewritability model judged the whole post likely not rewritable."""
        if hopeless:
            return not_rewritable(self.policy, toxicity)
        return self.policy.on_rewrite_failure, failure

    def deletable(self, target: dict, spans: int, targets: int) -> bool:
        """Whether a target sentence may be deleted when none of its rewrites passes."""
        mode = self.policy.delete_sentences
        if mode == "never" or spans <= 1 or targets >= spans:  # never delete a post's every sentence
            return False
        return mode == "any" or (target["unrewritable"] or 0.0) >= self.unrewritable_at

    def choose(self, batch_targets: dict[int, list[tuple[str, list[str], bool]]],
               hopeless: set[int] | None = None) -> dict[int, tuple[dict, str | None, int]]:
        """Per row: ({target: chosen text}, failure reason or None, candidates tried). Every candidate
        of the batch is scored in one classifier and one embedder pass. In the `hopeless` rows (posts the
        rewritability model judged likely not rewritable) a candidate that it still judges so fails too
        (not_rewritable): the harm is in what it says, and a rewrite that keeps it keeps the harm."""
        flat = [(i, k, original, c) for i, row in batch_targets.items() for k, (original, cands, _) in enumerate(row)
                for c in cands]
        toxicity, similarity = self.score([f[2] for f in flat], [f[3] for f in flat])
        whys = [self.check(original, c, t, s) for (_, _, original, c), t, s in zip(flat, toxicity, similarity)]
        if hopeless:
            judged = [n for n, (i, _, _, _) in enumerate(flat) if i in hopeless and whys[n] is None]
            for n, harm in zip(judged, self.keeps_harm([flat[n][3] for n in judged])):
                if harm:
                    whys[n] = "not_rewritable"  # the post's reason if nothing else passes
        verdicts: dict[tuple[int, int], list[tuple[str, str | None, float]]] = {}
        for (i, k, original, c), t, s, why in zip(flat, toxicity, similarity, whys):
            verdicts.setdefault((i, k), []).append((c, why, float((1.0 - t) * s)))
        out = {}
        for i, row in batch_targets.items():
            chosen, failure, tried = {}, None, 0
            for k, (_, cands, deletable) in enumerate(row):
                tried += len(cands)
                judged = verdicts.get((i, k), [])
                passing = [(value, c) for c, why, value in judged if why is None]
                if passing:
                    chosen[k] = max(passing, key=lambda p: p[0])[1]
                elif deletable:
                    chosen[k] = ""
                else:
                    chosen[k] = judged[0][0] if judged else ""
                    failure = failure or (judged[0][1] if judged else "rewrite_empty")
            out[i] = (chosen, failure, tried)
        return out

    def check_posts(self, originals: list[str], rewrites: list[str], partial: list[bool]
                    ) -> list[tuple[float | None, float | None, str | None]]:
        """(toxicity, similarity, failure reason or None) of each reassembled post against its original.
        A partly rewritten post (only some of its sentences rewritten) is read sentence by sentence, the
        whole held to max_rewrite_context_toxicity (a long post scores high as a whole when no sentence
        of it is toxic); a post rewritten whole is held to max_rewrite_toxicity."""
        filled = [k for k, r in enumerate(rewrites) if r.strip()]
        toxicity, similarity = self.score([originals[k] for k in filled], [rewrites[k] for k in filled])
        scores: list[tuple[float | None, float | None]] = [(None, None)] * len(rewrites)
        for k, t, s in zip(filled, toxicity.tolist(), similarity.tolist()):
            scores[k] = (t, s)
        by_sentence = [k for k in filled if partial[k]]
        worst = dict(zip(by_sentence, self.sentence_toxicity([rewrites[k] for k in by_sentence]).tolist()))
        out = []
        for k, (original, rewrite) in enumerate(zip(originals, rewrites)):
            post_toxicity, bar = scores[k][0] or 0.0, None
            if k in worst:
                bar = self.policy.max_rewrite_context_toxicity
                if np.float32(worst[k]) >= self.policy.max_rewrite_toxicity:
                    post_toxicity, bar = worst[k], None
            out.append((scores[k][0], scores[k][1],
                        self.check(original, rewrite, post_toxicity, scores[k][1] or 0.0, bar)))
        return out

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        n = batch.num_rows
        candidates = (batch.column(records.REWRITE_CANDIDATES).to_pylist()
                      if records.REWRITE_CANDIDATES in batch.schema.names else [None] * n)
        texts = batch.column(records.TEXT).to_pylist()
        actions = batch.column(records.ACTION).to_pylist()
        reasons = batch.column(records.REASON).to_pylist()
        targets = records.targets(batch)
        spans = (batch.column(records.SENTENCES).to_pylist() if records.SENTENCES in batch.schema.names
                 else [None] * n)
        rows = [i for i in range(n) if candidates[i] is not None]
        batch_targets = {}
        for i in rows:
            row = []
            for target, cands in zip(targets[i], candidates[i]):
                deletable = self.deletable(target, len(spans[i] or []), len(targets[i]))
                row.append((texts[i][target["start"]:target["end"]], cands, deletable))
            batch_targets[i] = row
        partial = {i: self.partly_rewritten(targets[i], spans[i]) for i in rows}
        post_toxicity = (batch.column(records.TOXICITY).fill_null(1.0).to_pylist()
                         if records.TOXICITY in batch.schema.names else [1.0] * n)
        hopeless = self.hopeless_rows(batch)
        chosen = self.choose(batch_targets, {i for i in rows if hopeless[i]})
        rewrites: list[str | None] = [None] * n
        tried: list[int | None] = [None] * n
        replaced: list[int | None] = [None] * n
        for i in rows:
            picks, failure, tried[i] = chosen[i]
            replaced[i] = len(picks)
            rewrites[i] = sentences.reassemble(texts[i], [(t["start"], t["end"]) for t in targets[i]], picks)
            if failure is not None:
                actions[i], reasons[i] = self.failed(failure, hopeless[i], post_toxicity[i])
        toxicity: list[float | None] = [None] * n
        similarity: list[float | None] = [None] * n
        checked = self.check_posts([texts[i] for i in rows], [rewrites[i] for i in rows],
                                   [partial[i] and actions[i] == Action.REWRITE for i in rows])
        failures = {}
        for i, (t, s, failure) in zip(rows, checked):
            toxicity[i], similarity[i] = t, s
            if actions[i] == Action.REWRITE:
                failures[i] = failure
        # A partly rewritten post that still reads toxic once put back together (its rewritten sentences
        # each passed alone): publish it without those sentences, where the policy lets them be deleted
        # and the rest passes the same checks.
        retry = {}
        for i, failure in failures.items():
            if failure != "rewrite_still_toxic" or not partial[i]:
                continue
            picks = dict(chosen[i][0])
            dropped = [k for k, (_, _, deletable) in enumerate(batch_targets[i]) if deletable and picks.get(k)]
            if dropped:
                picks.update({k: "" for k in dropped})
                retry[i] = sentences.reassemble(texts[i], [(t["start"], t["end"]) for t in targets[i]], picks)
        if retry:
            rechecked = self.check_posts([texts[i] for i in retry], list(retry.values()), [True] * len(retry))
            for (i, rewrite), (t, s, failure) in zip(retry.items(), rechecked):
                if failure is None:
                    rewrites[i], toxicity[i], similarity[i], failures[i] = rewrite, t, s, None
        for i, failure in failures.items():
            if failure is not None:
                actions[i], reasons[i] = self.failed(failure, hopeless[i], post_toxicity[i])
        batch = records.set_column(batch, records.REWRITE, pa.array(rewrites, pa.string()))
        batch = records.set_column(batch, records.REWRITE_TOXICITY, pa.array(toxicity, pa.float32()))
        batch = records.set_column(batch, records.SIMILARITY, pa.array(similarity, pa.float32()))
        batch = records.set_column(batch, records.CANDIDATES, pa.array(tried, pa.int32()))
        batch = records.set_column(batch, records.REWRITTEN_SENTENCES, pa.array(replaced, pa.int32()))
        batch = records.set_column(batch, records.ACTION, pa.array(actions, pa.string()))
        return records.set_column(batch, records.REASON, pa.array(reasons, pa.string()))
