"""How far the rewriter's own samples reach: the best of n rewrites of each ParaDetox dev sentence,
picked several ways, on the evaluation's two judges.

    python benchmarks/best_of_n.py                          # the bundled rewriter, 8 candidates (~14 min)
    python benchmarks/best_of_n.py --adapter runs/detox-dpo5 --candidates 4 --limit 300

Generates --candidates rewrites per dev sentence with the product's rewriter (the greedy one, then
samples at --temperature, float32), scores every one as `python -m train eval-detox` does (STA with the
project's classifier, STA* with alt-profanity-check, SIM, chrF against the human rewrites; J and J*
their products), and prints the means of the rewrite each rule picks:

- greedy: the first candidate (what eval-detox and the model card measure);
- verify: the highest (1 - toxicity) x similarity, the product's own pick among candidates;
- MBR chrF: the candidate with the highest mean chrF against the other candidates (minimum Bayes risk;
  no judge involved), and the same among those the product's classifier scores below 0.5;
- best by J: the highest J, which needs the human rewrites (what self-training can use on training
  sentences, which have them);
- best by J*: the highest J*, the ceiling of these samples on the independent view (an oracle: the
  judge picks).

Self-training distils such picks into the greedy rewrite, so the gap between "greedy" and the picks is
about what another round can gain. Numbers, not tests.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"


def mbr_utility(texts: list[str]) -> list[float]:
    """Per text, its mean chrF against every other text of the group (minimum Bayes risk's utility)."""
    from sacrebleu.metrics import CHRF

    metric = CHRF()
    return [float(np.mean([metric.sentence_score(h, [o]).score for k, o in enumerate(texts) if k != j]))
            if len(texts) > 1 else 0.0 for j, h in enumerate(texts)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", help="rewriter adapter folder [default: the bundled one]")
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help="only the first N dev sentences")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--json", help="also write the table here")
    args = parser.parse_args()

    from moderator import prompts
    from moderator.config import RewriterConfig, RuntimeConfig
    from moderator.rewrite import Rewriter
    from train import data
    from train.detox_eval import Scorer

    dev = [p for p in data.paradetox_pairs(args.data) if p.split == "dev"][: args.limit]
    inputs, refs = [p.toxic for p in dev], [tuple(p.neutral) for p in dev]
    rewriter = Rewriter(RewriterConfig(adapter=args.adapter, dtype="float32"), RuntimeConfig())
    start = time.perf_counter()
    rows = rewriter.engine.candidates([prompts.build_prompt(t) for t in inputs], args.candidates,
                                      args.temperature, args.seed)
    seconds = time.perf_counter() - start
    candidates = [[prompts.parse_completion(g.text) for g in row] for row in rows]
    owner = [i for i, row in enumerate(candidates) for _ in row]
    scores = Scorer().sentences([inputs[i] for i in owner], [c for row in candidates for c in row],
                                [refs[i] for i in owner])
    bounds = np.cumsum([0] + [len(row) for row in candidates])

    def best_by(values: np.ndarray) -> list[int]:
        return [int(a + np.argmax(values[a:b])) for a, b in zip(bounds[:-1], bounds[1:])]

    utility = np.array([u for row in candidates for u in mbr_utility(row)])
    # Among the gated candidates; where none passes the gate, every one is -inf and argmax picks the greedy one.
    gated_utility = np.where(scores["STA"] > 0.5, utility, -np.inf)

    rules = {
        "greedy": [int(a) for a in bounds[:-1]],
        "verify: (1 - toxicity) x SIM": best_by(scores["STA"] * scores["SIM"]),
        "MBR chrF": best_by(utility),
        "MBR chrF, toxicity < 0.5": best_by(gated_utility),
        "best by J (needs references)": best_by(scores["J"]),
        "best by J* (oracle)": best_by(scores["J*"]),
    }
    columns = ("STA", "STA*", "SIM", "chrF", "J", "J*")
    table = {name: {k: round(float(scores[k][picks].mean()), 4) for k in columns}
             for name, picks in rules.items()}
    print(f"{len(dev)} ParaDetox dev sentences, {args.candidates} candidates each (temperature {args.temperature}), "
          f"generated in {seconds:.0f} s; rewriter {args.adapter or 'bundled'}")
    print(f"{'pick':32s}" + "".join(f"{k:>8s}" for k in columns))
    for name, row in table.items():
        print(f"{name:32s}" + "".join(f"{v:8.4f}" for v in row.values()))
    if args.json:
        Path(args.json).write_text(json.dumps({"sentences": len(dev), "candidates": args.candidates,
                                               "temperature": args.temperature, "seconds": round(seconds, 1),
                                               "adapter": args.adapter, "picks": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
