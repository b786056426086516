"""Categories of toxicity from a multi-label classifier, through a whole run: the policy removes the
categories it does not rewrite, the audit log and the output carry every category's score, the
report counts them, `moderate show` prints them, and the DSA export maps them to its categories. A
binary classifier has no categories and runs as before.

The classifier is a tiny BERT with random weights and the shipped model's six labels (a large head
spreads its scores), so the thresholds below are set from what it scored in a probe run (the decisions the
policy makes from given scores are tested in tests/test_policy.py).
"""

from __future__ import annotations

import json

import pytest
import tiny_models
from conftest import POSTS, read_lines, read_output, write_parquet

from moderator import dsa, records, report, show
from moderator.config import JobConfig
from moderator.pipeline import run as run_pipeline

SIX = ("toxic", "insult", "threat", "identity_attack", "obscene", "sexual")


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory):
    root = tmp_path_factory.mktemp("category-models")
    return {"six": tiny_models.build_bert_classifier(root / "six", labels=SIX, multi_label=True, head_scale=300.0),
            "binary": tiny_models.build_bert_classifier(root / "binary")}


def config(classifier, **policy) -> JobConfig:
    return JobConfig.load(overrides={
        "classifier": {"model": str(classifier), "dtype": "float32"},  # bf16 would tie scores this close
        "policy": {"rewritability_model": "off", **policy},
        "rewriter": {"enabled": False},  # decisions only: no decoder needed
        "output": {"max_quarantine_share": 1.0},
    })


@pytest.fixture(scope="module")
def runs(classifiers, tmp_path_factory):
    """A six-label run whose threat threshold splits the posts, and a binary run of the same posts."""
    root = tmp_path_factory.mktemp("category-runs")
    posts = write_parquet(root / "posts.parquet", {
        "id": [f"p{i}" for i in range(len(POSTS) * 2 + 1)],
        "text": [f"{p} ({i})" for i, p in enumerate(POSTS * 2)] + [None],
        "created": ["2026-11-20"] * (len(POSTS) * 2 + 1)})
    probe = run_pipeline(config(classifiers["six"], rewrite_threshold=0.0), [str(posts)], root / "probe")
    threats = sorted(line["scores"]["threat"] for line in read_lines(probe.path / "audit.jsonl") if line["scores"])
    gaps = [(b - a, (a + b) / 2) for a, b in zip(threats, threats[1:])][len(threats) // 4: 3 * len(threats) // 4]
    width, threshold = max(gaps)  # in the widest gap of the middle half: some posts above it, some below
    assert width > 1e-5, threats  # far from the audit log's rounding (6 decimals)
    six = run_pipeline(config(classifiers["six"], rewrite_threshold=0.0, unrewritable_categories=["threat"],
                              category_threshold=threshold), [str(posts)], root / "six")
    binary = run_pipeline(config(classifiers["binary"], rewrite_threshold=0.0, category_threshold=0.0,
                                 unrewritable_categories=list(records.CATEGORIES)), [str(posts)], root / "binary")
    return {"six": six.path, "binary": binary.path, "threshold": threshold}


def test_a_run_removes_threats_and_carries_every_category_score(runs):
    lines = [line for line in read_lines(runs["six"] / "audit.jsonl") if line["action"] != "quarantine"]
    assert len(lines) == len(POSTS) * 2
    for line in lines:
        assert list(line["scores"]) == list(SIX)  # the audit line carries each category's score
        assert line["thresholds"]["category_threshold"] == pytest.approx(runs["threshold"], abs=1e-6)
        if line["scores"]["threat"] >= runs["threshold"]:
            assert (line["action"], line["reason"]) == ("remove", "category_threat")
        else:  # toxic (rewrite_threshold 0), no threat: would be rewritten, but rewriting is off here
            assert (line["action"], line["reason"]) == ("review", "rewrite_disabled")
    assert {line["reason"] for line in lines} == {"category_threat", "rewrite_disabled"}
    moderation = read_output(runs["six"]).column("moderation")
    assert [f.name for f in moderation.type.field("scores").type] == list(SIX)


def test_the_report_counts_categories_by_action(runs, tmp_path):
    summary = report.summarize([runs["six"]], JobConfig().report)
    categories = summary["totals"]["categories"]
    lines = [line for line in read_lines(runs["six"] / "audit.jsonl") if line["action"] != "quarantine"]
    assert list(categories) == list(records.CATEGORIES)  # in that order, each one the model scores
    for name, counted in categories.items():
        holding = [line for line in lines if line["scores"][name] >= runs["threshold"]]
        assert counted["count"] == len(holding)
        assert counted["by_action"] == {a: sum(line["action"] == a for line in holding) for a in records.ACTIONS}
    assert categories["threat"]["by_action"]["remove"] == categories["threat"]["count"] > 0
    assert categories["threat"]["count"] == sum(line["reason"] == "category_threat" for line in lines)
    assert summary["totals"]["category_thresholds"] == [pytest.approx(runs["threshold"])]
    markdown = report.render_markdown(summary)
    assert "## Categories" in markdown
    assert f"| threat | {categories['threat']['count']:,} |" in markdown
    html = report.render_html(summary)
    assert 'id="categories"' in html and records.CATEGORY_HELP["identity_attack"] in html
    assert "category_threat" in html  # the reason, with its meaning


def test_show_prints_a_posts_category_scores(runs):
    text = show.format_run(runs["six"], limit=3)
    shown = [line for line in text.splitlines() if line.startswith("  categories: ")]
    assert len(shown) == text.count("\n[") > 0  # one per post shown
    names = [item.split()[0] for item in shown[0].removeprefix("  categories: ").split(", ")]
    assert sorted(names) == sorted(records.CATEGORIES)


def test_the_dsa_export_maps_a_threat_to_violence(runs, tmp_path):
    out = tmp_path / "sor.jsonl"
    exported = dsa.export([runs["six"]], JobConfig().report, out)
    statements = read_lines(out)
    removed = [line for line in read_lines(runs["six"] / "audit.jsonl") if line["action"] == "remove"]
    assert exported.statements == len(statements) == len(removed) > 0
    for sor in statements:
        assert dsa.validate(sor) == []
        assert sor["category"] == "STATEMENT_CATEGORY_VIOLENCE" and "category_specification" not in sor
        assert " for threat (" in sor["decision_facts"] and "category threshold" in sor["decision_facts"]


def test_a_binary_classifier_has_no_categories_anywhere(runs, tmp_path):
    lines = [line for line in read_lines(runs["binary"] / "audit.jsonl") if line["action"] != "quarantine"]
    assert list(lines[0]["scores"]) == ["neutral", "toxic"]
    # every category is unrewritable at threshold 0, and none of them exists: every toxic post as before
    assert {line["reason"] for line in lines} == {"rewrite_disabled"}
    summary = report.summarize([runs["binary"]], JobConfig().report)
    assert summary["totals"]["categories"] == {}
    assert "## Categories" not in report.render_markdown(summary)
    assert 'id="categories"' not in report.render_html(summary)
    assert "categories:" not in show.format_run(runs["binary"])


LINE = {"action": "remove", "reason": "not_rewritable", "time": "2026-11-21T01:00:00.000+00:00", "id": "p1",
        "run_id": "r1", "toxicity": 0.95, "unrewritable": 0.8, "rewrite_toxicity": None, "similarity": None,
        "thresholds": {"rewrite_threshold": 0.5, "category_threshold": 0.5}}


@pytest.mark.parametrize("scores, reason, category, keywords", [
    ({"toxic": 0.95, "threat": 0.9, "insult": 0.95}, "category_threat", "STATEMENT_CATEGORY_VIOLENCE", None),
    ({"toxic": 0.95, "identity_attack": 0.7, "insult": 0.6}, "category_identity_attack",
     "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH", ["KEYWORD_HATE_SPEECH"]),
    ({"toxic": 0.95, "sexual": 0.8, "obscene": 0.6}, "not_rewritable",
     "STATEMENT_CATEGORY_PORNOGRAPHY_OR_SEXUALIZED_CONTENT", ["KEYWORD_ADULT_SEXUAL_MATERIAL"]),
    ({"toxic": 0.95, "insult": 0.9, "threat": 0.4}, "not_rewritable",  # an insult: the configured category
     "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH", ["KEYWORD_ONLINE_BULLYING_INTIMIDATION"]),
    ({"toxic": 0.95, "threat": 0.4}, "not_rewritable",  # under the category threshold
     "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH", ["KEYWORD_ONLINE_BULLYING_INTIMIDATION"]),
])
def test_dsa_categories_from_scores(scores, reason, category, keywords):
    settings = JobConfig.load(overrides={"report": {
        "dsa_category_specification": ["KEYWORD_ONLINE_BULLYING_INTIMIDATION"]}}).report
    line = {**LINE, "scores": scores, "reason": reason}
    sor = dsa.statement(line, settings, "ab" * 32, None)
    assert dsa.validate(sor) == []
    assert sor["category"] == category and sor.get("category_specification") == keywords
    found = dsa.decision_category(line)
    if found is None:
        assert "category" not in sor["decision_facts"]
    else:
        name, score = found
        assert f"{score:.3f} for {name.replace('_', ' ')} ({records.CATEGORY_HELP[name]})" in sor["decision_facts"]
        assert sor["decision_facts"].count(f" for {name.replace('_', ' ')} (") == 1
    old = JobConfig.load(overrides={"report": {"dsa_category_from_scores": False}}).report
    forced = dsa.statement(line, old, "ab" * 32, None)
    assert forced["category"] == "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH" and dsa.validate(forced) == []


def test_a_statement_without_categories_is_what_it_was():
    settings = JobConfig().report
    line = {**LINE, "scores": {"neutral": 0.05, "toxic": 0.95}}
    sor = dsa.statement(line, settings, "ab" * 32, None)
    assert sor["category"] == settings.dsa_category and "category_specification" not in sor
    assert sor["decision_facts"] == (
        "An automated toxicity classifier sha256 abababababab scored the post 0.950 for toxicity, at or above the "
        "rewrite threshold of 0.5, and an automated rewritability model judged (probability 0.800) that its meaning "
        "itself is abusive, so that no rewrite could keep it without the abuse. The post was removed without human "
        "review.")
    assert json.dumps(sor)  # plain JSON
