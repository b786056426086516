"""Does the classifier flag people for naming who they are, and does spelled-out abuse get past it?

    python benchmarks/robustness.py                                     # bundled classifier, product threshold
    python benchmarks/robustness.py --json runs/robustness/shipped.json
    python benchmarks/robustness.py --classifier runs/classifier/v2 --threshold 0.6 --examples 5
    python benchmarks/robustness.py --split dev --no-judge              # held-out phrasings only, no reference

Data: none read from disk, nothing from ../shared/data. train/robustness.py writes about 2,500 labelled
cases from templates of its own: short statements about 39 identity groups (religion, ethnicity,
nationality, gender, sexual orientation, disability, age) that are neutral ("I am a Muslim."), positive
("I love women."), negated hate ("I don't hate gay people.") or counter-speech that quotes or reports
abuse to condemn it ('Calling someone a "retard" is not okay.'), all expected clean; and attacks on
groups (explicit_hate), threats and personal insults, all expected toxic, plus each of those once more
with its abusive words obfuscated by spacing ("i d i o t", "s.t.u.p.i.d"), leetspeak or masking
("1d10t", "f*ck"), look-alike letters from other scripts (homoglyph; Unicode NFKC, which the
classifier applies, does not undo them), a typo ("idoit", "idot") or glued to a neighbouring word
("youidiot"). Every group gets the same phrasings. Every third template of
a kind is a "dev" template: training may use the "train" cases (train/robustness.py generate, swap_identity,
obfuscate), and the dev column then shows phrasings it never saw.

Scoring: every case is one post, scored the way `moderate batch` scores a post: the classifier step
(moderator.classify.Classifier on a record batch, its toxicity column; for texts this short, the
probability of the whole post), cascade off (the product's default), float32 on CPU unless --dtype says
otherwise (auto: the product's runtime choice, bf16 on CPUs that have it; scores within ~0.03). A case is
**flagged** when its toxicity >= the threshold; by default the product's flag decision, [policy]
rewrite_threshold (moderator.config.PolicyConfig, 0.5): at or above it a post counts as toxic and is
rewritten, removed or sent to review instead of published as written.

Printed (and written with --json F):

- per kind: n, the expected label, the flag rate (share of cases flagged) over all cases and over the
  dev templates only, the mean toxicity, and the target from issue 16 with met / MISSED: the benign
  kinds (neutral_identity, positive_identity, negated_hate, counter_speech) flagged at most 10%, the
  toxic and obfuscated kinds (explicit_hate, threat, insult, group_insult, obfuscated_*) caught
  (flagged) at least 85%; for the toxic kinds, the share the policy removes untried by category
  (flagged and scoring >= [policy] category_threshold in threat or identity_attack: right for hate and
  threats, wrong for insults, personal or at groups no law protects, which are rewritten). Next to
  it the flag rate of alt-profanity-check (predict_prob >= 0.5, its own convention; a TF-IDF + linear
  SVM that judges profanity more than toxicity and saw none of this project's training data), a
  reference (--no-judge leaves it out).
- fairness: per identity group and per axis, the flag rate of the benign cases that name the group
  (the four benign kinds) and the catch rate of the attacks on it (explicit_hate and group threats);
  the spread is the highest minus the lowest benign flag rate across groups.
- examples: per kind, the benign cases scored highest and the toxic ones scored lowest (--examples N).

Numbers, not tests. About a minute on a 2-core CPU (loading the model included).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from train import robustness as suite  # noqa: E402

BENIGN_MAX = 0.10  # issue 16: benign kinds flagged at most this share
CAUGHT_MIN = 0.85  # issue 16: toxic and obfuscated kinds caught at least this share
JUDGE_TOXIC = 0.5  # alt-profanity-check predict_prob from which a text counts as flagged

log = logging.getLogger("robustness")


# --- scoring ----------------------------------------------------------------------------------------------

def product_threshold() -> float:
    """The product's flag decision: [policy] rewrite_threshold at its default."""
    from moderator.config import PolicyConfig

    return float(PolicyConfig().rewrite_threshold)


def load_classifier(path: str | None = None, dtype: str = "float32", batch_size: int = 128):  # type: ignore
    """The classifier as `moderate batch` loads it (None: the bundled one), cascade off."""
    from moderator.classify import Classifier
    from moderator.config import ClassifierConfig, RuntimeConfig

    return Classifier(ClassifierConfig(model=path, batch_size=batch_size, cascade="off", dtype=dtype),
                      RuntimeConfig())


def score(classifier, texts: list[str]) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Each text's toxicity as the product scores a post: the classifier step's toxicity column."""
    return score_with_categories(classifier, texts)[0]


def score_with_categories(classifier, texts: list[str]) -> tuple[np.ndarray, np.ndarray | None]:  # type: ignore
    """(toxicity, category score) per text, as the product scores a post: the classifier step's toxicity
    column, and the highest score among the policy's unrewritable_categories (threat, identity_attack),
    None for a classifier without them."""
    import pyarrow as pa

    from moderator import records
    from moderator.config import PolicyConfig
    from moderator.policy import Policy

    if not texts:
        return np.zeros(0), None
    out = classifier(pa.RecordBatch.from_pydict({records.TEXT: pa.array(texts, pa.string())}))
    toxicity = np.asarray(out.column(records.TOXICITY).to_pylist(), dtype=np.float64)
    categories = records.category_scores(out)
    policy = Policy(PolicyConfig())
    if not any(name in categories for name in policy.config.unrewritable_categories):
        return toxicity, None
    return toxicity, policy.category_signs(categories, len(texts)).astype(np.float64)


def category_threshold() -> float:
    """The policy's category_threshold: at or above it a flagged post counts as holding the category."""
    from moderator.config import PolicyConfig

    return float(PolicyConfig().category_threshold)


def judge(texts: list[str]) -> np.ndarray | None:
    """alt-profanity-check's probabilities, or None when it is not installed."""
    try:
        from profanity_check import predict_prob
    except ImportError:
        log.warning("alt-profanity-check is not installed (pip install alt-profanity-check): no reference column")
        return None
    return np.asarray(predict_prob(texts), dtype=np.float64) if texts else np.zeros(0)


# --- rates ------------------------------------------------------------------------------------------------

def _rate(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def target(kind: str) -> tuple[str, float]:
    """('<=', 0.10) for the benign kinds, ('>=', 0.85) for the toxic and obfuscated ones."""
    return ("<=", BENIGN_MAX) if not suite.EXPECTED[kind] else (">=", CAUGHT_MIN)


def met(kind: str, rate: float | None) -> bool | None:
    if rate is None:
        return None
    sign, goal = target(kind)
    return rate <= goal if sign == "<=" else rate >= goal


def flag_rates(cases: list[suite.Case], scores, threshold: float) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """Per kind (in suite.KINDS order, kinds without cases left out): n, expected, flagged, flag_rate,
    dev_n, dev_flag_rate, mean_score, target, met. A case is flagged when its score >= threshold."""
    if len(cases) != len(scores):
        raise ValueError(f"{len(cases)} cases but {len(scores)} scores")
    by_kind: dict[str, list[tuple[suite.Case, float]]] = defaultdict(list)
    for case, value in zip(cases, scores):
        by_kind[case.kind].append((case, float(value)))
    out = {}
    for kind in suite.KINDS:
        rows = by_kind.get(kind)
        if not rows:
            continue
        flags = [value >= threshold for _, value in rows]
        dev = [value >= threshold for case, value in rows if case.split == "dev"]
        sign, goal = target(kind)
        rate = _rate(flags)
        out[kind] = {"n": len(rows), "expected": "toxic" if suite.EXPECTED[kind] else "clean",
                     "flagged": int(sum(flags)), "flag_rate": rate, "dev_n": len(dev), "dev_flag_rate": _rate(dev),
                     "mean_score": round(float(np.mean([v for _, v in rows])), 4),
                     "target": f"{sign} {goal:.2f}", "met": met(kind, rate)}
    return out


def group_rates(cases: list[suite.Case], scores, threshold: float) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """Per identity group (in suite.GROUPS order): benign_n and benign_flag_rate over its cases of the benign
    kinds, attack_n and attack_caught over its explicit_hate and threat cases. Obfuscated cases are not
    counted here (their rates are per obfuscation)."""
    benign: dict[str, list[bool]] = defaultdict(list)
    attack: dict[str, list[bool]] = defaultdict(list)
    for case, value in zip(cases, scores):
        if case.group is None:
            continue
        flagged = float(value) >= threshold
        if case.kind in suite.BENIGN_KINDS:
            benign[case.group].append(flagged)
        elif case.kind in ("explicit_hate", "threat"):
            attack[case.group].append(flagged)
    out = {}
    for group in suite.GROUPS:
        if group.name in benign or group.name in attack:
            out[group.name] = {"axis": group.axis, "benign_n": len(benign[group.name]),
                               "benign_flag_rate": _rate(benign[group.name]),
                               "attack_n": len(attack[group.name]), "attack_caught": _rate(attack[group.name])}
    return out


def axis_rates(groups: dict[str, dict]) -> dict[str, dict]:
    """Per axis: the case-weighted benign flag rate and attack catch rate of its groups, and the spread of
    the benign flag rate across them."""
    out = {}
    for axis in suite.AXES:
        rows = [g for g in groups.values() if g["axis"] == axis]
        if not rows:
            continue
        benign_n = sum(g["benign_n"] for g in rows)
        attack_n = sum(g["attack_n"] for g in rows)
        rates = [g["benign_flag_rate"] for g in rows if g["benign_flag_rate"] is not None]
        out[axis] = {
            "groups": len(rows), "benign_n": benign_n, "attack_n": attack_n,
            "benign_flag_rate": round(sum(g["benign_flag_rate"] * g["benign_n"] for g in rows if g["benign_n"])
                                      / benign_n, 4) if benign_n else None,
            "attack_caught": round(sum(g["attack_caught"] * g["attack_n"] for g in rows if g["attack_n"])
                                   / attack_n, 4) if attack_n else None,
            "benign_spread": round(max(rates) - min(rates), 4) if rates else None,
        }
    return out


def pick_examples(cases: list[suite.Case], scores, threshold: float,  # type: ignore[no-untyped-def]
                  limit: int) -> dict[str, list[dict]]:
    """Per kind, its worst failures: benign cases flagged, highest score first; toxic cases missed, lowest first."""
    out: dict[str, list[dict]] = {}
    for kind in suite.KINDS:
        rows = [(c, float(s)) for c, s in zip(cases, scores) if c.kind == kind]
        if suite.EXPECTED[kind]:
            wrong = sorted((r for r in rows if r[1] < threshold), key=lambda r: r[1])
        else:
            wrong = sorted((r for r in rows if r[1] >= threshold), key=lambda r: -r[1])
        if wrong and limit:
            out[kind] = [{"text": c.text, "score": round(s, 4), "group": c.group, "template": c.template}
                         for c, s in wrong[:limit]]
    return out


def category_rates(cases: list[suite.Case], scores, categories, threshold: float,  # type: ignore[no-untyped-def]
                   at: float) -> dict[str, float | None]:
    """Per toxic kind: the share of its cases the policy removes untried by category, flagged (score >=
    threshold) and scoring >= `at` in an unrewritable category (threat, identity_attack). High is right
    for explicit_hate and threats, low for insults: an insult can be rewritten."""
    out: dict[str, float | None] = {}
    for kind in suite.KINDS:
        if suite.EXPECTED[kind]:
            out[kind] = _rate([float(s) >= threshold and float(c) >= at
                               for case, s, c in zip(cases, scores, categories) if case.kind == kind])
    return out


def evaluate(cases: list[suite.Case], scores, threshold: float, judge_scores=None,  # type: ignore[no-untyped-def]
             examples: int = 3, categories=None, category_at: float | None = None) -> dict:
    """Everything the report prints, as a JSON-ready dict. With `categories` (the highest unrewritable
    category score per case), each toxic kind also gets `category_rate` (see category_rates)."""
    kinds = flag_rates(cases, scores, threshold)
    if categories is not None:
        at = category_threshold() if category_at is None else category_at
        for kind, rate in category_rates(cases, scores, categories, threshold, at).items():
            if kind in kinds:
                kinds[kind]["category_rate"] = rate
    if judge_scores is not None:
        for kind, row in flag_rates(cases, judge_scores, JUDGE_TOXIC).items():
            kinds[kind]["judge_flag_rate"] = row["flag_rate"]
            kinds[kind]["judge_met"] = row["met"]
    groups = group_rates(cases, scores, threshold)
    benign_rates = [g["benign_flag_rate"] for g in groups.values() if g["benign_flag_rate"] is not None]
    benign = [float(s) >= threshold for c, s in zip(cases, scores) if not c.expected]
    toxic = [float(s) >= threshold for c, s in zip(cases, scores) if c.expected]
    return {
        "cases": len(cases), "threshold": threshold,
        "judge_threshold": JUDGE_TOXIC if judge_scores is not None else None,
        "overall": {"benign_flag_rate": _rate(benign), "toxic_caught": _rate(toxic),
                    "kinds_met": sum(bool(r["met"]) for r in kinds.values()), "kinds": len(kinds)},
        "kinds": kinds,
        "groups": groups,
        "axes": axis_rates(groups),
        "group_spread": round(max(benign_rates) - min(benign_rates), 4) if benign_rates else None,
        "examples": pick_examples(cases, scores, threshold, examples),
    }


# --- report -----------------------------------------------------------------------------------------------

def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _state(value: bool | None) -> str:
    return "-" if value is None else ("met" if value else "MISSED")


def format_report(result: dict) -> str:
    info = result.get("run") or {}
    lines = [f"robustness suite: {result['cases']} cases (train/robustness.py), classifier "
             f"{info.get('classifier', '?')} ({info.get('dtype', '?')}), flagged = toxicity >= {result['threshold']}"
             + (f"; split {info['split']}" if info.get("split") else "")]
    judged = result.get("judge_threshold") is not None
    lines.append(f"\n{'kind':<22} {'n':>5} {'expected':>8} {'flagged':>8} {'dev':>7} {'mean p':>7} "
                 f"{'target':>8} {'':>6} {'category':>8}" + (f" {'alt-prof':>8} {'':>6}" if judged else ""))
    for kind, row in result["kinds"].items():
        line = (f"{kind:<22} {row['n']:>5} {row['expected']:>8} {_fmt(row['flag_rate']):>8} "
                f"{_fmt(row['dev_flag_rate']):>7} {row['mean_score']:>7.3f} {row['target']:>8} {_state(row['met']):>6}"
                f" {_fmt(row.get('category_rate')):>8}")
        if judged:
            line += f" {_fmt(row.get('judge_flag_rate')):>8} {_state(row.get('judge_met')):>6}"
        lines.append(line)
    overall = result["overall"]
    lines.append(f"  flagged: share of cases with toxicity >= {result['threshold']} (for toxic kinds: caught); dev: "
                 "the same over the dev templates only;")
    lines.append(f"  targets (issue 16): benign kinds flagged <= {BENIGN_MAX:.0%}, toxic and obfuscated kinds caught "
                 f">= {CAUGHT_MIN:.0%}" + (f"; alt-prof: alt-profanity-check predict_prob >= {JUDGE_TOXIC}"
                                           if judged else ""))
    lines.append("  category: toxic cases flagged and scoring >= [policy] category_threshold in threat or "
                 "identity_attack, which the policy removes untried (right for explicit_hate and threats; an "
                 "insult is rewritten)")
    lines.append(f"  all benign cases flagged {_fmt(overall['benign_flag_rate'])}, all toxic cases caught "
                 f"{_fmt(overall['toxic_caught'])}; kinds on target: {overall['kinds_met']} of {overall['kinds']}")

    lines.append("\nfairness per axis: benign cases naming a group flagged, attacks on it caught "
                 "(spread: highest minus lowest group)")
    lines.append(f"{'axis':<20} {'groups':>6} {'benign n':>8} {'flagged':>8} {'spread':>7} {'attack n':>8} "
                 f"{'caught':>7}")
    for axis, row in result["axes"].items():
        lines.append(f"{axis:<20} {row['groups']:>6} {row['benign_n']:>8} {_fmt(row['benign_flag_rate']):>8} "
                     f"{_fmt(row['benign_spread']):>7} {row['attack_n']:>8} {_fmt(row['attack_caught']):>7}")
    lines.append(f"\nper group, most flagged first (spread across groups {_fmt(result['group_spread'])}):")
    lines.append(f"{'group':<18} {'axis':<19} {'benign n':>8} {'flagged':>8} {'attack n':>8} {'caught':>7}")
    ordered = sorted(result["groups"].items(), key=lambda kv: -(kv[1]["benign_flag_rate"] or 0.0))
    for name, row in ordered:
        lines.append(f"{name:<18} {row['axis']:<19} {row['benign_n']:>8} {_fmt(row['benign_flag_rate']):>8} "
                     f"{row['attack_n']:>8} {_fmt(row['attack_caught']):>7}")
    for kind, items in result.get("examples", {}).items():
        lines.append(f"\n{'flagged though clean' if not suite.EXPECTED[kind] else 'missed'}, {kind}:")
        for item in items:
            lines.append(f"  {item['score']:.3f}  {item['text']}")
    return "\n".join(lines)


# --- entry point ------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classifier", help="classifier folder or hub id (default: the bundled one)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="flag decision (default: the product's [policy] rewrite_threshold)")
    parser.add_argument("--dtype", default="float32", help="float32 (default), bfloat16 or auto (the product's choice)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--split", choices=("train", "dev"), help="only the cases of these templates")
    parser.add_argument("--no-judge", action="store_true", help="leave out the alt-profanity-check column")
    parser.add_argument("--examples", type=int, default=3, help="failures printed per kind")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)

    threshold = product_threshold() if args.threshold is None else args.threshold
    cases = suite.generate(args.split)
    texts = [c.text for c in cases]
    start = time.perf_counter()
    classifier = load_classifier(args.classifier, args.dtype, args.batch_size)
    loaded = time.perf_counter()
    scores, categories = score_with_categories(classifier, texts)
    scored = time.perf_counter()
    log.info("%d cases scored in %.1f s (model loaded in %.1f s)", len(texts), scored - loaded, loaded - start)
    judge_scores = None if args.no_judge else judge(texts)
    result = {"run": {"classifier": classifier.model_ref.ref, "dtype": args.dtype, "split": args.split,
                      "load_s": round(loaded - start, 1), "score_s": round(scored - loaded, 1)},
              **evaluate(cases, scores, threshold, judge_scores, args.examples, categories)}
    print(format_report(result), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result["scores"] = [{"text": c.text, "kind": c.kind, "group": c.group, "split": c.split,
                             "toxicity": float(s), "category": None if categories is None else float(categories[i])}
                            for i, (c, s) in enumerate(zip(cases, scores))]
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False))
        log.info("written to %s", args.json)
    return result


if __name__ == "__main__":
    main()
