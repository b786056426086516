"""The bundled rewritability model, offline from the package, and its training on a slice of the real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA

from moderator import models
from moderator.errors import ModelError
from moderator.rewritability import CONFIG, WEIGHTS, Rewritability, prepare

INSULT = "Your argument is idiotic, the tax cut will not pay for itself."
THREAT = "I will find you and kill you."
ABUSE = "fuck you, you worthless piece of shit"


@pytest.fixture(scope="module")
def bundled() -> Rewritability:
    return Rewritability.load()


def test_bundled_model_ships_in_the_package_and_separates_insult_from_threat_and_abuse(bundled):
    folder = Path(models.bundled("rewritability")).resolve()
    assert bundled.model_ref.path == folder and folder.parent.parent == Path(models.__file__).parent
    assert bundled.sha256 == models.tree_sha256(folder) and len(bundled.sha256) == 64
    assert (folder / "README.md").is_file() and (folder / WEIGHTS).stat().st_size < 3_000_000
    assert 0.0 < bundled.threshold < 1.0
    insult, threat, abuse = bundled.predict([INSULT, THREAT, ABUSE])
    assert insult < bundled.threshold <= min(threat, abuse)
    assert threat - insult > 0.2 and abuse - insult > 0.2
    assert bundled.not_rewritable([INSULT, THREAT, ABUSE]).tolist() == [False, True, True]


def test_scores_are_deterministic_probabilities_and_ignore_spelling(bundled):
    texts = [INSULT, THREAT, ABUSE, "", "What a self centered idiot.", "ok"]
    first = bundled.predict(texts)
    assert first.dtype == np.float32 and first.shape == (len(texts),)
    assert np.all((first >= 0.0) & (first <= 1.0))
    assert np.array_equal(first, bundled.predict(texts))
    assert np.array_equal(first, Rewritability.load().predict(texts))  # a fresh load scores the same
    assert np.array_equal(bundled.predict(texts[::-1]), first[::-1])  # no dependence on batch order
    assert bundled.predict([]).shape == (0,)
    # Cased prose and the lower-cased, tokenised spelling of the training data are one input.
    assert prepare("You're an IDIOT, don't you know?") == prepare("you 're an idiot , do n't you know ?")
    cased, tokenised = bundled.predict(["You're an idiot.", "you 're an idiot ."])
    assert cased == tokenised


def test_load_names_what_is_wrong(tmp_path):
    with pytest.raises(ModelError, match="no such folder"):
        Rewritability.load(tmp_path / "missing")
    with pytest.raises(ModelError, match="not a rewritability model"):
        Rewritability.load(tmp_path)
    if Path(models.BUNDLED / "classifier").is_dir():  # a model folder of another kind
        with pytest.raises(ModelError, match="not a rewritability model"):
            Rewritability.load(models.BUNDLED / "classifier")


def test_pick_threshold_is_the_lowest_meeting_the_precision():
    from train.rewritability import pick_threshold

    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    labels = np.array([1, 1, 0, 1, 0, 0])
    assert pick_threshold(scores, labels, 0.75) == pytest.approx(0.6)  # 3 of 4 flagged are right
    assert pick_threshold(scores, labels, 1.0) == pytest.approx(0.8)
    assert pick_threshold(np.array([0.5, 0.5, 0.4]), np.array([1, 0, 1]), 1.0) == 1.0  # ties are flagged together


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")
def test_training_on_a_slice_writes_a_bundle_that_scores_like_the_sklearn_model(tmp_path):
    from train import rewritability as trainer

    out = tmp_path / "rewritability"
    trained = trainer.train(SHARED_DATA, out, max_train=600, c=4.0, cv_folds=0)
    assert sorted(p.name for p in out.iterdir()) == sorted(["README.md", CONFIG, WEIGHTS])
    config = json.loads((out / CONFIG).read_text())
    assert config["data"]["train_examples"] == 600 and config["threshold"] == trained.bundle.threshold
    assert config["dev"]["n"] > 1000 and 0.5 < config["dev"]["roc_auc"] <= 1.0
    # the sure threshold (removal untried) is the stricter one, picked the same way for precision 0.9
    assert config["sure_threshold"] >= config["threshold"] and config["sure_precision"] == 0.9
    assert config["dev"]["at_sure_threshold"]["precision"] >= 0.9 or config["sure_threshold"] == config["threshold"]
    loaded = Rewritability.load(out)
    assert loaded.sure_threshold == pytest.approx(config["sure_threshold"])
    texts = [INSULT, THREAT, ABUSE, "What a self centered idiot.", "Trump troll..."]
    expected = trainer.sklearn_scores(trained.model, texts)
    np.testing.assert_allclose(loaded.predict(texts), expected, atol=1e-5)
    assert "## What it cannot learn" in (out / "README.md").read_text()


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")
def test_data_is_deduplicated_unescaped_and_split_by_text():
    from train import data
    from train import rewritability as trainer

    exs, dropped = trainer.examples(SHARED_DATA)
    keys = [data.normalize(e.text) for e in exs]
    assert len(keys) == len(set(keys)) and dropped["both_classes"][trainer.CANNOT] > 1000
    assert not any('\\"' in e.text for e in exs)  # the cannot-rewrite file escapes inner quotes
    assert {e.source for e in exs if e.label == 0} == {trainer.PARADETOX}
    assert all(e.split == trainer.split_of(e.text.upper()) for e in exs[:500])  # split by the lower-cased text
    train = trainer.training_set(exs)
    assert trainer.UNCLEAR not in {e.source for e in train}
    assert all(sum(e.source == s for e in train) <= trainer.EXTRA_CAP for s in trainer.EXTRA_SOURCES)


def test_look_alike_letters_read_as_plain_letters(bundled):
    """A threat in full-width letters is judged as the plain threat (NFKC in `prepare`)."""
    assert prepare("I will \uff4b\uff49\uff4c\uff4c you") == prepare("I will kill you")
    plain, disguised = bundled.predict(["I will kill you and your family.",
                                        "I will \uff4b\uff49\uff4c\uff4c you and your family."])
    assert disguised == pytest.approx(plain)
