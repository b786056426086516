"""How often a rewriter's rewrite of a real toxic forum sentence is still toxic (issue 15's forum target).

    python benchmarks/forum_sentences.py                                  # the shipped rewriter, 300 dev posts
    python benchmarks/forum_sentences.py shipped=moderator/bundled/rewriter dpo=runs/detox-dpo --json F

Data: the forum benchmark's dev split (benchmarks/forum_posts.py: SemEval-2021 Toxic Spans comments,
a post is in it when sha1(text) % 10 == 0; `--posts N` takes the first N in sha1 order), which
self-training never draws from. Each post is split into sentences with the product's splitter
(`moderator.sentences`); a sentence is toxic when it overlaps a crowd-marked span. Each rewriter
rewrites every such sentence once, greedily, with the product's prompt and engine
(`train.detox_eval.rewrite_with`), as the product's first candidate.

Printed per rewriter (and "copy input", the floor), over the toxic sentences:
  - still toxic (ours): the product's classifier scores the rewrite 0.5 or more;
  - still toxic (judge): alt-profanity-check's probability is 0.5 or more (an independent judge);
  - insult kept: the rewrite still holds a marked phrase that the judge alone finds toxic, as whole words;
  - copy: the rewrite equals the sentence (whitespace and case aside); empty: no text;
  - SIM: mean cosine of all-MiniLM-L6-v2 embeddings of sentence and rewrite.
The target: the still-toxic share (ours and the judge's) halves against the shipped SFT adapter.
Numbers, not tests. A few minutes per rewriter on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from forum_posts import DEFAULT_DATA, JUDGE_TOXIC, copies_insult, dev_posts, judge  # noqa: E402

log = logging.getLogger("forum_sentences")


def toxic_sentences(posts: list[dict]) -> list[dict]:
    """The sentences of the posts that overlap a marked span, with their marked phrases."""
    from moderator import sentences
    from train.selftrain import marked_phrases

    rows = []
    for post in posts:
        marked = set(post["spans"])
        for start, end in sentences.split(post["text"]):
            if any(i in marked for i in range(start, end)):
                rows.append({"post": post["id"], "text": post["text"][start:end],
                             "phrases": list(marked_phrases(post["text"], start, end, marked))})
    return rows


def score(rows: list[dict], outputs: list[str], scorer, insult_phrases: list[list[str]]) -> dict:  # type: ignore[no-untyped-def]
    texts = [r["text"] for r in rows]
    n = len(rows)
    ours = scorer.toxicity([o or " " for o in outputs])
    judged = judge([o or "" for o in outputs])
    sims = scorer.embedder.similarity(texts, [o or " " for o in outputs])
    norm = [" ".join(t.lower().split()) for t in texts]
    return {
        "sentences": n,
        "still_toxic_ours": round(sum(float(t) >= 0.5 for t in ours) / n, 4),
        "still_toxic_judge": round(sum(j >= JUDGE_TOXIC for j in judged) / n, 4),
        "insult_kept": round(sum(copies_insult(p, o) for p, o in zip(insult_phrases, outputs)) / n, 4),
        "copy": round(sum(" ".join((o or "").lower().split()) == t for o, t in zip(outputs, norm)) / n, 4),
        "empty": round(sum(not (o or "").strip() for o in outputs) / n, 4),
        "SIM": round(float(sum(max(0.0, float(s)) for s in sims) / n), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=["shipped=moderator/bundled/rewriter"],
                        help="NAME=PATH of rewriter folders (LoRA adapters or full models)")
    parser.add_argument("--posts", type=int, default=300, help="first N dev posts in sha1 order (0: all)")
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder laid out like ../shared/data")
    parser.add_argument("--engine", default="auto", choices=["auto", "vllm", "hf"])
    parser.add_argument("--examples", type=int, default=5, help="sentences printed with every rewrite")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)

    from train.detox_eval import Scorer, rewrite_with

    posts = dev_posts(args.data, args.posts or None)
    rows = toxic_sentences(posts)
    log.info("%d dev posts, %d toxic sentences", len(posts), len(rows))
    texts = [r["text"] for r in rows]
    phrases = [r["phrases"] for r in rows]
    flat = [p for row in phrases for p in row]
    verdicts = iter(judge(flat))
    insult_phrases = [[p for p in row if next(verdicts) >= JUDGE_TOXIC] for row in phrases]
    scorer = Scorer()
    results: dict = {"posts": len(posts), "sentences": len(rows), "rows": {}, "examples": {"input": texts[:args.examples]}}
    results["rows"]["copy input"] = score(rows, texts, scorer, insult_phrases)
    for spec in args.models:
        name, path = spec.split("=", 1) if "=" in spec else (Path(spec).name, spec)
        started = time.perf_counter()
        outputs = rewrite_with(path, texts, args.engine)
        results["rows"][name] = {**score(rows, outputs, scorer, insult_phrases),
                                 "seconds": round(time.perf_counter() - started, 1)}
        results["examples"][name] = outputs[:args.examples]
        log.info("%s: %s", name, results["rows"][name])

    columns = ("still_toxic_ours", "still_toxic_judge", "insult_kept", "copy", "empty", "SIM")
    print(f"forum dev: {results['posts']} posts, {results['sentences']} toxic sentences (overlapping a marked span)")
    print(f"{'rewriter':<24}" + "".join(f"{c:>19}" for c in columns))
    for name, row in results["rows"].items():
        print(f"{name:<24}" + "".join(f"{row[c]:>19.3f}" for c in columns))
    for i, text in enumerate(texts[:args.examples]):
        print(f"- {text}")
        for name in results["examples"]:
            if name != "input":
                print(f"    {name}: {results['examples'][name][i]}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
