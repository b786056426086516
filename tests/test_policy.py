import numpy as np
import pyarrow as pa
import pytest

from moderator import records
from moderator.config import PolicyConfig
from moderator.policy import Policy


@pytest.mark.parametrize(
    "score, action, reason",
    [
        (0.0, "allow", "below_rewrite_threshold"),
        (0.4999, "allow", "below_rewrite_threshold"),
        (0.5, "rewrite", "above_rewrite_threshold"),  # thresholds are inclusive
        (0.89, "rewrite", "above_rewrite_threshold"),
        (0.9, "remove", "above_remove_threshold"),
        (1.0, "remove", "above_remove_threshold"),
    ],
)
def test_thresholds(score, action, reason):
    policy = Policy(PolicyConfig(rewrite_threshold=0.5, remove_threshold=0.9))
    assert policy.decide(np.array([score])) == ([action], [reason])


def test_no_rewrite_sends_rewrites_to_review():
    policy = Policy(PolicyConfig(rewrite_threshold=0.5, remove_threshold=0.9), rewrite_enabled=False)
    assert policy.decide(np.array([0.1, 0.6, 0.95])) == (
        ["allow", "review", "remove"], ["below_rewrite_threshold", "rewrite_disabled", "above_remove_threshold"])


def test_equal_thresholds_never_rewrite():
    policy = Policy(PolicyConfig(rewrite_threshold=0.7, remove_threshold=0.7))
    assert policy.decide(np.array([0.69, 0.7]))[0] == ["allow", "remove"]


def test_confidence_is_no_reason_to_remove_by_default():
    assert PolicyConfig().remove_threshold is None  # opt-in only
    assert Policy(PolicyConfig()).decide(np.array([0.2, 0.99, 1.0]))[0] == ["allow", "rewrite", "rewrite"]


def test_quarantined_rows_get_no_decision():
    batch = pa.RecordBatch.from_pydict({records.TOXICITY: pa.array([0.2, None, 0.99], pa.float32())})
    out = Policy(PolicyConfig(remove_threshold=0.98))(batch)
    assert out.column(records.ACTION).to_pylist() == ["allow", None, "remove"]
    assert out.column(records.REASON).to_pylist() == ["below_rewrite_threshold", None, "above_remove_threshold"]


def test_every_reason_code_is_documented():
    import inspect

    from moderator import policy, rewrite, verify

    source = "".join(inspect.getsource(m) for m in (policy, rewrite, verify))
    import re

    used = set(re.findall(r'"((?:below|above|rewrite|rewritten|too)_[a-z_]+)"', source))
    assert used and used <= set(records.REASONS), used - set(records.REASONS)
