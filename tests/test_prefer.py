"""Preference tuning (train/prefer.py): pairs read as specified, DPO with TRL on the LoRA adapter, and
resuming. Tiny Llama decoder and adapter from the fixtures; no network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from moderator import models, prompts
from train import data, prefer
from train.__main__ import cli


def _first(template: str, wanted) -> str:  # type: ignore[no-untyped-def]
    return next(t for t in (template.format(i) for i in range(10_000)) if wanted(t))


def _train_text(i: int) -> str:
    return _first(f"you stupid troll {i} number {{}}", lambda t: data.split_of(t) == "train")


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _preferences(path: Path, n: int = 16) -> Path:
    rows = []
    for i in range(n):
        text = _train_text(i)
        rows.append({"prompt_text": text, "chosen": f"I think you are wrong about {i}.", "rejected": text,
                     "rejected_why": "copy", "source": "forum"})
    return _write(path, rows)


def test_pairs_drop_dev_blank_same_and_repeated_ones(tmp_path):
    dev = _first("you are a stupid fool number {}", lambda t: data.split_of(t) == "dev")
    keep = {"prompt_text": _train_text(0), "chosen": "you are wrong", "rejected": "you idiot",
            "rejected_why": "still_toxic", "source": "jigsaw"}
    path = _write(tmp_path / "p.jsonl", [
        keep,
        {**keep, "prompt_text": keep["prompt_text"].upper() + "  "},  # the same pair, differently cased
        {**keep, "prompt_text": dev},  # a dev text never reaches training
        {**keep, "chosen": "  "},
        {**keep, "rejected": "You are wrong!"},  # chosen and rejected the same once normalized
        {**keep, "rejected": "you moron", "rejected_why": ""},
        "",
    ])
    pairs, dropped = prefer.preference_pairs(path)
    assert dropped == {"dev": 1, "blank": 1, "same": 1, "duplicate": 1}
    assert [(p.chosen, p.rejected, p.rejected_why, p.source) for p in pairs] == [
        ("you are wrong", "you idiot", "still_toxic", "jigsaw"), ("you are wrong", "you moron", "", "jigsaw")]


@pytest.mark.parametrize("line", ['{"prompt_text": "a", "chosen": "b"}', "[1, 2]", "not json",
                                  '{"prompt_text": "a", "chosen": "b", "rejected": 3}'])
def test_a_bad_line_is_named(tmp_path, line):
    path = _write(tmp_path / "p.jsonl", [{"prompt_text": _train_text(0), "chosen": "b", "rejected": "c"}, line])
    with pytest.raises(ValueError, match=r"p\.jsonl:2: not a preference line"):
        prefer.preference_pairs(path)


def test_rows_place_both_answers_after_the_product_prompt():
    pair = prefer.Preference("you  stupid\nidiot", "you are  wrong", "you idiot")
    (row,) = prefer.dpo_rows([pair])
    assert row["prompt"] == prompts.build_prompt(pair.text)
    assert (row["prompt"], row["chosen"]) == prompts.training_example(pair.text, pair.chosen)
    assert row["rejected"] == " you idiot"


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "adapter_model.safetensors")


def test_dpo_changes_the_adapter_and_not_the_base(tiny, tmp_path):
    base_before = {k: v.clone() for k, v in load_file(next(Path(tiny.decoder).glob("*.safetensors"))).items()}
    out = tmp_path / "dpo"
    result = CliRunner().invoke(cli, ["prefer", str(_preferences(tmp_path / "p.jsonl")), "--adapter",
                                      str(tiny.adapter), "--out", str(out), "--max-steps", "2", "--batch-size", "4",
                                      "--lr", "1e-2", "--fp32", "--checkpoint-every", "1",
                                      "--note", "A two-step run of the test."])
    assert result.exit_code == 0, result.output
    start, tuned = _tensors(Path(tiny.adapter)), _tensors(out)
    assert start.keys() == tuned.keys()  # the trained adapter only: the frozen reference copy is not saved
    assert any(not torch.equal(start[k], tuned[k]) for k in start)
    base_after = load_file(next(Path(tiny.decoder).glob("*.safetensors")))
    assert all(torch.equal(base_before[k], base_after[k]) for k in base_before)
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == json.loads((Path(tiny.adapter) / "adapter_config.json").read_text())[
        "base_model_name_or_path"]
    stats = json.loads((out / "train_stats.json").read_text())
    assert stats["method"] == "dpo" and stats["stats"]["steps"] == 2 and stats["preference_pairs"] == 16
    assert stats["candidates_by"] is None  # pairs without the filter's stats beside them
    assert stats["start_sha256"] == models.tree_sha256(Path(tiny.adapter))
    assert stats["loss"] == ["sigmoid", "sft"] and stats["rejected_why"] == {"copy": 16}
    assert stats["note"] == "A two-step run of the test."  # the card prints it beside the run's training
    assert not (out / "checkpoint").exists()

    from moderator.config import RewriterConfig, RuntimeConfig
    from moderator.rewrite import Rewriter

    rewriter = Rewriter(RewriterConfig(base=str(tiny.decoder), adapter=str(out), engine="hf", max_new_tokens=4),
                        RuntimeConfig())  # the tuned adapter serves as a rewriter
    assert len(rewriter.rewrite(["you idiot"])) == 1


def test_resumed_dpo_ends_with_the_weights_of_a_straight_run(tiny, tmp_path, monkeypatch):
    from transformers import Trainer

    preferences = _preferences(tmp_path / "p.jsonl")
    args = {"max_steps": 4, "batch_size": 4, "lr": 1e-2, "bf16": False, "checkpoint_every": 2}
    prefer.train(preferences, tiny.adapter, tmp_path / "straight", **args)

    saved = Trainer._save_checkpoint

    def save_then_die(self, *a, **kw):  # type: ignore[no-untyped-def]
        saved(self, *a, **kw)
        raise KeyboardInterrupt  # killed right after the step-2 checkpoint

    monkeypatch.setattr(Trainer, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        prefer.train(preferences, tiny.adapter, tmp_path / "cut", **args)
    monkeypatch.setattr(Trainer, "_save_checkpoint", saved)
    with pytest.raises(ValueError, match="--resume"):
        prefer.train(preferences, tiny.adapter, tmp_path / "cut", **args)
    resumed = prefer.train(preferences, tiny.adapter, tmp_path / "cut", resume=True, **args)
    assert resumed.info["stats"]["steps"] == 4
    straight, cut = _tensors(tmp_path / "straight"), _tensors(tmp_path / "cut")
    for name in straight:
        assert torch.allclose(straight[name], cut[name], atol=1e-6, rtol=0), name
    with pytest.raises(ValueError, match="no checkpoint"):
        prefer.train(preferences, tiny.adapter, tmp_path / "fresh", resume=True, **args)


def test_a_preference_tuned_adapter_bundles_with_a_card_of_both_stages(tiny, tmp_path):
    import shutil

    from train import bundle

    start = tmp_path / "start"
    shutil.copytree(tiny.adapter, start)
    shipped = bundle.BUNDLED / "rewriter"
    shipped_stats = json.loads((shipped / "train_stats.json").read_text())
    sft_stats = bundle.training_chain(shipped_stats)[0]  # the shipped adapter's supervised stage
    (start / "train_stats.json").write_text(json.dumps(sft_stats))  # as if the start were that SFT adapter
    out = tmp_path / "dpo"
    prefer.train(_preferences(tmp_path / "p.jsonl"), start, out, max_steps=1, batch_size=4, bf16=False,
                 checkpoint_every=0)
    row = {"STA": 0.9, "SIM": 0.8, "chrF": 0.7, "J": 0.5, "STA*": 0.95, "J*": 0.52, "n": 4}
    earlier = tmp_path / "earlier"  # an earlier card's metrics: one row measured before J* existed
    earlier.mkdir()
    old_full = {"STA": 0.88, "SIM": 0.86, "chrF": 0.77, "J": 0.6, "n": 4,
                "training": {"trainable_params": 9, "total_params": 9, "seconds": 60.0, "peak_rss_mb": 10.0, "steps": 8}}
    (earlier / "metrics.json").write_text(json.dumps(
        {"bundled": "2026-11-25", "evaluation": {"rows": {"full": old_full, "SFT LoRA": row}}}))
    recorded = bundle.recorded_rows(["full"], earlier)
    assert recorded["full"]["recorded"] == "measured 2026-11-25 with the project's judge only (the model is not kept)."
    assert "J*" not in recorded["full"]
    both_judges = bundle.recorded_rows(["SFT LoRA"], earlier)["SFT LoRA"]  # measured with J* too
    assert "J*" in both_judges and "judge only" not in both_judges["recorded"]
    with pytest.raises(ValueError, match="no row 'nope'"):
        bundle.recorded_rows(["nope"], earlier)
    self_trained = {**row, "J": 0.48, "J*": 0.49, "training": {
        "trainable_params": 7, "total_params": 9, "seconds": 120.0, "peak_rss_mb": 20.0, "steps": 12, "method": "lora",
        "command": "python -m train detox --out runs/detox-self --extra-pairs runs/kept.jsonl", "extra_pairs": 3117,
        "extra_pairs_file": "runs/kept.jsonl", "precision": "bf16 autocast, fp32 weights"}}
    table = {"split": "dev", "sentences": 4, "samples": {"input": ["you idiot"], "LoRA (shipped)": ["you are wrong"]},
             "rows": {"copy input": {**row, "J": 0.01, "J*": 0.02}, "LoRA (shipped)": row,
                      "SFT LoRA": {**row, "J": 0.45, "J*": 0.47}, "Self-trained LoRA": self_trained, **recorded}}
    dest = bundle.bundle_rewriter(out, table, tmp_path / "bundled")
    card = (dest / "README.md").read_text()
    assert "### Stage 1: supervised fine-tuning" in card and "### Stage 2: preference tuning" in card
    assert "DPO (TRL) on 16 preference pairs" in card and "16 copy" in card
    assert "The shipped adapter minus SFT LoRA: J +0.050, J* +0.050." in card
    assert "full: measured " in card and "STA*" in card
    # Every compared row that carries its training says how to make it again.
    assert ("- **Self-trained LoRA** (LoRA, 7 trainable parameters): `python -m train detox --out runs/detox-self "
            "--extra-pairs runs/kept.jsonl`: 12 steps, 2 min, peak RSS 20 MB, bf16 autocast, fp32 weights; 3,117 "
            "self-training pairs (`runs/kept.jsonl`) beside the ParaDetox pairs.") in card
    assert "- **full** (full fine-tune, 9 trainable parameters): training command not recorded: 8 steps" in card
    stats = json.loads((dest / "train_stats.json").read_text())
    assert stats["method"] == "dpo" and stats["start_training"]["method"] == "lora"
    assert load_file(dest / "adapter_model.safetensors")[next(iter(_tensors(out)))].dtype == torch.bfloat16

    # A second round, started from the first round's adapter: the card tells all three stages.
    again = tmp_path / "dpo2"
    prefer.train(_preferences(tmp_path / "p.jsonl"), out, again, max_steps=1, batch_size=4, bf16=False,
                 checkpoint_every=0)
    card = (bundle.bundle_rewriter(again, table, tmp_path / "bundled2") / "README.md").read_text()
    assert "### Stage 1: supervised fine-tuning" in card
    assert "### Stage 2: preference tuning, round 1" in card and "### Stage 3: preference tuning, round 2" in card
    assert card.count("DPO (TRL) on 16 preference pairs") == 2
    assert "The reference model is the stage-2 adapter" in card and "stage-1 adapter's" in card
    stats = json.loads((tmp_path / "bundled2" / "train_stats.json").read_text())
    assert [s["method"] for s in bundle.training_chain(stats)] == ["lora", "dpo", "dpo"]
    with pytest.raises(ValueError, match="not recorded"):
        bundle.training_chain({**stats, "start_training": None})
    # A start adapter without recorded training (a user's own): a one-line error, not a card without a stage.
    orphan = tmp_path / "orphan"
    shutil.copytree(again, orphan)
    (orphan / "train_stats.json").write_text(json.dumps({**stats, "start_training": None,
                                                         "start_adapter": str(tmp_path / "nowhere")}))
    with pytest.raises(ValueError, match="training is not recorded"):
        bundle.training_stats(orphan)  # what bundle-detox checks before it evaluates
    with pytest.raises(ValueError, match="training is not recorded"):
        bundle.bundle_rewriter(orphan, table, tmp_path / "bundled3")
    assert not (tmp_path / "bundled3").exists()
    from click.testing import CliRunner

    from train.__main__ import cli

    result = CliRunner().invoke(cli, ["bundle-detox", str(orphan)])  # fails before evaluating anything
    assert result.exit_code == 1 and "training is not recorded" in result.output and "Traceback" not in result.output


def test_scoring_only_the_answers_on_the_cpu_gives_the_same_training(tiny, tmp_path, monkeypatch):
    import contextlib

    from trl.trainer import utils as trl_utils

    sizes: list[int] = []
    apply = trl_utils._ChunkedLogProbFunction.apply

    def spy(hidden, *args):  # type: ignore[no-untyped-def]
        sizes.append(hidden.shape[0])
        return apply(hidden, *args)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", spy)
    preferences = _preferences(tmp_path / "p.jsonl")
    args = {"max_steps": 2, "batch_size": 4, "lr": 1e-2, "bf16": False, "checkpoint_every": 0}
    prefer.train(preferences, tiny.adapter, tmp_path / "answers", **args)
    answers, sizes[:] = list(sizes), []
    monkeypatch.setattr(prefer, "completion_positions_only", contextlib.nullcontext)  # TRL's CPU default
    prefer.train(preferences, tiny.adapter, tmp_path / "every", **args)
    assert sum(answers) * 2 < sum(sizes)  # the prompt positions are no longer scored
    fast, slow = _tensors(tmp_path / "answers"), _tensors(tmp_path / "every")
    for name in fast:
        assert torch.allclose(fast[name], slow[name], atol=1e-6, rtol=0), name
    assert trl_utils._use_triton(torch.device("cpu")) is False  # the switch is undone after training


def test_the_card_says_whose_candidates_a_dpo_round_learned_from():
    from train import bundle

    run = {"preference_pairs": 3, "preferences_file": "runs/st/preferences.jsonl", "rejected_why": {"copy": 3},
           "loss": ["sigmoid", "sft"], "sft_weight": 1.0, "beta": 0.1, "lr": 5e-5, "batch_size": 8,
           "torch_threads": 2, "command": "python -m train prefer ...",
           "stats": {"steps": 1, "seconds": 60.0, "peak_rss_mb": 100.0}, "start_sha256": "aa" * 32}
    sft = {"extra_pairs": 0}
    # Candidates sampled by the start adapter itself (or not recorded, as in rounds run before this was).
    for by in (None, {"ref": "runs/start", "sha256": "aa" * 32}):
        text = bundle._dpo_section({**run, "candidates_by": by}, 2, sft)
        assert "one of the stage-1 adapter's own\nsampled candidates" in text
        assert "for a toxic text that no supervised stage trained on," in text
    # Pairs of ParaDetox training sentences too: stage 1 did learn those sentences' human rewrites.
    text = bundle._dpo_section({**run, "candidates_by": None, "sources": {"forum": 2, "paradetox": 1}}, 2, sft)
    assert ("for a toxic text (a forum, Jigsaw or Davidson text no supervised stage trained on, or a ParaDetox "
            "training sentence, whose human rewrites stage 1 learned)," in text)
    # Candidates from another adapter, and a supervised stage that trained on self-training's kept rewrites.
    other = {"ref": "moderator/bundled/rewriter", "sha256": "bb" * 32}
    text = bundle._dpo_section({**run, "candidates_by": other}, 2,
                               {"extra_pairs": 5, "extra_pairs_file": "runs/st/kept.jsonl"})
    assert "one of another adapter's (`moderator/bundled/rewriter`, sha256 bbbbbbbbbbbb, not the stage-1 one)" in text
    assert "stage 1 also trained on self-training's kept rewrites, `runs/st/kept.jsonl`" in text
    assert "stage-1 adapter's own" not in text


def test_the_shipped_row_is_named_after_how_the_adapter_was_made():
    from train import bundle
    from train.detox_eval import format_table

    sft, self_trained, dpo = {"method": "lora"}, {"method": "lora", "extra_pairs": 3117}, {"method": "dpo"}
    assert bundle.chain_name([sft]) == "SFT LoRA"
    assert bundle.chain_name([sft, dpo]) == "DPO LoRA"
    assert bundle.chain_name([sft, dpo, dpo]) == "DPO x2 LoRA"
    assert bundle.chain_name([self_trained]) == "Self-trained LoRA"
    assert bundle.chain_name([self_trained, dpo]) == "Self-trained + DPO LoRA"
    row = {"STA": 0.9, "SIM": 0.8, "chrF": 0.7, "J": 0.5, "n": 4}
    long = "Self-trained + DPO x2 LoRA (shipped)"
    lines = format_table({"sentences": 4, "rows": {long: row, "copy input": row}}).splitlines()
    assert lines[2].startswith(long + " ") and lines[3].index("0.900") == lines[2].index("0.900")  # columns align


def test_the_recorded_command_is_quoted_and_leaves_the_note_out():
    from train.loop import command_line

    argv = ["prefer", "p.jsonl", "--out", "runs/x", "--note", "Why: a test.", "--lr", "5e-5", "--note=again"]
    assert command_line(argv) == "python -m train prefer p.jsonl --out runs/x --lr 5e-5"
    assert command_line(["eval-detox", "DPO LoRA=runs/dpo1"]) == "python -m train eval-detox 'DPO LoRA=runs/dpo1'"


def test_a_run_records_the_commit_of_its_code_and_the_card_prints_it(tmp_path):
    import subprocess

    from train.loop import RunStats, code_version, described_command, save_run_info

    root = Path(__file__).resolve().parent.parent
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    stats = RunStats(steps=1, examples=2, seconds=0.5, final_loss=1.0, peak_rss_mb=10.0, trainable_params=1,
                     total_params=2)
    info = save_run_info(tmp_path, {"method": "lora"}, stats)
    assert json.loads((tmp_path / "train_stats.json").read_text())["code"] == info["code"]
    if head:  # a git checkout (CI clones one): the commit the code ran at
        assert info["code"]["commit"] == head and isinstance(info["code"]["dirty"], bool)
    assert code_version() is code_version() and code_version() == info["code"]  # read once, as the run starts
    run = {"command": "python -m train detox --out runs/x", "code": {"commit": "a" * 40, "dirty": True}}
    assert described_command(run) == ("`python -m train detox --out runs/x` "
                                      "(code at commit aaaaaaaaaa, with uncommitted changes)")
    assert described_command({**run, "code": None}) == "`python -m train detox --out runs/x`"
    later = {"commit": "b" * 40, "dirty": False, "recorded": "recorded after the fact"}
    assert described_command({**run, "code": later}).endswith("(code at commit bbbbbbbbbb; recorded after the fact)")
    assert described_command({}) == "training command not recorded"
