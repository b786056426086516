"""Fine-tune all-MiniLM-L6-v2 into the toxicity classifier: LoRA (the shipped default) or full.

    python -m train classifier --data ../shared/data --out runs/classifier-lora
    python -m train classifier --method full --out runs/classifier-full

The model is multi-label (a sigmoid per label): `toxic`, and the categories insult, threat,
identity_attack, obscene and sexual (train/classifier_data.py says which source teaches which). The
loss is binary cross-entropy over the labels each example's source knows; unknown ones are masked.
The saved config names the labels the product's toxicity score reads (`toxicity_labels`: toxic, threat
and identity_attack, the highest of the three), so insult, obscene and sexual never raise it by themselves.

LoRA: rank-16 adapters on every linear layer of the encoder (query, key, value and the dense layers;
`--lora-scope attention`: the attention query and value projections only), plus the classification head
trained in full (PEFT `modules_to_save`). The saved folder holds the adapter, the head and the
classification config (labels); its adapter_config.json names the base as `pip:all-MiniLM-L6-v2`,
which moderator resolves from the pip package, offline. Full: every weight trained, a whole model
saved (the baseline the adapter is compared with).
"""

from __future__ import annotations

import logging
import random
import shutil
from collections import Counter
from pathlib import Path

import torch

from moderator import deobfuscate, models
from train import classifier_data
from train.loop import Checkpointing, Trained, fit, save_run_info, schedule, seed_everything

log = logging.getLogger(__name__)

BASE = "pip:all-MiniLM-L6-v2"
LABELS = dict(enumerate(classifier_data.LABELS))
# A threat or an attack on a group is toxic even where the general toxicity label, taught mostly by
# rudeness, misses it ("I will make sure you never walk again"): toxicity is the highest of the three.
TOXICITY_LABELS = ["toxic", "threat", "identity_attack"]
# Davidson's tweets are 82% "offensive", mostly casual slurs of one community and era: ten thousand
# teach that; all of them would set the model's idea of ordinary swearing (see the model card).
CAPS = {("davidson", 1): 10000}
KEEP_WHOLE = ("robustness", "obfuscated", "forum_rest")  # not subsampled, up to a tenth of the set (see training_set)


def lora_targets(scope: str = "all") -> list[str]:
    """The BERT modules LoRA adapts: every linear layer of the encoder ("all", the shipped recipe since
    classifier-v11: query, key, value, and the attention output, intermediate, output and pooler `dense`
    layers) or the attention query and value projections ("attention", up to classifier-v6); the
    classification head is trained whole either way."""
    if scope == "attention":
        return ["query", "value"]
    if scope == "all":
        return ["query", "key", "value", "dense"]
    raise ValueError(f"unknown LoRA scope {scope!r}: attention or all")


def load_base(base: str, dtype: torch.dtype = torch.float32):  # -> (model, tokenizer)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = models.resolve_path(base, "classifier base")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(LABELS), id2label=LABELS, label2id={v: k for k, v in LABELS.items()},
        problem_type="multi_label_classification", dtype=dtype,
    )
    model.config.toxicity_labels = TOXICITY_LABELS
    return model, tokenizer


def training_set(examples: list[classifier_data.Example], max_train: int | None, seed: int
                 ) -> list[classifier_data.Example]:
    """The training split, with the per-source caps (CAPS) applied, subsampled to `max_train` (the
    sources in KEEP_WHOLE are kept whole, up to a tenth of it)."""
    rng = random.Random(seed)
    train_set = [e for e in examples if e.split == "train"]
    rng.shuffle(train_set)
    seen: dict[tuple[str, int], int] = {}
    kept = []
    for e in train_set:
        key = (e.source, e.toxic)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= CAPS.get(key, len(train_set)):
            kept.append(e)
    if max_train is not None and max_train < len(kept):
        # The small sources made for the model's known failures (templates, obfuscated copies) are
        # kept whole, up to a tenth of `max_train`; the rest is subsampled uniformly to fill it.
        whole = [e for e in kept if e.source in KEEP_WHOLE]
        if len(whole) > max_train // 10:
            log.warning("the sources kept whole (%s) hold %d examples, more than a tenth of --max-train: %d "
                        "of them are left out at random", ", ".join(KEEP_WHOLE), len(whole),
                        len(whole) - max_train // 10)
            whole = whole[: max_train // 10]
        rest = [e for e in kept if e.source not in KEEP_WHOLE]
        kept = whole + rest[:max(0, max_train - len(whole))]
        rng.shuffle(kept)
    return kept


def masked_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy over the known labels (labels -1 are unknown and do not count)."""
    known = labels >= 0
    losses = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, labels.clamp(min=0).to(logits.dtype), reduction="none")
    return (losses * known).sum() / known.sum().clamp(min=1)


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
    lora_scope: str = "all",
    seed: int = 0,
    checkpoint_every: int = 500,
    resume: bool = False,
    examples: list[classifier_data.Example] | None = None,
) -> Trained:
    """Train and save a classifier in `out`; returns the model and what the run cost (also written
    to train_stats.json). `examples`: the mix (default: `classifier_data.examples(data_dir)`)."""
    seed_everything(seed)
    examples = examples if examples is not None else classifier_data.examples(data_dir, seed=seed)
    train_set = training_set(examples, max_train, seed)
    model, tokenizer = load_base(base)
    base_path = models.resolve_path(base, "classifier base")
    if method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        config = LoraConfig(task_type=TaskType.SEQ_CLS, r=rank, lora_alpha=2 * rank, lora_dropout=0.1,
                            target_modules=lora_targets(lora_scope), modules_to_save=["classifier"])
        model = get_peft_model(model, config)
        # 1e-3 on every linear layer collapsed the model to one output for every text (2026-12-07)
        lr = lr or (1e-3 if lora_scope == "attention" else 3e-4)
    elif method == "full":
        lr = lr or 5e-5
    else:
        raise ValueError(f"unknown method {method!r}: lora or full")
    # Read as the product reads: look-alike letters, spaced-out letters and leetspeak as words.
    encoded = tokenizer([deobfuscate.classifier_input(e.text) for e in train_set], truncation=True,
                        max_length=max_length)
    labels = torch.tensor([e.labels for e in train_set])
    lengths = [len(ids) for ids in encoded["input_ids"]]
    batches = schedule(lengths, batch_size, seed, epochs=epochs)

    def make_batch(indices: list[int]) -> dict[str, torch.Tensor]:
        features = [{k: encoded[k][i] for k in encoded} for i in indices]
        batch = tokenizer.pad(features, return_tensors="pt")
        batch["labels"] = labels[indices]
        return batch

    log.info("training %s classifier on %d examples, %d steps, lr %g", method, len(train_set), len(batches), lr)
    def loss_fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        targets = batch.pop("labels")
        return masked_bce(model(**batch).logits, targets)

    stats = fit(model, batches, make_batch, lr=lr, loss_fn=loss_fn, desc=f"classifier-{method}",
                checkpoint=Checkpointing(out / "checkpoint", every=checkpoint_every, resume=resume))
    out.mkdir(parents=True, exist_ok=True)
    if method == "lora":
        model.peft_config["default"].base_model_name_or_path = base
        model.save_pretrained(out)
        model.base_model.model.config.save_pretrained(out)  # labels and problem type
    else:
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    shutil.rmtree(out / "checkpoint", ignore_errors=True)  # the run is complete: nothing to resume
    info = save_run_info(out, {
        "method": method,
        "base": base,
        "base_sha256": models.tree_sha256(base_path),
        "labels": list(classifier_data.LABELS),
        "toxicity_labels": TOXICITY_LABELS,
        "data": classifier_data.summary(examples),
        "caps": {f"{source} {'toxic' if toxic else 'clean'}": cap for (source, toxic), cap in CAPS.items()},
        "train_examples": len(train_set),
        "train_by_source": dict(sorted(Counter(e.source for e in train_set).items())),
        # what each source teaches and cannot, as of this run (the card prints these, not today's)
        "source_notes": {k: list(v) for k, v in classifier_data.SOURCE_NOTES.items()},
        "deobfuscation": deobfuscate.READS,
        "subsampled": max_train is not None,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "max_length": max_length,
        "rank": rank if method == "lora" else None,
        "lora_scope": lora_scope if method == "lora" else None,
        "seed": seed,
    }, stats)
    return Trained(model, info)
