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
from train import classifier_data, data

pytestmark = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")


def test_the_mix_is_deduplicated_split_like_the_rewriter_and_labelled_per_source():
    examples = classifier_data.examples(str(SHARED_DATA))
    keys = [data.normalize(e.text) for e in examples]
    assert len(keys) == len(set(keys))  # no duplicates left, counterfactual copies included
    summary = classifier_data.summary(examples)
    assert set(summary) == {*classifier_data.SOURCES, "counterfactual", "obfuscated"}
    hate_sets = ("gab", "stormfront", "implicit_hate", "mlma")  # they label hate, not toxicity
    for source, splits in summary.items():
        if source in ("forum", "forum_rest", "counterfactual", "obfuscated", *hate_sets):
            continue  # forum posts are all toxic, their rests all clean; the copies are made of training posts only
        assert splits["dev"]["toxic"] > 30 and splits["dev"]["clean"] > 30, source
    assert "dev" not in summary["counterfactual"] and "dev" not in summary["obfuscated"]
    assert summary["forum"]["train"]["clean"] == 0 and summary["forum_rest"]["train"]["toxic"] == 0
    assert summary["forum_rest"]["train"]["clean"] > 1500 and summary["forum_rest"]["dev"]["clean"] > 100
    assert summary["obfuscated"]["train"]["toxic"] > 3000 and summary["obfuscated"]["train"]["clean"] > 1000
    for source in hate_sets:  # not-hate is not clean: toxicity unknown; coded hate teaches only the category
        # (a not-hate post is clean only where another source, e.g. Jigsaw, has the same text as clean)
        assert summary[source]["train"]["clean"] < 0.01 * summary[source]["train"]["unknown"], source
        assert summary[source]["train"]["unknown"] > 1000, source
    assert summary["gab"]["train"]["toxic"] > 1000 and summary["implicit_hate"]["train"]["toxic"] < 0.01 * summary["implicit_hate"]["train"]["unknown"]
    by_text = {data.normalize(e.text): e for e in examples}
    for pair in data.paradetox_pairs(str(SHARED_DATA))[:2000]:  # the rewriter's split: a dev sentence's rewrites
        for neutral in pair.neutral:                               # never reach training (a text in both: dev)
            found = by_text.get(data.normalize(neutral))
            assert pair.split == "train" or found is None or found.split == "dev"
    # Categories come from the sources that carry them; a clean example is never positive in a category
    # (a text clean in one source and a hate-set positive in another leaves that category unknown).
    clean = [e for e in examples if e.toxic == 0]
    assert not any(1 in e.labels[1:] for e in clean)
    assert sum(e.labels[1:] != (0,) * 5 for e in clean) < 0.001 * len(clean)
    for category, sources in {"threat": {"gab", "implicit_hate"}, "identity_attack": {"gab", "stormfront", "davidson"},
                              "insult": {"olid"}, "obscene": {"gab", "olid"}, "sexual": {"convabuse"}}.items():
        column = classifier_data.LABELS.index(category)
        for source in sources:
            assert summary[source]["train"][category] > 20, (category, source)
        # Jigsaw carries no categories: a toxic Jigsaw text knows one only where another source has it too
        jigsaw_toxic = [e for e in examples if e.source == "jigsaw" and e.toxic == 1]
        assert sum(e.labels[column] != -1 for e in jigsaw_toxic) < 0.02 * len(jigsaw_toxic)


def test_a_robustness_insult_is_known_not_threat_and_not_identity_attack():
    """An insult template, personal or at a group no law protects, teaches the category heads that an insult
    is neither a threat nor an attack on a group; hate and threats keep their one category."""
    rows = {text: labels for text, labels, _ in classifier_data.SOURCES["robustness"](SHARED_DATA)}
    column = {name: classifier_data.LABELS.index(name) for name in classifier_data.LABELS}
    for text in ("Liberals are such hypocrites.", "My uncle is a racist pig.", "Go away, you moron."):
        labels = rows[text]
        assert (labels[0], labels[column["insult"]], labels[column["threat"]], labels[column["identity_attack"]]) \
            == (1, 1, 0, 0), text
    hate = rows["Muslims are subhuman."]
    assert hate[column["identity_attack"]] == 1 and hate[column["threat"]] == -1 and hate[column["insult"]] == -1


def test_a_forum_rest_is_the_post_without_its_marked_sentences_and_never_holds_a_marked_word():
    from moderator import sentences

    rows = classifier_data._forum_rows(SHARED_DATA)
    lexicon = classifier_data._marked_words(rows)
    assert {"idiot", "stupid", "morons"} <= lexicon and not {"the", "trump", "people", "government"} & lexicon
    posts = {row["text"]: set(json.loads(row["spans"] or "[]")) for row in rows}
    rests = list(classifier_data._forum_rest(SHARED_DATA))
    assert len(rests) > 2000
    for rest, labels, post in rests[:300]:
        assert labels == (0,) * 6 and post in posts and rest != post
        assert len(sentences.split(rest)) >= 2
        assert not lexicon & set(classifier_data._WORDS.findall(rest.casefold()))
        for a, b in sentences.split(post):  # every unmarked sentence, as written; no marked one
            assert (post[a:b] in rest) != bool(posts[post].intersection(range(a, b))), (post, rest)


def test_counterfactual_copies_name_another_group_and_keep_the_label():
    items = [classifier_data.Example("Muslims are my neighbours and friends.", (0, 0, 0, 0, 0, 0), "gab", "train"),
             classifier_data.Example("The weather is fine.", (0, 0, 0, 0, 0, 0), "gab", "train"),
             classifier_data.Example("I am a Christian.", (0, 0, 0, 0, 0, 0), "gab", "dev")]
    copies = classifier_data._counterfactuals(items, per_source=5, seed=0)
    assert len(copies) == 1 and "Muslim" not in copies[0].text
    assert copies[0].labels == items[0].labels and copies[0].source == "counterfactual" and copies[0].split == "train"


def test_subsampling_keeps_the_failure_sources_whole_up_to_a_tenth_and_says_when_it_cuts_them(caplog):
    def examples(source, n, toxic=1):
        return [classifier_data.Example(f"{source} {i}", (toxic, 0, 0, 0, 0, 0), source, "train") for i in range(n)]

    mix = examples("jigsaw", 500) + examples("robustness", 6) + examples("obfuscated", 3)
    kept = trainer.training_set(mix, max_train=100, seed=0)
    assert len(kept) == 100 and sum(e.source in trainer.KEEP_WHOLE for e in kept) == 9
    assert "left out" not in caplog.text
    kept = trainer.training_set(mix + examples("forum_rest", 5, toxic=0), max_train=100, seed=0)
    assert len(kept) == 100 and sum(e.source in trainer.KEEP_WHOLE for e in kept) == 10
    assert "hold 14 examples, more than a tenth of --max-train: 4 of them are left out" in caplog.text


def test_masked_loss_ignores_unknown_labels():
    logits = torch.tensor([[2.0, -1.0, 5.0], [0.5, 3.0, -2.0]])
    known = torch.tensor([[1, 0, -1], [0, -1, -1]])
    loss = trainer.masked_bce(logits, known)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1.0, 0.0, 0.0]))
    assert torch.isclose(loss, expected)
    changed = known.clone()
    changed[0, 2] = -1
    assert torch.isclose(trainer.masked_bce(logits * torch.tensor([1.0, 1.0, 9.0]), changed), expected)


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
    # LoRA on every linear layer: 678,150 parameters, under 3% of the base
    assert stats["subsampled"] and stats["stats"]["steps"] == 6 and stats["stats"]["trainable_params"] < 1_000_000


@pytest.mark.slow
def test_the_trained_folder_loads_in_moderator_and_full_training_changes_the_base(tmp_path):
    from moderator.classify import Classifier
    from moderator.config import ClassifierConfig, RuntimeConfig

    trainer.train(str(SHARED_DATA), tmp_path / "lora", method="lora", max_train=32, batch_size=16)
    classifier = Classifier(ClassifierConfig(model=str(tmp_path / "lora")), RuntimeConfig())
    assert classifier.labels == list(classifier_data.LABELS) and classifier.multi_label
    assert classifier.categories == list(classifier_data.CATEGORIES)
    assert [classifier.labels[i] for i in classifier.toxic_index] == ["toxic", "threat", "identity_attack"]
    assert classifier.predict(["hello there"]).shape == (1, 6)
    base_weights = load_file(models.resolve_path(trainer.BASE, "base") / "model.safetensors")
    full = trainer.train(str(SHARED_DATA), tmp_path / "full", method="full", max_train=32, batch_size=16).model
    changed = full.bert.encoder.layer[0].attention.self.query.weight.detach()
    assert not torch.equal(changed, base_weights["encoder.layer.0.attention.self.query.weight"])
    reloaded = Classifier(ClassifierConfig(model=str(tmp_path / "full")), RuntimeConfig())
    probs = reloaded.predict(["hello there"])
    assert probs.shape == (1, 6) and ((probs > 0) & (probs < 1)).all()  # a sigmoid per label


def test_the_card_tells_what_the_model_was_trained_on_not_what_the_code_does_today():
    from moderator import deobfuscate
    from train import classifier_card

    assert "in training and in the product alike" in classifier_card._deobfuscation({"deobfuscation": deobfuscate.READS})
    older = classifier_card._deobfuscation({})  # a model trained before its stats recorded the reading
    assert older.startswith("Trained on texts read after") and f"now reads {deobfuscate.READS}" in older
    stats = {"data": {"jigsaw": {"train": {"toxic": 2, "clean": 3}}}, "train_examples": 5,
             "source_notes": {"jigsaw": ["what it taught then", "what it could not"]}}
    section = classifier_card._data_section(stats)
    assert "| what it taught then | what it could not |" in section
    assert classifier_data.SOURCE_NOTES["jigsaw"][0] in classifier_card._data_section({**stats, "source_notes": None})
    kinds = {"insult": {"n": 6, "dev_n": 2, "expected": "toxic", "flag_rate": 1.0, "dev_flag_rate": 1.0,
                        "target": ">= 0.85", "met": True}}
    robustness = {"cases": 6, "threshold": 0.5, "kinds": kinds, "axes": {}, "group_spread": 0.0}
    grown = classifier_card._robustness_section(robustness, {"data": {"robustness": {"train": {"toxic": 3}}}})
    assert "This model trained on 3 of them" in grown and "holds 4 today" in grown
    assert "This model trained on" not in classifier_card._robustness_section(
        robustness, {"data": {"robustness": {"train": {"toxic": 4}}}})


def test_lora_scope_all_adapts_every_linear_layer_of_the_encoder_and_loads_in_moderator(tmp_path):
    from moderator.classify import Classifier
    from moderator.config import ClassifierConfig, RuntimeConfig

    pairs = data.paradetox_pairs(SHARED_DATA)[:16]
    examples = [classifier_data.Example(text, classifier_data._labels(toxic), "paradetox", "train")
                for pair in pairs for text, toxic in ((pair.toxic, 1), (pair.neutral[0], 0))]
    result = trainer.train(str(SHARED_DATA), tmp_path / "all", lora_scope="all", batch_size=16, seed=1,
                           examples=examples)
    adapted = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, _ in result.model.named_parameters() if "lora_A" in n}
    assert adapted == {"query", "key", "value", "dense"}
    saved = load_file(tmp_path / "all" / "adapter_model.safetensors")
    assert any("intermediate.dense.lora_A" in k for k in saved) and any("output.dense.lora_B" in k for k in saved)
    assert json.loads((tmp_path / "all" / "train_stats.json").read_text())["lora_scope"] == "all"
    classifier = Classifier(ClassifierConfig(model=str(tmp_path / "all"), calibrate=False, blend="off"),
                            RuntimeConfig())
    assert classifier.predict(["hello there"]).shape == (1, 6)
    with pytest.raises(ValueError, match="unknown LoRA scope"):
        trainer.lora_targets("mlp")


def test_the_bundled_toxic_words_are_what_the_command_writes_and_leave_out_group_names(tmp_path):
    from click.testing import CliRunner

    from moderator.deobfuscate import TOXIC_WORDS
    from train.__main__ import cli

    out = tmp_path / "words.txt"
    result = CliRunner().invoke(cli, ["toxic-words", "--out", str(out), "--data", str(SHARED_DATA)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == TOXIC_WORDS.read_text()
    words = {line for line in out.read_text().splitlines() if not line.startswith("#")}
    assert {"scum", "disgusting", "moron"} <= words and not {"muslims", "gay", "women", "jews", "black"} & words
    assert "group names left out: " in result.output and "muslims" in result.output
