"""A small supervised training loop shared by the classifier and the detox rewriter.

Plain PyTorch rather than a trainer framework: AdamW, linear warm-up and decay, gradient clipping,
length-bucketed batches (shuffled, then sorted by length within buckets of a few dozen batches, so
each batch pads little), and a record of what the run cost (steps, seconds, peak memory).

Checkpoints (`Checkpointing`): every K steps the loop saves what the next step depends on into one
folder: the trainable weights (the adapter for LoRA), the optimizer's and the scheduler's state, the
step, torch's and Python's random states (LoRA dropout draws from torch's), and a fingerprint of the
run (the batch schedule, which is a pure function of the data and the seed, the learning rate, the
trainable parameters' names and shapes). A resumed run checks the fingerprint, restores the state and
goes on from the next step, so it ends with the weights an uninterrupted run ends with. The folder is
written to a temporary name and renamed, so a run killed while saving keeps the previous checkpoint.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import random
import resource
import shlex
import shutil
import subprocess
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
    resumed_at_step: int = 0  # 0: not resumed; seconds then include the time before the interruption

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Checkpointing:
    """Where and how often `fit` saves its state, and whether it continues from a saved one."""

    folder: Path
    every: int = 100  # optimizer steps between saves; 0 never saves (a resume still reads one)
    resume: bool = False


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


def command_line(argv: Sequence[str]) -> str:
    """The command that made a run, quoted for a shell, without its --note (the card prints that apart)."""
    args, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--note":
            skip = True
        elif not arg.startswith("--note="):
            args.append(arg)
    return "python -m train " + shlex.join(args)


@functools.lru_cache(maxsize=1)
def code_version() -> dict | None:
    """The git commit the training code ran at, and whether the checkout had uncommitted changes to the
    code (train/, moderator/, setup.cfg): the command alone does not say which recipe it ran, since the
    data mixes change between commits. Read once, at the first call: every `python -m train` command
    calls it as it starts, so a commit made while a run trains is not taken for the run's code. None
    outside a git checkout (an installed package)."""
    root = Path(__file__).resolve().parent.parent
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True,
                                  timeout=30).stdout.strip()
        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no", "--", "train", "moderator", "setup.cfg")
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(changed)}


def described_command(stats: dict) -> str:
    """A run's command for a model card, in backquotes, with the commit of the code that ran it when
    recorded ("training command not recorded" when it is not)."""
    if not stats.get("command"):
        return "training command not recorded"
    code = stats.get("code")
    if not code:
        return f"`{stats['command']}`"
    dirty = ", with uncommitted changes" if code.get("dirty") else ""
    recorded = f"; {code['recorded']}" if code.get("recorded") else ""  # a commit filled in after the run
    return f"`{stats['command']}` (code at commit {code['commit'][:10]}{dirty}{recorded})"


def save_run_info(out: Path, info: dict, stats: RunStats) -> dict:
    """`info` plus what every run records (cost, threads, command, the code's commit, time), written to
    train_stats.json."""
    info = {**info, "torch_threads": torch.get_num_threads(), "stats": stats.to_dict(),
            "command": command_line(sys.argv[1:]), "code": code_version(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (out / "train_stats.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def fingerprint(batches: list[list[int]], params: dict[str, torch.nn.Parameter], settings: list) -> str:
    """What a checkpoint may only be resumed with: the same schedule, parameters and settings."""
    shapes = [(n, list(p.shape)) for n, p in params.items()]
    return hashlib.sha256(json.dumps([batches, shapes, settings]).encode()).hexdigest()


Optimizer = torch.optim.Optimizer
Scheduler = torch.optim.lr_scheduler.LRScheduler


def save_checkpoint(folder: Path, step: int, params: dict[str, torch.nn.Parameter], optimizer: Optimizer,
                    scheduler: Scheduler, carried: dict, mark: str) -> None:
    """The state after `step` steps, written to a temporary folder and swapped in."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save({"params": {n: p.detach().clone() for n, p in params.items()}, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(),
                "python_rng": random.getstate()}, tmp / "state.pt")
    (tmp / "checkpoint.json").write_text(json.dumps({"step": step, "fingerprint": mark, **carried}, indent=2) + "\n")
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    log.info("checkpoint: step %d saved in %s", step, folder)


def load_checkpoint(folder: Path, params: dict[str, torch.nn.Parameter], optimizer: Optimizer,
                    scheduler: Scheduler, mark: str) -> dict:
    """Restore a checkpoint's state into the model, optimizer, scheduler and random generators;
    returns its bookkeeping (step, running loss, examples, seconds)."""
    meta = json.loads((folder / "checkpoint.json").read_text())
    if meta["fingerprint"] != mark:
        raise ValueError(f"checkpoint {folder} belongs to a different run (data, seed, batch size, steps, learning "
                         "rate or model differ): use the options it was made with, or delete it")
    state = torch.load(folder / "state.pt", weights_only=True)
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(state["params"][name])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["python_rng"])
    log.info("checkpoint: resuming %s after step %d", folder, meta["step"])
    return meta


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
    checkpoint: Checkpointing | None = None,
) -> RunStats:
    """Train `model` on `batches`, one optimizer step each. The loss is `loss_fn(batch)`, by default
    the `.loss` of the model's forward. With `autocast` (torch.bfloat16), matrix products run in that
    type while weights, gradients and optimizer state stay float32 (on CPUs with bf16 units, several
    times faster). With `checkpoint`, the state is saved every `checkpoint.every` steps, and with
    `checkpoint.resume` the run continues from the saved state when there is one."""
    loss_fn = loss_fn or (lambda batch: model(**batch).loss)
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    params = list(named.values())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    total = len(batches)
    warmup = max(1, int(total * warmup_ratio))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    settings = [lr, weight_decay, warmup_ratio, grad_clip, str(autocast)]
    mark = fingerprint(batches, named, settings) if checkpoint else ""
    first, running, examples, before = 0, math.nan, 0, 0.0
    if checkpoint and checkpoint.resume:
        previous = checkpoint.folder.with_name(checkpoint.folder.name + ".old")
        if not checkpoint.folder.exists() and previous.exists():  # killed between the two renames of a save
            previous.rename(checkpoint.folder)
        if (checkpoint.folder / "checkpoint.json").exists():
            meta = load_checkpoint(checkpoint.folder, named, optimizer, scheduler, mark)
            first, running, examples, before = meta["step"], meta["running_loss"], meta["examples"], meta["seconds"]
        else:
            log.info("checkpoint: none in %s, starting at step 0", checkpoint.folder)
    model.train()
    start = time.perf_counter()
    for step in range(first, total):
        indices = batches[step]
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
            elapsed, done = time.perf_counter() - start, step + 1 - first
            log.info("%s: step %d/%d loss %.4f (%.2f steps/s, eta %.0f s)", desc, step + 1, total, running,
                     done / elapsed, (total - step - 1) * elapsed / done)
        if checkpoint and checkpoint.every and (step + 1) % checkpoint.every == 0 and step + 1 < total:
            carried = {"running_loss": running, "examples": examples,
                       "seconds": before + time.perf_counter() - start}
            save_checkpoint(checkpoint.folder, step + 1, named, optimizer, scheduler, carried, mark)
    model.eval()
    trainable, all_params = count_params(model)
    return RunStats(total, examples, round(before + time.perf_counter() - start, 1), round(running, 4),
                    round(peak_rss_mb(), 1), trainable, all_params, first)


def checkpoint_folder(out: Path, resume: bool) -> Path:
    """OUT/checkpoint of a TRL tuning run (`prefer`, `grpo`): an error where it holds an unfinished run
    and --resume was not given, or where --resume was given and it holds nothing to continue."""
    folder = Path(out) / "checkpoint"
    if folder.exists() and not resume:
        raise ValueError(f"{folder} holds an unfinished run: pass --resume to continue it, or delete it")
    if resume and not any(folder.glob("checkpoint-*")):
        raise ValueError(f"--resume: {folder} holds no checkpoint to continue from")
    return folder


def trainer_settings(folder: Path, seed: int, bf16: bool, checkpoint_every: int, logging_steps: int) -> dict:
    """The settings the TRL tuning stages share: the CPU unless a GPU is there, seeded, one checkpoint
    at a time in `folder` with the optimizer state (for --resume), nothing reported or printed."""
    return {"output_dir": str(folder), "use_cpu": not torch.cuda.is_available(), "bf16": bf16, "seed": seed,
            "data_seed": seed, "logging_steps": logging_steps,
            "save_strategy": "steps" if checkpoint_every else "no", "save_steps": checkpoint_every or 500,
            "save_total_limit": 1, "save_only_model": False, "report_to": "none", "disable_tqdm": True,
            "dataloader_num_workers": 0, "gradient_checkpointing": False}


class TrainerProgress:
    """Base of the TRL stages' progress callbacks: at each logging step (a step that logged a loss) it
    computes the speed and the time left, counting from the first logged step of this process (a
    resumed run starts at its checkpoint), and hands them to `report`, which writes the log line."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.first_step: int | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        if not logs or "loss" not in logs:
            return
        if self.first_step is None:
            self.first_step = state.global_step - args.logging_steps
        rate = max(1, state.global_step - self.first_step) / max(time.monotonic() - self.started, 1e-9)
        self.report(state, logs, rate, (state.max_steps - state.global_step) / rate)

    def report(self, state, logs: dict, rate: float, eta: float) -> None:  # type: ignore[no-untyped-def]
        raise NotImplementedError
