"""Reinforcement learning of the detox rewriter: GRPO (TRL) on top of a trained LoRA adapter.

    python -m train grpo --adapter moderator/bundled/rewriter --out runs/detox-grpo --max-texts 1000 --fp32

For each toxic ParaDetox *training* sentence the policy samples a group of rewrites (`--generations`,
TRL's `generate` on the adapter being trained: on-policy, unlike DPO's pairs sampled once by an earlier
model). Each rewrite earns the product of what the evaluation measures, with the product's own models:

    reward = (1 - the classifier's toxicity) ** w x cosine similarity to the input (the embedder)
             x chrF against the crowd's rewrites of that sentence

(w: `--toxicity-weight`, 1 by default; a larger one punishes a rewrite that stays a little toxic, which
the product would still publish, more than one that strays a little from the words people chose)

and GRPO raises the likelihood of the rewrites above their group's mean reward. A copy of the input
(the same words) and an empty answer earn 0, and so, by default, does a rewrite that the product's
verification would not publish (toxicity at or above `[policy] max_rewrite_toxicity`, similarity under
`[policy] min_similarity`): without that gate the first run traded toxicity for closeness (J up, but
fewer forum posts published; see the README). The chrF term keeps the policy near the light edits people
make (deleting words or paraphrasing freely lowers it), the similarity term near the meaning.

Guards against gaming the judge: alt-profanity-check stays out of the reward, so `eval-detox`'s J*
remains an independent view; dev sentences never reach training (their rewrites are the references
of the evaluation). No reference model: beta = 0 (TRL's default); with a PEFT policy the KL term's
reference would be the base with its adapters off, which never learned the task.

Checkpoints: the trainer saves OUT/checkpoint every `--checkpoint-every` steps; `--resume` continues
from the last one (same options), and the folder is removed once the adapter is saved.
"""

from __future__ import annotations

import logging
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from transformers import PrinterCallback, TrainerCallback

from moderator import models, prompts
from moderator.verify import same_words
from train import data
from train.loop import (RunStats, Trained, checkpoint_folder, count_params, peak_rss_mb, save_run_info,
                        TrainerProgress, seed_everything, trainer_settings)
from train.prefer import _start_training, adapter_base, completion_positions_only, trainable_adapter
from train.selftrain_filter import Scorer, chrf_scores

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prompt:
    text: str
    references: tuple[str, ...]  # the crowd's rewrites


def training_prompts(data_dir: str | Path, scorer: Scorer, max_texts: int | None, seed: int,
                     min_toxicity: float = 0.5) -> tuple[list[Prompt], dict[str, int]]:
    """ParaDetox training sentences with their human rewrites, in an order drawn with `seed`, keeping
    those the classifier scores toxic (a sentence it already finds clean teaches nothing), up to
    `max_texts`; and the counts of what was read and skipped."""
    pairs = [p for p in data.paradetox_pairs(data_dir) if p.split == "train" and p.neutral]
    random.Random(seed).shuffle(pairs)
    kept: list[Prompt] = []
    counts = {"read": 0, "not_toxic": 0}
    block = 256
    for start in range(0, len(pairs), block):
        chunk = pairs[start:start + block]
        toxicity = scorer.toxicity([p.toxic for p in chunk])
        for pair, t in zip(chunk, toxicity.tolist()):
            counts["read"] += 1
            if t < min_toxicity:
                counts["not_toxic"] += 1
            elif max_texts is None or len(kept) < max_texts:
                kept.append(Prompt(pair.toxic, tuple(pair.neutral)))
        if max_texts is not None and len(kept) >= max_texts:
            break
    counts["kept"] = len(kept)
    return kept, counts


@dataclass
class Reward:
    """GRPO's reward function (TRL calls it with the completions and the dataset's `text` column)."""

    scorer: Scorer
    references: dict[str, tuple[str, ...]]  # by normalised text
    max_toxicity: float = 1.0  # a rewrite this toxic or more earns 0 (1.0: no gate)
    min_similarity: float = -1.0  # a rewrite less similar than this earns 0
    toxicity_weight: float = 1.0  # the exponent of (1 - toxicity)
    totals: dict[str, float] = field(default_factory=lambda: {"n": 0, "toxicity": 0.0, "similarity": 0.0,
                                                              "chrf": 0.0, "copy": 0, "empty": 0})
    __name__ = "detox_reward"  # TRL names its logged metric after the function

    def parts(self, texts: list[str], rewrites: list[str]) -> dict[str, np.ndarray]:
        """Each rewrite's toxicity, similarity and chrF, and whether it is a copy or empty."""
        n = len(rewrites)
        empty = np.array([not r.strip() for r in rewrites])
        copy = np.array([bool(r.strip()) and same_words(t, r) for t, r in zip(texts, rewrites)])
        filled = [r if r.strip() else "." for r in rewrites]
        toxicity = self.scorer.toxicity(filled) if n else np.zeros(0)
        similarity = np.clip((self.scorer.embed(texts) * self.scorer.embed(filled)).sum(axis=1), 0.0, 1.0)
        chrf = np.array([chrf_scores([r], self.references[data.normalize(t)])[0] for t, r in zip(texts, filled)])
        return {"toxicity": np.asarray(toxicity, dtype=float), "similarity": similarity, "chrf": chrf,
                "copy": copy, "empty": empty}

    def __call__(self, completions: list[str], text: list[str], **_: object) -> list[float]:
        rewrites = [prompts.parse_completion(c) for c in completions]
        p = self.parts(list(text), rewrites)
        reward = (1.0 - p["toxicity"]) ** self.toxicity_weight * p["similarity"] * p["chrf"]
        rejected = (p["toxicity"] >= self.max_toxicity) | (p["similarity"] < self.min_similarity)
        reward[p["copy"] | p["empty"] | rejected] = 0.0
        self.totals["n"] += len(rewrites)
        for key in ("toxicity", "similarity", "chrf", "copy", "empty"):
            self.totals[key] += float(np.sum(p[key]))
        return reward.tolist()

    def take_means(self) -> dict[str, float]:
        """Means since the last call (for the progress log), then start counting again."""
        n = max(1, self.totals["n"])
        means = {k: v / n for k, v in self.totals.items() if k != "n"}
        self.totals.update(n=0, toxicity=0.0, similarity=0.0, chrf=0.0, copy=0, empty=0)
        return means


def train(
    out: Path,
    scorer: Scorer,
    adapter: Path,
    data_dir: str | Path,
    base: str | None = None,
    max_texts: int | None = 1000,
    max_steps: int | None = None,
    prompts_per_step: int = 8,
    generations: int = 4,
    temperature: float = 1.0,
    max_new_tokens: int = 64,
    lr: float = 2e-5,
    seed: int = 0,
    bf16: bool = False,
    checkpoint_every: int = 25,
    resume: bool = False,
    scorer_identity: dict | None = None,
    gate: tuple[float, float] | None = None,
    toxicity_weight: float = 1.0,
) -> Trained:
    """Tune `adapter` with GRPO on toxic ParaDetox training sentences and save the tuned adapter in `out`.
    `gate`: (max toxicity, min similarity) of a rewrite that earns anything (None: no gate);
    `toxicity_weight`: the exponent of (1 - toxicity) in the reward."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    if generations < 2:
        raise ValueError("GRPO compares a group of rewrites: --generations must be at least 2")
    if toxicity_weight <= 0:
        raise ValueError("--toxicity-weight must be above 0")
    out = Path(out)
    folder = checkpoint_folder(out, resume)
    seed_everything(seed)
    texts, counts = training_prompts(data_dir, scorer, max_texts, seed)
    if not texts:
        raise ValueError(f"{data_dir}: no toxic ParaDetox training sentences to train on ({counts})")
    base = base or adapter_base(adapter)
    model, tokenizer = trainable_adapter(adapter, base, "GRPO")
    trainable, total = count_params(model)

    reward = Reward(scorer, {data.normalize(t.text): t.references for t in texts},
                    *(gate if gate is not None else (1.0, -1.0)), toxicity_weight=toxicity_weight)
    config = GRPOConfig(
        **trainer_settings(folder, seed, bf16, checkpoint_every, logging_steps=5),
        per_device_train_batch_size=prompts_per_step * generations,
        num_generations=generations,
        max_completion_length=max_new_tokens,
        temperature=temperature,
        top_k=0,
        top_p=1.0,
        beta=0.0,
        num_train_epochs=1,
        max_steps=max_steps or -1,
        learning_rate=lr,
        lr_scheduler_type="linear",
        warmup_steps=0.05,
    )
    dataset = Dataset.from_list([{"prompt": prompts.build_prompt(t.text), "text": t.text} for t in texts])
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=config, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[_Progress(reward)])
    trainer.remove_callback(PrinterCallback)
    log.info("GRPO on %d toxic ParaDetox training sentences (%s), %d rewrites each, %d sentences a step, lr %g, "
             "gate %s, toxicity weight %g, start %s", len(texts), counts, generations, prompts_per_step, lr, gate,
             toxicity_weight, adapter)
    started = time.monotonic()
    with completion_positions_only():
        result = trainer.train(resume_from_checkpoint=True if resume else None)
    seconds = time.monotonic() - started

    out.mkdir(parents=True, exist_ok=True)
    model.peft_config["default"].base_model_name_or_path = base
    model.save_pretrained(str(out))
    history = [entry for entry in trainer.state.log_history if "loss" in entry]
    last = history[-1] if history else {}
    first = history[0] if history else {}
    stats = RunStats(steps=trainer.state.global_step, examples=trainer.state.global_step * prompts_per_step,
                     seconds=round(seconds, 1), final_loss=float(last.get("loss", result.training_loss)),
                     peak_rss_mb=round(peak_rss_mb(), 1), trainable_params=trainable, total_params=total)
    info = save_run_info(out, {
        "method": "grpo",
        "start_adapter": str(adapter),
        "start_training": _start_training(adapter),
        "start_sha256": models.tree_sha256(models.resolve_path(str(adapter), "start adapter")),
        "reference": "none (beta 0)",
        "base": base,
        "base_sha256": models.tree_sha256(models.resolve_path(base, "rewriter base")),
        "seq2seq": False,
        "reward": ("(1 - classifier toxicity)" + (f" ** {toxicity_weight:g}" if toxicity_weight != 1 else "")
                   + " x embedding similarity x chrF against the human rewrites; copy or empty: 0"),
        "toxicity_weight": toxicity_weight,
        "reward_models": scorer_identity,
        "gate": {"max_toxicity": gate[0], "min_similarity": gate[1]} if gate is not None else None,
        "texts": counts,
        "generations": generations,
        "prompts_per_step": prompts_per_step,
        "temperature": temperature,
        "max_new_tokens": max_new_tokens,
        "lr": lr,
        "precision": "bf16 autocast, fp32 weights" if bf16 else "fp32",
        "seed": seed,
        "checkpoint_every": checkpoint_every,
        "first_reward": first.get("reward"),
        "last_reward": last.get("reward"),
        "last_log": last,
    }, stats)
    shutil.rmtree(folder, ignore_errors=True)
    return Trained(model, info)


class _Progress(TrainerProgress, TrainerCallback):
    """Logs each logging step (reward and its parts, speed, time left) to the log, not stdout."""

    def __init__(self, reward: Reward) -> None:
        super().__init__()
        self.reward = reward

    def report(self, state, logs, rate, eta):  # type: ignore[no-untyped-def]
        parts = self.reward.take_means()
        log.info("grpo: step %d/%d reward %.3f (std %.3f): toxicity %.3f, similarity %.3f, chrF %.3f, copies %.2f, "
                 "empty %.2f, %.1f tokens (%.3f steps/s, eta %.0f s)", state.global_step, state.max_steps,
                 logs.get("reward", float("nan")), logs.get("reward_std", float("nan")), parts.get("toxicity", 0),
                 parts.get("similarity", 0), parts.get("chrf", 0), parts.get("copy", 0), parts.get("empty", 0),
                 logs.get("completions/mean_length", float("nan")), rate, eta)
