"""How many rewrite candidates, and whether to delete a sentence no rewrite fixes: one generation, many verdicts.

    python benchmarks/candidates.py --posts 150 --candidates 8 --temperature 1.0

Takes the first N posts of the forum dev split (benchmarks/forum_posts.py: real toxic news-site
comments with marked toxic spans), runs the default scoring steps and policy once, asks the default
rewriter for --candidates candidates per toxic sentence once (the greedy one first, then the sampled
ones), and then verifies the same generations as if the run had asked for the first k of them
(k = 1, 2, 4, ... up to --candidates), under each [policy] delete_sentences setting. For each it
prints the action mix, the reasons, and for the published rewrites the independent judge's non-toxic
share (alt-profanity-check), the share of non-toxic characters kept, and the share of all posts
published as clean rewrites keeping >= 85% of them. The first k of an n-candidate generation stand
for a k-candidate run: the same greedy rewrite, and k - 1 samples at the same temperature. "k greedy
first" rows verify the greedy rewrite alone where it passes the candidate check and all k where it
does not: what a run that sampled only after a failed greedy rewrite would publish, and how many
generations it would need.
Speed per candidate count is not measured here (benchmarks/end_to_end.py). Numbers, not tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import forum_posts  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=150)
    parser.add_argument("--candidates", type=int, default=8, help="candidates generated per toxic sentence")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of the extra candidates")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import pyarrow as pa

    from moderator import records
    from moderator.config import JobConfig
    from moderator.steps import load_models, scoring_steps
    from moderator.policy import unrewritable_threshold
    from moderator.rewrite import CANDIDATES_TYPE
    from moderator.verify import Verify

    posts = forum_posts.dev_posts(args.data, args.posts)
    config = JobConfig.load(overrides={"rewriter": {"candidates": args.candidates,
                                                    "candidate_temperature": args.temperature}})
    models = load_models(config)
    n = len(posts)
    batch = pa.RecordBatch.from_pydict({
        "id": [p["id"] for p in posts], "text": [p["text"] for p in posts],
        records.SOURCE: ["dev"] * n, records.ROW: list(range(n)), records.QUARANTINE: pa.nulls(n, pa.string())})
    clock = time.perf_counter()
    for _, step in scoring_steps(config, models):
        batch = step(batch)
    scored = time.perf_counter()
    batch = models.rewriter(batch)
    print(f"{n} posts: scoring {scored - clock:.1f} s, {args.candidates} candidates per toxic sentence "
          f"{time.perf_counter() - scored:.1f} s", file=sys.stderr)
    generated = batch.column(records.REWRITE_CANDIDATES).to_pylist()
    results = {}
    k = 1
    while k <= args.candidates:
        for delete in ("never", "unrewritable", "any"):
            first_k = [None if row is None else [c[:k] for c in row] for row in generated]
            trial = records.set_column(batch, records.REWRITE_CANDIDATES, pa.array(first_k, CANDIDATES_TYPE))
            policy = dataclasses.replace(config.policy, delete_sentences=delete)
            out = Verify(policy, models.classifier, models.embedder,
                         unrewritable_threshold(policy, models.rewritability), models.rewritability)(trial)
            results[f"{k} candidates, delete {delete}"] = verdict(posts, out)
        if k > 1:  # greedy first: the samples only for a target whose greedy rewrite fails the check
            verify = Verify(config.policy, models.classifier, models.embedder,
                            unrewritable_threshold(config.policy, models.rewritability), models.rewritability)
            adaptive, generations = greedy_first(verify, batch, generated, k)
            trial = records.set_column(batch, records.REWRITE_CANDIDATES, pa.array(adaptive, CANDIDATES_TYPE))
            result = verdict(posts, verify(trial))
            result["generations"] = generations
            results[f"{k} greedy first, delete {config.policy.delete_sentences}"] = result
        k *= 2
    for name, result in results.items():
        mix = ", ".join(f"{a} {result[a]:.1%}" for a in ("rewrite", "review", "remove", "allow"))
        print(f"{name:32s} {mix}; judge ok {result['judge_ok']:.3f}, keep {result['keep']:.3f}, "
              f"clean and faithful {result['clean_faithful']:.1%}")
        if "generations" in result:
            g = result["generations"]
            print(f"{'':32s} greedy passed for {g['greedy_passed']} of {g['targets']} targets: "
                  f"{g['generations']} generations instead of {g['all_k']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


def greedy_first(verify, batch, generated: list, k: int) -> tuple[list, dict]:  # type: ignore[no-untyped-def]
    """The candidates a run would see if it asked for the greedy rewrite of every target first and for
    k - 1 samples only where that one fails the candidate check; and how many generations that takes
    against k per target."""
    from moderator import records

    texts = batch.column(records.TEXT).to_pylist()
    targets = records.targets(batch)
    flat = [(i, t, texts[i][target["start"]:target["end"]], cands[0])
            for i, row in enumerate(generated) if row is not None
            for t, (target, cands) in enumerate(zip(targets[i], row)) if cands]
    verdicts = verify.passes([f[2] for f in flat], [f[3] for f in flat])  # the rewrite step's screen
    passed = {(i, t) for (i, t, _, _), ok in zip(flat, verdicts) if ok}
    out, greedy_only = [], 0
    for i, row in enumerate(generated):
        if row is None:
            out.append(None)
            continue
        out.append([c[:1] if (i, t) in passed else c[:k] for t, c in enumerate(row)])
        greedy_only += sum((i, t) in passed for t in range(len(row)))
    n_targets = sum(len(row) for row in generated if row is not None)
    return out, {"targets": n_targets, "greedy_passed": greedy_only,
                 "generations": greedy_only + (n_targets - greedy_only) * k, "all_k": n_targets * k}


def verdict(posts: list[dict], out) -> dict:  # type: ignore[no-untyped-def]
    from moderator import records

    actions = out.column(records.ACTION).to_pylist()
    rewrites = out.column(records.REWRITE).to_pylist()
    published = [i for i, a in enumerate(actions) if a == "rewrite"]
    judged = forum_posts.judge([rewrites[i] for i in published]) if published else []
    keep = [forum_posts.kept_share(posts[i]["text"], posts[i]["spans"], rewrites[i]) for i in published]
    result: dict = {a: actions.count(a) / len(actions) for a in ("allow", "rewrite", "review", "remove")}
    result["judge_ok"] = sum(j < 0.5 for j in judged) / max(len(judged), 1)
    result["keep"] = sum(keep) / max(len(keep), 1)
    result["clean_faithful"] = sum(j < 0.5 and kept >= 0.85 for j, kept in zip(judged, keep)) / len(actions)
    result["reasons"] = dict(Counter(out.column(records.REASON).to_pylist()))
    return result


if __name__ == "__main__":
    main()
