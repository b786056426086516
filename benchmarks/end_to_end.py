"""End-to-end throughput and memory of `moderate batch`, against its stages alone and across executors.

    python benchmarks/end_to_end.py --posts 2000 --engine hf --executors local,sequential,ray --stages
    python benchmarks/end_to_end.py --posts 10000,100000 --no-rewrite --executors local
    python benchmarks/end_to_end.py --posts 100000,1000000      # the issue's sizes: needs a GPU for the rewrites

For each corpus size (built once by make_corpus.py from ../shared/data under --work, default
runs/bench/) and each executor, `moderate batch` runs in a fresh subprocess:

- local:      the default local executor (reading in a thread, [runtime] queue_depth = 2; on a CPU
              the two models take turns in the main thread, overlap_models = "auto")
- overlap:    the same with overlap_models = "on" (scoring and rewriting in threads of their own,
              classifier and engine may compute at once)
- sequential: the local executor with queue_depth = 0 (each batch through every step in turn)
- ray:        --executor ray, on a local Ray that the run starts (every core of this machine)

Printed per run: wall time and posts/s (end to end, model loading included, as a user waits for
it), the run's own step times (manifest timings_s: busy seconds per step, summed over threads or
actors), and peak RSS: of the `moderate` process itself (getrusage of the child), and of its whole
process tree sampled every 0.2 s (this includes the Ray workers).

--stages also measures each stage alone, in one fresh process, on the same corpus: load the models,
read every batch into memory, then score them all, then rewrite them all, then write them all; so it
is for sizes that fit in memory. The overhead check compares the pipeline's time after loading the
models with the slowest stage alone plus the reading time, and with the sum of the stages.

Numbers, not tests. Rewriting costs about 0.2-0.3 s per flagged post on a 2-core CPU: with 10%
toxic posts, 1M posts is a GPU job; use --no-rewrite or a lower --toxic-share on CPUs and say so.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

EXECUTORS = {
    "local": {"runtime": {"executor": "local"}},
    "overlap": {"runtime": {"executor": "local", "overlap_models": "on"}},
    "sequential": {"runtime": {"executor": "local", "queue_depth": 0}},
    "ray": {"runtime": {"executor": "ray"}},
}


def toml(layers: dict[str, dict]) -> str:
    def value(v):  # type: ignore[no-untyped-def]
        return json.dumps(v) if not isinstance(v, bool) else str(v).lower()
    return "".join(f"[{section}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in values.items())
                   for section, values in layers.items())


def settings(args: argparse.Namespace, executor: str) -> dict[str, dict]:
    layers: dict[str, dict] = {"rewriter": {"enabled": not args.no_rewrite}, "runtime": {}}
    if args.engine:
        layers["rewriter"]["engine"] = args.engine
    if args.batch_size:
        layers["input"] = {"batch_size": args.batch_size}
    layers["runtime"].update(EXECUTORS[executor]["runtime"])
    return layers


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "VLLM_CACHE_ROOT": os.environ.get("VLLM_CACHE_ROOT", "/tmp/moderator-bench-vllm-cache")}


def tree_rss(pid: int) -> int:
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_batch(corpus: Path, out: Path, job: Path) -> dict:
    """`moderate batch` in a fresh process: wall time, its peak RSS, the tree's sampled peak, its manifest."""
    argv = [sys.executable, "-m", "moderator", "batch", str(corpus), "--out", str(out), "--config", str(job),
            "--overwrite", "-q"]
    start = time.perf_counter()
    child = subprocess.Popen(argv, env=environment(), stderr=subprocess.PIPE, text=True)
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(child.pid))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode not in (0, 7):
        raise RuntimeError(f"moderate batch failed ({child.returncode}):\n{stderr[-3000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "tree_peak_rss_mb": round(peak[0] / 2**20, 1), "manifest": manifest}


def stages_child(corpus: str, job: str) -> None:
    """Each stage alone, in this process; prints one JSON object."""
    import tempfile
    from collections import Counter

    from moderator import readers
    from moderator.auditchain import ChainStart
    from moderator.checkpoint import Checkpoint
    from moderator.config import JobConfig
    from moderator.outputs import Outputs
    from moderator.steps import apply_steps, build_steps, load_models

    config = JobConfig.load(job)
    times: dict[str, float] = {}
    t = time.perf_counter()
    steps = build_steps(config, load_models(config))
    times["load_models"] = time.perf_counter() - t
    [item] = readers.discover([corpus])
    t = time.perf_counter()
    batches = list(readers.open_reader(item, config.input.batch_size, config.input.text_column, None,
                                       config.input.id_column))
    times["read"] = time.perf_counter() - t
    clock: Counter = Counter()
    t = time.perf_counter()
    batches = [apply_steps(steps.scoring, b, clock) for b in batches]
    times["score"] = time.perf_counter() - t
    t = time.perf_counter()
    batches = [apply_steps(steps.rewriting, b, clock) for b in batches]
    times["rewrite"] = time.perf_counter() - t
    ids = steps.model_ids()
    with tempfile.TemporaryDirectory(dir=Path(corpus).parent) as staging:
        outputs = Outputs(Path(staging), "parquet", config.output.rows_per_shard, config.output.compression, 0o600,
                          (ChainStart(), "bench", {k: float(v) for k, v in vars(config.policy).items()}, ids, False),
                          steps.labels, Checkpoint({}, "bench", "", ids), resume=False, checkpoints=True)
        t = time.perf_counter()
        first = 0
        for batch in batches:
            outputs.write(batch, 0, first)
            first += batch.num_rows
        outputs.close()
        times["write"] = time.perf_counter() - t
    print(json.dumps({"stages_s": {k: round(v, 3) for k, v in times.items()}, "steps_s": dict(clock),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


def run_stages(corpus: Path, job: Path) -> dict:
    argv = [sys.executable, str(Path(__file__).resolve()), "--stages-child", str(corpus), "--job", str(job)]
    done = subprocess.run(argv, env=environment(), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"stages alone failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", default="2000", help="corpus sizes, comma-separated")
    parser.add_argument("--toxic-share", type=float, default=0.1)
    parser.add_argument("--no-rewrite", action="store_true", help="classify and decide only (labelled as such)")
    parser.add_argument("--engine", choices=("auto", "vllm", "hf"), help="rewrite engine [default: the run's default]")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--executors", default="local", help=f"comma-separated: {', '.join(EXECUTORS)}")
    parser.add_argument("--stages", action="store_true", help="also time each stage alone (sizes that fit in memory)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench")
    parser.add_argument("--stages-child", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stages_child:
        stages_child(args.stages_child, args.job)
        return
    from make_corpus import corpus as make_corpus

    args.work.mkdir(parents=True, exist_ok=True)
    label = "classify + decide only (--no-rewrite)" if args.no_rewrite else f"rewrite on, engine {args.engine or 'default'}"
    print(f"# {label}; toxic share {args.toxic_share}; {os.cpu_count()} CPUs", flush=True)
    results = []
    for n in [int(x) for x in args.posts.split(",")]:
        corpus = make_corpus(args.work, n, args.toxic_share)
        for executor in args.executors.split(","):
            job = args.work / f"job-{executor}{'-norewrite' if args.no_rewrite else ''}.toml"
            job.write_text(toml(settings(args, executor)))
            result = run_batch(corpus, args.work / f"run-{n}-{executor}", job)
            manifest = result.pop("manifest")
            timings, counts = manifest["timings_s"], manifest["counts"]
            row = {"posts": n, "executor": executor, **result, "posts_per_s": round(n / result["wall_s"], 1),
                   "load_models_s": timings.get("load_models"), "run_total_s": timings["total"],
                   "timings_s": timings, "actions": counts["actions"]}
            print(json.dumps(row), flush=True)
            results.append(row)
            if args.stages and executor == args.executors.split(",")[0]:
                alone = run_stages(corpus, job)
                stages = alone["stages_s"]
                pipeline_s = timings["total"] - timings.get("load_models", 0)
                slowest = max(stages["score"], stages["rewrite"], stages["write"])
                summary = {"posts": n, "stages_alone_s": stages, "steps_alone_s": alone["steps_s"],
                           "pipeline_after_load_s": round(pipeline_s, 2),
                           "sum_of_stages_s": round(stages["read"] + stages["score"] + stages["rewrite"]
                                                    + stages["write"], 2),
                           "slowest_plus_read_s": round(slowest + stages["read"], 2),
                           "ratio_to_slowest_plus_read": round(pipeline_s / (slowest + stages["read"]), 3)}
                print(json.dumps(summary), flush=True)
                results.append(summary)
    out = args.work / f"results-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"# written to {out}", flush=True)


if __name__ == "__main__":
    main()
