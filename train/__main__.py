"""Train and evaluate moderator's default models.

\b
    python -m train classifier --out runs/classifier-lora
    python -m train classifier --method full --out runs/classifier-full
    python -m train eval-classifier runs/classifier-lora runs/classifier-full
    python -m train detox --method lora --out runs/detox-lora --max-steps 1200
    python -m train selftrain-candidates --out runs/selftrain/candidates.jsonl --max-texts 12000 --max-minutes 38
    python -m train selftrain-filter runs/selftrain/candidates.jsonl --out runs/selftrain/kept.jsonl
    python -m train detox --out runs/detox-self --fp32 --extra-pairs runs/selftrain/kept.jsonl --resume
    python -m train prefer runs/selftrain/preferences.jsonl --adapter runs/detox-self --out runs/detox-dpo --fp32
    python -m train grpo --adapter runs/detox-dpo --out runs/detox-grpo --max-texts 1000
    python -m train eval-detox lora=runs/detox-lora full=runs/detox-full
    python -m train rewritability --out moderator/bundled/rewritability --compare --reference
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from train.classifier_data import TOXIC_WORD_MIN_SHARE, TOXIC_WORD_MIN_TEXTS

DEFAULT_DATA = str(Path(__file__).resolve().parents[1].parent / "shared" / "data")


def _setup(threads: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if threads:
        torch.set_num_threads(threads)
    from train.loop import code_version

    code_version()  # the commit the run starts at (train_stats.json records it when the run ends)


def _record_note(out: Path, note: str | None) -> None:
    """Keep a sentence about this run in OUT/train_stats.json (`note`), which the model card prints beside
    the run's training (give it again with --resume: the stats are written when the run completes)."""
    if not note:
        return
    path = Path(out) / "train_stats.json"
    stats = json.loads(path.read_text())
    stats["note"] = note
    path.write_text(json.dumps(stats, indent=2) + "\n")


note_option = click.option("--note", help="A sentence about this run for the model card (why it was made, what "
                                          "differed), kept in OUT/train_stats.json.")


def _named(specs) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """NAME=PATH arguments as {name: path}; a bare PATH is named after its folder."""
    return dict(spec.split("=", 1) if "=" in spec else (Path(spec).name, spec) for spec in specs)


def _print_table(table: dict, format_table, json_out: Path | None) -> None:  # type: ignore[no-untyped-def]
    click.echo(format_table(table))
    if json_out:
        import json

        json_out.write_text(json.dumps(table, indent=2) + "\n")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Train and evaluate moderator's default models (classifier, detox rewriter, rewritability)."""


data_option = click.option("--data", default=DEFAULT_DATA, show_default=True, envvar="MODERATOR_DATA",
                           help="Folder laid out like ../shared/data, or hf:ORG/NAME for the hub's copies.")
threads_option = click.option("--threads", type=int, default=0, help="torch CPU threads (0: torch's default).")


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the trained model.")
@click.option("--method", type=click.Choice(["lora", "full"]), default="lora", show_default=True)
@click.option("--base", default="pip:all-MiniLM-L6-v2", show_default=True, help="Base encoder: folder, hub id or pip:NAME.")
@data_option
@click.option("--epochs", type=float, default=1.0, show_default=True)
@click.option("--max-train", type=int, help="Subsample the training split to this many examples.")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--lr", type=float, help="Learning rate. [default: 3e-4 lora on all layers, 1e-3 lora on attention, "
              "5e-5 full]")
@click.option("--rank", type=int, default=16, show_default=True, help="LoRA rank.")
@click.option("--lora-scope", type=click.Choice(["all", "attention"]), default="all", show_default=True,
              help="LoRA on every linear layer of the encoder, or on the attention query and value projections only.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--cascade/--no-cascade", default=True, show_default=True,
              help="Also train the cheap first-stage model (hashed n-grams) into the same folder.")
@click.option("--checkpoint-every", type=int, default=500, show_default=True,
              help="Save the training state every N steps (in OUT/checkpoint; removed when the run completes).")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint (same data and settings).")
@threads_option
def classifier(out, method, base, data, epochs, max_train, batch_size, lr, rank, lora_scope, seed, cascade,
               checkpoint_every, resume, threads) -> None:
    """Fine-tune all-MiniLM-L6-v2 as the multi-label toxicity classifier (toxic + five categories).

    The training mix is every labelled source of the data folder (train/classifier_data.py).

    \b
    Example (about 30 minutes on 2 CPU cores):
      python -m train classifier --out runs/classifier-lora
      python -m train classifier --out runs/classifier-lora --resume   # after an interruption
    """
    _setup(threads)
    from train import classifier as trainer

    info = trainer.train(data, out, method=method, base=base, epochs=epochs, max_train=max_train,
                         batch_size=batch_size, lr=lr, rank=rank, lora_scope=lora_scope, seed=seed,
                         checkpoint_every=checkpoint_every, resume=resume).info
    from train import calibrate as calibrator

    calibrator.calibrate(out, data, command=f"python -m train calibrate {out}")
    if cascade:
        from train import cascade as cascade_trainer

        cascade_trainer.train(data, out, seed=seed, max_train=max_train)
    click.echo(f"saved {method} classifier to {out} ({info['stats']['seconds']} s, "
               f"{info['stats']['trainable_params']} trainable parameters)", err=True)


@cli.command("eval-classifier")
@click.argument("models", nargs=-1, required=True)
@data_option
@click.option("--split", type=click.Choice(["dev", "train"]), default="dev", show_default=True)
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Also write the table as JSON here.")
@threads_option
def eval_classifier(models, data, split, json_out, threads) -> None:
    """Per source: ROC-AUC, false-positive rate and recall at the flag decision, calibration error;
    per category: ROC-AUC. Beside alt-profanity-check.

    MODELS are classifier folders (or hub ids), each optionally NAME=PATH.

    \b
    Example:
      python -m train eval-classifier lora=moderator/bundled/classifier full=runs/classifier-full
    """
    _setup(threads)
    from train import classifier_eval

    table = classifier_eval.evaluate(_named(models), data, split)
    _print_table(table, classifier_eval.format_table, json_out)


@cli.command("toxic-words")
@click.option("--out", type=click.Path(path_type=Path), default="moderator/bundled/toxic_words.txt", show_default=True)
@data_option
@click.option("--min-texts", type=click.IntRange(min=1), default=TOXIC_WORD_MIN_TEXTS, show_default=True,
              help="Training texts a word must appear in.")
@click.option("--min-share", type=click.FloatRange(0.0, 1.0), default=TOXIC_WORD_MIN_SHARE, show_default=True,
              help="Share of those texts that must be toxic.")
def toxic_words(out, data, min_texts, min_share) -> None:
    """Write the words a slip may be read as before scoring (moderator/deobfuscate.py, readings).

    Words that mark toxic posts in the classifier's training data: held by at least --min-texts
    labelled training texts of the real sources (the project's templates left out), at least
    --min-share of them toxic.

    \b
    Example:
      python -m train toxic-words --out moderator/bundled/toxic_words.txt
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    from train import classifier_data

    words, stats = classifier_data.toxic_words(data, min_texts, min_share)
    command = "python -m train toxic-words" + (
        f" --min-texts {min_texts}" if min_texts != TOXIC_WORD_MIN_TEXTS else "") + (
        f" --min-share {min_share}" if min_share != TOXIC_WORD_MIN_SHARE else "")
    header = [f"# Written by `{command}` (train/classifier_data.py, toxic_words): dictionary words of three letters or more",
              f"# held by at least {min_texts} labelled training texts of the classifier's real sources, at least "
              f"{min_share:.0%} of them toxic, less names of groups", f"# ({stats['texts']:,} texts, {stats['toxic_share']:.0%} toxic; "
              "the project's templates left out). moderator/deobfuscate.py reads an unknown word that is a",
              "# slip of one of these as that word too (readings), and the classifier keeps the most toxic reading."]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(header + words) + "\n", encoding="utf-8")
    click.echo(f"{out}: {len(words):,} words ({json.dumps(stats['sources'])}); group names left out: "
               f"{', '.join(stats['group_names_left_out'])}")


@cli.command()
@click.argument("model", type=click.Path(path_type=Path, exists=True, file_okay=False))
@data_option
@click.option("--prior", type=float, default=0.2, show_default=True,
              help="Share of toxic posts the probabilities are calibrated for (real forum dumps: 5-20%; at 0.2 the default flag decision, toxicity >= 0.5, is the dev operating point nearest FPR 3% / recall 85%).")
@threads_option
def calibrate(model, data, prior, threads) -> None:
    """Fit the classifier's calibration (calibration.json, calibration.png) on the dev split.

    `python -m train classifier` runs this at the end of training; run it again for another prior.

    \b
    Example:
      python -m train calibrate runs/classifier-lora --prior 0.1   # for a forum with 10% toxic posts
    """
    _setup(threads)
    if not 0 < prior < 1:
        raise click.BadParameter("must be between 0 and 1", param_hint="--prior")
    from train import calibrate as calibrator

    result = calibrator.calibrate(model, data, prior, command=f"python -m train calibrate {model} --prior {prior}")
    for label, m in result.meta["metrics"].items():
        click.echo(f"{label}: scale {result.scale[label]:.3f} bias {result.bias[label]:+.3f}, "
                   f"ECE {m['ece_raw']:.4f} -> {m['ece']:.4f} (n {m['n']}, {m['positives']} positive)")
    for source, m in result.meta["per_source"].items():
        click.echo(f"  {source}: ECE {m['ece_raw']:.4f} -> {m['ece']:.4f} (n {m['n']})")


@cli.command()
@click.argument("model", type=click.Path(path_type=Path, exists=True, file_okay=False))
@data_option
@click.option("--prior", type=float, default=0.2, show_default=True,
              help="Share of toxic posts the blended probability is calibrated for (as `calibrate`).")
@click.option("--weights", default="1.0,0.9,0.8,0.7,0.6,0.5", show_default=True,
              help="Comma-separated weights of the classifier's log-odds to try (the rest is the n-gram model's).")
@threads_option
def blend(model, data, prior, weights, threads) -> None:
    """Blend a calibrated classifier's toxicity with its cascade's n-gram model (moderator/blend.py).

    Picks the weight that ranks the dev sources best on average without lowering any source's ROC-AUC
    below the classifier's alone, fits the blended probability at PRIOR, and writes blend.json into
    MODEL (none when no weight qualifies).

    \b
    Example:
      python -m train blend runs/classifier-lora
    """
    _setup(threads)
    from train import blend as blender

    try:
        grid = tuple(float(w) for w in weights.split(","))
    except ValueError:
        raise click.BadParameter(f"{weights!r} is not a comma-separated list of numbers", param_hint="--weights")
    if any(not 0.0 <= w <= 1.0 for w in grid):
        raise click.BadParameter("weights lie in [0, 1]", param_hint="--weights")
    result = blender.fit(model, data, prior, grid, command=f"python -m train blend {model} --prior {prior}")
    if result is None:
        click.echo("no blend: no weight ranks every dev source at least as well as the classifier alone", err=True)
        return
    click.echo(f"weight {result.weight:.2f}, scale {result.scale:.3f}, bias {result.bias:+.3f}, "
               f"ECE {result.meta['ece']:.4f} at prior {prior}")
    for w, aucs in result.meta["roc_auc"].items():
        click.echo(f"  weight {w}: " + ", ".join(f"{s} {a:.4f}" for s, a in aucs.items()))


@cli.command("bundle-classifier")
@click.argument("model", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--compare", multiple=True, help="NAME=PATH of another classifier to evaluate beside it (repeatable).")
@click.option("--robustness", "robustness_json", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="JSON written by `benchmarks/robustness.py --classifier MODEL --json F`, for the card.")
@click.option("--evaluation", "evaluation_json", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Reuse the table `eval-classifier MODEL ... --json F` wrote (its first model must be MODEL) "
                   "instead of evaluating again.")
@data_option
@threads_option
def bundle_classifier(model, compare, robustness_json, evaluation_json, data, threads) -> None:
    """Evaluate a trained classifier and ship it as moderator's default, with its model card.

    \b
    Example:
      python benchmarks/robustness.py --classifier runs/classifier-lora --json runs/robustness.json
      python -m train bundle-classifier runs/classifier-lora --compare before=moderator/bundled/classifier \\
          --robustness runs/robustness.json
    """
    _setup(threads)
    import json

    from train import bundle, classifier_eval

    if evaluation_json:
        table = json.loads(evaluation_json.read_text())
        first = next(iter(next(iter(table["sources"].values()))))
        table = classifier_eval.rename(table, first, "shipped (" + Path(model).name + ")")
    else:
        named = {"shipped (" + Path(model).name + ")": str(model), **_named(compare)}
        table = classifier_eval.evaluate(named, data)
    click.echo(classifier_eval.format_table(table))
    robustness = json.loads(robustness_json.read_text()) if robustness_json else None
    click.echo(f"bundled into {bundle.bundle_classifier(Path(model), table, robustness=robustness)}", err=True)


@cli.command()
@click.option("--classifier", "classifier_dir", type=click.Path(path_type=Path, exists=True, file_okay=False),
              required=True, help="Trained classifier folder; the cascade is saved into it.")
@data_option
@click.option("--max-train", type=int, help="Subsample the training split to this many examples.")
@click.option("--margin", type=float, default=0.005, show_default=True,
              help="Share of the transformer's calibration flags the threshold may clear.")
@click.option("--target", type=float, default=0.01, show_default=True,
              help="Largest flag loss on every dev source for the cascade to be on by default.")
@click.option("--seed", type=int, default=0, show_default=True)
@threads_option
def cascade(classifier_dir, data, max_train, margin, target, seed, threads) -> None:
    """Train and calibrate the cascade's first stage against a trained classifier.

    \b
    Example:
      python -m train cascade --classifier runs/classifier-lora
    """
    _setup(threads)
    from train import cascade as trainer

    meta = trainer.train(data, classifier_dir, seed=seed, max_train=max_train, margin=margin, target=target)
    click.echo(f"cascade threshold {meta['threshold']:.4f}; dev: {meta['dev']['all']}; "
               f"meets target: {meta['meets_target']}", err=True)


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the trained rewriter.")
@click.option("--method", type=click.Choice(["lora", "full"]), default="lora", show_default=True)
@click.option("--base", default="pip:gemma-3-270m", show_default=True,
              help="Base model: folder, hub id or pip:NAME; decoder-only or encoder-decoder (T5, BART).")
@data_option
@click.option("--epochs", type=float, default=1.0, show_default=True, help="Ignored when --max-steps is given.")
@click.option("--max-steps", type=int, help="Stop after this many optimizer steps.")
@click.option("--max-pairs", type=int,
              help="Subsample the ParaDetox training pairs to this many (extra pairs are all kept).")
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--lr", type=float, help="Learning rate. [default: 5e-4 lora, 3e-5 full]")
@click.option("--rank", type=int, default=16, show_default=True, help="LoRA rank.")
@click.option("--lora-scope", type=click.Choice(["all", "attention"]), default="all", show_default=True,
              help="Adapt every linear layer of the body, or the attention projections only.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--bf16/--fp32", default=True, show_default=True,
              help="bfloat16 autocast for the matrix products (weights stay float32).")
@click.option("--extra-pairs", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="JSONL of {toxic, neutral} pairs added to the ParaDetox pairs (selftrain-filter's kept.jsonl); "
                   "pairs whose toxic text is in the dev split are dropped.")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=100, show_default=True,
              help="Save a checkpoint into OUT/checkpoint every this many steps (0: never).")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint (same options as the cut-off run).")
@note_option
@threads_option
def detox(out, method, base, data, epochs, max_steps, max_pairs, batch_size, lr, rank, lora_scope, seed, bf16,
          extra_pairs, checkpoint_every, resume, note, threads) -> None:
    """Fine-tune the detox rewriter on ParaDetox pairs (LoRA or full), plus self-training pairs.

    \b
    Example (the shipped LoRA on Gemma-3-270M, 1200 steps: about 50 minutes on 2 CPU cores):
      python -m train detox --method lora --out runs/detox-lora --max-steps 1200
    With self-training pairs, resumable after an interruption:
      python -m train detox --out runs/detox-self --fp32 --extra-pairs runs/selftrain/kept.jsonl --resume
    python -m train prefer runs/selftrain/preferences.jsonl --adapter runs/detox-self --out runs/detox-dpo --fp32
    """
    _setup(threads)
    from train import detox as trainer

    try:
        info = trainer.train(data, out, method=method, base=base, epochs=epochs, max_steps=max_steps,
                             batch_size=batch_size, lr=lr, rank=rank, lora_scope=lora_scope, seed=seed,
                             max_pairs=max_pairs, bf16=bf16, extra_pairs=extra_pairs,
                             checkpoint_every=checkpoint_every, resume=resume).info
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    _record_note(out, note)
    click.echo(f"saved {method} rewriter to {out} ({info['stats']['seconds']} s, {info['steps']} steps, "
               f"{info['stats']['trainable_params']} trainable parameters)", err=True)


@cli.command()
@click.argument("preferences", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--adapter", type=click.Path(path_type=Path, exists=True, file_okay=False),
              default=str(Path(__file__).resolve().parents[1] / "moderator" / "bundled" / "rewriter"),
              show_default="the shipped rewriter", help="The LoRA adapter to start from; also the reference model.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the tuned adapter.")
@click.option("--base", help="Base model of the adapter. [default: the one in its adapter_config.json]")
@click.option("--epochs", type=float, default=1.0, show_default=True, help="Ignored when --max-steps is given.")
@click.option("--max-steps", type=int, help="Stop after this many optimizer steps.")
@click.option("--max-pairs", type=int, help="Subsample the preference pairs to this many.")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Preference pairs per step.")
@click.option("--lr", type=float, default=2e-5, show_default=True)
@click.option("--beta", type=float, default=0.1, show_default=True, help="DPO's beta (strength of the reference).")
@click.option("--sft-weight", type=float, default=1.0, show_default=True,
              help="Weight of the chosen rewrite's log-likelihood added to the DPO loss (0: plain DPO).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--bf16/--fp32", default=True, show_default=True, help="bfloat16 autocast (weights stay float32).")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=50, show_default=True,
              help="Save a checkpoint into OUT/checkpoint every this many steps (0: never).")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint (same options as the cut-off run).")
@note_option
@threads_option
def prefer(preferences, adapter, out, base, epochs, max_steps, max_pairs, batch_size, lr, beta, sft_weight, seed,
           bf16, checkpoint_every, resume, note, threads) -> None:
    """Preference-tune a LoRA rewriter with DPO (TRL) on selftrain-filter's preference pairs.

    The reference model is the start adapter, frozen beside the trained copy on the same base.

    \b
    Example (on the shipped adapter, resumable):
      python -m train prefer runs/selftrain/preferences.jsonl --out runs/detox-dpo --fp32 --resume
    """
    _setup(threads)
    from train import prefer as trainer

    try:
        info = trainer.train(preferences, adapter, out, base=base, epochs=epochs, max_steps=max_steps,
                             batch_size=batch_size, lr=lr, beta=beta, sft_weight=sft_weight, seed=seed,
                             max_pairs=max_pairs, bf16=bf16, checkpoint_every=checkpoint_every, resume=resume).info
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    _record_note(out, note)
    click.echo(f"saved DPO-tuned rewriter to {out} ({info['stats']['seconds']} s, {info['stats']['steps']} steps, "
               f"{info['preference_pairs']} pairs)", err=True)


@cli.command()
@click.option("--adapter", type=click.Path(path_type=Path, exists=True, file_okay=False),
              default=str(Path(__file__).resolve().parents[1] / "moderator" / "bundled" / "rewriter"),
              show_default="the shipped rewriter", help="The LoRA adapter to start from.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the tuned adapter.")
@data_option
@click.option("--base", help="Base model of the adapter. [default: the one in its adapter_config.json]")
@click.option("--max-texts", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Toxic ParaDetox training sentences to learn from (one pass).")
@click.option("--max-steps", type=int, help="Stop after this many optimizer steps.")
@click.option("--prompts-per-step", type=click.IntRange(min=1), default=8, show_default=True,
              help="Sentences per optimizer step.")
@click.option("--generations", type=click.IntRange(min=2), default=4, show_default=True,
              help="Sampled rewrites per sentence (the group whose mean reward is the baseline).")
@click.option("--temperature", type=float, default=1.0, show_default=True)
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--lr", type=float, default=2e-5, show_default=True)
@click.option("--classifier", help="Classifier of the reward. [default: the bundled one]")
@click.option("--gate/--no-gate", default=True, show_default=True,
              help="A rewrite that the product's verification would not publish (toxicity >= [policy] "
                   "max_rewrite_toxicity, similarity < [policy] min_similarity, the defaults) earns 0.")
@click.option("--toxicity-weight", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Exponent of (1 - toxicity) in the reward: above 1, a rewrite that stays a little toxic loses "
                   "more against one that strays a little from the crowd's words.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--bf16/--fp32", default=False, show_default=True, help="bfloat16 autocast (weights stay float32).")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=25, show_default=True,
              help="Save a checkpoint into OUT/checkpoint every this many steps (0: never).")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint (same options as the cut-off run).")
@note_option
@threads_option
def grpo(adapter, out, data, base, max_texts, max_steps, prompts_per_step, generations, temperature, max_new_tokens,
         lr, classifier, gate, toxicity_weight, seed, bf16, checkpoint_every, resume, note, threads) -> None:
    """Tune a LoRA rewriter with GRPO (TRL): sampled rewrites of toxic ParaDetox training sentences,
    rewarded with (1 - toxicity)^w x similarity x chrF against the crowd's rewrites (w: --toxicity-weight).

    \b
    Example (on the shipped adapter; 1,000 sentences, about an hour on 2 CPU cores, resumable):
      python -m train grpo --out runs/detox-grpo --max-texts 1000 --threads 2
      python -m train grpo --out runs/detox-grpo --max-texts 1000 --threads 2 --resume
    """
    _setup(threads)
    from moderator.config import PolicyConfig
    from train import grpo as trainer
    from train.selftrain_filter import ProductScorer

    policy = PolicyConfig()

    try:
        scorer = ProductScorer(classifier, threads=threads)
        info = trainer.train(out, scorer, adapter, data, base=base, max_texts=max_texts, max_steps=max_steps,
                             prompts_per_step=prompts_per_step, generations=generations, temperature=temperature,
                             max_new_tokens=max_new_tokens, lr=lr, seed=seed, bf16=bf16,
                             checkpoint_every=checkpoint_every, resume=resume,
                             scorer_identity=scorer.identity(),
                             gate=(policy.max_rewrite_toxicity, policy.min_similarity) if gate else None,
                             toxicity_weight=toxicity_weight).info
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    _record_note(out, note)
    click.echo(f"saved GRPO-tuned rewriter to {out} ({info['stats']['seconds']} s, {info['stats']['steps']} steps, "
               f"reward {info['first_reward']} -> {info['last_reward']})", err=True)


@cli.command("eval-detox")
@click.argument("models", nargs=-1)
@data_option
@click.option("--limit", type=int, help="Only the first N dev sentences.")
@click.option("--engine", type=click.Choice(["auto", "vllm", "hf"]), default="auto", show_default=True)
@click.option("--classifier", help="Classifier for STA. [default: the bundled one]")
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Also write the table as JSON here.")
@threads_option
def eval_detox(models, data, limit, engine, classifier, json_out, threads) -> None:
    """STA, SIM, chrF and J on the ParaDetox dev split, beside copy, Delete and human rewrites.

    MODELS are rewriter folders (LoRA adapters or fully fine-tuned models), each optionally NAME=PATH.

    \b
    Example:
      python -m train eval-detox lora=runs/detox-lora full=runs/detox-full --json runs/detox-eval.json
    """
    _setup(threads)
    from train import detox_eval

    table = detox_eval.evaluate(_named(models), data, limit=limit, engine=engine, classifier=classifier)
    _print_table(table, detox_eval.format_table, json_out)


@cli.command("bundle-detox")
@click.argument("model", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--compare", multiple=True, help="NAME=PATH of another rewriter to evaluate beside it (repeatable).")
@data_option
@click.option("--engine", type=click.Choice(["auto", "vllm", "hf"]), default="auto", show_default=True)
@click.option("--limit", type=int, help="Only the first N dev sentences.")
@click.option("--recorded", multiple=True,
              help="Carry this row of the current card into the new one, marked as recorded (a model not kept).")
@threads_option
def bundle_detox(model, compare, data, engine, limit, recorded, threads) -> None:
    """Evaluate a trained LoRA rewriter and ship it as moderator's default, with its model card.

    \b
    Example:
      python -m train bundle-detox runs/detox-lora --compare full=runs/detox-full
    A preference-tuned adapter, beside the one it started from, keeping the card's full fine-tune row:
      python -m train bundle-detox runs/detox-dpo --compare "SFT LoRA=runs/detox-sft-v1" --recorded full
    """
    _setup(threads)
    from train import bundle, detox_eval

    try:
        carried = bundle.recorded_rows(list(recorded))
        # Before the evaluation (minutes): an adapter whose training cannot be told fails now.
        chain = bundle.training_chain(bundle.training_stats(Path(model)))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    named = {f"{bundle.chain_name(chain)} (shipped)": str(model), **_named(compare)}
    table = detox_eval.evaluate(named, data, limit=limit, engine=engine)
    table["rows"] = {**{k: v for k, v in table["rows"].items() if k != "human rewrites"}, **carried,
                     "human rewrites": table["rows"]["human rewrites"]}
    click.echo(detox_eval.format_table(table))
    click.echo(f"bundled into {bundle.bundle_rewriter(Path(model), table)}", err=True)


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Folder for the model (config, weights, model card).")
@data_option
@click.option("--unclear/--no-unclear", default=False, show_default=True,
              help="Also train on sentences annotators could not rewrite because they were unclear.")
@click.option("--extra-cap", type=int, default=100, show_default=True,
              help="At most this many threat / hate posts per abuse corpus in training (0: none).")
@click.option("--c", "c", type=float, help="Inverse regularisation. [default: tuned on the dev split]")
@click.option("--min-precision", type=float, default=0.8, show_default=True,
              help="The threshold is the lowest with this precision of 'not rewritable' on held-out data "
                   "(out-of-fold scores; the dev split with --cv-folds 0).")
@click.option("--sure-precision", type=float, default=0.9, show_default=True,
              help="The sure threshold (the product removes untried from it on; between the two it tries a rewrite "
                   "first) is the lowest with this precision, the same way.")
@click.option("--max-train", type=int, help="Subsample the training split to this many examples.")
@click.option("--cv-folds", type=int, default=5, show_default=True,
              help="Cross-validate on all ParaDetox examples, and pick the threshold there (0: on the dev split).")
@click.option("--compare/--no-compare", default=False, show_default=True,
              help="Also measure the other data choices (unclear, abuse extras) and real forum sentences for the "
                   "model card (about 2 minutes).")
@click.option("--reference/--no-reference", default=False, show_default=True,
              help="Also report a logistic regression on MiniLM embeddings, for the model card (about 1 minute).")
@threads_option
def rewritability(out, data, unclear, extra_cap, c, min_precision, sure_precision, max_train, cv_folds, compare,
                  reference, threads) -> None:
    """Train the model that judges whether a toxic text can be rewritten at all (hashed n-grams).

    \b
    Example (the shipped model; about 4 minutes on one CPU core, half that without --compare --reference):
      python -m train rewritability --out moderator/bundled/rewritability --compare --reference
    """
    if str(data).startswith("hf:"):
        raise click.ClickException("rewritability needs a local data folder laid out like ../shared/data "
                                   "(its cannot-rewrite sentences and abuse corpora are read from files)")
    _setup(threads)
    from train import rewritability as trainer

    extras = trainer.EXTRA_SOURCES if extra_cap > 0 else ()
    config = trainer.train(data, out, unclear=unclear, extras=extras, extra_cap=extra_cap or None, c=c,
                           min_precision=min_precision, sure_precision=sure_precision, max_train=max_train,
                           cv_folds=cv_folds, compare=compare, reference=reference).config
    dev = config["dev"]
    click.echo(f"saved rewritability model to {out}: threshold {config['threshold']:.4f} (sure "
               f"{config['sure_threshold']:.4f}), dev ROC-AUC "
               f"{dev['roc_auc']}, at threshold {dev['at_threshold']}", err=True)


engine_choice = click.Choice(["auto", "vllm", "hf"])


@cli.command("selftrain-candidates")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="JSONL of {source, text, candidates}; OUT.pool.jsonl and OUT.stats.json are written beside it.")
@data_option
@click.option("--max-texts", type=click.IntRange(min=1),
              help="The first N texts of the mixed pool (a larger N extends a smaller one). [default: all]")
@click.option("--candidates", type=click.IntRange(min=1), default=4, show_default=True,
              help="Rewrites per text: the greedy one, then sampled ones.")
@click.option("--temperature", type=click.FloatRange(0.0, 2.0), default=1.0, show_default=True,
              help="Sampling temperature of the candidates after the greedy one.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the pool's order and of the samples.")
@click.option("--resume", is_flag=True, help="Continue a cut-off run: texts already in OUT are skipped.")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True),
              help="Stop after the chunk that reaches this much generation time (--resume continues later).")
@click.option("--mix", default="forum=4,jigsaw=3,paradetox=2,davidson=1", show_default=True,
              help="Weights of the sources in the pool's order (forum, jigsaw, paradetox, davidson).")
@click.option("--min-words", type=click.IntRange(min=1), default=3, show_default=True, help="Shortest text, in words.")
@click.option("--max-words", type=click.IntRange(min=1), default=40, show_default=True,
              help="Longest text, in words (longer ones generate slowly and rarely pass the filter).")
@click.option("--forum-threshold", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="Forum sentences without a marked span count as toxic from this classifier score.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Texts per engine call; the output is flushed after each.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=64, show_default=True,
              help="Longest candidate, in tokens (enough for a 40-word sentence; a rambling sample stops there).")
@click.option("--engine", type=engine_choice, default="auto", show_default=True,
              help="Generation engine: auto is vLLM where it imports, else transformers.")
@click.option("--base", help="Rewriter base model (folder, hub id or pip:NAME). [default: the bundled adapter's]")
@click.option("--adapter", help="LoRA adapter folder. [default: the bundled rewriter]")
@click.option("--classifier", help="Classifier for the unmarked forum sentences. [default: the bundled one]")
@threads_option
def selftrain_candidates(out, data, max_texts, candidates, temperature, seed, resume, max_minutes, mix, min_words,
                         max_words,
                         forum_threshold, chunk_size, max_new_tokens, engine, base, adapter, classifier,
                         threads) -> None:
    """Self-training, stage 1: rewrite candidates for real toxic texts the rewriter was not trained on.

    Forum sentences, Jigsaw and Davidson toxic texts and ParaDetox training sentences, without any
    text of the ParaDetox or forum dev splits; generated with the product's rewriter and prompt.

    \b
    Example (40 minutes on 2 CPU cores: pool and engine start-up, then 38 minutes of generation):
      python -m train selftrain-candidates --out runs/selftrain/candidates.jsonl --max-texts 12000 \\
          --max-minutes 38
    """
    if str(data).startswith("hf:"):
        raise click.ClickException("selftrain-candidates needs a local data folder laid out like ../shared/data")
    _setup(threads)
    from moderator.errors import ModeratorError
    from train import selftrain

    try:
        pool_options = selftrain.PoolOptions(seed=seed, mix=mix, min_words=min_words, max_words=max_words,
                                             forum_threshold=forum_threshold)
        generation = selftrain.GenerationOptions(candidates=candidates, temperature=temperature,
                                                 max_new_tokens=max_new_tokens, chunk_size=chunk_size, base=base,
                                                 adapter=adapter, engine=engine)
        stats = selftrain.run(Path(data), out, pool_options, generation, max_texts=max_texts, resume=resume,
                              max_seconds=max_minutes * 60 if max_minutes else None,
                              make_scorer=lambda: selftrain.product_scorer(classifier, threads),
                              make_rewriter=lambda: selftrain.product_rewriter(generation, seed, threads))
    except (ValueError, ModeratorError) as exc:
        raise click.ClickException(str(exc)) from None
    last = stats["runs"][-1]
    click.echo(f"{stats['texts_in_file']} texts with candidates in {out} {stats['in_file_per_source']} "
               f"({last['written']} this run, {last['texts_per_s']} texts/s"
               f"{'' if last['complete'] else '; stopped early, --resume continues'})", err=True)


@cli.command("selftrain-filter")
@click.argument("candidates", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="JSONL of kept {toxic, neutral, source, toxicity, similarity} pairs; OUT.stats.json beside it.")
@click.option("--preferences", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write {prompt_text, chosen, rejected, rejected_why} pairs here (for DPO/ORPO).")
@click.option("--max-toxicity", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.1, show_default=True,
              help="A kept rewrite scores below this (the product publishes below 0.5; strict, since the model "
                   "learns from what is kept).")
@click.option("--min-similarity", type=click.FloatRange(-1.0, 1.0), default=0.75, show_default=True,
              help="A kept rewrite is at least this similar to its source (the product: 0.5); favours rewrites "
                   "that drop the insult and keep the rest.")
@click.option("--min-length-ratio", type=click.FloatRange(min=0.0), default=0.6, show_default=True,
              help="A kept rewrite has at least this many times the source's words.")
@click.option("--max-length-ratio", type=click.FloatRange(min=0.0), default=1.6, show_default=True,
              help="... and at most this many times.")
@click.option("--min-source-toxicity", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="Skip sources the classifier scores below this: there nothing proves a candidate removed anything.")
@click.option("--classifier", help="Toxicity classifier. [default: the bundled one]")
@click.option("--embedder", help="Sentence embedder for similarity. [default: all-MiniLM-L6-v2 from pip]")
@click.option("--human-rewrites", is_flag=True,
              help="Judge ParaDetox training sentences against the crowd's rewrites too: keep the passing candidate "
                   "closest to them (chrF), and prefer it over passing ones 0.1 chrF further away.")
@data_option
@threads_option
def selftrain_filter(candidates, out, preferences, max_toxicity, min_similarity, min_length_ratio, max_length_ratio,
                     min_source_toxicity, classifier, embedder, human_rewrites, data, threads) -> None:
    """Self-training, stage 2: keep the candidates that pass the product's checks strictly.

    \b
    Example (minutes: two float32 MiniLM passes over the texts and their candidates):
      python -m train selftrain-filter runs/selftrain/candidates.jsonl --out runs/selftrain/kept.jsonl \\
          --preferences runs/selftrain/preferences.jsonl
    Candidates of ParaDetox training sentences, judged against the crowd's rewrites too:
      python -m train selftrain-filter runs/selftrain5/candidates.jsonl --out runs/selftrain5/kept.jsonl \\
          --preferences runs/selftrain5/preferences.jsonl --human-rewrites
    """
    _setup(threads)
    from moderator.errors import ModeratorError
    from train import selftrain_filter

    try:
        limits = selftrain_filter.Thresholds(max_toxicity=max_toxicity, min_similarity=min_similarity,
                                             min_length_ratio=min_length_ratio, max_length_ratio=max_length_ratio,
                                             min_source_toxicity=min_source_toxicity)
        # Read the whole file once first: a broken line fails before the models load.
        if not sum(1 for _ in selftrain_filter.read_candidates(candidates)):
            raise ValueError(f"{candidates} holds no candidates")
        references = selftrain_filter.human_rewrites(data) if human_rewrites else None
        scorer = selftrain_filter.ProductScorer(classifier, embedder, threads)
        stats = selftrain_filter.run(candidates, out, scorer, limits, preferences, references=references)
    except (ValueError, ModeratorError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"kept {stats['kept']} of {stats['texts']} texts ({stats['kept_share']}) in {out}; "
               f"{stats['preferences']['pairs']} preference pairs; rejected {stats['rejected']}", err=True)


if __name__ == "__main__":
    cli(prog_name="python -m train")
