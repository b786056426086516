"""Policy: map toxicity scores to actions, each with one reason code.

    toxicity <  rewrite_threshold               -> allow   (below_rewrite_threshold)
    rewrite_threshold <= toxicity < remove      -> rewrite (above_rewrite_threshold)
                                                   or review (rewrite_disabled) with --no-rewrite
    toxicity >= remove_threshold                -> remove  (above_remove_threshold)
    cleared by the cascade's first stage        -> allow   (cleared_by_prefilter)

Rewrites are then checked by `verify`, which may turn a `rewrite` into `review`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from moderator import records
from moderator.config import PolicyConfig


class Policy:
    def __init__(self, config: PolicyConfig, rewrite_enabled: bool = True) -> None:
        self.config = config
        self.rewrite_enabled = rewrite_enabled

    def decide(self, toxicity: np.ndarray) -> tuple[list[str], list[str]]:
        """Actions and reasons for an array of toxicity scores."""
        actions, reasons = [], []
        for score in toxicity:
            if score >= self.config.remove_threshold:
                actions.append("remove"), reasons.append("above_remove_threshold")
            elif score >= self.config.rewrite_threshold:
                if self.rewrite_enabled:
                    actions.append("rewrite"), reasons.append("above_rewrite_threshold")
                else:
                    actions.append("review"), reasons.append("rewrite_disabled")
            else:
                actions.append("allow"), reasons.append("below_rewrite_threshold")
        return actions, reasons

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        toxicity = batch.column(records.TOXICITY)
        present = np.asarray(toxicity.is_valid())
        scores = toxicity.fill_null(0.0).to_numpy(zero_copy_only=False)
        actions, reasons = self.decide(scores)
        if records.STAGE in batch.schema.names:
            for i, stage in enumerate(batch.column(records.STAGE).to_pylist()):
                if stage == "prefilter":  # cleared by the cascade: confidently clean
                    actions[i], reasons[i] = "allow", "cleared_by_prefilter"
        mask = pa.array(~present)
        batch = records.set_column(batch, records.ACTION, pa.array(actions, pa.string(), mask=mask))
        return records.set_column(batch, records.REASON, pa.array(reasons, pa.string(), mask=mask))
