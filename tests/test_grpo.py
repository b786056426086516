"""GRPO of the rewriter (train/grpo.py): the reward, the training sentences, one step and resuming. The
reward uses the product's real classifier and embedder; the policy is the tiny Llama decoder and adapter
of the fixtures; no network."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from moderator import models, prompts
from train import data, grpo
from train.__main__ import cli
from train.selftrain_filter import ProductScorer


def _first(template: str, wanted) -> str:  # type: ignore[no-untyped-def]
    return next(t for t in (template.format(i) for i in range(10_000)) if wanted(t))


def _in(split: str, template: str) -> str:
    return _first(template, lambda t: data.split_of(t) == split)


@pytest.fixture(scope="module")
def scorer() -> ProductScorer:
    return ProductScorer(threads=1)


@pytest.fixture(scope="module")
def paradetox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with ParaDetox-style pairs: toxic training sentences, one clean, one in dev."""
    root = tmp_path_factory.mktemp("grpo-data")
    rows = [[_in("train", f"you stupid idiot, your code number {i} is broken {{}}"), f"your code number {i} is broken"]
            for i in range(6)]
    rows.append([_in("train", "the meeting is moved to thursday {}"), "the meeting moved to thursday"])
    rows.append([_in("dev", "shut up you moron {}"), "please be quiet"])
    (root / "paradetox").mkdir()
    with open(root / "paradetox" / "paradetox.tsv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["toxic", "neutral1", "neutral2", "neutral3"])
        writer.writerows([[toxic, neutral, "", ""] for toxic, neutral in rows])
    return root


def test_the_reward_pays_a_faithful_clean_rewrite_and_nothing_for_a_copy_or_an_empty_answer(scorer):
    text = "Your stupid code is broken again, you moron."
    reward = grpo.Reward(scorer, {data.normalize(text): ("Your code is broken again.",)})
    candidates = [
        " Your code is broken again.\nsomething after the first line is not part of the rewrite",
        " your stupid code is BROKEN again you moron",  # a copy
        " ",  # empty
        " Your code is broken again, you moron.",  # still toxic
        " The weather in Paris is lovely in spring.",  # drifts
        " Code.",  # deletes most of it
    ]
    scores = reward(candidates, text=[text] * len(candidates))
    assert scores[0] > 0.7
    assert scores[1] == 0.0 and scores[2] == 0.0
    assert all(scores[0] > s + 0.3 for s in scores[3:])
    gated = grpo.Reward(scorer, reward.references, max_toxicity=0.5, min_similarity=0.5)
    scores_gated = gated(candidates, text=[text] * len(candidates))
    assert scores_gated[0] == pytest.approx(scores[0])  # what verification would publish keeps its reward
    assert scores_gated[3] == 0.0 < scores[3] and scores_gated[4] == 0.0  # still toxic; drifted
    means = reward.take_means()
    assert means["copy"] == pytest.approx(1 / 6) and means["empty"] == pytest.approx(1 / 6)
    assert reward.take_means()["copy"] == 0.0  # counting starts again
    # A toxicity weight above 1 takes more from the still-toxic rewrite than from the clean one.
    weighted = grpo.Reward(scorer, reward.references, toxicity_weight=3.0)(candidates, text=[text] * len(candidates))
    toxicity = scorer.toxicity([prompts.parse_completion(candidates[i]) for i in (0, 3)])
    assert weighted[0] == pytest.approx(scores[0] * (1 - toxicity[0]) ** 2, rel=1e-4)
    assert weighted[3] == pytest.approx(scores[3] * (1 - toxicity[1]) ** 2, rel=1e-4)
    assert weighted[3] / scores[3] < weighted[0] / scores[0]


def test_training_sentences_are_toxic_training_ones_with_their_rewrites(scorer, paradetox):
    texts, counts = grpo.training_prompts(paradetox, scorer, max_texts=None, seed=0)
    assert counts == {"read": 7, "not_toxic": 1, "kept": 6}  # the dev sentence is never read
    assert all(data.split_of(t.text) == "train" and "idiot" in t.text for t in texts)
    assert all(t.references == (t.text.split(", ", 1)[1].rsplit(" ", 1)[0],) for t in texts)
    again, _ = grpo.training_prompts(paradetox, scorer, max_texts=3, seed=0)
    assert again == texts[:3]  # the order is the seed's
    assert [t.text for t in grpo.training_prompts(paradetox, scorer, max_texts=None, seed=1)[0]] != [t.text for t in texts]


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "adapter_model.safetensors")


ARGS = {"max_texts": 6, "prompts_per_step": 2, "generations": 2, "max_new_tokens": 4, "lr": 1e-2}


def test_grpo_changes_the_adapter_and_not_the_base(tiny, scorer, paradetox, tmp_path):
    base_file = next(Path(tiny.decoder).glob("*.safetensors"))
    base_before = {k: v.clone() for k, v in load_file(base_file).items()}
    out = tmp_path / "grpo"
    result = grpo.train(out, scorer, tiny.adapter, paradetox, max_steps=2, checkpoint_every=1, **ARGS)
    start, tuned = _tensors(Path(tiny.adapter)), _tensors(out)
    assert start.keys() == tuned.keys()
    assert any(not torch.equal(start[k], tuned[k]) for k in start)
    base_after = load_file(base_file)
    assert all(torch.equal(base_before[k], base_after[k]) for k in base_before)
    stats = json.loads((out / "train_stats.json").read_text())
    assert stats["method"] == "grpo" and stats["stats"]["steps"] == 2 and stats["generations"] == 2
    assert stats["texts"] == {"read": 7, "not_toxic": 1, "kept": 6}
    assert stats["start_sha256"] == models.tree_sha256(Path(tiny.adapter))
    assert result.info["reference"] == "none (beta 0)" and not (out / "checkpoint").exists()

    from moderator.config import RewriterConfig, RuntimeConfig
    from moderator.rewrite import Rewriter

    rewriter = Rewriter(RewriterConfig(base=str(tiny.decoder), adapter=str(out), engine="hf", max_new_tokens=4),
                        RuntimeConfig())  # the tuned adapter serves as a rewriter
    assert len(rewriter.rewrite(["you idiot"])) == 1


def test_a_resumed_run_goes_on_from_its_checkpoint(tiny, scorer, paradetox, tmp_path, monkeypatch):
    from transformers import Trainer

    args = {**ARGS, "max_steps": 3, "checkpoint_every": 2}
    grpo.train(tmp_path / "straight", scorer, tiny.adapter, paradetox, **args)
    saved = Trainer._save_checkpoint

    def save_then_die(self, *a, **kw):  # type: ignore[no-untyped-def]
        saved(self, *a, **kw)
        raise KeyboardInterrupt  # killed right after the step-2 checkpoint

    monkeypatch.setattr(Trainer, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        grpo.train(tmp_path / "cut", scorer, tiny.adapter, paradetox, **args)
    monkeypatch.setattr(Trainer, "_save_checkpoint", saved)
    step2 = _tensors(next((tmp_path / "cut" / "checkpoint").glob("checkpoint-2")))
    with pytest.raises(ValueError, match="--resume"):
        grpo.train(tmp_path / "cut", scorer, tiny.adapter, paradetox, **args)
    resumed = grpo.train(tmp_path / "cut", scorer, tiny.adapter, paradetox, resume=True, **args)
    assert resumed.info["stats"]["steps"] == 3
    straight, cut = _tensors(tmp_path / "straight"), _tensors(tmp_path / "cut")
    for name in straight:
        assert torch.allclose(straight[name], cut[name], atol=1e-5, rtol=0), name
    assert any(not torch.equal(step2[k], cut[k]) for k in step2)  # step 3 ran after the resume
    with pytest.raises(ValueError, match="no checkpoint"):
        grpo.train(tmp_path / "fresh", scorer, tiny.adapter, paradetox, resume=True, **args)


def test_the_command_explains_itself_and_refuses_a_group_of_one(tmp_path):
    shown = CliRunner().invoke(cli, ["grpo", "--help"])
    assert shown.exit_code == 0 and "Example" in shown.output and "--resume" in shown.output
    refused = CliRunner().invoke(cli, ["grpo", "--out", str(tmp_path / "g"), "--generations", "1"])
    assert refused.exit_code == 2 and "--generations" in refused.output and "Traceback" not in refused.output
    refused = CliRunner().invoke(cli, ["grpo", "--out", str(tmp_path / "g"), "--toxicity-weight", "0"])
    assert refused.exit_code == 2 and "--toxicity-weight" in refused.output and "Traceback" not in refused.output


def test_a_grpo_tuned_adapter_bundles_with_a_card_of_every_stage(tiny, scorer, paradetox, tmp_path):
    import shutil

    from train import bundle

    start = tmp_path / "start"
    shutil.copytree(tiny.adapter, start)
    shipped = json.loads((bundle.BUNDLED / "rewriter" / "train_stats.json").read_text())
    (start / "train_stats.json").write_text(json.dumps(shipped))  # as if the start were the shipped adapter
    out = tmp_path / "grpo"
    grpo.train(out, scorer, start, paradetox, max_steps=2, checkpoint_every=0, gate=(0.5, 0.6), toxicity_weight=3,
               **ARGS)
    chain = bundle.training_chain(bundle.training_stats(out))
    rounds = sum(step["method"] == "dpo" for step in chain)
    assert [step["method"] for step in chain] == ["lora", *["dpo"] * rounds, "grpo"] and rounds >= 1
    name = bundle.chain_name(chain)
    assert name.endswith(" + GRPO LoRA") and "DPO" in name
    row = {"STA": 0.9, "SIM": 0.8, "chrF": 0.7, "J": 0.5, "STA*": 0.95, "J*": 0.52, "n": 4}
    table = {"split": "dev", "sentences": 4, "samples": {"input": ["you idiot"], f"{name} (shipped)": ["you are wrong"]},
             "rows": {f"{name} (shipped)": row, "SFT LoRA": {**row, "J": 0.45, "J*": 0.47},
                      "DPO x4 LoRA": {**row, "J*": 0.55}}}
    card = (bundle.bundle_rewriter(out, table, tmp_path / "bundled") / "README.md").read_text()
    grpo_stage = rounds + 2
    assert f"### Stage {grpo_stage}: reinforcement learning (GRPO)" in card
    assert f"### Stage {grpo_stage - 1}: preference tuning" in card and "### Stage 1: supervised" in card
    assert "GRPO (TRL) on 6 toxic ParaDetox training sentences" in card and "1 that the classifier finds clean" in card
    assert "x chrF" in card and "alt-profanity-check, the J*" in card
    assert "(1 - the classifier's toxicity) to the power 3 x" in card
    assert "verification would not publish: toxicity >= 0.5 or similarity < 0.6" in card
    assert "Highest J* on all dev sentences: DPO x4 LoRA (0.550), not the shipped adapter" in card
    assert "Highest J on" not in card  # the shipped row ties it


def test_rows_are_named_after_every_tuning_stage():
    from train import bundle

    sft, dpo, tuned = {"method": "lora"}, {"method": "dpo"}, {"method": "grpo"}
    assert bundle.chain_name([sft, tuned]) == "GRPO LoRA"
    assert bundle.chain_name([sft, dpo, dpo, tuned]) == "DPO x2 + GRPO LoRA"
    assert bundle.chain_name([{"method": "lora", "extra_pairs": 5}, dpo, tuned]) == "Self-trained + DPO + GRPO LoRA"


def test_the_replaced_adapters_row_is_carried_without_its_shipped_mark(tmp_path):
    from train import bundle

    row = {"STA": 0.9, "SIM": 0.8, "chrF": 0.7, "J": 0.5, "STA*": 0.95, "J*": 0.52, "n": 4}
    (tmp_path / "metrics.json").write_text(json.dumps(
        {"bundled": "2026-12-07", "evaluation": {"rows": {"DPO x4 LoRA (shipped)": row, "SFT LoRA": row}}}))
    carried = bundle.recorded_rows(["DPO x4 LoRA", "SFT LoRA"], tmp_path)
    assert list(carried) == ["DPO x4 LoRA", "SFT LoRA"] and carried["DPO x4 LoRA"]["J*"] == 0.52
    assert carried["DPO x4 LoRA"]["recorded"] == "measured 2026-12-07 (the model is not kept)."
    with pytest.raises(ValueError, match="no row 'DPO x3 LoRA'"):
        bundle.recorded_rows(["DPO x3 LoRA"], tmp_path)
