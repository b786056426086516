"""What reading slips both ways changes (`[classifier] slip_readings`, moderator/deobfuscate.py readings).

    python benchmarks/slip_readings.py                 # the bundled classifier, 0 readings against 4
    python benchmarks/slip_readings.py --readings 0,2,4 --classifier runs/classifier-v11

Scores the dev split of every labelled source of ../shared/data (train/classifier_data.py; the
robustness templates are judged by benchmarks/robustness.py) with each number of readings and prints,
per source, ROC-AUC, and at the flag decision the false-positive rate and recall, the seconds the
scoring took, how many texts had other readings, and the texts whose decision changed. Numbers, not
tests.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readings", default="0,4", help="comma-separated values of slip_readings to compare")
    parser.add_argument("--classifier", help="classifier folder [default: the bundled one]")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--changed", type=int, default=40, help="texts with a changed decision to print")
    args = parser.parse_args()

    from moderator import deobfuscate
    from moderator.classify import Classifier
    from moderator.config import ClassifierConfig, RuntimeConfig
    from train import classifier_data
    from train.classifier_eval import THRESHOLD, metrics

    dev = [e for e in classifier_data.examples(args.data, augment=False)
           if e.split == "dev" and e.toxic in (0, 1) and e.source != "robustness"]
    texts = [e.text for e in dev]
    labels = np.array([e.toxic for e in dev], dtype=bool)
    sources = np.array([e.source for e in dev])
    scores = {}
    for k in (int(x) for x in args.readings.split(",")):
        clf = Classifier(ClassifierConfig(model=args.classifier, slip_readings=k), RuntimeConfig())
        clf.predict(texts[:64])  # warm-up
        start = time.perf_counter()
        scores[k] = clf.toxicity(clf.predict(texts))
        seconds = time.perf_counter() - start
        others = sum(bool(deobfuscate.readings(t, k)) for t in texts)
        overall = metrics(labels, scores[k])
        print(f"slip_readings {k}: {len(texts):,} dev texts in {seconds:.1f} s, {others:,} with other readings; "
              f"ROC-AUC {overall['roc_auc']}, FPR {overall['fpr']}, recall {overall['recall']}")
        for source in sorted(set(sources)):
            m = metrics(labels[sources == source], scores[k][sources == source])
            print(f"  {source:14s} n {m['n']:6,}  ROC-AUC {m['roc_auc'] if m['roc_auc'] is not None else '-':>6}  "
                  f"FPR {m['fpr'] if m['fpr'] is not None else '-':>6}  recall {m['recall'] if m['recall'] is not None else '-':>6}")
    first, *rest = scores
    for k in rest:
        changed = np.flatnonzero((scores[first] >= THRESHOLD) != (scores[k] >= THRESHOLD))
        print(f"decisions changed from slip_readings {first} to {k}: {len(changed)}")
        for i in changed[: args.changed]:
            print(f"  {'toxic' if labels[i] else 'clean'} {scores[first][i]:.2f} -> {scores[k][i]:.2f} "
                  f"{sources[i]}: {texts[i][:140]!r}")


if __name__ == "__main__":
    main()
