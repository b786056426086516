"""Report throughput and memory: `moderate report` over audit logs of many lines.

    python benchmarks/report_throughput.py --lines 1000000

Writes a finished run folder whose audit log has LINES lines (through moderator's own chain
writer, with the action mix of a forum night: ~88% allow, ~6% rewrite, ~1% review, ~4% remove,
~1% quarantine), then, each in a fresh subprocess so that peak RSS is its own:

- summary:  `report.summarize` (the counting pass and the hash-chain pass) -> lines/s
- html:     summary + HTML (plots) + JSON + Markdown, as `moderate report --out --json --markdown` does
- dsa:      `--dsa-sor` export of every remove/rewrite decision

and the same for a run of LINES/100 lines, to show that peak memory does not grow with the log.
Numbers, not tests.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_run(folder: Path, lines: int, seed: int = 0) -> Path:
    from moderator.auditchain import ChainWriter

    if (folder / "manifest.json").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    writer = ChainWriter(folder / "audit.jsonl")
    thresholds = {"rewrite_threshold": 0.5, "remove_threshold": 0.98, "max_rewrite_toxicity": 0.5, "min_similarity": 0.5}
    models = {"classifier": "a" * 64, "rewriter_base": "b" * 64, "adapter": "c" * 64, "embedder": "d" * 64}
    counts: dict = {}
    batch = []
    for i in range(lines):
        draw = rng.random()
        line = {"run_id": "20261125T010000Z-bench", "time": "2026-11-25T01:00:00.000+00:00", "id": f"post-{i}",
                "source": "dump.parquet", "row": i, "text_sha256": f"{rng.getrandbits(256):064x}"}
        if draw < 0.01:
            line.update(action="quarantine", reason="text_empty", toxicity=None, stage=None, scores=None,
                        rewrite_sha256=None, rewrite_toxicity=None, similarity=None)
        else:
            toxicity = rng.betavariate(0.3, 2.5) if draw < 0.89 else rng.uniform(0.5, 1.0)
            action = "allow" if toxicity < 0.5 else ("remove" if toxicity >= 0.98 else "rewrite")
            reason = {"allow": "below_rewrite_threshold", "remove": "above_remove_threshold",
                      "rewrite": "above_rewrite_threshold"}[action]
            after = similarity = None
            if action == "rewrite":
                after, similarity = rng.uniform(0, 0.7), rng.uniform(0.3, 1.0)
                if after >= 0.5:
                    action, reason = "review", "rewrite_still_toxic"
            line.update(action=action, reason=reason, toxicity=round(toxicity, 6), stage="classifier",
                        scores={"neutral": round(1 - toxicity, 6), "toxic": round(toxicity, 6)},
                        rewrite_sha256=None if after is None else f"{rng.getrandbits(256):064x}",
                        rewrite_toxicity=after, similarity=similarity)
        line.update(thresholds=thresholds, models=models)
        counts[line["action"]] = counts.get(line["action"], 0) + 1
        batch.append(line)
        if len(batch) == 10_000:
            writer.write(batch)
            batch = []
    writer.write(batch)
    writer.close()
    manifest = {
        "status": "complete", "run_id": "20261125T010000Z-bench", "started": "2026-11-25T01:00:00+00:00",
        "audit": writer.summary(), "classifier": {"labels": ["neutral", "toxic"], "multi_label": False},
        "config": {"policy": thresholds}, "models": {"classifier": {"ref": "bench", "sha256": "a" * 64}},
        "counts": {"input_rows": lines, "quarantined_rows": counts.get("quarantine", 0),
                   "actions": {k: v for k, v in counts.items() if k != "quarantine"}},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def measure(kind: str, run: str, out: str) -> None:
    """In a child process: one kind of work, then print its time and this process's peak RSS."""
    from moderator import dsa, report
    from moderator.config import JobConfig

    settings = JobConfig().report
    start = time.perf_counter()
    if kind == "summary":
        report.summarize([Path(run)], settings)
    elif kind == "html":
        summary = report.summarize([Path(run)], settings)
        for suffix, render in ((".html", report.render_html), (".json", report.render_json),
                               (".md", report.render_markdown)):
            Path(out).with_suffix(suffix).write_text(render(summary))
    else:
        dsa.export([Path(run)], settings, Path(out).with_suffix(".jsonl"))
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-report")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "RUN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure(*args.child)
        return
    results = {}
    for lines in (args.lines // 100, args.lines):
        t = time.perf_counter()
        run = make_run(args.work / f"run-{lines}", lines)
        size = (run / "audit.jsonl").stat().st_size
        print(f"audit log of {lines:,} lines ({size / 1e6:.0f} MB) ready in {time.perf_counter() - t:.0f} s", flush=True)
        for kind in ("summary", "html", "dsa"):
            output = subprocess.run([sys.executable, __file__, "--child", kind, str(run), str(args.work / f"out-{lines}")],
                                    check=True, capture_output=True, text=True).stdout
            result = json.loads(output.strip().splitlines()[-1])
            result["lines_per_s"] = lines / result["seconds"]
            results[f"{kind}-{lines}"] = result
            print(f"{kind:8s} {lines:>10,} lines: {result['seconds']:7.1f} s  {result['lines_per_s']:>9,.0f} lines/s  "
                  f"peak RSS {result['peak_rss_mb']:.0f} MB", flush=True)
    for kind in ("summary", "html", "dsa"):
        small, large = results[f"{kind}-{args.lines // 100}"], results[f"{kind}-{args.lines}"]
        print(f"{kind}: peak RSS at {args.lines:,} lines / at {args.lines // 100:,} lines = "
              f"{large['peak_rss_mb'] / small['peak_rss_mb']:.2f}")
    (args.work / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
