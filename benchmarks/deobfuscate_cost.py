"""What reading a post before the classifier costs (moderator/deobfuscate.py), step by step.

    python benchmarks/deobfuscate_cost.py --texts 10000

Times each step of `classifier_input` over dev texts of ../shared/data (all sources, shuffled with a
fixed seed), in the order the product runs them, with the typo and glued-word step's cache cleared
first, and prints microseconds per text, how many texts each step changes, and the dictionary's load
time and memory. Numbers, not tests.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from moderator import deobfuscate  # noqa: E402


def steps() -> list[tuple[str, object]]:
    """classifier_input's steps: NFKC, then the deobfuscation's own, in the product's order."""
    return [("nfkc", lambda t: unicodedata.normalize("NFKC", t)), *deobfuscate.STEPS]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=10000)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    args = parser.parse_args(argv)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # before the data: the dictionary's own memory
    start = time.perf_counter()
    deobfuscate._speller()
    load_s = time.perf_counter() - start
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024
    from train import classifier_data

    texts = [e.text for e in classifier_data.examples(args.data, augment=False) if e.split == "dev"]
    random.Random(0).shuffle(texts)
    texts = texts[: args.texts]
    deobfuscate._respelled.cache_clear()
    result = {"texts": len(texts), "dictionary_load_s": round(load_s, 2), "dictionary_rss_mb": round(grown_mb, 1),
              "steps": {}}
    current = texts
    for name, step in steps():
        start = time.perf_counter()
        after = [step(t) for t in current]  # type: ignore[operator]
        seconds = time.perf_counter() - start
        result["steps"][name] = {"us_per_text": round(1e6 * seconds / len(texts), 1),
                                 "changed": sum(a != b for a, b in zip(after, current))}
        current = after
    assert current == [deobfuscate.classifier_input(t) for t in texts]  # the steps are the product's reading
    print(f"{len(texts)} dev texts; dictionary loaded in {load_s:.2f} s (+{grown_mb:.0f} MB peak RSS)")
    print(f"{'step':24} {'us/text':>8} {'changed':>8}")
    for name, row in result["steps"].items():
        print(f"{name:24} {row['us_per_text']:8.1f} {row['changed']:8d}")
    print(f"{'all':24} {sum(r['us_per_text'] for r in result['steps'].values()):8.1f}")
    return result


if __name__ == "__main__":
    main()
