"""Train and evaluate moderator's default models.

\b
    python -m train classifier --out runs/classifier-lora
    python -m train classifier --method full --out runs/classifier-full
    python -m train eval-classifier runs/classifier-lora runs/classifier-full
    python -m train detox --method lora --out runs/detox-lora --max-steps 1200
    python -m train eval-detox lora=runs/detox-lora full=runs/detox-full
    python -m train rewritability --out moderator/bundled/rewritability --compare --reference
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

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
@click.option("--lr", type=float, help="Learning rate. [default: 1e-3 lora, 5e-5 full]")
@click.option("--rank", type=int, default=16, show_default=True, help="LoRA rank.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--cascade/--no-cascade", default=True, show_default=True,
              help="Also train the cheap first-stage model (hashed n-grams) into the same folder.")
@threads_option
def classifier(out, method, base, data, epochs, max_train, batch_size, lr, rank, seed, cascade, threads) -> None:
    """Fine-tune all-MiniLM-L6-v2 as the toxicity classifier.

    \b
    Example (about 15 minutes on 2 CPU cores):
      python -m train classifier --out runs/classifier-lora
    """
    _setup(threads)
    from train import classifier as trainer

    info = trainer.train(data, out, method=method, base=base, epochs=epochs, max_train=max_train,
                         batch_size=batch_size, lr=lr, rank=rank, seed=seed).info
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
    """ROC-AUC, F1 and accuracy per source for classifiers, beside alt-profanity-check.

    MODELS are classifier folders (or hub ids), each optionally NAME=PATH.

    \b
    Example:
      python -m train eval-classifier lora=moderator/bundled/classifier full=runs/classifier-full
    """
    _setup(threads)
    from train import classifier_eval

    table = classifier_eval.evaluate(_named(models), data, split)
    _print_table(table, classifier_eval.format_table, json_out)


@cli.command("bundle-classifier")
@click.argument("model", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--compare", multiple=True, help="NAME=PATH of another classifier to evaluate beside it (repeatable).")
@data_option
@threads_option
def bundle_classifier(model, compare, data, threads) -> None:
    """Evaluate a trained classifier and ship it as moderator's default, with its model card.

    \b
    Example:
      python -m train bundle-classifier runs/classifier-lora --compare full=runs/classifier-full
    """
    _setup(threads)
    from train import bundle, classifier_eval

    named = {"shipped (" + Path(model).name + ")": str(model), **_named(compare)}
    table = classifier_eval.evaluate(named, data)
    click.echo(classifier_eval.format_table(table))
    click.echo(f"bundled into {bundle.bundle_classifier(Path(model), table)}", err=True)


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
@click.option("--max-pairs", type=int, help="Subsample the training pairs to this many.")
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--lr", type=float, help="Learning rate. [default: 5e-4 lora, 3e-5 full]")
@click.option("--rank", type=int, default=16, show_default=True, help="LoRA rank.")
@click.option("--lora-scope", type=click.Choice(["all", "attention"]), default="all", show_default=True,
              help="Adapt every linear layer of the body, or the attention projections only.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--bf16/--fp32", default=True, show_default=True,
              help="bfloat16 autocast for the matrix products (weights stay float32).")
@threads_option
def detox(out, method, base, data, epochs, max_steps, max_pairs, batch_size, lr, rank, lora_scope, seed, bf16, threads) -> None:
    """Fine-tune the detox rewriter on ParaDetox pairs (LoRA or full).

    \b
    Example (the shipped LoRA on Gemma-3-270M, 1200 steps: about 50 minutes on 2 CPU cores):
      python -m train detox --method lora --out runs/detox-lora --max-steps 1200
    """
    _setup(threads)
    from train import detox as trainer

    info = trainer.train(data, out, method=method, base=base, epochs=epochs, max_steps=max_steps,
                         batch_size=batch_size, lr=lr, rank=rank, lora_scope=lora_scope, seed=seed, max_pairs=max_pairs,
                         bf16=bf16).info
    click.echo(f"saved {method} rewriter to {out} ({info['stats']['seconds']} s, {info['steps']} steps, "
               f"{info['stats']['trainable_params']} trainable parameters)", err=True)


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
@threads_option
def bundle_detox(model, compare, data, engine, limit, threads) -> None:
    """Evaluate a trained LoRA rewriter and ship it as moderator's default, with its model card.

    \b
    Example:
      python -m train bundle-detox runs/detox-lora --compare full=runs/detox-full
    """
    _setup(threads)
    from train import bundle, detox_eval

    named = {"LoRA (shipped)": str(model), **_named(compare)}
    table = detox_eval.evaluate(named, data, limit=limit, engine=engine)
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
@click.option("--max-train", type=int, help="Subsample the training split to this many examples.")
@click.option("--cv-folds", type=int, default=5, show_default=True,
              help="Cross-validate on all ParaDetox examples, and pick the threshold there (0: on the dev split).")
@click.option("--compare/--no-compare", default=False, show_default=True,
              help="Also measure the other data choices (unclear, abuse extras) and real forum sentences for the "
                   "model card (about 2 minutes).")
@click.option("--reference/--no-reference", default=False, show_default=True,
              help="Also report a logistic regression on MiniLM embeddings, for the model card (about 1 minute).")
@threads_option
def rewritability(out, data, unclear, extra_cap, c, min_precision, max_train, cv_folds, compare, reference,
                  threads) -> None:
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
                           min_precision=min_precision, max_train=max_train, cv_folds=cv_folds, compare=compare,
                           reference=reference).config
    dev = config["dev"]
    click.echo(f"saved rewritability model to {out}: threshold {config['threshold']:.4f}, dev ROC-AUC "
               f"{dev['roc_auc']}, at threshold {dev['at_threshold']}", err=True)


if __name__ == "__main__":
    cli(prog_name="python -m train")
