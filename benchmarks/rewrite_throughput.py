"""Rewrite throughput: the vLLM engine against the transformers + PEFT engine, same base and adapter.

    python benchmarks/rewrite_throughput.py --sentences 500

Rewrites the first N ParaDetox dev sentences with each engine (greedy, float32 on CPU), each engine in
its own subprocess so that start-up and peak RSS are its own, and prints sentences/s and generated
tokens/s (start-up excluded and reported apart), plus how many rewrites each vLLM run shares with the
transformers engine. `vllm` applies the adapter the way the product does by default
(`[rewriter] lora_serving = "auto"`: merged on CPUs, a LoRARequest on GPUs); `vllm:request` and
`vllm:merged` force one way, e.g. --engines vllm:merged,vllm:request,hf; a suffix `@on` or `@off` sets
`[rewriter] compile` (default auto: eager on CPUs), e.g. --engines vllm@on,vllm@off. Start-up includes
merging the adapter the first time (then it is cached) and, when compiling, vLLM's torch.compile.
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


def child(spec: str, sentences: int, adapter: str, dtype: str, batch_size: int, result: Path) -> None:
    from moderator import prompts
    from moderator.config import RewriterConfig, RuntimeConfig
    from moderator.rewrite import Rewriter
    from train import data

    posts = [p.toxic for p in data.paradetox_pairs(str(DATA)) if p.split == "dev"][:sentences]
    spec, _, compile_setting = spec.partition("@")
    engine, _, lora_serving = spec.partition(":")
    start = time.perf_counter()
    rewriter = Rewriter(RewriterConfig(adapter=adapter, engine=engine, dtype=dtype, batch_size=batch_size,
                                       max_new_tokens=64, lora_serving=lora_serving or "auto",
                                       compile=compile_setting or "auto"), RuntimeConfig())
    startup = time.perf_counter() - start
    rewriter.engine.generate([prompts.build_prompt(p) for p in posts[:4]])  # warm-up
    start = time.perf_counter()
    generations = rewriter.engine.generate([prompts.build_prompt(p) for p in posts])
    seconds = time.perf_counter() - start
    result.write_text(json.dumps({
        "engine": spec, "lora_serving": getattr(rewriter.engine, "lora_serving", None),
        "compiled": getattr(rewriter.engine, "compiled", None), "sentences": len(posts),
        "seconds": seconds, "startup_s": startup, "tokens": sum(len(g.token_ids) for g in generations),
        "texts": [g.text for g in generations], "token_ids": [list(g.token_ids) for g in generations],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=500)
    parser.add_argument("--adapter", default=str(ROOT / "moderator" / "bundled" / "rewriter"))
    parser.add_argument("--engines", default="vllm,hf", help="comma-separated: vllm, vllm:request, vllm:merged, hf; "
                        "a vllm one may end in @on or @off (compile)")
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
        out = Path("/tmp") / f"moderator-rewrite-bench-{engine.replace(':', '-').replace('@', '-')}.json"
        subprocess.run([sys.executable, __file__, "--child", engine, "--result", str(out), "--sentences",
                        str(args.sentences), "--adapter", args.adapter, "--dtype", args.dtype,
                        "--batch-size", str(args.batch_size)], check=True)
        results[engine] = json.loads(out.read_text())
    print(f"\n{'engine':<13} {'adapter':<8} {'compiled':>8} {'sentences':>9} {'sentences/s':>11} {'tokens/s':>9} {'start-up s':>10} "
          f"{'peak RSS MB':>11}")
    for engine, r in results.items():
        compiled = "-" if r["compiled"] is None else ("yes" if r["compiled"] else "no")
        print(f"{engine:<13} {r['lora_serving'] or 'peft':<8} {compiled:>8} {r['sentences']:>9} {r['sentences'] / r['seconds']:>11.2f} "
              f"{r['tokens'] / r['seconds']:>9.1f} {r['startup_s']:>10.1f} {r['peak_rss_mb']:>11.0f}")
    names = list(results)
    for i, engine in enumerate(names):
        for other in names[i + 1:]:
            a, b = results[engine], results[other]
            same = sum(x == y for x, y in zip(a["token_ids"], b["token_ids"]))
            line = f"{engine} vs {other}: token-identical rewrites {same}/{len(a['token_ids'])}"
            if other == "hf":
                speedup = (b["seconds"] / b["sentences"]) / (a["seconds"] / a["sentences"])
                line = f"{engine} ({a['lora_serving']}) is {speedup:.1f}x the transformers engine; " + line
            print(line)
    if args.json:
        summary = {k: {kk: vv for kk, vv in v.items() if kk not in ("texts", "token_ids")} for k, v in results.items()}
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
