"""Fine-tune the detox rewriter on ParaDetox: LoRA (the shipped default) or full fine-tuning.

    python -m train detox --method lora --out runs/detox-lora --max-steps 1200
    python -m train detox --method full --out runs/detox-full --max-steps 800
    python -m train detox --out runs/detox-self --fp32 --extra-pairs runs/selftrain/kept.jsonl --resume

One example per (toxic sentence, human rewrite) pair of the training split, built with the prompt
template that inference uses (`moderator.prompts`), loss on the rewrite only. Decoder-only bases
(Gemma-3-270M by default) and encoder-decoder bases (T5, BART: the prompt is the encoder input,
the rewrite the target) are both supported.

For decoders the language-model head is applied only where there is loss (the rewrite tokens):
with Gemma's 262k-token vocabulary the head costs more per token than the whole transformer body,
and the prompt is about three quarters of each example.

Self-training adds pairs of its own (`extra_pairs`: train/selftrain_filter.py's kept.jsonl) to the
ParaDetox pairs; train_stats.json says how many of each. A run saves a checkpoint into OUT/checkpoint
every `checkpoint_every` steps and, with `resume`, continues from it to the same weights an
uninterrupted run reaches (train/loop.py); the folder is removed once the model is saved.
"""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path

import torch

from moderator import models, prompts
from moderator.causal_lm import load_lm
from train import data
from train.loop import Checkpointing, Trained, fit, save_run_info, schedule, seed_everything
from train.selftrain_filter import sampled_by

log = logging.getLogger(__name__)

BASE = "pip:gemma-3-270m"
IGNORE = -100


def lora_targets(model: torch.nn.Module, scope: str = "all") -> list[str] | str | None:
    """The modules LoRA adapts: "all" linear layers of the body (attention and MLP; PEFT's
    "all-linear", which leaves the LM head alone) or "attention" projections only."""
    if scope == "all":
        return "all-linear"
    if scope != "attention":
        raise ValueError(f"unknown LoRA scope {scope!r}: all or attention")
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    if {"q_proj", "k_proj", "v_proj", "o_proj"} <= names:
        return ["q_proj", "k_proj", "v_proj", "o_proj"]  # Llama, Gemma, Qwen, ...
    if {"q_proj", "k_proj", "v_proj", "out_proj"} <= names:
        return ["q_proj", "k_proj", "v_proj", "out_proj"]  # BART
    if {"q", "k", "v", "o"} <= names:
        return ["q", "k", "v", "o"]  # T5
    return None  # PEFT's default for the architecture


def load_base(base: str, dtype: torch.dtype):  # -> (model, tokenizer, is_seq2seq)
    """The base as the transformers engine loads it (`moderator.causal_lm.load_lm`)."""
    return load_lm(models.resolve_path(base, "rewriter base"), dtype)


def encode_decoder_example(tokenizer, post: str, rewrite: str, max_length: int) -> tuple[list[int], list[int]]:  # type: ignore[no-untyped-def]
    prompt, completion = prompts.training_example(post, rewrite)
    prompt_ids = tokenizer(prompt)["input_ids"]  # as the engines tokenize it: with special tokens
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = (prompt_ids + completion_ids)[:max_length]
    labels = ([IGNORE] * len(prompt_ids) + completion_ids)[:max_length]
    return ids, labels


def completion_loss(causal_lm: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Next-token cross-entropy on the labelled positions, with the LM head applied only there."""
    hidden = causal_lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    targets = batch["labels"][:, 1:]
    mask = targets != IGNORE
    logits = causal_lm.lm_head(hidden[:, :-1][mask]).float()
    cap = getattr(causal_lm.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return torch.nn.functional.cross_entropy(logits, targets[mask])


def training_examples(data_dir: str, seed: int, max_pairs: int | None = None,
                      extra_pairs: Path | None = None) -> tuple[list[tuple[str, str]], dict]:
    """(post, rewrite) examples: one per ParaDetox training pair (subsampled to `max_pairs`), then the
    extra pairs that are not already among them; and the counts for train_stats.json."""
    pairs = [p for p in data.paradetox_pairs(data_dir) if p.split == "train"]
    examples = [(p.toxic, n) for p in pairs for n in p.neutral]
    if max_pairs is not None and max_pairs < len(examples):
        examples = random.Random(seed).sample(examples, max_pairs)
    counts: dict = {"train_sentences": len(pairs), "paradetox_pairs": len(examples), "extra_pairs": 0}
    if extra_pairs is not None:
        extra, dropped = data.extra_pairs(extra_pairs)
        known = {(data.normalize(a), data.normalize(b)) for a, b in examples}
        fresh = [(a, b) for a, b in extra if (data.normalize(a), data.normalize(b)) not in known]
        dropped["already_in_paradetox"] = len(extra) - len(fresh)
        examples = examples + fresh
        counts.update(extra_pairs=len(fresh), extra_pairs_file=str(extra_pairs), extra_pairs_dropped=dropped,
                      extra_pairs_by=sampled_by(Path(extra_pairs)))
    return examples, counts


def train(
    data_dir: str,
    out: Path,
    method: str = "lora",
    base: str = BASE,
    epochs: float = 1.0,
    max_steps: int | None = None,
    batch_size: int = 16,
    lr: float | None = None,
    rank: int = 16,
    lora_scope: str = "all",
    max_length: int = 192,
    seed: int = 0,
    max_pairs: int | None = None,
    bf16: bool = True,
    extra_pairs: Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
) -> Trained:
    """Train and save a rewriter in `out`; returns the model and what the run cost (also written to
    train_stats.json). `max_pairs` subsamples the ParaDetox pairs; the extra pairs are all added."""
    checkpoint = Checkpointing(Path(out) / "checkpoint", checkpoint_every, resume)
    if checkpoint.folder.exists() and not resume:
        raise ValueError(f"{checkpoint.folder} holds an unfinished run: pass --resume to continue it, or delete it")
    seed_everything(seed)
    examples, counts = training_examples(data_dir, seed, max_pairs, extra_pairs)
    model, tokenizer, seq2seq = load_base(base, torch.float32)
    if method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        config = LoraConfig(task_type=TaskType.SEQ_2_SEQ_LM if seq2seq else TaskType.CAUSAL_LM, r=rank,
                            lora_alpha=2 * rank, lora_dropout=0.05, target_modules=lora_targets(model, lora_scope))
        model = get_peft_model(model, config)
        lr = lr or 5e-4
    elif method == "full":
        lr = lr or 3e-5
    else:
        raise ValueError(f"unknown method {method!r}: lora or full")
    if seq2seq:
        encoded = [(tokenizer(prompts.build_prompt(post), truncation=True, max_length=max_length)["input_ids"],
                    tokenizer(text_target=prompts.normalize_post(rewrite), truncation=True, max_length=max_length)["input_ids"])
                   for post, rewrite in examples]
    else:
        encoded = [encode_decoder_example(tokenizer, post, rewrite, max_length) for post, rewrite in examples]
    lengths = [len(ids) for ids, _ in encoded]
    batches = schedule(lengths, batch_size, seed, epochs=epochs, max_steps=max_steps)
    pad = tokenizer.pad_token_id

    def make_batch(indices: list[int]) -> dict[str, torch.Tensor]:
        if seq2seq:
            width, target_width = max(len(encoded[i][0]) for i in indices), max(len(encoded[i][1]) for i in indices)
            ids = torch.tensor([encoded[i][0] + [pad] * (width - len(encoded[i][0])) for i in indices])
            labels = torch.tensor([encoded[i][1] + [IGNORE] * (target_width - len(encoded[i][1])) for i in indices])
            return {"input_ids": ids, "attention_mask": (ids != pad).long(), "labels": labels}
        width = max(lengths[i] for i in indices)
        ids = torch.tensor([encoded[i][0] + [pad] * (width - lengths[i]) for i in indices])
        mask = torch.tensor([[1] * lengths[i] + [0] * (width - lengths[i]) for i in indices])
        labels = torch.tensor([encoded[i][1] + [IGNORE] * (width - lengths[i]) for i in indices])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    causal_lm = model.get_base_model() if method == "lora" else model
    loss_fn = None if seq2seq else (lambda batch: completion_loss(causal_lm, batch))
    log.info("training %s rewriter on %d pairs (%d ParaDetox, %d extra), %d steps of %d, lr %g", method,
             len(examples), counts["paradetox_pairs"], counts["extra_pairs"], len(batches), batch_size, lr)
    stats = fit(model, batches, make_batch, lr=lr, loss_fn=loss_fn, log_every=10, desc=f"detox-{method}",
                autocast=torch.bfloat16 if bf16 else None,
                checkpoint=checkpoint if checkpoint_every or resume else None)
    out.mkdir(parents=True, exist_ok=True)
    if method == "lora":
        model.peft_config["default"].base_model_name_or_path = base
        model.save_pretrained(out)
    else:
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    base_path = models.resolve_path(base, "rewriter base")
    info = save_run_info(out, {
        "method": method,
        "base": base,
        "base_sha256": models.tree_sha256(base_path),
        "seq2seq": seq2seq,
        "train_pairs": len(examples),
        **counts,
        "steps": len(batches),
        "epochs_seen": round(len(batches) * batch_size / max(1, len(examples)), 3),
        "batch_size": batch_size,
        "lr": lr,
        "rank": rank if method == "lora" else None,
        "lora_scope": lora_scope if method == "lora" else None,
        "max_length": max_length,
        "precision": "bf16 autocast, fp32 weights" if bf16 else "fp32",
        "seed": seed,
        "checkpoint_every": checkpoint_every,
    }, stats)
    for suffix in ("", ".tmp", ".old"):  # the saved model supersedes the checkpoint (and a half-made one)
        shutil.rmtree(checkpoint.folder.with_name(checkpoint.folder.name + suffix), ignore_errors=True)
    return Trained(model, info)
