"""Policy: rewrite first. Decide each post's action from its toxicity and from whether it can be rewritten.

    cleared by the cascade's first stage           -> allow   (cleared_by_prefilter)
    toxicity < rewrite_threshold                   -> allow   (below_rewrite_threshold)
    toxicity >= remove_threshold (opt-in, unset)   -> remove  (above_remove_threshold)
    toxic, scoring >= category_threshold in one    -> remove  (category_threat, category_identity_attack...),
    of unrewritable_categories (threat, ...)          or review (uncertain_category) under sure_toxicity
    toxic, and its meaning itself is the harm      -> remove  (not_rewritable), or review
      (surely: rewritability_sure_threshold)          (uncertain_not_rewritable) under sure_toxicity
    toxic, and likely not rewritable               -> rewrite, then verify removes it (not_rewritable)
      (rewritability_threshold), no sign of a         when no rewrite passes; remove with --no-rewrite,
      threat or hate (try_first_max_category)         or when there is such a sign
    toxic otherwise                                -> rewrite (above_rewrite_threshold)
                                                      or review (rewrite_disabled) with --no-rewrite

What is rewritten is a post's toxic sentences (those the classifier scored at or above the rewrite
threshold on their own, or `[policy] sentence_threshold` where a job sets it), or the whole post when
it is one sentence or no single sentence is toxic without the others: these spans are the post's
*targets* (a column the rewriter reads). Whether a target can be rewritten at all is the rewritability
model's call (moderator.rewritability, trained on sentences annotators could and could not rewrite).
A post is removed as not rewritable only when every target is judged so and the targets are the
whole post: untried when the model is sure (precision 0.9 on held-out data), else only after no
rewrite of it passed verification (precision 0.8 alone removed one post in five that people could
rewrite); in a longer post, such a sentence may instead be deleted if no rewrite of it passes
verification ([policy] delete_sentences, verify.py).

Categories come from a multi-label classifier that scores them beside toxicity (records.CATEGORIES,
read from the `scores` fields): a rewrite of a threat or of an attack on a group keeps the threat or
the contempt in politer words, so such posts are removed whatever the rewritability model says. A
classifier without categories (a binary one) leaves this rule out, and every decision is as before.

The classifier's probability says how sure it is, not how severe a post is, so removing by
confidence (`remove_threshold`) is off unless a job asks for it. `verify` later turns a `rewrite`
whose candidates all failed into `[policy] on_rewrite_failure` (review by default).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from moderator import records
from moderator.records import Action, Stage
from moderator.config import PolicyConfig

TARGETS_TYPE = pa.list_(pa.struct([pa.field("start", pa.int32()), pa.field("end", pa.int32()),
                                   pa.field("unrewritable", pa.float32())]))


def unrewritable_threshold(config: PolicyConfig, rewritability) -> float:  # type: ignore[no-untyped-def]
    """The probability from which a text counts as (likely) not rewritable (infinite without a model)."""
    if rewritability is None:
        return np.inf
    return config.rewritability_threshold if config.rewritability_threshold is not None else rewritability.threshold


def sure_unrewritable_threshold(config: PolicyConfig, rewritability) -> float:  # type: ignore[no-untyped-def]
    """The probability from which a toxic post is removed as not rewritable without trying a rewrite:
    never below `unrewritable_threshold` (infinite without a model)."""
    if rewritability is None:
        return np.inf
    sure = (config.rewritability_sure_threshold if config.rewritability_sure_threshold is not None
            else getattr(rewritability, "sure_threshold", rewritability.threshold))
    return max(sure, unrewritable_threshold(config, rewritability))


def not_rewritable(config: PolicyConfig, toxicity: float) -> tuple[str, str]:
    """Action and reason of a toxic post judged not rewritable: removed, or sent to review under
    `sure_toxicity` (the policy's call, and verify's for a post tried first whose rewrites all failed)."""
    return ((Action.REMOVE, "not_rewritable") if toxicity >= config.sure_toxicity
            else (Action.REVIEW, "uncertain_not_rewritable"))


class Policy:
    def __init__(self, config: PolicyConfig, rewrite_enabled: bool = True, rewritability=None) -> None:  # type: ignore[no-untyped-def]
        self.config = config
        self.rewrite_enabled = rewrite_enabled
        self.rewritability = rewritability  # a moderator.rewritability.Rewritability, or None: everything is rewritable
        self.unrewritable_at = unrewritable_threshold(config, rewritability)
        self.sure_unrewritable_at = sure_unrewritable_threshold(config, rewritability)

    def decide(self, toxicity: np.ndarray, unrewritable: np.ndarray | None = None,
               whole: np.ndarray | None = None,
               categories: dict[str, np.ndarray] | None = None) -> tuple[list[str], list[str]]:
        """Actions and reasons for an array of toxicity scores. `unrewritable`: per post, the lowest
        probability among its targets that they cannot be rewritten; `whole`: whether its targets
        are the whole post (only then can "not rewritable" remove it); `categories`: per category the
        classifier scores, each post's score (records.category_scores)."""
        unrewritable = np.zeros(len(toxicity)) if unrewritable is None else unrewritable
        whole = np.ones(len(toxicity), dtype=bool) if whole is None else whole
        held = self.unrewritable_category(categories or {}, len(toxicity))
        signs = self.category_signs(categories or {}, len(toxicity))
        config = self.config
        actions, reasons = [], []
        for score, hopeless, entire, category, sign in zip(toxicity, unrewritable, whole, held, signs):
            if score < config.rewrite_threshold:
                action, reason = Action.ALLOW, "below_rewrite_threshold"
            elif config.remove_threshold is not None and score >= config.remove_threshold:
                action, reason = Action.REMOVE, "above_remove_threshold"
            elif category is not None:
                sure = score >= config.sure_toxicity
                action, reason = ((Action.REMOVE, records.category_reason(category)) if sure
                                  else (Action.REVIEW, "uncertain_category"))
            elif entire and (hopeless >= self.sure_unrewritable_at or hopeless >= self.unrewritable_at
                             and (not self.rewrite_enabled or sign >= config.try_first_max_category)):
                # likely but not surely hopeless, and no sign of a threat or hate: rewritten first (verify
                # removes it if no rewrite passes); an insult can be rewritten, a threat is not
                action, reason = not_rewritable(config, score)
            elif self.rewrite_enabled:
                action, reason = Action.REWRITE, "above_rewrite_threshold"
            else:
                action, reason = Action.REVIEW, "rewrite_disabled"
            actions.append(action), reasons.append(reason)
        return actions, reasons

    def unrewritable_category(self, categories: dict[str, np.ndarray], n: int) -> list[str | None]:
        """Per post, the category of `unrewritable_categories` it scored highest in, where that score is
        at or above `category_threshold`; None for the others, and for every post of a classifier
        without those categories."""
        names, table = self._unrewritable_scores(categories)
        if not names:
            return [None] * n
        best = table.argmax(axis=1)  # ties: the first in the setting's order
        return [names[b] if table[i, b] >= self.config.category_threshold else None for i, b in enumerate(best)]

    def category_signs(self, categories: dict[str, np.ndarray], n: int) -> np.ndarray:
        """Per post, its highest score among `unrewritable_categories` (0 for a classifier without them)."""
        names, table = self._unrewritable_scores(categories)
        return np.maximum(table.max(axis=1), 0.0) if names else np.zeros(n)

    def _unrewritable_scores(self, categories: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
        """The `unrewritable_categories` the classifier scores, and their scores, one column each (-1 where
        a post has none)."""
        names = [name for name in self.config.unrewritable_categories if name in categories]
        if not names:
            return names, np.zeros((0, 0))
        return names, np.nan_to_num(np.stack([categories[name] for name in names], axis=1), nan=-1.0)

    def targets(self, text: str, sentences: list[dict] | None) -> tuple[list[tuple[int, int]], bool]:
        """The spans of a toxic post to rewrite, and whether they are the whole post."""
        sentences = sentences or []
        config = self.config
        at = config.sentence_threshold if config.sentence_threshold is not None else config.rewrite_threshold
        toxic = [(s["start"], s["end"]) for s in sentences if s["toxicity"] >= at]
        if len(sentences) > 1 and toxic:
            return toxic, len(toxic) == len(sentences)
        whole = records.whole_post(text)
        return [(whole["start"], whole["end"])], True

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        n = batch.num_rows
        toxicity = batch.column(records.TOXICITY)
        present = np.asarray(toxicity.is_valid())
        scores = toxicity.fill_null(0.0).to_numpy(zero_copy_only=False)
        texts = batch.column(records.TEXT).to_pylist() if records.TEXT in batch.schema.names else [""] * n
        sentences = (batch.column(records.SENTENCES).to_pylist() if records.SENTENCES in batch.schema.names
                     else [None] * n)
        toxic = [i for i in range(n) if present[i] and scores[i] >= self.config.rewrite_threshold]
        spans = {i: self.targets(texts[i], sentences[i]) for i in toxic}
        pieces = [texts[i][a:b] for i in toxic for a, b in spans[i][0]]
        p = (self.rewritability.predict(pieces) if self.rewritability is not None and pieces
             else np.zeros(len(pieces), dtype=np.float32))
        targets: list[list[dict] | None] = [None] * n
        unrewritable, whole = np.zeros(n, dtype=np.float32), np.ones(n, dtype=bool)
        cursor = 0
        for i in toxic:
            row_spans, whole[i] = spans[i]
            row_p = p[cursor: cursor + len(row_spans)]
            cursor += len(row_spans)
            targets[i] = [{"start": a, "end": b, "unrewritable": float(q)} for (a, b), q in zip(row_spans, row_p)]
            unrewritable[i] = row_p.min()  # the post is hopeless only when every target is
        actions, reasons = self.decide(scores, unrewritable, whole, records.category_scores(batch))
        if records.STAGE in batch.schema.names:
            for i, stage in enumerate(batch.column(records.STAGE).to_pylist()):
                if stage == Stage.PREFILTER:  # cleared by the cascade: confidently clean
                    actions[i], reasons[i] = Action.ALLOW, "cleared_by_prefilter"
        mask = pa.array(~present)
        batch = records.set_column(batch, records.TARGETS, pa.array(targets, TARGETS_TYPE))
        batch = records.set_column(batch, records.UNREWRITABLE, pa.array(
            [float(unrewritable[i]) if targets[i] is not None and self.rewritability is not None else None
             for i in range(n)], pa.float32()))
        batch = records.set_column(batch, records.ACTION, pa.array(actions, pa.string(), mask=mask))
        return records.set_column(batch, records.REASON, pa.array(reasons, pa.string(), mask=mask))
