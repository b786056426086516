"""Calibration ships with a classifier and is applied on load; it rescales scores without reordering them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from moderator.calibration import FILE, Calibration, expected_calibration_error, fit_platt, reliability
from moderator.classify import Classifier
from moderator.config import ClassifierConfig, RuntimeConfig
from moderator.errors import ModelError

TEXTS = ["you are a pathetic idiot", "the meeting is moved to thursday", "shut up, loser", "thanks for the help",
         "what a worthless opinion", "i think the second option is better"]


@pytest.fixture()
def calibrated(tiny, tmp_path):
    folder = tmp_path / "multilabel"
    shutil.copytree(tiny.multilabel, folder)
    Calibration({"toxic": 0.5, "threat": 2.0}, {"toxic": -1.5, "threat": 0.3}, {"prior": 0.1}).save(folder)
    return folder


def _scores(folder, **settings):
    classifier = Classifier(ClassifierConfig(model=str(folder), **settings), RuntimeConfig())
    return classifier, classifier.predict(TEXTS)


def test_calibration_is_applied_on_load_and_keeps_the_order(calibrated):
    classifier, after = _scores(calibrated)
    _, raw = _scores(calibrated, calibrate=False)
    assert classifier.calibration is not None and classifier.calibration.meta["prior"] == 0.1
    toxic, threat, insult = (classifier.labels.index(n) for n in ("toxic", "threat", "insult"))
    logit = np.log(raw / (1 - raw))
    np.testing.assert_allclose(after[:, toxic], 1 / (1 + np.exp(-(0.5 * logit[:, toxic] - 1.5))), atol=1e-5)
    np.testing.assert_allclose(after[:, threat], 1 / (1 + np.exp(-(2.0 * logit[:, threat] + 0.3))), atol=1e-5)
    np.testing.assert_allclose(after[:, insult], raw[:, insult], atol=1e-6)  # not calibrated: unchanged
    for column in (toxic, threat):  # monotone: same order of posts
        assert list(np.argsort(after[:, column], kind="stable")) == list(np.argsort(raw[:, column], kind="stable"))
    assert not np.allclose(after[:, toxic], raw[:, toxic])


def test_a_two_label_softmax_model_calibrates_its_log_odds(tiny, tmp_path):
    folder = tmp_path / "binary"
    shutil.copytree(tiny.classifier, folder)
    Calibration({"toxic": 3.0}, {"toxic": 1.0}).save(folder)
    classifier, after = _scores(folder)
    _, raw = _scores(folder, calibrate=False)
    log_odds = np.log(raw[:, 1] / raw[:, 0])
    np.testing.assert_allclose(after[:, 1], 1 / (1 + np.exp(-(3.0 * log_odds + 1.0))), atol=1e-5)
    np.testing.assert_allclose(after.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("content, message", [
    ({"format": "moderator-calibration/1", "labels": {"toxic": {"scale": -1.0, "bias": 0.0}}}, "positive"),
    ({"format": "something-else", "labels": {}}, "not a calibration file"),
    ({"format": "moderator-calibration/1", "labels": {"nonsense": {"scale": 1.0, "bias": 0.0}}}, "not labels"),
])
def test_a_bad_calibration_file_is_one_clear_error(tiny, tmp_path, content, message):
    folder = tmp_path / "multilabel"
    shutil.copytree(tiny.multilabel, folder)
    (folder / FILE).write_text(json.dumps(content))
    with pytest.raises(ModelError, match=message):
        Classifier(ClassifierConfig(model=str(folder)), RuntimeConfig())


def test_platt_fit_recovers_a_known_scaling_and_lowers_the_calibration_error():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, 20000)
    labels = rng.random(20000) < 1 / (1 + np.exp(-(0.5 * z - 1.0)))  # true probability: sigmoid(0.5 z - 1)
    scale, bias = fit_platt(z, labels)
    assert scale == pytest.approx(0.5, abs=0.05) and bias == pytest.approx(-1.0, abs=0.08)
    raw = 1 / (1 + np.exp(-z))
    fitted = 1 / (1 + np.exp(-(scale * z + bias)))
    assert expected_calibration_error(fitted, labels) < 0.02 < expected_calibration_error(raw, labels)
    bins = reliability(fitted, labels)
    assert sum(b["n"] for b in bins) == 20000 and all(abs(b["mean_probability"] - b["positive_share"]) < 0.05 for b in bins)


def test_a_collapsed_model_is_refused_and_a_working_one_reports_its_ranking(tmp_path):
    from train.calibrate import check_not_collapsed

    labels = np.array([1, 0, 1, 0, -1, 1])
    with pytest.raises(SystemExit, match="same toxic probability.*lower learning rate"):
        check_not_collapsed(tmp_path, np.full(6, 0.31), labels)  # one output for every text
    assert check_not_collapsed(tmp_path, np.array([0.9, 0.1, 0.8, 0.3, 0.5, 0.7]), labels) == 1.0
    assert check_not_collapsed(tmp_path, np.array([0.2, 0.6, 0.3, 0.4, 0.5, 0.1]), labels) == 0.0  # ranked backwards
