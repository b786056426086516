"""Does the product keep the rewriter's quality? ParaDetox dev sentences: the rewriter alone against what a
reader sees after `moderate batch`.

    python benchmarks/paradetox_product.py                       # 300 dev sentences, default settings
    python benchmarks/paradetox_product.py --sentences 30 --json runs/paradetox_product/smoke.json
    python benchmarks/paradetox_product.py -- --rewrite-threshold 0.3   # options after -- go to moderate batch
    python benchmarks/paradetox_product.py --rescore             # score the rewrites and run already in --work

Sentences: the first N of the ParaDetox dev split of the project's training code
(`train.data.paradetox_pairs(...)`, split == "dev": a salted sha256 of the normalised toxic sentence, 10%),
read from --data (default ../shared/data). Systems, each scored on the same N sentences:

- copy input: the sentence as it is (the floor).
- rewriter alone: the bundled rewriter with the product's default [rewriter] settings
  (`moderator.rewrite.Rewriter(...).rewrite`, greedy, no policy and no checks), in a subprocess of
  its own (one vLLM engine per process).
- product, review shown: `moderate batch` with its defaults (plus the options after --) in a fresh
  process; what a reader sees: the rewrite for action rewrite, the sentence for allow, nothing (empty)
  for remove, and the sentence for review (a moderator looks at it and, in this view, publishes it
  as it was). A rewrite action without rewrite text counts as empty; an action this script does not
  know counts as its rewrite when it has one, else as the sentence.
- product, review withheld: the same with review counted as nothing (what readers see until a
  moderator acts).
- human rewrites: the first crowd rewrite scored against the others, on the sentences that have at least
  two (so its n is smaller), as in train/detox_eval.py.

Metrics (train/detox_eval.py's Scorer): STA = the project's classifier's probability that the output is
non-toxic; SIM = cosine of all-MiniLM-L6-v2 embeddings of sentence and output; chrF = sacrebleu chrF
against the human rewrites (0..1); J = mean over sentences of STA x SIM x chrF (an empty output scores
0). STA* and J* are the same with an independent judge: STA* = 1 - alt-profanity-check's predict_prob.
The gap is product (review shown) minus rewriter alone; the issue's target: the product within 0.02 J
of the rewriter alone. Also printed: the product's action and reason mix, J by product action (where
the gap comes from), and how many published rewrites equal the rewriter-alone rewrite.

Numbers, not tests. On a 2-core CPU each of the two model processes takes 1-3 minutes to start.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from forum_posts import DEFAULT_DATA, judge, manifest, read_run, run_moderate, split_argv  # noqa: E402

GAP_TARGET = 0.02
log = logging.getLogger("paradetox_product")


def dev_pairs(data: str, limit: int):  # type: ignore[no-untyped-def]  # -> list[train.data.Pair]
    from train import data as train_data

    return [p for p in train_data.paradetox_pairs(data) if p.split == "dev"][:limit]


def alone_child(data: str, sentences: int, result: Path) -> None:
    """The rewriter alone, with the product's default settings; writes its rewrites as JSON."""
    from moderator.config import JobConfig
    from moderator.rewrite import Rewriter

    inputs = [p.toxic for p in dev_pairs(data, sentences)]
    config = JobConfig.load()
    start = time.perf_counter()
    rewriter = Rewriter(config.rewriter, config.runtime)
    startup = time.perf_counter() - start
    start = time.perf_counter()
    texts = rewriter.rewrite(inputs)
    result.write_text(json.dumps({"inputs": inputs, "texts": texts, "startup_s": round(startup, 1),
                                  "seconds": round(time.perf_counter() - start, 1), "engine": rewriter.engine.name}))


def run_alone(data: str, sentences: int, result: Path) -> dict:
    from end_to_end import environment

    log.info("rewriter alone: %d sentences in a subprocess", sentences)
    subprocess.run([sys.executable, __file__, "--alone-child", str(result), "--sentences", str(sentences),
                    "--data", data], env=environment(), stdout=sys.stderr, check=True)
    return json.loads(result.read_text())


def write_sentences(inputs: list[str], path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": [f"pd-dev-{i}" for i in range(len(inputs))], "text": inputs}), path)
    return path


def reader_views(inputs: list[str], rows: list[dict]) -> tuple[list[str], list[str], list[str], Counter]:
    """What a reader sees per sentence (review shown, review withheld), the actions, and oddities."""
    by_id = {r["moderation"]["id"]: r["moderation"] for r in rows if r.get("moderation")}
    shown, withheld, actions = [], [], []
    odd: Counter = Counter()
    for i, text in enumerate(inputs):
        m = by_id.get(f"pd-dev-{i}")
        if m is None:  # quarantined or missing: the reader sees nothing
            odd["missing from output"] += 1
            shown.append("")
            withheld.append("")
            actions.append("missing")
            continue
        action, rewrite = m.get("action"), (m.get("rewrite") or "").strip()
        actions.append(action or "none")
        if action == "rewrite":
            if not rewrite:
                odd["rewrite action without rewrite text"] += 1
            view = review_view = rewrite
        elif action == "allow":
            view = review_view = text
        elif action == "remove":
            view = review_view = ""
        elif action == "review":
            view, review_view = text, ""
        else:
            odd[f"unknown action {action!r}"] += 1
            view = review_view = rewrite or text
        shown.append(view)
        withheld.append(review_view)
    return shown, withheld, actions, odd


def score(scorer, inputs: list[str], outputs: list[str],  # type: ignore[no-untyped-def]
          references: list[tuple[str, ...]]) -> dict:
    """Per-sentence STA, SIM, chrF, J (project classifier) and STA*, J* (alt-profanity-check)."""
    import numpy as np

    per = scorer.sentences(inputs, outputs, references)
    per["STA*"] = 1.0 - np.array(judge([o or "" for o in outputs]))
    per["J*"] = per["STA*"] * per["SIM"] * per["chrF"]
    return per


def means(per: dict, index: list[int] | None = None) -> dict:
    import numpy as np

    pick = (lambda v: v) if index is None else (lambda v: np.asarray(v)[index])
    n = len(pick(per["J"]))
    return {**{k: (round(float(pick(v).mean()), 4) if n else None) for k, v in per.items()}, "n": n}


def evaluate(pairs, alone: list[str], rows: list[dict]) -> dict:  # type: ignore[no-untyped-def]
    from train.detox_eval import Scorer

    inputs = [p.toxic for p in pairs]
    references = [p.neutral for p in pairs]
    shown, withheld, actions, odd = reader_views(inputs, rows)
    reasons = Counter(f"{(r.get('moderation') or {}).get('action')}/{(r.get('moderation') or {}).get('reason')}"
                      for r in rows)
    log.info("scoring %d sentences x 4 systems (classifier, embeddings, chrF, judge)", len(inputs))
    scorer = Scorer()
    per = {"copy input": score(scorer, inputs, inputs, references),
           "rewriter alone": score(scorer, inputs, alone, references),
           "product, review shown": score(scorer, inputs, shown, references),
           "product, review withheld": score(scorer, inputs, withheld, references)}
    systems = {name: means(values) for name, values in per.items()}
    multi = [i for i, refs in enumerate(references) if len(refs) >= 2]
    systems["human rewrites"] = means(score(scorer, [inputs[i] for i in multi], [references[i][0] for i in multi],
                                            [references[i][1:] for i in multi]))
    by_action = {}
    for action in Counter(actions):
        index = [i for i, a in enumerate(actions) if a == action]
        by_action[action] = {"n": len(index), "alone": means(per["rewriter alone"], index),
                             "product": means(per["product, review shown"], index)}
    published = [i for i, a in enumerate(actions) if a == "rewrite"]
    total = len(inputs)
    return {
        "sentences": total,
        "systems": systems,
        "gap": {metric: round(systems["product, review shown"][metric] - systems["rewriter alone"][metric], 4)
                for metric in ("J", "J*")},
        "gap_review_withheld": {metric: round(systems["product, review withheld"][metric]
                                              - systems["rewriter alone"][metric], 4) for metric in ("J", "J*")},
        "actions": {k: round(v / total, 4) for k, v in Counter(actions).most_common()},
        "action_counts": dict(Counter(actions).most_common()),
        "reasons": {k: round(v / total, 4) for k, v in reasons.most_common()},
        "by_action": by_action,
        "published_equal_to_alone": [sum(shown[i] == alone[i] for i in published), len(published)],
        "oddities": dict(odd),
    }


def format_report(result: dict) -> str:
    lines = [f"ParaDetox dev, {result['sentences']} sentences. J = mean(STA x SIM x chrF), STA by the project's "
             "classifier; J* = the same with STA* = 1 - alt-profanity-check prob",
             f"{'system':<26} {'STA':>6} {'STA*':>6} {'SIM':>6} {'chrF':>6} {'J':>6} {'J*':>6} {'n':>5}"]
    for name, row in result["systems"].items():
        lines.append(f"{name:<26} {row['STA']:>6.3f} {row['STA*']:>6.3f} {row['SIM']:>6.3f} {row['chrF']:>6.3f} "
                     f"{row['J']:>6.3f} {row['J*']:>6.3f} {row['n']:>5}")
    gap = result["gap"]
    status = "met" if gap["J"] >= -GAP_TARGET else "MISSED"
    lines.append(f"\ngap, product (review shown) - rewriter alone: J {gap['J']:+.3f}, J* {gap['J*']:+.3f}   "
                 f"target: J gap >= -{GAP_TARGET}  {status}")
    withheld = result["gap_review_withheld"]
    lines.append(f"gap, product (review withheld) - rewriter alone: J {withheld['J']:+.3f}, J* {withheld['J*']:+.3f}")
    lines.append("  review shown: a post sent to review counts as its original (published as it was after review);"
                 " withheld: as nothing")
    lines.append("\nproduct action mix: " + ", ".join(f"{k} {v:.1%} ({result['action_counts'][k]})"
                                                       for k, v in result["actions"].items()))
    lines.append("product reason mix: " + ", ".join(f"{k} {v:.1%}" for k, v in result["reasons"].items()))
    equal, published = result["published_equal_to_alone"]
    lines.append(f"published rewrites equal to the rewriter-alone rewrite: {equal}/{published}")
    if result["oddities"]:
        lines.append("oddities in the product's output: "
                     + ", ".join(f"{k}: {v}" for k, v in result["oddities"].items()))
    lines.append(f"\nJ by product action (review shown){'':<4} {'n':>5} {'alone J':>8} {'prod J':>8} {'alone J*':>9} "
                 f"{'prod J*':>8}")
    for action, row in result["by_action"].items():
        lines.append(f"  {action:<34} {row['n']:>5} {row['alone']['J']:>8.3f} {row['product']['J']:>8.3f} "
                     f"{row['alone']['J*']:>9.3f} {row['product']['J*']:>8.3f}")
    for name, t in result.get("timing", {}).items():
        lines.append(f"{name}: " + ", ".join(f"{k} {v}" for k, v in t.items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=300)
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder laid out like ../shared/data")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "paradetox_product")
    parser.add_argument("--rescore", action="store_true",
                        help="score the rewriter-alone rewrites and the run already in --work; run no model")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--alone-child", type=Path, help=argparse.SUPPRESS)
    ours, extra = split_argv(sys.argv[1:])
    args = parser.parse_args(ours)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if args.alone_child:
        return alone_child(args.data, args.sentences, args.alone_child)

    pairs = dev_pairs(args.data, args.sentences)
    inputs = [p.toxic for p in pairs]
    n = len(pairs)
    alone_file, run = args.work / f"alone-{n}.json", args.work / f"run-{n}"
    args.work.mkdir(parents=True, exist_ok=True)
    if args.rescore:
        alone = json.loads(alone_file.read_text())
        product = {"rescored": str(run), "options": "as that run was made (its manifest holds the config)"}
    else:
        alone = run_alone(args.data, n, alone_file)
        product = run_moderate(write_sentences(inputs, args.work / f"dev-{n}.parquet"), run, extra)
    if alone["inputs"] != inputs:
        raise SystemExit(f"{alone_file} holds rewrites of other sentences; run without --rescore")
    product["load_models_s"] = (manifest(run).get("timings_s") or {}).get("load_models")
    product.setdefault("options", " ".join(extra) or "(defaults)")
    result = evaluate(pairs, alone["texts"], read_run(run))
    result["timing"] = {"rewriter alone": {"engine": alone.get("engine"), "startup_s": alone.get("startup_s"),
                                           "rewrite_s": alone.get("seconds")},
                        "moderate batch": product}
    print(format_report(result), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False))
        log.info("written to %s", args.json)


if __name__ == "__main__":
    main()
