"""Fine-tune all-MiniLM-L6-v2 into the toxicity classifier: LoRA (the shipped default) or full.

    python -m train classifier --data ../shared/data --out runs/classifier-lora
    python -m train classifier --method full --out runs/classifier-full

LoRA: rank-16 adapters on the attention query and value projections, plus the classification head
trained in full (PEFT `modules_to_save`). The saved folder holds the adapter, the head and the
classification config (labels); its adapter_config.json names the base as `pip:all-MiniLM-L6-v2`,
which moderator resolves from the pip package, offline. Full: every weight trained, a whole model
saved (the baseline the adapter is compared with).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import torch

from moderator import models
from train import data
from train.loop import Trained, fit, save_run_info, schedule, seed_everything

log = logging.getLogger(__name__)

BASE = "pip:all-MiniLM-L6-v2"
LABELS = {0: "neutral", 1: "toxic"}


def load_base(base: str, dtype: torch.dtype = torch.float32):  # -> (model, tokenizer)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = models.resolve_path(base, "classifier base")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=2, id2label=LABELS, label2id={v: k for k, v in LABELS.items()},
        problem_type="single_label_classification", dtype=dtype,
    )
    return model, tokenizer


def train(
    data_dir: str,
    out: Path,
    method: str = "lora",
    base: str = BASE,
    epochs: float = 1.0,
    max_train: int | None = None,
    batch_size: int = 32,
    lr: float | None = None,
    max_length: int = 128,
    rank: int = 16,
    seed: int = 0,
) -> Trained:
    """Train and save a classifier in `out`; returns the model and what the run cost (also written
    to train_stats.json)."""
    seed_everything(seed)
    examples = data.toxicity_examples(data_dir)
    train_set = [e for e in examples if e.split == "train"]
    if max_train is not None and max_train < len(train_set):
        train_set = random.Random(seed).sample(train_set, max_train)
    model, tokenizer = load_base(base)
    base_path = models.resolve_path(base, "classifier base")
    if method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        config = LoraConfig(task_type=TaskType.SEQ_CLS, r=rank, lora_alpha=2 * rank, lora_dropout=0.1,
                            target_modules=["query", "value"], modules_to_save=["classifier"])
        model = get_peft_model(model, config)
        lr = lr or 1e-3
    elif method == "full":
        lr = lr or 5e-5
    else:
        raise ValueError(f"unknown method {method!r}: lora or full")
    encoded = tokenizer([e.text for e in train_set], truncation=True, max_length=max_length)
    labels = torch.tensor([e.label for e in train_set])
    lengths = [len(ids) for ids in encoded["input_ids"]]
    batches = schedule(lengths, batch_size, seed, epochs=epochs)

    def make_batch(indices: list[int]) -> dict[str, torch.Tensor]:
        features = [{k: encoded[k][i] for k in encoded} for i in indices]
        batch = tokenizer.pad(features, return_tensors="pt")
        batch["labels"] = labels[indices]
        return batch

    log.info("training %s classifier on %d examples, %d steps, lr %g", method, len(train_set), len(batches), lr)
    stats = fit(model, batches, make_batch, lr=lr, desc=f"classifier-{method}")
    out.mkdir(parents=True, exist_ok=True)
    if method == "lora":
        model.peft_config["default"].base_model_name_or_path = base
        model.save_pretrained(out)
        model.base_model.model.config.save_pretrained(out)  # labels and problem type
    else:
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    info = save_run_info(out, {
        "method": method,
        "base": base,
        "base_sha256": models.tree_sha256(base_path),
        "data": data.summary(examples),
        "train_examples": len(train_set),
        "subsampled": max_train is not None and max_train < sum(e.split == "train" for e in examples),
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "max_length": max_length,
        "rank": rank if method == "lora" else None,
        "seed": seed,
    }, stats)
    return Trained(model, info)
