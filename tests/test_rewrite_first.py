"""Rewrite first: toxic sentences rewritten from several candidates, the rest kept; removal only for
posts that cannot be rewritten; every new reason code through the CLI, the report and the DSA export.

The bundled classifier and rewritability model load offline from the package; the decoder is the
tiny one from the fixtures (transformers engine), or the pip-installed Gemma base where a test needs
a decoder that copies its input (zero-shot, the base only repeats the post).
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner
from conftest import read_lines, read_output, tiny_config, write_parquet

from moderator import records, sentences
from moderator.cli import cli
from moderator.config import RewriterConfig, RuntimeConfig
from moderator.engines import HFEngine
from moderator.prompts import build_prompt
from moderator.rewrite import Rewriter
from moderator.models import resolve
from moderator.pipeline import run
from moderator.verify import same_words

THREAT = "I will find out where you live and I will kill you and your whole family."
INSULT_POST = ("The new bus schedule makes no sense to me.\n\nYou are a stupid idiot if you think it works! 😀 "
               "See https://example.com/a.b?c=1 for the old one.")


def _cli(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_candidates_are_deterministic_for_a_seed_and_start_with_the_greedy_rewrite(tiny):
    engine = HFEngine(RewriterConfig(base=str(tiny.decoder), adapter=str(tiny.adapter), engine="hf",
                                     max_new_tokens=8), "cpu", resolve(str(tiny.decoder), "base"),
                      resolve(str(tiny.adapter), "adapter"))
    prompts = ["Rewrite: you idiot", "Rewrite: a longer post, with more words in it, you moron"]
    first = engine.candidates(prompts, 4, 1.0, seed=7)
    again = engine.candidates(prompts, 4, 1.0, seed=7)
    other = engine.candidates(prompts, 4, 1.0, seed=8)
    assert [[g.token_ids for g in row] for row in first] == [[g.token_ids for g in row] for row in again]
    assert all(len(row) == 4 for row in first)
    assert [row[0].token_ids for row in first] == [g.token_ids for g in engine.generate(prompts)]
    assert [[g.token_ids for g in row[1:]] for row in first] != [[g.token_ids for g in row[1:]] for row in other]
    samples = engine.samples(prompts, 3, 1.0, seed=7)  # the sampled ones alone: the same as after the greedy one
    assert [[g.token_ids for g in row] for row in samples] == [[g.token_ids for g in row[1:]] for row in first]


def test_samples_are_asked_for_only_where_the_greedy_rewrite_fails_the_screen(tiny):
    """sample_when = greedy_fails (the default): a target whose greedy rewrite passes verify's check gets
    no samples; the others get the same candidates as with `always`."""
    config = RewriterConfig(base=str(tiny.decoder), adapter=str(tiny.adapter), engine="hf", max_new_tokens=8,
                            candidates=4)
    rewriter = Rewriter(config, RuntimeConfig())
    asked: list[int] = []
    real_samples = rewriter.engine.samples

    def counting(prompts_, n, temperature, seed):  # type: ignore[no-untyped-def]
        asked.append(len(prompts_))
        return real_samples(prompts_, n, temperature, seed)

    rewriter.engine.samples = counting
    posts = ["you idiot", "a longer post, with more words in it, you moron", "shut up, fool"]
    prompts_ = [build_prompt(p) for p in posts]
    always = Rewriter.candidates(rewriter, prompts_, posts)  # no screen: greedy and samples for every target
    assert asked == [3]
    seen: list[list[str]] = []

    flags: list[list[bool]] = []

    def second_fails(originals, rewrites, guarded):  # type: ignore[no-untyped-def]
        seen.append(list(originals))
        flags.append(list(guarded))
        return [k != 1 for k in range(len(rewrites))]

    screened = rewriter.candidates(prompts_, posts, screen=second_fails)
    assert seen == [posts] and asked == [3, 1]  # one screen of the greedy rewrites, samples for one target
    assert flags == [[False] * 3]  # no target guarded unless the rewrite step says so
    assert screened[0] == always[0][:1] and screened[2] == always[2][:1]
    assert screened[1][0] == always[1][0] and 1 <= len(screened[1]) <= 4
    assert rewriter.candidates(prompts_, posts, screen=lambda o, r, g: [True] * len(r)) == [row[:1] for row in always]
    assert asked == [3, 1]  # all passed: no samples asked for
    rewriter.config = dataclasses.replace(config, sample_when="always")
    assert rewriter.candidates(prompts_, posts, screen=second_fails) == always and asked == [3, 1, 3]


def test_only_the_toxic_sentence_is_rewritten_and_every_other_byte_is_kept(tiny, tmp_path):
    """The bundled classifier finds the toxic sentence; the others stay byte for byte."""
    posts = write_parquet(tmp_path / "posts.parquet", {"id": ["a", "b"], "text": [INSULT_POST, "Thanks, that helped."]})
    config = tiny_config(tiny, classifier={"model": None},
                         policy={"max_rewrite_toxicity": 1.0, "min_similarity": -1.0, "delete_sentences": "any"})
    result = run(config, [str(posts)], tmp_path / "run")
    rows = read_output(tmp_path / "run").column("moderation").to_pylist()
    toxic, clean = rows
    assert clean["action"] == "allow"
    assert toxic["rewritten_sentences"] == 1 and 1 <= toxic["candidates"] <= 4
    spans = sentences.split(INSULT_POST)
    assert len(spans) == 3
    kept = [INSULT_POST[a:b] for a, b in spans if "idiot" not in INSULT_POST[a:b]]
    assert all(piece in toxic["rewrite"] for piece in kept)
    assert "idiot" not in toxic["rewrite"]
    assert toxic["rewrite"].startswith("The new bus schedule makes no sense to me.\n\n")
    audit = read_lines(tmp_path / "run" / "audit.jsonl")
    assert audit[0]["candidates"] == toxic["candidates"] and audit[0]["rewritten_sentences"] == 1
    assert "rewritability" not in result.manifest["models"]  # off in tiny_config


def test_the_bundled_classifier_removes_a_threat_by_its_category_and_the_dsa_export_names_it(tmp_path):
    """The shipped model scores this threat higher as an attack than as a threat (a known gap, see
    tests/test_bundled_classifier.py): either way it is removed by its category, and the statement of
    reasons names the category the decision gives."""
    posts = write_parquet(tmp_path / "posts.parquet", {"id": ["threat", "fine"], "text": [THREAT, "See you on Monday."]})
    done = _cli("batch", str(posts), "--out", str(tmp_path / "run"), "--no-rewrite")
    assert done.exit_code == 0, done.output
    rows = {r["id"]: r for r in read_output(tmp_path / "run").column("moderation").to_pylist()}
    threat = rows["threat"]
    assert threat["action"] == "remove" and threat["reason"] in ("category_threat", "category_identity_attack")
    category = threat["reason"].removeprefix("category_")
    assert threat["scores"][category] >= 0.5 and rows["fine"]["action"] == "allow"
    report = _cli("report", str(tmp_path / "run"), "--out", str(tmp_path / "r.html"), "--dsa-sor", str(tmp_path / "sor.jsonl"))
    assert report.exit_code == 0, report.output
    (statement,) = read_lines(tmp_path / "sor.jsonl")
    assert statement["category"] == {"threat": "STATEMENT_CATEGORY_VIOLENCE",
                                     "identity_attack": "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH"}[category]


def test_a_threat_is_removed_as_not_rewritable_and_reported_as_such(tmp_path):
    """With the category rule off, the rewritability model alone removes the threat."""
    posts = write_parquet(tmp_path / "posts.parquet", {
        "id": ["threat", "insult", "fine"],
        "text": [THREAT, "Your argument is idiotic, the tax cut will not pay for itself.", "See you on Monday."]})
    (tmp_path / "job.toml").write_text("[policy]\nunrewritable_categories = []\n")
    done = _cli("batch", str(posts), "--out", str(tmp_path / "run"), "--no-rewrite", "--config", str(tmp_path / "job.toml"))
    assert done.exit_code == 0, done.output
    rows = {r["id"]: r for r in read_output(tmp_path / "run").column("moderation").to_pylist()}
    assert (rows["threat"]["action"], rows["threat"]["reason"]) == ("remove", "not_rewritable")
    assert rows["threat"]["unrewritable"] >= 0.5
    assert (rows["insult"]["action"], rows["insult"]["reason"]) == ("review", "rewrite_disabled")
    assert rows["fine"]["action"] == "allow"
    assert "toxic posts: 2" in done.stderr and "not_rewritable 1" in done.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert len(manifest["models"]["rewritability"]["sha256"]) == 64  # recorded like every model
    # the report counts the new reason; the DSA statement explains the removal by rewritability
    report = _cli("report", str(tmp_path / "run"), "--out", str(tmp_path / "r.html"), "--json", str(tmp_path / "r.json"),
                  "--dsa-sor", str(tmp_path / "sor.jsonl"))
    assert report.exit_code == 0, report.output
    summary = json.loads((tmp_path / "r.json").read_text())
    assert summary["totals"]["reasons"]["not_rewritable"]["count"] == 1
    assert "not_rewritable" in (tmp_path / "r.html").read_text()
    (statement,) = read_lines(tmp_path / "sor.jsonl")
    assert statement["decision_visibility"] == ["DECISION_VISIBILITY_CONTENT_REMOVED"]
    assert "rewritability model" in statement["decision_facts"] and "removal threshold" not in statement["decision_facts"]


def test_an_unsure_not_rewritable_post_goes_to_review(tmp_path):
    posts = write_parquet(tmp_path / "posts.parquet", {"id": ["threat"], "text": [THREAT]})
    config = tmp_path / "job.toml"
    config.write_text("[policy]\nsure_toxicity = 1.0\nunrewritable_categories = []\n")  # the rewritability path
    done = _cli("batch", str(posts), "--out", str(tmp_path / "run"), "--no-rewrite", "--config", str(config))
    assert done.exit_code == 0, done.output
    (row,) = read_output(tmp_path / "run").column("moderation").to_pylist()
    assert (row["action"], row["reason"]) == ("review", "uncertain_not_rewritable")


@pytest.mark.slow
@pytest.mark.parametrize("failure", ["review", "remove"])
def test_a_rewriter_that_copies_is_never_published(tmp_path, failure):
    """Zero-shot, the Gemma base repeats the post: verify calls that a copy, and the post goes to
    [policy] on_rewrite_failure instead of being published."""
    post = "Your argument is idiotic, the tax cut will not pay for itself."  # toxic, and rewritable
    posts = write_parquet(tmp_path / "posts.parquet", {"id": ["p"], "text": [post]})
    done = _cli("batch", str(posts), "--out", str(tmp_path / "run"), "--rewriter-base", "pip:gemma-3-270m",
                "--engine", "hf", "--candidates", "1", "--on-rewrite-failure", failure)
    assert done.exit_code == 0, done.output
    (row,) = read_output(tmp_path / "run").column("moderation").to_pylist()
    assert row["action"] == failure and row["reason"] in records.REWRITE_FAILURES
    assert row["reason"] == "rewrite_copied" or not same_words(row["rewrite"] or "", post)
    assert row["candidates"] == 1
    if failure == "remove":
        report = _cli("report", str(tmp_path / "run"), "--out", str(tmp_path / "r.html"),
                      "--dsa-sor", str(tmp_path / "sor.jsonl"))
        assert report.exit_code == 0, report.output
        (statement,) = read_lines(tmp_path / "sor.jsonl")
        assert "None of the automated rewrites passed verification" in statement["decision_facts"]


def test_copies_are_recognised_whatever_the_case_spacing_and_punctuation():
    assert same_words("You are an IDIOT!", "you are an idiot")
    assert same_words("  you  are, an idiot ...", "You are an idiot.")
    assert not same_words("You are an idiot.", "You are wrong.")
    assert not same_words("You are an idiot.", "")


@pytest.mark.slow
@pytest.mark.parametrize("sure", [1.0, 0.0])
def test_a_post_judged_likely_not_rewritable_is_tried_first_and_removed_when_no_rewrite_passes(tmp_path, sure):
    """Between the rewritability model's two thresholds the post is rewritten first; when no rewrite
    passes (the zero-shot base copies it) it is removed as not rewritable, not sent to review, and the
    statement of reasons says a rewrite was tried. From the sure threshold on it is removed untried."""
    post = "Your argument is idiotic, the tax cut will not pay for itself."
    posts = write_parquet(tmp_path / "posts.parquet", {"id": ["p"], "text": [post]})
    (tmp_path / "job.toml").write_text("[policy]\nunrewritable_categories = []\nrewritability_threshold = 0.0\n"
                                       f"rewritability_sure_threshold = {sure}\n")
    done = _cli("batch", str(posts), "--out", str(tmp_path / "run"), "--rewriter-base", "pip:gemma-3-270m",
                "--engine", "hf", "--candidates", "1", "--config", str(tmp_path / "job.toml"))
    assert done.exit_code == 0, done.output
    (row,) = read_output(tmp_path / "run").column("moderation").to_pylist()
    assert (row["action"], row["reason"]) == ("remove", "not_rewritable")
    assert row["candidates"] == (1 if sure == 1.0 else None)
    report = _cli("report", str(tmp_path / "run"), "--out", str(tmp_path / "r.html"), "--dsa-sor", str(tmp_path / "sor.jsonl"))
    assert report.exit_code == 0, report.output
    (statement,) = read_lines(tmp_path / "sor.jsonl")
    tried = "none of the 1 automated rewrites tried passed verification"
    assert (tried in statement["decision_facts"]) == (sure == 1.0)
    assert "rewritability model" in statement["decision_facts"]
