"""A classifier folder's blend.json averages the toxicity with the cascade's n-gram model on load; the
categories stay the transformer's; a folder without one, or `blend = off`, reads the transformer alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from moderator.blend import FILE, Blend, blend_input, logit
from moderator.cascade import Prefilter
from moderator.classify import Classifier
from moderator.config import ClassifierConfig, RuntimeConfig
from moderator.errors import ConfigError, ModelError
from train.blend import choose, fit
from train.classifier_data import Example

BUNDLED = Path(__file__).resolve().parents[1] / "moderator" / "bundled" / "classifier"
TEXTS = ["you are a pathetic idiot", "the meeting is moved to thursday", "shut up, l0ser", "thanks for the help",
         "what a worthless opinion", "i think the second option is better"]


@pytest.fixture()
def blended(tiny, tmp_path):
    """The tiny multi-label classifier with the bundled cascade's n-gram model and a blend beside it."""
    folder = tmp_path / "multilabel"
    shutil.copytree(tiny.multilabel, folder)
    for name in ("cascade.json", "cascade.npz"):
        shutil.copy(BUNDLED / name, folder / name)
    Blend("toxic", 0.7, 1.3, -0.4, {"prior": 0.2}).save(folder)
    return folder


def _predict(folder, **settings):
    classifier = Classifier(ClassifierConfig(model=str(folder), **settings), RuntimeConfig())
    return classifier, classifier.predict(TEXTS)


def test_the_blend_is_applied_on_load_and_is_the_toxicity(blended):
    classifier, after = _predict(blended)
    unblended, alone = _predict(blended, blend="off")
    assert classifier.blend is not None and classifier.blend.weight == 0.7
    toxic = classifier.labels.index("toxic")
    ngram = Prefilter(blended).probability(blend_input(TEXTS))  # the texts as written
    z = 0.7 * logit(unblended.toxicity(alone)) + 0.3 * logit(ngram)  # the transformer's toxicity, blended
    np.testing.assert_allclose(after[:, toxic], 1 / (1 + np.exp(-(1.3 * z - 0.4))), atol=1e-5)
    np.testing.assert_allclose(classifier.toxicity(after), after[:, toxic])  # the post's toxicity
    others = [i for i in range(len(classifier.labels)) if i != toxic]
    np.testing.assert_array_equal(after[:, others], alone[:, others])  # categories: the transformer's
    assert not np.allclose(after[:, toxic], alone[:, toxic])


def test_the_blend_keeps_the_order_of_either_model_when_the_other_ties():
    blend = Blend("toxic", 0.8, 1.1, -0.3)
    p = np.linspace(0.01, 0.99, 50)
    assert np.all(np.diff(blend.apply(p, np.full(50, 0.3))) > 0)
    assert np.all(np.diff(blend.apply(np.full(50, 0.3), p)) > 0)
    np.testing.assert_allclose(Blend("toxic", 1.0, 1.0, 0.0).apply(p, np.full(50, 0.9)), p, atol=1e-6)


def test_a_folder_without_a_blend_reads_the_transformer_alone(tiny):
    classifier, probs = _predict(tiny.multilabel)
    _, off = _predict(tiny.multilabel, blend="off")
    assert classifier.blend is None
    np.testing.assert_array_equal(probs, off)


@pytest.mark.parametrize("content, message", [
    ({"format": "moderator-blend/1", "label": "toxic", "weight": 1.5, "scale": 1.0, "bias": 0.0}, "weight"),
    ({"format": "moderator-blend/1", "label": "toxic", "weight": 0.5, "scale": -1.0, "bias": 0.0}, "positive"),
    ({"format": "other", "label": "toxic"}, "not a blend file"),
    ({"format": "moderator-blend/1", "label": "nonsense", "weight": 0.5, "scale": 1.0, "bias": 0.0}, "nonsense"),
])
def test_a_bad_blend_file_is_one_clear_error(blended, content, message):
    (blended / FILE).write_text(json.dumps(content))
    with pytest.raises(ModelError, match=message):
        Classifier(ClassifierConfig(model=str(blended)), RuntimeConfig())


def test_a_blend_without_the_ngram_model_is_one_clear_error(blended):
    (blended / "cascade.npz").unlink()
    with pytest.raises(ModelError, match="cascade's n-gram model"):
        Classifier(ClassifierConfig(model=str(blended)), RuntimeConfig())
    Classifier(ClassifierConfig(model=str(blended), blend="off"), RuntimeConfig())  # off: not needed


def test_blend_setting_is_checked():
    with pytest.raises(ConfigError, match="blend"):
        ClassifierConfig(blend="sometimes")


def test_the_weight_chosen_ranks_best_on_average_without_lowering_any_source():
    table = {1.0: {"a": 0.90, "b": 0.80}, 0.9: {"a": 0.91, "b": 0.81}, 0.8: {"a": 0.93, "b": 0.80},
             0.7: {"a": 0.99, "b": 0.79}}
    assert choose(table) == 0.8  # 0.7 averages higher but lowers b below the classifier alone
    assert choose({1.0: {"a": 0.9}, 0.8: {"a": 0.89}}) == 1.0


def test_the_shipped_blend_loads_offline_and_reads_obvious_posts_right():
    classifier = Classifier(ClassifierConfig(dtype="float32"), RuntimeConfig())
    assert classifier.blend is not None and 0 < classifier.blend.weight < 1
    toxicity = classifier.toxicity(classifier.predict(["you are a pathetic idiot", "thanks for the help"]))
    assert toxicity[0] >= 0.5 > toxicity[1]


def test_fitting_keeps_a_blend_only_when_no_source_ranks_worse(blended):
    """`python -m train blend` on a tiny model and made-up dev posts: the blend it writes loads, and its
    weight ranks every source at least as well as the classifier alone."""
    (blended / FILE).unlink()
    posts = [("you are a pathetic idiot", 1), ("shut up, loser", 1), ("what a worthless opinion", 1),
             ("go away, moron", 1), ("thanks for the help", 0), ("the meeting is moved to thursday", 0),
             ("i think the second option is better", 0), ("see you at the game tonight", 0)]
    examples = [Example(text, (toxic, -1, -1, -1, -1, -1), source, "dev")
                for source in ("a", "b") for text, toxic in posts]
    result = fit(blended, "unused", examples=examples, weights=(0.5, 0.8))
    # The untrained tiny transformer ranks these posts badly and the bundled n-gram model well: a blend is
    # kept, at the higher of the two weights that rank as well (ties go to the transformer).
    assert result is not None and result.weight == 0.8
    loaded = Blend.load(blended)
    assert loaded is not None and loaded.weight == result.weight and 0.5 <= loaded.weight < 1.0
    aucs = result.meta["roc_auc"]
    assert all(aucs[str(result.weight)][s] >= aucs["1.0"][s] for s in aucs["1.0"])
