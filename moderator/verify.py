"""Verify: check every rewrite before it replaces a post.

Each rewrite is scored again by the same classifier that flagged the post, and compared with the
original by sentence-embedding cosine similarity. A rewrite that is empty, still toxic
(>= max_rewrite_toxicity) or drifted from the original's meaning (< min_similarity) is sent to human
review, with the rewrite kept for the reviewer and the reason saying what failed.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from moderator import records
from moderator.classify import Classifier
from moderator.config import PolicyConfig
from moderator.embed import Embedder


class Verify:
    def __init__(self, policy: PolicyConfig, classifier: Classifier, embedder: Embedder) -> None:
        self.policy = policy
        self.classifier = classifier
        self.embedder = embedder

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        n = batch.num_rows
        rewrites = batch.column(records.REWRITE).to_pylist()
        texts = batch.column(records.TEXT).to_pylist()
        actions = batch.column(records.ACTION).to_pylist()
        reasons = batch.column(records.REASON).to_pylist()
        toxicity: list[float | None] = [None] * n
        similarity: list[float | None] = [None] * n
        rows = [i for i, r in enumerate(rewrites) if r is not None]
        for i in rows:
            if not rewrites[i]:
                actions[i], reasons[i] = "review", "rewrite_empty"
        scored = [i for i in rows if rewrites[i]]
        if scored:
            tox = self.classifier.toxicity(self.classifier.predict([rewrites[i] for i in scored]))
            sim = self.embedder.similarity([texts[i] for i in scored], [rewrites[i] for i in scored])
            for i, t, s in zip(scored, tox.tolist(), np.clip(sim, -1.0, 1.0).tolist()):
                toxicity[i], similarity[i] = t, s
                if np.float32(t) >= self.policy.max_rewrite_toxicity:
                    actions[i], reasons[i] = "review", "rewrite_still_toxic"
                elif np.float32(s) < self.policy.min_similarity:
                    actions[i], reasons[i] = "review", "rewrite_dissimilar"
        batch = records.set_column(batch, records.REWRITE_TOXICITY, pa.array(toxicity, pa.float32()))
        batch = records.set_column(batch, records.SIMILARITY, pa.array(similarity, pa.float32()))
        batch = records.set_column(batch, records.ACTION, pa.array(actions, pa.string()))
        return records.set_column(batch, records.REASON, pa.array(reasons, pa.string()))
