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

    used = set(re.findall(r'"((?:below|above|rewrite|rewritten|too|not|uncertain|cleared)_[a-z_]+)"', source))
    used |= {records.category_reason(name) for name in records.CATEGORIES}  # spelled by category_reason
    assert used and used <= set(records.REASONS), used - set(records.REASONS)
    assert {"not_rewritable", "uncertain_category", "category_threat"} <= used


# The labels of the shipped multi-label classifier, and of a user's own binary one.
MULTI_LABEL = ("toxic", "insult", "threat", "identity_attack", "obscene", "sexual")
BINARY = ("neutral", "toxic")


def scored_batch(rows: list[dict | None], labels: tuple[str, ...] = MULTI_LABEL) -> pa.RecordBatch:
    """A batch as the classifier leaves it: toxicity (the `toxic` label's score) and the `scores`
    struct, one float32 field per label, null for a post that was not scored (quarantined)."""
    fields = [pa.field(label, pa.float32()) for label in labels]
    children = [pa.array([(row or {}).get(label, 0.0) for row in rows], pa.float32()) for label in labels]
    scores = pa.StructArray.from_arrays(children, fields=fields, mask=pa.array([row is None for row in rows]))
    toxicity = pa.array([None if row is None else row.get("toxic", 0.0) for row in rows], pa.float32())
    return pa.RecordBatch.from_pydict({records.TOXICITY: toxicity, records.SCORES: scores})


def decisions(batch: pa.RecordBatch, **policy) -> list[tuple[str | None, str | None]]:
    out = Policy(PolicyConfig(**policy))(batch)
    return list(zip(out.column(records.ACTION).to_pylist(), out.column(records.REASON).to_pylist()))


def test_a_threat_is_removed_and_an_insult_rewritten():
    batch = scored_batch([
        {"toxic": 0.95, "threat": 0.9, "insult": 0.3},
        {"toxic": 0.9, "insult": 0.95, "obscene": 0.7},  # insults and swearing can be rewritten
        {"toxic": 0.8, "identity_attack": 0.6, "threat": 0.55},  # the higher of the two names it
        {"toxic": 0.3, "threat": 0.9},  # not toxic: the category rule is only for toxic posts
        {"toxic": 0.7, "threat": 0.49},  # under category_threshold
        None,
    ])
    assert decisions(batch, category_threshold=0.5) == [
        ("remove", "category_threat"), ("rewrite", "above_rewrite_threshold"),
        ("remove", "category_identity_attack"), ("allow", "below_rewrite_threshold"),
        ("rewrite", "above_rewrite_threshold"), (None, None)]
    # the default (0.7) tries a rewrite where a category is only likely
    assert decisions(batch)[:3] == [("remove", "category_threat"), ("rewrite", "above_rewrite_threshold"),
                                    ("rewrite", "above_rewrite_threshold")]
    assert decisions(batch, category_threshold=0.45)[4] == ("remove", "category_threat")
    assert decisions(batch, category_threshold=0.9)[0] == ("remove", "category_threat")  # inclusive, in float32
    assert decisions(batch, rewrite_threshold=0.2)[3] == ("remove", "category_threat")


def test_under_sure_toxicity_a_category_goes_to_review():
    batch = scored_batch([{"toxic": 0.95, "threat": 0.9}, {"toxic": 0.7, "threat": 0.9}])
    assert decisions(batch, sure_toxicity=0.9) == [("remove", "category_threat"), ("review", "uncertain_category")]


def test_the_categories_that_are_not_rewritten_are_a_setting():
    batch = scored_batch([{"toxic": 0.9, "threat": 0.9}, {"toxic": 0.9, "sexual": 0.8, "identity_attack": 0.7}])
    assert decisions(batch, unrewritable_categories=()) == [("rewrite", "above_rewrite_threshold")] * 2
    assert decisions(batch, unrewritable_categories=("sexual",)) == [
        ("rewrite", "above_rewrite_threshold"), ("remove", "category_sexual")]


def test_removal_by_confidence_keeps_precedence_and_categories_come_before_rewritability():
    class Hopeless:  # a rewritability model that judges every text not rewritable
        threshold = 0.5

        def predict(self, texts):
            return np.ones(len(texts), dtype=np.float32)

    batch = scored_batch([{"toxic": 0.99, "threat": 0.9}, {"toxic": 0.9, "threat": 0.9}, {"toxic": 0.9}])
    batch = records.set_column(batch, records.TEXT, pa.array(["a", "b", "c"]))
    out = Policy(PolicyConfig(remove_threshold=0.95), rewritability=Hopeless())(batch)
    assert out.column(records.REASON).to_pylist() == ["above_remove_threshold", "category_threat", "not_rewritable"]


def test_a_binary_model_gets_exactly_the_decisions_of_a_model_without_categories():
    class Judge:  # rewritability: the text "x" cannot be rewritten
        threshold = 0.5

        def predict(self, texts):
            return np.array([1.0 if t == "x" else 0.0 for t in texts], dtype=np.float32)

    rng = np.random.default_rng(0)
    toxic = rng.random(200).round(3)
    rows = [None if i % 17 == 0 else {"neutral": 1 - t, "toxic": t} for i, t in enumerate(toxic)]
    texts = pa.array(["x" if i % 3 == 0 else "y" for i in range(len(rows))])
    batch = records.set_column(scored_batch(rows, BINARY), records.TEXT, texts)
    assert records.category_scores(batch) == {}
    for config in (PolicyConfig(), PolicyConfig(sure_toxicity=0.7, remove_threshold=0.95),
                   PolicyConfig(unrewritable_categories=records.CATEGORIES, category_threshold=0.0)):
        with_scores = Policy(config, rewritability=Judge())(batch)
        without = Policy(config, rewritability=Judge())(batch.drop_columns([records.SCORES]))
        for column in (records.ACTION, records.REASON, records.TARGETS, records.UNREWRITABLE):
            assert with_scores.column(column).equals(without.column(column))
    reasons = set(with_scores.column(records.REASON).to_pylist())
    assert not any(r and "categor" in r for r in reasons)
    assert {"not_rewritable", "above_rewrite_threshold", "below_rewrite_threshold"} <= reasons


class TwoThresholds:  # a rewritability model: p(not rewritable) is the text read as a number
    threshold, sure_threshold = 0.5, 0.8

    def predict(self, texts):
        return np.array([float(t) for t in texts], dtype=np.float32)


def test_a_post_likely_but_not_surely_unrewritable_is_tried_first():
    batch = scored_batch([{"toxic": 0.9}] * 4)
    batch = records.set_column(batch, records.TEXT, pa.array(["0.3", "0.6", "0.8", "0.95"]))
    out = Policy(PolicyConfig(unrewritable_categories=()), rewritability=TwoThresholds())(batch)
    assert out.column(records.REASON).to_pylist() == ["above_rewrite_threshold"] * 2 + ["not_rewritable"] * 2
    assert out.column(records.UNREWRITABLE).to_pylist() == pytest.approx([0.3, 0.6, 0.8, 0.95])
    # without a rewriter nothing can be tried: the fair call removes, as it did before there were two
    out = Policy(PolicyConfig(unrewritable_categories=()), rewrite_enabled=False, rewritability=TwoThresholds())(batch)
    assert out.column(records.REASON).to_pylist() == ["rewrite_disabled"] + ["not_rewritable"] * 3
    # the settings override the model's thresholds; a sure threshold under the other one means "the same"
    config = PolicyConfig(unrewritable_categories=(), rewritability_threshold=0.7, rewritability_sure_threshold=0.2)
    out = Policy(config, rewritability=TwoThresholds())(batch)
    assert out.column(records.REASON).to_pylist() == ["above_rewrite_threshold"] * 2 + ["not_rewritable"] * 2
    config = PolicyConfig(unrewritable_categories=(), rewritability_sure_threshold=0.99)
    out = Policy(config, rewritability=TwoThresholds())(batch)
    assert out.column(records.REASON).to_pylist() == ["above_rewrite_threshold"] * 4


def test_a_model_with_one_threshold_removes_from_it_untried():
    class OneThreshold:
        threshold = 0.5

        def predict(self, texts):
            return np.array([float(t) for t in texts], dtype=np.float32)

    batch = records.set_column(scored_batch([{"toxic": 0.9}] * 2), records.TEXT, pa.array(["0.3", "0.6"]))
    out = Policy(PolicyConfig(unrewritable_categories=()), rewritability=OneThreshold())(batch)
    assert out.column(records.REASON).to_pylist() == ["above_rewrite_threshold", "not_rewritable"]


def test_a_post_likely_unrewritable_with_a_sign_of_a_threat_or_hate_is_removed_untried():
    rows = [{"toxic": 0.9, "threat": 0.1, "identity_attack": 0.2}, {"toxic": 0.9, "threat": 0.4},
            {"toxic": 0.9, "identity_attack": 0.5}, {"toxic": 0.9, "insult": 0.9, "threat": 0.3}]
    batch = records.set_column(scored_batch(rows), records.TEXT, pa.array(["0.6"] * 4))
    out = Policy(PolicyConfig(), rewritability=TwoThresholds())(batch)
    assert out.column(records.REASON).to_pylist() == [
        "above_rewrite_threshold", "not_rewritable", "not_rewritable", "above_rewrite_threshold"]
    out = Policy(PolicyConfig(try_first_max_category=0.45), rewritability=TwoThresholds())(batch)
    assert out.column(records.REASON).to_pylist() == [
        "above_rewrite_threshold", "above_rewrite_threshold", "not_rewritable", "above_rewrite_threshold"]
    # only the categories the policy does not rewrite count
    out = Policy(PolicyConfig(unrewritable_categories=("threat",)), rewritability=TwoThresholds())(batch)
    assert out.column(records.REASON).to_pylist()[2] == "above_rewrite_threshold"


def test_the_sentences_rewritten_in_a_toxic_post_are_those_at_the_sentence_threshold():
    text = "You are a moron. Your point is weak. The bus leaves at nine."
    sentences = [{"start": 0, "end": 16, "toxicity": 0.9}, {"start": 17, "end": 36, "toxicity": 0.35},
                 {"start": 37, "end": 60, "toxicity": 0.01}]
    assert Policy(PolicyConfig()).targets(text, sentences) == ([(0, 16)], False)  # unset: rewrite_threshold
    assert Policy(PolicyConfig(sentence_threshold=0.3)).targets(text, sentences) == ([(0, 16), (17, 36)], False)
    assert Policy(PolicyConfig(sentence_threshold=0.0)).targets(text, sentences) == ([(0, 16), (17, 36), (37, 60)], True)
    calm = [{**s, "toxicity": 0.1} for s in sentences]  # toxic only as a whole: the whole post is rewritten
    assert Policy(PolicyConfig(sentence_threshold=0.3)).targets(text, calm) == ([(0, 60)], True)
    with pytest.raises(Exception, match="sentence_threshold"):
        PolicyConfig(sentence_threshold=1.5)
