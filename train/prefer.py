"""Preference tuning of the detox rewriter: DPO with TRL on top of a trained LoRA adapter.

    python -m train prefer runs/selftrain/preferences.jsonl --adapter moderator/bundled/rewriter \
        --out runs/detox-dpo --fp32 --threads 2

The pairs come from self-training (`train/selftrain_filter.py`'s preferences.jsonl): for a toxic
text, the chosen rewrite passed the strict check; the rejected one copied the text, stayed toxic or
drifted from its meaning. Both are placed after the one prompt template (`moderator.prompts`), as
training and inference see them.

The policy starts from the adapter (`--adapter`: the shipped SFT adapter, or a self-trained one).
The reference model is that same adapter, copied by TRL's DPOTrainer into a second, frozen adapter
"ref" on the same base weights: the reference log-probabilities are computed with "ref" switched in
and the trainable adapter switched off, so there is no second copy of the model in memory (only
3.8M frozen adapter parameters). Switching every adapter off instead would make the raw base,
which never learned the task, the reference.

The loss is DPO's (sigmoid) plus, by default, the negative log-likelihood of the chosen rewrite
(`--sft-weight`, RPO): DPO alone may lower the likelihood of both answers and drift into rewrites
that only score well for the classifier that picked the pairs.

Checkpoints: the trainer saves OUT/checkpoint every `--checkpoint-every` steps; `--resume` continues
from the last one (same options), and the folder is removed once the adapter is saved.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PrinterCallback, TrainerCallback

from moderator import models, prompts
from train import data
from train.detox import load_base
from train.loop import (RunStats, Trained, checkpoint_folder, count_params, peak_rss_mb, save_run_info,
                        TrainerProgress, seed_everything, trainer_settings)
from train.selftrain_filter import sampled_by

log = logging.getLogger(__name__)

REQUIRED = ("prompt_text", "chosen", "rejected")


@dataclass(frozen=True)
class Preference:
    text: str  # the toxic text
    chosen: str
    rejected: str
    rejected_why: str = ""
    source: str = ""


def preference_pairs(path: str | Path, dev_share: float = data.DEV_SHARE) -> tuple[list[Preference], dict[str, int]]:
    """The pairs of a preferences.jsonl file and what was dropped: texts in the dev split (so dev
    sentences never reach training), blank or identical chosen/rejected, and repeats."""
    pairs: list[Preference] = []
    dropped = {"dev": 0, "blank": 0, "same": 0, "duplicate": 0}
    seen: set[tuple[str, str, str]] = set()
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in REQUIRED):
                    raise TypeError
            except (json.JSONDecodeError, TypeError):
                raise ValueError(f"{path}:{number}: not a preference line "
                                 '({"prompt_text": ..., "chosen": ..., "rejected": ...})') from None
            key = (data.normalize(row["prompt_text"]), data.normalize(row["chosen"]), data.normalize(row["rejected"]))
            if not all(key):
                dropped["blank"] += 1
            elif key[1] == key[2]:
                dropped["same"] += 1
            elif data.split_of(row["prompt_text"], dev_share) == "dev":
                dropped["dev"] += 1
            elif key in seen:
                dropped["duplicate"] += 1
            else:
                seen.add(key)
                pairs.append(Preference(row["prompt_text"].strip(), row["chosen"].strip(), row["rejected"].strip(),
                                        str(row.get("rejected_why", "")), str(row.get("source", ""))))
    log.info("preference pairs from %s: %d, dropped %s", path, len(pairs), dropped)
    return pairs, dropped


def dpo_rows(pairs: list[Preference]) -> list[dict[str, str]]:
    """TRL's standard (not conversational) preference rows: the prompt exactly as the engine gets it,
    each answer as the completion that supervised training uses (TRL appends the end-of-sequence)."""
    rows = []
    for pair in pairs:
        prompt, chosen = prompts.training_example(pair.text, pair.chosen)
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": prompts.training_example(pair.text, pair.rejected)[1]})
    return rows


def adapter_base(adapter: Path) -> str:
    config = json.loads((Path(adapter) / "adapter_config.json").read_text())
    return config["base_model_name_or_path"]


def trainable_adapter(adapter: Path, base: str, stage: str):  # type: ignore[no-untyped-def]
    """The start adapter on its base in float32, trainable as the "default" adapter, and the tokenizer;
    an error for an encoder-decoder base (the tuning stages support decoder-only rewriters)."""
    from peft import PeftModel

    model, tokenizer, seq2seq = load_base(base, torch.float32)
    if seq2seq:
        raise ValueError(f"{stage} supports decoder-only rewriters (the shipped kind)")
    return PeftModel.from_pretrained(model, str(adapter), adapter_name="default", is_trainable=True), tokenizer


def train(
    preferences: Path,
    adapter: Path,
    out: Path,
    base: str | None = None,
    epochs: float = 1.0,
    max_steps: int | None = None,
    batch_size: int = 8,
    lr: float = 2e-5,
    beta: float = 0.1,
    sft_weight: float = 1.0,
    max_length: int = 192,
    seed: int = 0,
    max_pairs: int | None = None,
    bf16: bool = True,
    checkpoint_every: int = 50,
    resume: bool = False,
) -> Trained:
    """Tune `adapter` on the preference pairs with DPO and save the tuned adapter in `out`."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    out = Path(out)
    folder = checkpoint_folder(out, resume)
    seed_everything(seed)
    pairs, dropped = preference_pairs(preferences)
    if max_pairs is not None and max_pairs < len(pairs):
        import random

        pairs = random.Random(seed).sample(pairs, max_pairs)
    if not pairs:
        raise ValueError(f"{preferences}: no preference pairs left to train on (dropped {dropped})")
    base = base or adapter_base(adapter)
    model, tokenizer = trainable_adapter(adapter, base, "preference tuning")
    trainable, total = count_params(model)

    losses = ["sigmoid", "sft"] if sft_weight > 0 else ["sigmoid"]
    config = DPOConfig(
        **trainer_settings(folder, seed, bf16, checkpoint_every, logging_steps=10),
        per_device_train_batch_size=batch_size,
        num_train_epochs=epochs,
        max_steps=max_steps or -1,
        learning_rate=lr,
        lr_scheduler_type="linear",
        warmup_steps=0.1,
        beta=beta,
        loss_type=losses,
        loss_weights=[1.0, sft_weight] if sft_weight > 0 else None,
        max_length=max_length,
        truncation_mode="keep_start",
    )
    dataset = Dataset.from_list(dpo_rows(pairs))
    trainer = _resumable(DPOTrainer)(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                                     callbacks=[_Progress()])
    trainer.remove_callback(PrinterCallback)  # _Progress logs instead of printing dicts to stdout
    log.info("DPO on %d preference pairs from %s (start %s, reference = the same adapter frozen), beta %g, "
             "sft weight %g, lr %g", len(pairs), preferences, adapter, beta, sft_weight, lr)
    started = time.monotonic()
    with completion_positions_only():
        result = trainer.train(resume_from_checkpoint=True if resume else None)
    seconds = time.monotonic() - started

    out.mkdir(parents=True, exist_ok=True)
    model.peft_config["default"].base_model_name_or_path = base
    model.save_pretrained(str(out), selected_adapters=["default"])
    history = [entry for entry in trainer.state.log_history if "loss" in entry]
    last = history[-1] if history else {}
    stats = RunStats(steps=trainer.state.global_step, examples=trainer.state.global_step * batch_size,
                     seconds=round(seconds, 1), final_loss=float(last.get("loss", result.training_loss)),
                     peak_rss_mb=round(peak_rss_mb(), 1), trainable_params=trainable, total_params=total)
    base_path = models.resolve_path(base, "rewriter base")
    info = save_run_info(out, {
        "method": "dpo",
        "start_adapter": str(adapter),
        "start_training": _start_training(adapter),
        "reference": "the start adapter, frozen (a second adapter on the same base)",
        "base": base,
        "base_sha256": models.tree_sha256(base_path),
        "seq2seq": False,
        "preference_pairs": len(pairs),
        "preferences_file": str(preferences),
        "candidates_by": sampled_by(Path(preferences)),
        "start_sha256": models.tree_sha256(models.resolve_path(str(adapter), "start adapter")),
        "preferences_dropped": dropped,
        "rejected_why": _count(p.rejected_why for p in pairs),
        "sources": _count(p.source for p in pairs),
        "loss": losses,
        "beta": beta,
        "sft_weight": sft_weight,
        "lr": lr,
        "batch_size": batch_size,
        "epochs": epochs,
        "max_length": max_length,
        "precision": "bf16 autocast, fp32 weights" if bf16 else "fp32",
        "seed": seed,
        "checkpoint_every": checkpoint_every,
        "last_log": last,
    }, stats)
    shutil.rmtree(folder, ignore_errors=True)
    return Trained(model, info)


@contextlib.contextmanager
def completion_positions_only():  # type: ignore[no-untyped-def]
    """Score only the answer's tokens on the CPU too.

    TRL's fused LM head computes log-probabilities for the labelled positions only where Triton runs
    (GPUs); elsewhere it scores every position, so that tile shapes stay fixed for compilers such as
    Neuron's. On a CPU nothing is compiled, and the prompt is about three quarters of each sequence:
    with Gemma's 262k-token vocabulary, scoring the prompt made a DPO step 3-4 times slower. The
    result is the same either way (the masked positions are zeroed); tests/test_prefer.py checks it."""
    from trl.trainer import utils as trl_utils

    original = trl_utils._use_triton
    trl_utils._use_triton = lambda device: device.type == "cpu" or original(device)
    try:
        yield
    finally:
        trl_utils._use_triton = original


class _Progress(TrainerProgress, TrainerCallback):
    """Logs each logging step (loss, reward accuracy and margin, speed, time left) to the log, not stdout."""

    def report(self, state, logs, rate, eta):  # type: ignore[no-untyped-def]
        log.info("dpo: step %d/%d loss %.4f, reward accuracy %.2f, margin %.3f (%.3f steps/s, eta %.0f s)",
                 state.global_step, state.max_steps, logs["loss"], logs.get("rewards/accuracies", float("nan")),
                 logs.get("rewards/margins", float("nan")), rate, eta)


def _resumable(trainer_class):  # type: ignore[no-untyped-def]
    """The trainer class, resuming the trained adapter too. A PEFT checkpoint holding two adapters has
    the active one at its top and the others ("ref") in sub-folders; transformers' Trainer (5.x) then
    loads only the sub-folders, so a resumed run would go on from the start adapter with the optimizer
    state of step N. Loading the top adapter after it makes a resumed run equal an uninterrupted one."""

    class Resumable(trainer_class):  # type: ignore[misc, valid-type]
        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):  # type: ignore[no-untyped-def]
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

            target = model if model is not None else self.model
            weights = load_file(Path(resume_from_checkpoint) / "adapter_model.safetensors")
            result = set_peft_model_state_dict(target, weights, adapter_name="default")
            if result.unexpected_keys:
                raise ValueError(f"{resume_from_checkpoint}: adapter weights that do not fit the model")
            target.set_adapter("default")

    return Resumable


def _start_training(adapter: Path) -> dict | None:
    """The start adapter's own train_stats.json, kept so the model card can describe both stages."""
    path = Path(adapter) / "train_stats.json"
    return json.loads(path.read_text()) if path.exists() else None


def _count(values) -> dict[str, int]:  # type: ignore[no-untyped-def]
    counts: dict[str, int] = {}
    for value in values:
        counts[value or "unknown"] = counts.get(value or "unknown", 0) + 1
    return dict(sorted(counts.items()))
