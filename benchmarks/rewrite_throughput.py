"""Rewrite throughput: the vLLM engine against the transformers + PEFT engine, same base and adapter.

    python benchmarks/rewrite_throughput.py --sentences 500

Rewrites the first N ParaDetox dev sentences with each engine (greedy, float32 on CPU), each engine in
its own subprocess so that start-up and peak RSS are its own, and prints sentences/s and generated
tokens/s (start-up excluded and reported apart), plus how many rewrites the two engines agree on.
On a GPU machine, --engines hf --dtype bfloat16 times the transformers path alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"


def child(engine: str, sentences: int, adapter: str, dtype: str, batch_size: int, result: Path) -> None:
    from moderator import prompts
    from moderator.config import RewriterConfig, RuntimeConfig
    from moderator.rewrite import Rewriter
    from train import data

    posts = [p.toxic for p in data.paradetox_pairs(str(DATA)) if p.split == "dev"][:sentences]
    start = time.perf_counter()
    rewriter = Rewriter(RewriterConfig(adapter=adapter, engine=engine, dtype=dtype, batch_size=batch_size,
                                       max_new_tokens=64), RuntimeConfig())
    startup = time.perf_counter() - start
    rewriter.engine.generate([prompts.build_prompt(p) for p in posts[:4]])  # warm-up
    start = time.perf_counter()
    generations = rewriter.engine.generate([prompts.build_prompt(p) for p in posts])
    seconds = time.perf_counter() - start
    result.write_text(json.dumps({
        "engine": engine, "sentences": len(posts), "seconds": seconds, "startup_s": startup,
        "tokens": sum(len(g.token_ids) for g in generations), "texts": [g.text for g in generations],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=500)
    parser.add_argument("--adapter", default=str(ROOT / "moderator" / "bundled" / "rewriter"))
    parser.add_argument("--engines", default="vllm,hf")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per generate call, transformers engine")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.sentences, args.adapter, args.dtype, args.batch_size, Path(args.result))
    results = {}
    for engine in args.engines.split(","):
        out = Path("/tmp") / f"moderator-rewrite-bench-{engine}.json"
        subprocess.run([sys.executable, __file__, "--child", engine, "--result", str(out), "--sentences",
                        str(args.sentences), "--adapter", args.adapter, "--dtype", args.dtype,
                        "--batch-size", str(args.batch_size)], check=True)
        results[engine] = json.loads(out.read_text())
    print(f"\n{'engine':<6} {'sentences':>9} {'sentences/s':>11} {'tokens/s':>9} {'start-up s':>10} {'peak RSS MB':>11}")
    for engine, r in results.items():
        print(f"{engine:<6} {r['sentences']:>9} {r['sentences'] / r['seconds']:>11.2f} {r['tokens'] / r['seconds']:>9.1f} "
              f"{r['startup_s']:>10.1f} {r['peak_rss_mb']:>11.0f}")
    if {"vllm", "hf"} <= set(results):
        speedup = (results["hf"]["seconds"] / results["hf"]["sentences"]) / (results["vllm"]["seconds"] / results["vllm"]["sentences"])
        same = sum(a == b for a, b in zip(results["vllm"]["texts"], results["hf"]["texts"]))
        print(f"vLLM is {speedup:.1f}x the transformers engine; identical rewrites: {same}/{len(results['hf']['texts'])}")
    if args.json:
        args.json.write_text(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "texts"} for k, v in results.items()},
                                        indent=2))


if __name__ == "__main__":
    main()
