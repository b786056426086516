"""A small supervised training loop shared by the classifier and the detox rewriter.

Plain PyTorch rather than a trainer framework: AdamW, linear warm-up and decay, gradient clipping,
length-bucketed batches (shuffled, then sorted by length within buckets of a few dozen batches, so
each batch pads little), and a record of what the run cost (steps, seconds, peak memory).
"""

from __future__ import annotations

import json
import logging
import math
import random
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)


@dataclass
class RunStats:
    steps: int
    examples: int
    seconds: float
    final_loss: float
    peak_rss_mb: float
    trainable_params: int
    total_params: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Trained:
    model: torch.nn.Module
    info: dict


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def count_params(model: torch.nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def bucketed_batches(lengths: Sequence[int], batch_size: int, seed: int, bucket: int = 50) -> list[list[int]]:
    """Batches of indices: shuffled, grouped by similar length within buckets, batch order shuffled."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches = []
    span = batch_size * bucket
    for start in range(0, len(order), span):
        chunk = sorted(order[start:start + span], key=lambda i: lengths[i])
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def schedule(lengths: Sequence[int], batch_size: int, seed: int, epochs: float = 1.0,
             max_steps: int | None = None) -> list[list[int]]:
    """Every optimizer step's batch: `epochs` passes (the last one may be partial), or exactly
    `max_steps` steps when given (as many passes as that takes), each pass reshuffled."""
    batches: list[list[int]] = []
    epoch = 0
    while (max_steps is not None and len(batches) < max_steps) or (max_steps is None and epoch < epochs):
        epoch_batches = bucketed_batches(lengths, batch_size, seed + epoch)
        if max_steps is None and epoch + 1 > epochs:
            epoch_batches = epoch_batches[: int(len(epoch_batches) * (epochs - epoch))]
        batches.extend(epoch_batches)
        epoch += 1
    return batches[:max_steps] if max_steps is not None else batches


def save_run_info(out: Path, info: dict, stats: RunStats) -> dict:
    """`info` plus what every run records (cost, threads, command, time), written to train_stats.json."""
    info = {**info, "torch_threads": torch.get_num_threads(), "stats": stats.to_dict(),
            "command": " ".join(["python -m train", *sys.argv[1:]]), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (out / "train_stats.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def fit(
    model: torch.nn.Module,
    batches: list[list[int]],
    make_batch: Callable[[list[int]], dict[str, torch.Tensor]],
    lr: float,
    loss_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None,
    warmup_ratio: float = 0.06,
    weight_decay: float = 0.01,
    grad_clip: float = 1.0,
    log_every: int = 50,
    desc: str = "training",
    autocast: torch.dtype | None = None,
) -> RunStats:
    """Train `model` on `batches`, one optimizer step each. The loss is `loss_fn(batch)`, by default
    the `.loss` of the model's forward. With `autocast` (torch.bfloat16), matrix products run in that
    type while weights, gradients and optimizer state stay float32 (on CPUs with bf16 units, several
    times faster)."""
    loss_fn = loss_fn or (lambda batch: model(**batch).loss)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    total = len(batches)
    warmup = max(1, int(total * warmup_ratio))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    start, running, examples = time.perf_counter(), math.nan, 0
    for step, indices in enumerate(batches):
        batch = make_batch(indices)
        with torch.autocast("cpu", dtype=autocast, enabled=autocast is not None):
            loss = loss_fn(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        examples += len(indices)
        value = loss.item()
        running = value if math.isnan(running) else 0.98 * running + 0.02 * value
        if (step + 1) % log_every == 0 or step + 1 == total:
            elapsed = time.perf_counter() - start
            log.info("%s: step %d/%d loss %.4f (%.2f steps/s, eta %.0f s)", desc, step + 1, total, running,
                     (step + 1) / elapsed, (total - step - 1) * elapsed / (step + 1))
    model.eval()
    trainable, all_params = count_params(model)
    return RunStats(total, examples, round(time.perf_counter() - start, 1), round(running, 4),
                    round(peak_rss_mb(), 1), trainable, all_params)
