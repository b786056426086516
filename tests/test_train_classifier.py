"""Training the classifier on a tiny subset of the real data, on the real pip-installed base."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA
from safetensors.torch import load_file

from moderator import models
from train import classifier as trainer
from train import data

pytestmark = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")


def test_data_is_deduplicated_split_per_source_and_grouped():
    examples = data.toxicity_examples(str(SHARED_DATA))
    keys = [data.normalize(e.text) for e in examples]
    assert len(keys) == len(set(keys))  # no duplicates left
    summary = data.summary(examples)
    assert set(summary) == {"jigsaw", "davidson", "paradetox"}
    for source, splits in summary.items():  # every source has a dev split with both labels
        assert splits["dev"]["toxic"] > 100 and splits["dev"]["clean"] > 100
        dev = sum(splits["dev"].values())
        assert 0.05 < dev / (dev + sum(splits["train"].values())) < 0.15
    pairs = data.paradetox_pairs(str(SHARED_DATA))
    by_text = {data.normalize(e.text): e.split for e in examples if e.source == "paradetox"}
    for pair in pairs[:2000]:  # rewrites never straddle the split of their toxic sentence
        for neutral in pair.neutral:
            assert by_text.get(data.normalize(neutral), pair.split) == pair.split
    assert data.split_of("Some Text!") == data.split_of("some text")  # stable, normalised


def test_clean_drops_contradictions_and_keeps_dev_copies():
    raw = [("You idiot", 1, "a", "You idiot"), ("you idiot.", 0, "b", "you idiot."),
           ("fine day", 0, "a", "fine day"), ("Fine  day", 0, "b", "Fine  day")]
    kept = data.clean(raw)
    assert [(e.text, e.source) for e in kept] == [("fine day", "a")]


@pytest.mark.slow
def test_lora_training_changes_the_adapter_and_head_not_the_base(tmp_path):
    base_file = models.resolve_path(trainer.BASE, "base") / "model.safetensors"
    base_weights = load_file(base_file)
    initial_head = trainer.load_base(trainer.BASE)[0].classifier.weight.detach().clone()
    result = trainer.train(str(SHARED_DATA), tmp_path / "clf", method="lora", max_train=96, batch_size=16, seed=3)
    model = result.model
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # LoRA B starts at zero
    head = next(p for n, p in model.named_parameters() if "classifier" in n and "modules_to_save" in n and "weight" in n)
    assert not torch.equal(head, initial_head)
    for name, param in model.named_parameters():
        if "base_layer" in name and name.endswith("weight"):
            key = name.split("bert.", 1)[1].replace(".base_layer", "")
            assert torch.equal(param.detach(), base_weights[key]), name
    saved = load_file(tmp_path / "clf" / "adapter_model.safetensors")
    assert any("lora_A" in k for k in saved) and any("classifier" in k for k in saved)
    assert not any("base_layer" in k or "word_embeddings" in k for k in saved)  # an adapter, not a model
    config = json.loads((tmp_path / "clf" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "pip:all-MiniLM-L6-v2"
    stats = json.loads((tmp_path / "clf" / "train_stats.json").read_text())
    assert stats["subsampled"] and stats["stats"]["steps"] == 6 and stats["stats"]["trainable_params"] < 200_000


@pytest.mark.slow
def test_the_trained_folder_loads_in_moderator_and_full_training_changes_the_base(tmp_path):
    from moderator.classify import Classifier
    from moderator.config import ClassifierConfig, RuntimeConfig

    trainer.train(str(SHARED_DATA), tmp_path / "lora", method="lora", max_train=32, batch_size=16)
    classifier = Classifier(ClassifierConfig(model=str(tmp_path / "lora")), RuntimeConfig())
    assert classifier.labels == ["neutral", "toxic"]
    assert classifier.predict(["hello there"]).shape == (1, 2)
    base_weights = load_file(models.resolve_path(trainer.BASE, "base") / "model.safetensors")
    full = trainer.train(str(SHARED_DATA), tmp_path / "full", method="full", max_train=32, batch_size=16).model
    changed = full.bert.encoder.layer[0].attention.self.query.weight.detach()
    assert not torch.equal(changed, base_weights["encoder.layer.0.attention.self.query.weight"])
    reloaded = Classifier(ClassifierConfig(model=str(tmp_path / "full")), RuntimeConfig())
    np.testing.assert_allclose(reloaded.predict(["hello there"]).sum(), 1.0, atol=1e-5)
