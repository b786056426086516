"""The robustness suite (train/robustness.py: cases, counterfactual swaps, obfuscation) and the scoring of its
benchmark (benchmarks/robustness.py) on the tiny classifier."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA

from train import robustness as suite

ROOT = Path(__file__).resolve().parents[1]
DIGEST = ("import hashlib, json\nfrom train import robustness as r\n"
          "print(hashlib.sha256(json.dumps([vars(c) for c in r.generate()]).encode()).hexdigest())")


@pytest.fixture(scope="module")
def cases() -> list[suite.Case]:
    return suite.generate()


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("robustness_bench", ROOT / "benchmarks" / "robustness.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


# --- the cases ----------------------------------------------------------------------------------------------

def test_generation_is_deterministic_across_processes(cases):
    digest = hashlib.sha256(json.dumps([vars(c) for c in cases]).encode()).hexdigest()
    assert suite.generate() == cases
    for hash_seed in ("1", "987"):  # set and dict orders that depend on string hashing must not leak in
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", DIGEST], cwd=ROOT, env=env, capture_output=True, text=True,
                              check=True)
        assert done.stdout.strip() == digest


def test_every_kind_is_present_with_its_label_and_category(cases):
    kinds = Counter(c.kind for c in cases)
    assert set(kinds) == set(suite.KINDS)
    assert all(n >= 80 for n in kinds.values()), kinds
    assert 300 <= len(cases) <= 6000
    assert len({c.text for c in cases}) == len(cases)  # no duplicates
    for kind in suite.BENIGN_KINDS:
        assert all(c.expected is False and c.category is None for c in cases if c.kind == kind)
    for kind in suite.TOXIC_KINDS + suite.OBFUSCATED_KINDS:
        assert all(c.expected is True for c in cases if c.kind == kind)
    assert {c.category for c in cases if c.kind == "explicit_hate"} == {"identity_attack"}
    assert {c.category for c in cases if c.kind == "threat"} == {"threat"}
    assert {c.category for c in cases if c.kind == "insult"} == {"insult"}
    for kind in suite.OBFUSCATED_KINDS:  # each obfuscation covers every kind of abuse
        assert {c.category for c in cases if c.kind == kind} == {"identity_attack", "threat", "insult"}
    benign = sum(not c.expected for c in cases) / len(cases)
    assert 0.35 < benign < 0.65
    for kind in suite.KINDS:  # held-out phrasings in every kind, and the split filter keeps exactly them
        splits = Counter(c.split for c in cases if c.kind == kind)
        high = 0.65 if kind in ("explicit_hate", "negated_hate") else 0.5  # their later templates: held out whole
        assert set(splits) == {"train", "dev"} and 0.15 < splits["dev"] / sum(splits.values()) < high
    dev = suite.generate("dev")
    assert dev == [c for c in cases if c.split == "dev"] and 0 < len(dev) < len(cases)
    with pytest.raises(ValueError):
        suite.generate("test")


def test_group_insults_are_rewritable_insults_about_no_protected_group_and_no_benchmark_post(cases):
    """Insults at parties, trades and fans, and people called bigots: toxic, category insult, no identity
    group among them (the counterfactual swap finds nothing to swap), and none is a real forum post."""
    insults = [c for c in cases if c.kind == "group_insult"]
    assert len(insults) >= 80 and {c.category for c in insults} == {"insult"} and all(c.expected for c in insults)
    assert all(c.group is None and not suite.identity_terms(c.text) for c in insults)
    texts = {c.text for c in insults}
    assert "Liberals are such hypocrites." in texts and "My uncle is a racist pig." in texts
    assert {c.split for c in insults} == {"train", "dev"}
    if SHARED_DATA.is_dir():
        from train import data

        forum = {data.normalize(row["text"]) for name in ("tsd_train.csv", "tsd_trial.csv")
                 for row in csv.DictReader(open(SHARED_DATA / "forum_posts" / name, encoding="utf-8"))}
        assert not {data.normalize(t) for t in texts} & forum


def test_every_group_and_axis_is_covered_evenly(cases):
    names = {g.name for g in suite.GROUPS}
    assert {g.axis for g in suite.GROUPS} == set(suite.AXES)
    assert all(sum(g.axis == axis for g in suite.GROUPS) >= 3 for axis in suite.AXES)
    for kind in suite.GROUP_KINDS:
        assert {c.group for c in cases if c.kind == kind and c.group} == names, kind
    per_group = Counter(c.group for c in cases if c.group and c.kind in suite.BENIGN_KINDS)
    assert min(per_group.values()) >= 0.85 * max(per_group.values()), per_group
    assert all(c.group is None for c in cases if c.kind == "insult")
    assert any(c.group is None for c in cases if c.kind == "counter_speech")  # reported personal abuse too
    assert any(c.group is None for c in cases if c.kind == "threat")  # personal threats too


def test_the_issues_examples_are_in_the_suite(cases):
    kind_of = {c.text: c.kind for c in cases}
    examples = {
        "I am a Muslim.": "neutral_identity", "My neighbour is gay.": "neutral_identity",
        "She is a Black woman who teaches math.": "neutral_identity", "I love women.": "positive_identity",
        "Jewish people are wonderful neighbours.": "positive_identity", "I don't hate gay people.": "negated_hate",
        "Immigrants are not criminals.": "negated_hate", 'Calling someone a "retard" is not okay.': "counter_speech",
        "He told me to go back to my country and I reported him.": "counter_speech",
    }
    for text, kind in examples.items():
        assert kind_of.get(text) == kind, text


def test_denials_and_assertions_of_the_same_attributes_are_minimal_pairs(cases):
    """Negation must decide, not the words: every attribute is both denied (clean) and asserted (hate) about
    groups, no denial frame repeats a held-out written negation, and hate that negates something good is
    toxic."""
    denied = [c for c in cases if c.template.startswith("negated_hate_composed/")]
    asserted = [c for c in cases if c.template.startswith("explicit_hate_composed/")]
    assert denied and asserted and not any(c.expected for c in denied) and all(c.expected for c in asserted)
    for attr in suite.ATTRIBUTES:
        word = re.compile(rf"\b{attr}\b")
        assert any(word.search(c.text) for c in denied) and any(word.search(c.text) for c in asserted), attr
    # the composed denials and assertions and the hate that negates something good are evaluation only
    assert {c.split for c in cases if c.template.startswith(("negated_hate_composed/", "explicit_hate_composed/",
                                                             "explicit_hate_negated_positive/"))} == {"dev"}
    written_dev = {c.text for c in cases if c.template.startswith("negated_hate/") and c.split == "dev"}
    assert not written_dev & {c.text for c in denied}
    per_group = Counter(c.group for c in denied)
    assert set(per_group) == {g.name for g in suite.GROUPS} and max(per_group.values()) - min(per_group.values()) <= 1
    kind_of = {c.text: c.kind for c in cases}
    assert kind_of["Muslims are not human."] == "explicit_hate"
    assert kind_of["Immigrants are not criminals."] == "negated_hate"


def test_obfuscated_cases_hide_every_abusive_word_of_their_source(cases):
    toxic = [c for c in cases if c.kind in suite.TOXIC_KINDS]
    sources = {c.text for c in toxic}
    # Hate that negates something good ("Sikhs are not human.") holds no abusive word by design.
    worded = [c for c in toxic if "negated_positive" not in c.template]
    assert sum(bool(suite.toxic_words(c.text)) for c in worded) >= 0.9 * len(worded)
    assert not any(suite.toxic_words(c.text) for c in toxic if c not in worded)
    back = {glyph: letter for letter, glyphs in suite.HOMOGLYPHS.items() for glyph in glyphs}
    for case in cases:
        if case.kind not in suite.OBFUSCATED_KINDS:
            continue
        assert case.text not in sources
        assert suite.toxic_words(case.text) == [], case.text  # nothing abusive left readable
        assert suite.toxic_words(suite.normalized(case.text)) == [], case.text  # not even after NFKC
        if case.kind == "obfuscated_homoglyph":  # mapping the look-alikes back gives the source
            assert "".join(back.get(ch, ch) for ch in case.text) in sources, case.text


# --- obfuscate ----------------------------------------------------------------------------------------------

PREFIX, WORD, SUFFIX = "You are an ", "idiot", ", shut up."


def _middle(text: str) -> str:
    assert text.startswith(PREFIX) and text.endswith(SUFFIX), text  # the other words are untouched
    return text[len(PREFIX):-len(SUFFIX)]


def test_obfuscate_spacing_leet_homoglyph_typo_and_joined():
    text = PREFIX + WORD + SUFFIX
    for seed in range(25):
        spaced = _middle(suite.obfuscate(text, "spacing", seed))
        assert len(spaced) == 2 * len(WORD) - 1 and spaced[::2] == WORD and len(set(spaced[1::2])) == 1
        assert spaced[1] in suite.SEPARATORS
        leet = _middle(suite.obfuscate(text, "leet", seed))
        assert len(leet) == len(WORD) and leet != WORD and leet[0] in "i1!"
        assert all(a == b or b == "*" or b in suite.LEET.get(a, "") for a, b in zip(WORD, leet)), leet
        glyphs = _middle(suite.obfuscate(text, "homoglyph", seed))
        assert len(glyphs) == len(WORD) and glyphs != WORD
        assert all(a == b or b in suite.HOMOGLYPHS[a] for a, b in zip(WORD, glyphs)), glyphs
        assert suite.normalized(glyphs) == glyphs and not glyphs.isascii()  # NFKC does not undo it
    assert all(suite.normalized(g) == g for glyphs in suite.HOMOGLYPHS.values() for g in glyphs)
    examples = {how: {suite.obfuscate(text, how, s) for s in range(25)} for how in suite.OBFUSCATIONS}
    assert all(len(examples[how]) >= 4 for how in suite.OBFUSCATIONS if how != "joined")  # the seed matters
    # A typo keeps the first letter and swaps two neighbours or leaves one out: "idoit", "idot".
    typos = {_middle(t) for t in examples["typo"]}
    assert {"idoit", "iidot", "idot", "iiot", "idit"} == typos
    # Joined: glued to the word before; to the word after when it starts the text; a typo when alone.
    assert examples["joined"] == {"You are anidiot, shut up."}
    assert suite.obfuscate("idiot you are", "joined") == "idiotyou are"
    assert suite.obfuscate("Shut up, you stupid moron.", "joined") == "Shut up, youstupidmoron."
    assert suite.obfuscate("idiot!", "joined")[:-1] in typos  # nothing to glue to
    assert any("i d i o t" in t for t in examples["spacing"]) and any("i.d.i.o.t" in t for t in examples["spacing"])
    assert any("*" in _middle(t) for t in examples["leet"]) and any(re.search(r"\d", t) for t in examples["leet"])


def test_obfuscate_is_deterministic_and_takes_the_words_it_is_given():
    text = "I will kill you, idiot."

    def words(t: str) -> list[str]:  # joined words are one word: "killyou"
        return re.findall(r"[A-Za-z]+", t)

    for how in suite.OBFUSCATIONS:
        assert suite.obfuscate(text, how, seed=7) == suite.obfuscate(text, how, seed=7)
        only_you = suite.obfuscate(text, how, seed=1, words=["you"])
        assert only_you.startswith("I will ") and only_you.endswith(", idiot.") and "you" not in words(only_you)
        assert "kill" in words(only_you) or how == "joined"
        default = suite.obfuscate(text, how, seed=1)
        assert default.startswith("I ") and not {"kill", "idiot"} & set(words(default))
        plain = suite.obfuscate("Lovely weather today", how, seed=1)  # no abusive word: every longer word
        assert not {"Lovely", "weather", "today"} & set(words(plain))
        for word in sorted(suite.TOXIC_WORDS):  # every word the suite hides can be hidden every way
            assert all(suite.obfuscate(word, how, s) != word for s in range(3)), (how, word)
    with pytest.raises(ValueError, match="unknown obfuscation"):
        suite.obfuscate(text, "rot13")


# --- swap_identity ------------------------------------------------------------------------------------------

def test_swap_identity_replaces_one_group_by_another():
    swap = suite.swap_identity
    assert swap("Muslims are wonderful neighbours.", to="women") == "Women are wonderful neighbours."
    assert swap("I love gay people.", to="muslim") == "I love Muslims."
    assert swap("i love gay people", to="muslim") == "i love muslims"  # a lower-case post stays lower-case
    assert swap("She is a Black woman who teaches math.", to="asian") == "She is an Asian woman who teaches math."
    assert swap("I am a Muslim.", to="immigrant") == "I am an immigrant."
    assert swap("Muslims pray and Muslims fast.", to="hindu") == "Hindus pray and Hindus fast."
    assert swap("My white neighbours are loud.", to="black") == "My Black neighbours are loud."
    assert swap("A Muslim family moved in.", to="deaf") == "A deaf family moved in."
    for text in ("We painted the wall white.", "Please polish the floor.", "The weather is nice today."):
        assert swap(text) == text  # everyday words, no identity term
    with pytest.raises(ValueError, match="no adj form"):
        swap("A Muslim family moved in.", to="women")  # "A women family"
    with pytest.raises(ValueError, match="already"):
        swap("I love Muslims.", to="muslim")
    with pytest.raises(ValueError, match="unknown group"):
        swap("I love Muslims.", to="martians")
    seeded = {swap("I love Muslims.", seed=s) for s in range(12)}
    assert len(seeded) >= 5 and "I love Muslims." not in seeded
    assert all(suite.identity_terms(t)[0].group != "muslim" for t in seeded)
    others = suite.counterfactuals("I love women.")
    assert len(others) == len(set(others)) == len(suite.GROUPS) - 1 and "I love Muslims." in others
    assert suite.counterfactuals("The weather is nice today.") == []


def test_swapping_there_and_back_gives_the_suites_cases_back(cases):
    checked = 0
    for case in cases:
        if case.kind not in ("neutral_identity", "positive_identity", "negated_hate") or case.group is None:
            continue
        found = {t.group for t in suite.identity_terms(case.text)}
        assert found <= {case.group}, case.text  # no other group found in it
        if not found:
            continue  # "I am Black.": a bare everyday adjective is not taken for a group
        for seed in range(2):
            swapped = suite.swap_identity(case.text, seed=seed)
            terms = suite.identity_terms(swapped)
            assert swapped != case.text and all(t.group != case.group for t in terms)
            if terms:
                assert suite.swap_identity(swapped, to=case.group) == case.text
                checked += 1
    assert checked > 1500


# --- the benchmark's scoring --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_classifier(tiny, bench):  # type: ignore[no-untyped-def]
    return bench.load_classifier(str(tiny.classifier), "float32", batch_size=16)


def test_score_is_the_products_post_toxicity(tiny_classifier, bench, cases):
    two = [c.text for c in cases if c.kind == "counter_speech" and ". " in c.text.rstrip(".")][:2]
    sample = [c.text for c in cases[::53]] + two
    assert len(two) == 2  # posts of two sentences too: the product scores the whole post
    scores = bench.score(tiny_classifier, sample)
    expected = tiny_classifier.toxicity(tiny_classifier.predict(sample))
    assert scores.shape == (len(sample),)
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert np.ptp(scores) > 0  # the random tiny model tells texts apart (barely: all near 0.502)
    assert bench.score(tiny_classifier, []).shape == (0,)


def _pick(cases: list[suite.Case], kind: str, splits: tuple[str, ...]) -> list[suite.Case]:
    out = []
    for split in splits:
        out.append(next(c for c in cases if c.kind == kind and c.split == split and c not in out))
    return out


def test_flag_rates_count_scores_at_or_above_the_threshold(bench, cases):
    neutral = _pick(cases, "neutral_identity", ("train", "train", "dev", "dev"))
    insult = _pick(cases, "insult", ("train", "dev", "train", "train"))
    hate = _pick(cases, "explicit_hate", ("train", "dev"))
    picked = neutral + insult + hate
    scores = [0.1, 0.5, 0.49, 0.9] + [0.9, 0.95, 0.85, 0.2] + [0.3, 0.7]
    rates = bench.flag_rates(picked, scores, 0.5)
    assert list(rates) == ["neutral_identity", "explicit_hate", "insult"]  # KINDS order, absent kinds left out
    row = rates["neutral_identity"]
    keys = ("n", "flagged", "flag_rate", "dev_n", "dev_flag_rate", "expected", "target", "met")
    assert {k: row[k] for k in keys} == {"n": 4, "flagged": 2, "flag_rate": 0.5, "dev_n": 2, "dev_flag_rate": 0.5,
                                         "expected": "clean", "target": "<= 0.10", "met": False}  # 0.5 in, 0.49 out
    assert row["mean_score"] == pytest.approx(0.4975)
    insult_row = rates["insult"]
    assert (insult_row["flag_rate"], insult_row["dev_flag_rate"], insult_row["met"]) == (0.75, 1.0, False)
    assert rates["insult"]["target"] == ">= 0.85" and rates["insult"]["expected"] == "toxic"
    assert rates["explicit_hate"]["flag_rate"] == 0.5 and rates["explicit_hate"]["dev_flag_rate"] == 1.0
    low = bench.flag_rates(picked, scores, 0.15)
    assert (low["insult"]["flag_rate"], low["insult"]["met"]) == (1.0, True)
    assert low["neutral_identity"]["flag_rate"] == 0.75
    clean = bench.flag_rates(neutral, [0.0, 0.1, 0.2, 0.3], 0.5)["neutral_identity"]
    assert (clean["flag_rate"], clean["met"]) == (0.0, True)
    with pytest.raises(ValueError):
        bench.flag_rates(picked, scores[:-1], 0.5)
    # The first cases of a template are about the first groups: neutral 0.1 and 0.49 are about muslim, 0.5 and
    # 0.9 about jewish; both hate cases (0.3, 0.7) about muslim; insults name no group.
    assert [c.group for c in neutral] == ["muslim", "jewish", "muslim", "jewish"]
    assert [c.group for c in hate] == ["muslim", "muslim"]
    groups = bench.group_rates(picked, scores, 0.5)
    assert list(groups) == ["muslim", "jewish"]
    assert groups["muslim"] == {"axis": "religion", "benign_n": 2, "benign_flag_rate": 0.0, "attack_n": 2,
                                "attack_caught": 0.5}
    assert groups["jewish"] == {"axis": "religion", "benign_n": 2, "benign_flag_rate": 1.0, "attack_n": 0,
                                "attack_caught": None}
    axes = bench.axis_rates(groups)
    assert axes == {"religion": {"groups": 2, "benign_n": 4, "attack_n": 2, "benign_flag_rate": 0.5,
                                 "attack_caught": 0.5, "benign_spread": 1.0}}


def test_category_rates_count_the_flagged_toxic_cases_the_policy_removes_by_category(bench, cases, tiny):
    from moderator.config import PolicyConfig

    assert bench.category_threshold() == PolicyConfig().category_threshold
    hate = [c for c in cases if c.kind == "explicit_hate"][:4]
    insult = [c for c in cases if c.kind == "group_insult"][:2]
    neutral = [c for c in cases if c.kind == "neutral_identity"][:1]
    picked = hate + insult + neutral
    scores = [0.9, 0.9, 0.4, 0.9] + [0.9, 0.9] + [0.9]
    categories = [0.8, 0.7, 0.9, 0.2] + [0.75, 0.1] + [0.9]
    rates = bench.category_rates(picked, scores, categories, 0.5, 0.7)
    # a case counts when flagged and at or above the category threshold: not the unflagged one (0.4, 0.9)
    assert rates["explicit_hate"] == 0.5 and rates["group_insult"] == 0.5
    assert "neutral_identity" not in rates and rates["threat"] is None  # clean kinds have no such share
    result = bench.evaluate(picked, scores, 0.5, categories=categories, category_at=0.7)
    assert result["kinds"]["explicit_hate"]["category_rate"] == 0.5
    assert "category_rate" not in result["kinds"]["neutral_identity"]
    # with a classifier that has a threat head, the category score is that head's, for every text
    multi = bench.load_classifier(str(tiny.multilabel), "float32", batch_size=16)
    texts = [c.text for c in picked]
    toxicity, held = bench.score_with_categories(multi, texts)
    probs = multi.predict(texts)
    np.testing.assert_allclose(held, probs[:, multi.labels.index("threat")], atol=1e-5)
    np.testing.assert_allclose(toxicity, bench.score(multi, texts), atol=1e-6)


def test_the_benchmark_on_the_tiny_classifier(tiny, tiny_classifier, bench, tmp_path, capsys):
    from moderator.config import PolicyConfig

    assert bench.product_threshold() == PolicyConfig().rewrite_threshold
    # The tiny model scores everything near 0.502: at its median score about half the cases are flagged.
    median = float(np.median(bench.score(tiny_classifier, [c.text for c in suite.generate()])))
    out = tmp_path / "tiny.json"
    result = bench.main(["--classifier", str(tiny.classifier), "--json", str(out), "--examples", "2",
                         "--threshold", repr(median)])
    report = capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert saved["threshold"] == result["threshold"] == median
    assert 0.3 < np.mean([s["toxicity"] >= median for s in saved["scores"]]) < 0.7
    assert list(saved["kinds"]) == list(suite.KINDS)
    # a binary classifier has no categories: no share removed by category, and the report says "-"
    assert not any("category_rate" in row for row in saved["kinds"].values())
    assert all(s["category"] is None for s in saved["scores"])
    assert len(saved["scores"]) == saved["cases"] == len(suite.generate())
    for kind, row in saved["kinds"].items():  # the rates are those of the scores written next to them
        mine = [s["toxicity"] >= saved["threshold"] for s in saved["scores"] if s["kind"] == kind]
        assert row["n"] == len(mine) and row["flag_rate"] == pytest.approx(sum(mine) / len(mine), abs=1e-3)
        assert kind in report
    assert set(saved["groups"]) == {g.name for g in suite.GROUPS} and set(saved["axes"]) == set(suite.AXES)
    # The reference column is alt-profanity-check's own, per kind: it catches plain insults, not identity statements.
    judged = {kind: row["judge_flag_rate"] for kind, row in saved["kinds"].items()}
    assert judged["insult"] > 0.7 and judged["neutral_identity"] < 0.2
    assert "alt-prof" in report and "fairness per axis" in report and ("met" in report or "MISSED" in report)
