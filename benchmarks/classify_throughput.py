"""Classification throughput: moderator's classifier step against a naive baseline, on one machine.

    python benchmarks/classify_throughput.py --posts 20000

Builds posts of realistic forum length from ../shared/data (1-6 sentences each, about 10% containing
a toxic sentence; the token-length distribution is printed), then, each in a fresh subprocess so that
peak RSS is its own:

- naive:      transformers `pipeline("text-classification")` called once per post (same model, fp32)
- step-fp32:  moderator's Classifier step (length-sorted batches, dynamic padding), float32
- step-bf16:  the same in bfloat16 (scores compared with float32); with the model folder's blend.json,
              the n-gram model's pass included (moderator/blend.py)
- step-bf16-alone: the same with `blend = off`, the transformer alone (asked for by --modes)
- step-bf16-one-reading: the bf16 step with `slip_readings = 0`, only the one reading deobfuscate picks
              (asked for by --modes; the default also scores the other readings of slips of abusive words)
- cascade:    the cascade's first stage, then the bf16 step on what it does not clear

It also measures this CPU's matrix-multiply rate (fp32 and bf16, at the model's shapes), counts the
model's FLOPs per token, and prints the arithmetic limit (tokens/s) they imply. Numbers, not tests.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"


def build_posts(n: int, seed: int = 0, toxic_share: float = 0.1) -> list[str]:
    from train import data

    examples = data.toxicity_examples(str(DATA))
    clean = [e.text for e in examples if e.label == 0]
    toxic = [e.text for e in examples if e.label == 1]
    rng = random.Random(seed)
    posts = []
    for _ in range(n):
        k = min(6, 1 + int(rng.expovariate(0.6)))  # 1 sentence most often, a tail up to 6
        sentences = [rng.choice(clean) for _ in range(k)]
        if rng.random() < toxic_share:
            sentences[rng.randrange(k)] = rng.choice(toxic)
        posts.append(" ".join(sentences))
    return posts


def flops_per_token(config, seq_len: float) -> float:  # type: ignore[no-untyped-def]
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    dense = 2 * (4 * h * h + 2 * h * i)  # Q, K, V, O projections and the two FFN matrices
    attention = 2 * 2 * seq_len * h  # scores and weighted sum
    return layers * (dense + attention)


def matmul_rate(dtype, m: int, k: int, n: int, seconds: float = 1.5, repeats: int = 3) -> float:  # type: ignore[no-untyped-def]
    """The best of a few timed windows: the machine's rate, not a moment's interference."""
    import torch

    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(repeats):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            count += 1
        best = max(best, 2 * m * k * n * count / (time.perf_counter() - start))
    return best


def run_mode(mode: str, posts_file: Path, model: str, naive_limit: int) -> dict:
    import numpy as np
    import torch

    posts = json.loads(posts_file.read_text())
    from moderator.classify import Classifier
    from moderator.config import ClassifierConfig, RuntimeConfig

    if mode == "naive":
        from transformers import pipeline

        clf = Classifier(ClassifierConfig(model=model, dtype="float32"), RuntimeConfig())  # the same merged model
        pipe = pipeline("text-classification", model=clf.model, tokenizer=clf.tokenizer, device="cpu", top_k=None)
        subset = posts[:naive_limit]
        start = time.perf_counter()
        scores = [next(s["score"] for s in pipe(p, truncation=True, max_length=256)[0] if s["label"] == "toxic")
                  for p in subset]
        seconds = time.perf_counter() - start
        return {"mode": mode, "posts": len(subset), "seconds": seconds, "scores": scores}
    dtype = "bfloat16" if mode in ("step-bf16", "step-bf16-alone", "step-bf16-one-reading", "cascade") else "float32"
    blend = "off" if mode == "step-bf16-alone" else "auto"
    readings = 0 if mode == "step-bf16-one-reading" else ClassifierConfig().slip_readings
    clf = Classifier(ClassifierConfig(model=model, dtype=dtype, batch_size=64, blend=blend, slip_readings=readings),
                     RuntimeConfig())
    clf.predict(posts[:64])  # warm-up
    start = time.perf_counter()
    if mode == "cascade":
        from moderator.cascade import Prefilter

        prefilter = Prefilter(clf.model_ref.path)
        p1 = prefilter.probability(posts)
        keep = np.flatnonzero(~prefilter.clears(p1))
        scores = p1.astype(np.float64)
        scores[keep] = clf.toxicity(clf.predict([posts[i] for i in keep]))
        extra = {"cleared": int(len(posts) - len(keep))}
    else:
        scores = clf.toxicity(clf.predict(posts))
        extra = {}
    seconds = time.perf_counter() - start
    tokens = sum(len(ids) for ids in clf.tokenizer(posts, truncation=True, max_length=clf.max_length)["input_ids"])
    return {"mode": mode, "posts": len(posts), "seconds": seconds, "tokens": tokens, "scores": list(map(float, scores)),
            "threads": torch.get_num_threads(), **extra}


def child(args: argparse.Namespace) -> None:
    result = run_mode(args.mode, Path(args.posts_file), args.model, args.naive_limit)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(args.result).write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=20000)
    parser.add_argument("--naive-limit", type=int, default=2000, help="posts the slow baseline is timed on")
    parser.add_argument("--model", default=str(ROOT / "moderator" / "bundled" / "classifier"))
    parser.add_argument("--modes", default="naive,step-fp32,step-bf16,cascade")
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--posts-file", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="write all numbers here")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.mode:
        return child(args)

    import numpy as np
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from moderator import models

    work = Path(os.environ.get("TMPDIR", "/tmp")) / "moderator-bench"
    work.mkdir(exist_ok=True)
    posts = build_posts(args.posts)
    posts_file = work / "posts.json"
    posts_file.write_text(json.dumps(posts))
    base = models.resolve_path("pip:all-MiniLM-L6-v2", "base")
    tokenizer = AutoTokenizer.from_pretrained(base)
    lengths = sorted(len(ids) for ids in tokenizer(posts, truncation=True, max_length=256)["input_ids"])
    pct = {p: lengths[int(p / 100 * (len(lengths) - 1))] for p in (10, 50, 90, 99)}
    mean_len = statistics.mean(lengths)
    config = AutoConfig.from_pretrained(base)
    fpt = flops_per_token(config, mean_len)
    m = 64 * int(mean_len)
    rates = {name: matmul_rate(dtype, m, config.hidden_size, config.intermediate_size)
             for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    print(f"posts: {len(posts)}, tokens per post: mean {mean_len:.1f}, p10 {pct[10]}, p50 {pct[50]}, "
          f"p90 {pct[90]}, p99 {pct[99]}, max {lengths[-1]}")
    print(f"model: {fpt / 1e6:.1f} MFLOPs per token at the mean length; torch threads {torch.get_num_threads()}")
    for name, rate in rates.items():
        print(f"matmul {m}x{config.hidden_size}x{config.intermediate_size} {name}: {rate / 1e9:.1f} GFLOP/s "
              f"-> limit {rate / fpt:,.0f} tokens/s = {rate / fpt / mean_len:,.0f} posts/s")
    results = {}
    for mode in args.modes.split(","):
        out = work / f"{mode}.json"
        subprocess.run([sys.executable, __file__, "--mode", mode, "--posts-file", str(posts_file),
                        "--result", str(out), "--model", args.model, "--naive-limit", str(args.naive_limit)],
                       check=True)
        results[mode] = json.loads(out.read_text())
    reference = np.array(results["step-fp32"]["scores"]) if "step-fp32" in results else None
    print(f"\n{'mode':<10} {'posts':>6} {'posts/s':>8} {'tokens/s':>9} {'% of bf16 limit':>15} "
          f"{'peak RSS MB':>11}  max |score - fp32|")
    summary = {}
    for mode, r in results.items():
        rate = r["posts"] / r["seconds"]
        tokens_rate = r.get("tokens", 0) / r["seconds"] if r.get("tokens") else None
        scores = np.array(r["scores"])
        diff = float(np.abs(scores - reference[: len(scores)]).max()) if reference is not None else float("nan")
        share = f"{100 * tokens_rate / (rates['bf16'] / fpt):.0f}%" if tokens_rate else "-"
        print(f"{mode:<10} {r['posts']:>6} {rate:>8.1f} {tokens_rate or 0:>9.0f} {share:>15} {r['peak_rss_mb']:>11.0f}  "
              f"{diff:.4f}" + (f"  (cleared {r['cleared']})" if "cleared" in r else ""))
        summary[mode] = {"posts_per_s": rate, "tokens_per_s": tokens_rate, "peak_rss_mb": r["peak_rss_mb"],
                         "max_abs_diff_vs_fp32": diff, **({"cleared": r["cleared"]} if "cleared" in r else {})}
    if "cascade" in results and reference is not None:
        cascade = np.array(results["cascade"]["scores"])
        flags = reference >= 0.5
        lost = int((flags & (cascade < 0.5)).sum())
        print(f"cascade: {lost} of {int(flags.sum())} fp32 toxic flags (>= 0.5) lost ({lost / max(1, flags.sum()):.2%})")
        summary["cascade"]["flags_lost_vs_fp32"] = lost
    if "step-bf16" in results and reference is not None:
        bf16 = np.array(results["step-bf16"]["scores"])
        diff = np.abs(bf16 - reference)
        flips = int(((bf16 >= 0.5) != (reference >= 0.5)).sum())
        print(f"bf16 vs fp32: |diff| mean {diff.mean():.5f}, p99 {np.quantile(diff, 0.99):.4f}, max {diff.max():.4f}; "
              f"decisions at 0.5 that differ: {flips} of {len(diff)}")
    if "naive" in summary:
        for mode in summary:
            if mode != "naive":
                print(f"{mode}: {summary[mode]['posts_per_s'] / summary['naive']['posts_per_s']:.1f}x naive")
    if args.json:
        args.json.write_text(json.dumps({"lengths": pct, "mean_tokens": mean_len, "flops_per_token": fpt,
                                         "matmul_flops": rates, "results": summary}, indent=2))


if __name__ == "__main__":
    main()
