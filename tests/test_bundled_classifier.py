"""The classifier that ships inside the package: loads offline, works, and its card is honest."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from click.testing import CliRunner
from conftest import SHARED_DATA, read_output, write_parquet

from moderator import models
from moderator.classify import Classifier
from moderator.cascade import Prefilter
from moderator.cli import cli
from moderator.config import ClassifierConfig, RuntimeConfig

BUNDLED = models.BUNDLED / "classifier"

TOXIC = ["you are a pathetic idiot and nobody wants you here", "shut the fuck up, you worthless piece of shit"]
CLEAN = ["thanks for the detailed answer, it solved my problem", "the meeting has been moved to thursday afternoon"]


@pytest.fixture(scope="module")
def classifier():
    return Classifier(ClassifierConfig(dtype="float32"), RuntimeConfig())  # no model named: the bundled one


def test_bundled_classifier_is_an_adapter_on_the_pip_base(classifier):
    assert classifier.model_ref.path == BUNDLED.resolve()
    config = json.loads((BUNDLED / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "pip:all-MiniLM-L6-v2"
    size = sum(f.stat().st_size for f in BUNDLED.iterdir())
    assert size < 5_000_000  # a small adapter, not a model


def test_obvious_sentences_land_on_the_right_side(classifier):
    toxic = classifier.toxicity(classifier.predict(TOXIC))
    clean = classifier.toxicity(classifier.predict(CLEAN))
    assert (toxic > 0.9).all() and (clean < 0.1).all(), (toxic, clean)


def test_moderate_batch_uses_the_bundled_classifier_by_default(tmp_path):
    posts = write_parquet(tmp_path / "posts.parquet", {"text": TOXIC + CLEAN})
    result = CliRunner().invoke(cli, ["batch", str(posts), "--no-rewrite"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "posts.moderated" / "manifest.json").read_text())
    assert manifest["models"]["classifier"]["path"] == str(BUNDLED.resolve())
    actions = [m["action"] for m in read_output(tmp_path / "posts.moderated").column("moderation").to_pylist()]
    assert actions[:2] != ["allow", "allow"] and actions[2:] == ["allow", "allow"]


def test_the_shipped_cascade_matches_its_card():
    meta = json.loads((BUNDLED / "cascade.json").read_text())
    metrics = json.loads((BUNDLED / "metrics.json").read_text())
    assert metrics["cascade"]["threshold"] == meta["threshold"]
    assert metrics["cascade"]["meets_target"] == all(r["flag_loss"] <= meta["target_flag_loss"] for r in meta["dev"].values())
    assert Prefilter(BUNDLED).threshold == meta["threshold"]
    card = (BUNDLED / "README.md").read_text()
    assert f"Threshold {meta['threshold']:.4f}" in card


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")
def test_card_numbers_are_recomputed_not_copied():
    from train import classifier_eval

    metrics = json.loads((BUNDLED / "metrics.json").read_text())["evaluation"]
    shipped = next(name for name in next(iter(metrics["sources"].values())) if name.startswith("shipped"))
    fresh = classifier_eval.evaluate({"shipped": str(BUNDLED)}, str(SHARED_DATA))
    for source, row in fresh["sources"].items():
        card = metrics["sources"][source]
        for key, tolerance in (("roc_auc", 2e-3), ("fpr", 5e-3), ("recall", 5e-3)):
            if card[shipped][key] is not None:
                assert row["shipped"][key] == pytest.approx(card[shipped][key], abs=tolerance), (source, key)
        if card["alt-profanity-check"]["roc_auc"] is not None:
            assert row["alt-profanity-check"]["roc_auc"] == pytest.approx(card["alt-profanity-check"]["roc_auc"], abs=1e-4)
    assert fresh["sources"]["all"]["shipped"]["roc_auc"] > fresh["sources"]["all"]["alt-profanity-check"]["roc_auc"]
    for category, row in fresh["categories"]["shipped"].items():
        assert row["roc_auc"] == pytest.approx(metrics["categories"][shipped][category]["roc_auc"], abs=2e-3)
    for card_point, point in zip(metrics["operating_points"][shipped], fresh["operating_points"]["shipped"], strict=True):
        assert card_point["threshold"] == point["threshold"]
        assert card_point["fpr"] == pytest.approx(point["fpr"], abs=5e-3) and card_point["recall"] == pytest.approx(point["recall"], abs=5e-3)


def test_the_shipped_model_has_categories_and_a_calibration_applied_on_load(classifier):
    assert classifier.categories == ["insult", "threat", "identity_attack", "obscene", "sexual"]
    assert [classifier.labels[i] for i in classifier.toxic_index] == ["toxic", "threat", "identity_attack"]
    assert classifier.calibration is not None and classifier.calibration.meta["prior"] == 0.2
    raw = Classifier(ClassifierConfig(dtype="float32", calibrate=False), RuntimeConfig())
    texts = TOXIC + CLEAN + ["you people are all the same", "I will find you and hurt you"]
    calibrated, uncalibrated = classifier.predict(texts), raw.predict(texts)
    for column in range(len(classifier.labels)):  # each label's scaling keeps the order of the texts
        assert list(calibrated[:, column].argsort()) == list(uncalibrated[:, column].argsort())
    assert not (calibrated == uncalibrated).all()
    assert "calibration" in (BUNDLED / "README.md").read_text().lower()


def test_an_obvious_threat_is_toxic_and_naming_a_group_is_not(classifier):
    threat, neutral, insult = "I am going to kill you and your whole family.", "I am a Muslim.", "You are a stupid idiot."
    probs = classifier.predict([threat, neutral, insult])
    toxicity = classifier.toxicity(probs)
    by = {label: probs[:, i] for i, label in enumerate(classifier.labels)}
    assert toxicity[0] >= 0.5 and toxicity[2] >= 0.5 and toxicity[1] < 0.5
    assert max(by[c][1] for c in classifier.categories) < 0.5
    # an insult is rewritten, not removed: neither of the categories the policy removes fires on it
    assert by["threat"][2] < 0.5 and by["identity_attack"][2] < 0.5


def test_an_obvious_threat_scores_as_a_threat(classifier):
    probs = classifier.predict(["I am going to kill you and your whole family.",
                                "I will find out where you live and I will kill you and your whole family."])
    assert (probs[:, classifier.labels.index("threat")] >= 0.5).all()


def test_an_impersonal_threat_scores_as_a_threat(classifier):
    # classifier-v6 scored it toxic (0.83) but its threat category 0.45; v11 (LoRA on every layer) reads both
    probs = classifier.predict(["Someone should put a bullet in your head."])
    assert classifier.toxicity(probs)[0] >= 0.5
    assert probs[0, classifier.labels.index("threat")] >= 0.5


@pytest.mark.xfail(strict=True, reason="known gap of the shipped model (issue 16): the composed threat templates taught "
                   "it that 'I'll <violent verb> you' is a threat, idioms included (violent_idiom flagged 12%)")
def test_a_violent_idiom_is_not_a_threat(classifier):
    probs = classifier.predict(["I'll shoot you an email tomorrow.", "I'm going to beat you at chess next time."])
    assert (probs[:, classifier.labels.index("threat")] < 0.5).all()


BF16_TOLERANCE = 0.03  # stated in the README: bfloat16 scores within this of float32


@pytest.mark.slow
def test_bfloat16_scores_stay_within_the_stated_tolerance_of_float32(classifier):
    from train import classifier_data

    texts = [e.text for e in classifier_data.examples(str(SHARED_DATA), augment=False) if e.split == "dev"][::40]
    fp32 = classifier.toxicity(classifier.predict(texts))
    bf16 = Classifier(ClassifierConfig(dtype="bfloat16"), RuntimeConfig())
    low = bf16.toxicity(bf16.predict(texts))
    assert len(texts) > 300
    assert abs(low - fp32).max() <= BF16_TOLERANCE
    assert ((low >= 0.5) != (fp32 >= 0.5)).mean() <= 0.005


def test_toxic_text_past_the_window_is_read_whatever_the_padding(classifier):
    """Padding cannot hide an insult: not with harmless sentences before it, not inside one endless
    run-on sentence with no punctuation (one sentence longer than the window), not in a huge post."""
    insult = "You are a worthless idiot and a stupid moron, I hate you."
    harmless = "The committee met on Tuesday to discuss the new schedule for the park"
    run_on = " and ".join([harmless] * 40) + " and " + insult.rstrip(".")
    sentences_ = " ".join([harmless + "."] * 30) + " " + insult
    huge = " ".join([harmless + "."] * 600) + " " + insult  # ~9,000 tokens
    alone = float(classifier.toxicity(classifier.predict([insult]))[0])
    assert alone > 0.8
    probs, full = classifier.predict_windowed([run_on, harmless])
    assert list(full) == [True, False]
    assert classifier.toxicity(probs)[0] >= 0.5 and classifier.toxicity(probs)[1] < 0.5
    from moderator import records

    batch = pa.RecordBatch.from_pydict({records.TEXT: [run_on, sentences_, huge, harmless]})
    scored = classifier(batch).column(records.TOXICITY).to_pylist()
    assert [t >= 0.5 for t in scored] == [True, True, True, False], scored


def test_look_alike_letters_do_not_hide_an_insult(classifier):
    """Full-width and mathematical letters, and zero-width characters, read as the plain insult."""
    plain = "You are a stupid idiot."
    disguised = ["You are a \uff53\uff54\uff55\uff50\uff49\uff44 \uff49\uff44\uff49\uff4f\uff54.",
                 "You are a stupid \U0001d422\U0001d41d\U0001d422\U0001d428\U0001d42d.",
                 "You are a stu\u200bpid id\u200biot."]
    scores = classifier.toxicity(classifier.predict([plain, *disguised]))
    assert all(abs(float(s) - float(scores[0])) < 0.05 for s in scores[1:]), scores


def test_hate_spelled_to_dodge_a_filter_is_flagged_like_the_plain_words():
    """The obfuscations moderator.deobfuscate learned to read on 2026-12-07 reach the shipped transformer as
    the words they spell: each disguised post scores as its plain version does, through the product's path.
    (With the blend on, the n-gram model reads the post as written and pulls the disguised ones lower: the
    model card's robustness table.)"""
    from moderator import records

    classifier = Classifier(ClassifierConfig(dtype="float32", blend="off"), RuntimeConfig())
    plain = "I hate Chinese people."
    disguised = ["I h a t e Chinese people.", "I h473 Ch1n3$3 people.", "I haet Chinese people.",
                 "I \u04bb\u0430\u0442\u0435 Chinese people."]  # "hate" wholly in Cyrillic look-alikes
    batch = pa.RecordBatch.from_pydict({records.TEXT: [plain, *disguised]})
    scored = classifier(batch).column(records.TOXICITY).to_pylist()
    assert scored[0] >= 0.5, scored
    assert all(abs(s - scored[0]) < 0.05 for s in scored[1:]), scored


def test_a_slip_of_an_abusive_word_scores_as_its_most_toxic_reading():
    from moderator.deobfuscate import classifier_input, readings

    # The transformer alone: the blend's n-gram model reads every reading's post as written.
    classifier = Classifier(ClassifierConfig(dtype="float32", blend="off"), RuntimeConfig())
    plain = Classifier(ClassifierConfig(dtype="float32", blend="off", slip_readings=0), RuntimeConfig())
    text = "Sikhs are disguting."  # "disputing" is a changed letter away and commoner: normalize keeps it
    read = [classifier_input(text), *readings(text, 4)]
    each = plain.toxicity(plain.predict(read))
    assert read[1:] == ["Sikhs are disgusting."] and each[0] < 0.5 < each[1], each
    texts = [CLEAN[0], text, TOXIC[0]]  # texts without other readings score as before
    expected = [*plain.toxicity(plain.predict(CLEAN[:1])), each.max(), *plain.toxicity(plain.predict(TOXIC[:1]))]
    assert classifier.toxicity(classifier.predict(texts)) == pytest.approx(expected, abs=1e-5)
    blended = [Classifier(ClassifierConfig(dtype="float32", slip_readings=k), RuntimeConfig()) for k in (0, 4)]
    assert [c.toxicity(c.predict([text]))[0] > 0.5 for c in blended] == [False, True]  # flagged only so
