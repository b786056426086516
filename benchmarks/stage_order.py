"""Does taking turns between the two models cost anything? The same batches in one process, scored and
rewritten in two orders, several rounds each:

- grouped:      every batch scored, then every batch rewritten (what `end_to_end.py --stages` times)
- alternating:  score then rewrite each batch in turn (what the local executor does on a CPU)
- alternating+trim: the same with `memory.release()` (malloc_trim) after each batch, as `Outputs.write` does

    python benchmarks/stage_order.py --posts 2000 --rounds 2

The corpus and job file are those of end_to_end.py (built by make_corpus.py under --work). One
process and one model load for all rounds, so that the difference between orders is not hidden by the
difference between processes (about 10% on the 2-core development machines). Numbers, not tests.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--toxic-share", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench")
    args = parser.parse_args()

    from end_to_end import environment, settings, toml
    from make_corpus import corpus as make_corpus

    os.environ.update(environment())
    from moderator import memory, readers
    from moderator.steps import apply_steps, build_steps, load_models
    from moderator.config import JobConfig

    args.work.mkdir(parents=True, exist_ok=True)
    corpus = make_corpus(args.work, args.posts, args.toxic_share)
    job = args.work / "job-stage-order.toml"
    job.write_text(toml(settings(argparse.Namespace(no_rewrite=False, engine=None, batch_size=None), "sequential")))
    config = JobConfig.load(str(job))
    steps = build_steps(config, load_models(config))
    [item] = readers.discover([str(corpus)])
    batches = list(readers.open_reader(item, config.input.batch_size, config.input.text_column, None,
                                       config.input.id_column))

    def grouped(clock: Counter) -> None:
        scored = [apply_steps(steps.scoring, b, clock) for b in batches]
        for batch in scored:
            apply_steps(steps.rewriting, batch, clock)

    def alternating(clock: Counter, trim: bool) -> None:
        for batch in batches:
            apply_steps(steps.rewriting, apply_steps(steps.scoring, batch, clock), clock)
            if trim:
                memory.release()

    orders = {"grouped": grouped, "alternating": lambda c: alternating(c, False),
              "alternating+trim": lambda c: alternating(c, True)}
    print(f"# {args.posts} posts, {len(batches)} batches, toxic share {args.toxic_share}", flush=True)
    for round_ in range(args.rounds):
        for name, order in orders.items():
            clock: Counter = Counter()
            start = time.perf_counter()
            order(clock)
            total = time.perf_counter() - start
            print(json.dumps({"round": round_ + 1, "order": name, "total_s": round(total, 2),
                              **{k: round(v, 2) for k, v in clock.items() if v >= 0.05}}), flush=True)


if __name__ == "__main__":
    main()
