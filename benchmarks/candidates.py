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
for a k-candidate run: the same greedy rewrite, and k - 1 samples at the same temperature.
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
                         unrewritable_threshold(policy, models.rewritability))(trial)
            results[f"{k} candidates, delete {delete}"] = verdict(posts, out)
        k *= 2
    for name, result in results.items():
        mix = ", ".join(f"{a} {result[a]:.1%}" for a in ("rewrite", "review", "remove", "allow"))
        print(f"{name:32s} {mix}; judge ok {result['judge_ok']:.3f}, keep {result['keep']:.3f}, "
              f"clean and faithful {result['clean_faithful']:.1%}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


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
