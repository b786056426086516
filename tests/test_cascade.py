"""The cascade's first stage: training, calibration, and its place in the pipeline."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import POSTS, SHARED_DATA, read_lines, read_output, tiny_config, write_parquet

from moderator.cascade import Prefilter
from moderator.pipeline import run
from moderator.steps import load_models
from train import cascade as cascade_trainer

pytestmark = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")


def test_calibrate_picks_the_highest_threshold_within_the_margin():
    p1 = np.array([0.05, 0.2, 0.3, 0.4, 0.9, 0.1, 0.8])
    flagged = np.array([False, True, True, True, True, False, True])
    # 5 flagged posts, margin 20%: one flagged post (the lowest, 0.2) may be cleared -> threshold 0.3
    assert cascade_trainer.calibrate(p1, flagged, 0.2) == pytest.approx(0.3)
    assert cascade_trainer.calibrate(p1, flagged, 0.0) == pytest.approx(0.2)  # clears no flagged post
    assert not ((p1 < cascade_trainer.calibrate(p1, flagged, 0.0)) & flagged).any()


@pytest.fixture(scope="module")
def cascaded(tiny, tmp_path_factory):
    """The tiny classifier with a first stage trained on real data and calibrated against it."""
    folder = tmp_path_factory.mktemp("cascaded") / "classifier"
    shutil.copytree(tiny.classifier, folder)
    meta = cascade_trainer.train(str(SHARED_DATA), folder, max_train=3000)
    return folder, meta


def test_training_writes_weights_and_honest_metrics(cascaded):
    folder, meta = cascaded
    assert Prefilter.present(folder)
    stored = json.loads((folder / "cascade.json").read_text())
    assert stored["threshold"] == meta["threshold"] and {"jigsaw", "davidson", "paradetox", "olid", "all"} <= set(stored["dev"])
    for row in stored["dev"].values():
        assert 0 <= row["cleared_share"] <= 1 and row["flags_lost"] <= row["transformer_flags"]
        assert row["flag_loss"] == pytest.approx(row["flags_lost"] / max(1, row["transformer_flags"]), abs=1e-4)
    assert stored["meets_target"] == all(r["flag_loss"] <= stored["target_flag_loss"] for r in stored["dev"].values())
    prefilter = Prefilter(folder)
    p = prefilter.probability(["thank you so much for the help, have a great day",
                               "you are a fucking idiot and a worthless piece of shit"])
    assert p[0] < p[1]


def _force_on(folder, threshold):
    meta = json.loads((folder / "cascade.json").read_text())
    meta.update(threshold=threshold, meets_target=True)
    (folder / "cascade.json").write_text(json.dumps(meta))


def test_pipeline_uses_the_cascade_only_when_it_should(cascaded, tmp_path):
    folder, _ = cascaded
    _force_on(folder, 0.99)  # clears almost everything: easy to see in the output
    posts = write_parquet(tmp_path / "posts.parquet", {"text": POSTS})
    config = tiny_config(type("T", (), {"classifier": folder, "decoder": None, "adapter": None})(),
                         rewriter={"enabled": False}, classifier={"cascade": "auto"})
    models = load_models(config)
    result = run(config, [str(posts)], tmp_path / "on", models=models)
    assert result.manifest["classifier"]["cascade"]["active"]
    moderation = read_output(result.path).column("moderation").to_pylist()
    cleared = [m for m in moderation if m["stage"] == "prefilter"]
    assert cleared and all(m["action"] == "allow" and m["reason"] == "cleared_by_prefilter" and m["scores"] is None
                           for m in cleared)
    assert all(m["scores"] is not None for m in moderation if m["stage"] == "classifier")
    audit = read_lines(result.path / "audit.jsonl")
    assert {a["stage"] for a in audit} <= {"prefilter", "classifier"}
    # Off by setting, or when the policy flags lower than the cascade was calibrated for.
    for i, overrides in enumerate(({"classifier": {"cascade": "off"}}, {"classifier": {}},  # off by default
                                   {"classifier": {"cascade": "auto"}, "policy": {"rewrite_threshold": 0.2}})):
        other = tiny_config(type("T", (), {"classifier": folder, "decoder": None, "adapter": None})(),
                            rewriter={"enabled": False}, **overrides)
        result = run(other, [str(posts)], tmp_path / f"off-{i}", models=models)
        assert not result.manifest["classifier"]["cascade"]["active"]
        assert {m["stage"] for m in read_output(result.path).column("moderation").to_pylist()} == {"classifier"}


def test_a_cascade_that_missed_its_target_stays_off_unless_forced(cascaded, tmp_path):
    folder, _ = cascaded
    meta = json.loads((folder / "cascade.json").read_text())
    meta["meets_target"] = False
    (folder / "cascade.json").write_text(json.dumps(meta))
    posts = write_parquet(tmp_path / "posts.parquet", {"text": POSTS})
    holder = type("T", (), {"classifier": folder, "decoder": None, "adapter": None})()
    auto = run(tiny_config(holder, rewriter={"enabled": False}, classifier={"cascade": "auto"}), [str(posts)],
               tmp_path / "auto")
    assert not auto.manifest["classifier"]["cascade"]["active"]
    forced = run(tiny_config(holder, rewriter={"enabled": False}, classifier={"cascade": "on"}), [str(posts)],
                 tmp_path / "forced")
    assert forced.manifest["classifier"]["cascade"]["active"]
