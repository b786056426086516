"""What a reader finally sees when `moderate batch` handles real toxic forum comments.

    python benchmarks/forum_posts.py                                  # 500 dev posts, default settings
    python benchmarks/forum_posts.py --posts 30 --json runs/forum_posts/smoke.json
    python benchmarks/forum_posts.py -- --remove-threshold 1.0        # options after -- go to moderate batch
    python benchmarks/forum_posts.py --from-run runs/forum_posts/run-500   # re-score a finished run

Data: ../shared/data/forum_posts/tsd_train.csv and tsd_trial.csv (SemEval-2021 Toxic Spans: news-site
comments that raters found toxic, with the toxic characters marked). **Dev split: a post is in it when
int(sha1(text as UTF-8).hexdigest(), 16) % 10 == 0** (about 880 posts; a text that occurs twice is kept
once, with the spans of its first occurrence, train file first). `--posts N` takes the first N dev posts
in sha1 order (stable across runs and machines). The posts are written to a Parquet file (columns id,
text, spans) under --work, `moderate batch` moderates it in a fresh process with its default settings
(plus whatever follows `--`), and the output is scored here. Every post is toxic, so the ideal product
publishes every one of them as a clean rewrite that keeps everything but the insult.

Printed (and written with --json F):

- run: wall seconds of `moderate batch` (model loading included, as a user waits for it), posts/s.
- action mix and reason mix: share of the dev posts per action and per reason code.
- published rewrites (action == rewrite), scored independently of the product's own models:
  - empty: rewrites without text (action rewrite, but `moderation.rewrite` null or blank): the reader sees
    nothing; they count as neither clean nor faithful.
  - judge non-toxic: share of rewrites with text that alt-profanity-check (a TF-IDF + linear SVM that ships its
    model; it judges profanity more than toxicity) gives predict_prob < 0.5; judge prob: the mean.
  - sim (run): mean `moderation.similarity`, the run's own number; sim (ours): cosine of
    all-MiniLM-L6-v2 embeddings of post and rewrite, recomputed here (moderator.embed.Embedder on CPU).
  - keep: share of the post's non-toxic characters that the rewrite keeps: characters of the post that
    are outside the marked spans and not whitespace, and that lie in a matching block of
    difflib.SequenceMatcher(None, post, rewrite, autojunk=False), over the number of such characters
    (1.0 when the raters marked every character); mean over posts.
  - insult: share of rewrites that still contain a marked insult: a run of marked characters (3 or more,
    punctuation around it dropped) that the judge alone finds toxic (so names and neutral words that
    some raters marked do not count), as whole words, ignoring case. Examples: --examples.
- headline: share of ALL dev posts published as clean, faithful rewrites:
  - [chars]: action == rewrite AND judge non-toxic AND keep >= 0.85;
  - [sim]:   action == rewrite AND judge non-toxic AND sim (ours) >= 0.7.
- The same numbers for two references computed on every dev post, as if each were published:
  "delete spans" (an oracle that knows the marked characters: remove them, collapse the double spaces
  left behind) and "copy" (publish the post as it is; the floor).
- Targets from the issue, next to the numbers: >= 75% of the toxic posts published as verified rewrites
  (action rewrite with a rewrite text),
  <= 10% sent to review, published rewrites >= 0.90 non-toxic by the judge, keeping >= 85% of the
  non-toxic characters.

Numbers, not tests. About 2-4 minutes for 30 posts on a 2-core CPU (loading the models dominates).
"""

from __future__ import annotations

import argparse
import csv
import difflib
import hashlib
import json
import logging
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
DEFAULT_DATA = str(ROOT.parent / "shared" / "data")
FILES = ("tsd_train.csv", "tsd_trial.csv")

KEEP_MIN = 0.85  # a faithful rewrite keeps at least this share of the non-toxic characters
SIM_MIN = 0.7  # ... or, the other criterion, at least this similarity to the post
JUDGE_TOXIC = 0.5  # alt-profanity-check predict_prob from which a text counts as toxic
TARGETS = {"published_rewrite": 0.75, "review_max": 0.10, "judge_nontoxic": 0.90, "keep": 0.85}

log = logging.getLogger("forum_posts")


# --- data -----------------------------------------------------------------------------------------

def sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def in_dev(text: str) -> bool:
    return int(sha1(text), 16) % 10 == 0


def dev_posts(data: str | Path, limit: int | None = None) -> list[dict]:
    """The dev posts (see the module docstring), in sha1 order: dicts with id, text, spans."""
    seen: dict[str, dict] = {}
    for name in FILES:
        with open(Path(data) / "forum_posts" / name, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                text = row["text"]
                if text.strip() and in_dev(text) and text not in seen:
                    seen[text] = {"id": "tsd-" + sha1(text)[:16], "text": text,
                                  "spans": sorted(set(json.loads(row["spans"])))}
    posts = sorted(seen.values(), key=lambda p: sha1(p["text"]))
    return posts[:limit] if limit else posts


def write_posts(posts: list[dict], path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"id": [p["id"] for p in posts], "text": [p["text"] for p in posts],
                      "spans": pa.array([p["spans"] for p in posts], pa.list_(pa.int32()))})
    pq.write_table(table, path)
    return path


# --- running the product and reading what it wrote ---------------------------------------------------

def run_moderate(inputs: Path, out: Path, extra: list[str]) -> dict:
    """`moderate batch INPUT --out OUT --overwrite EXTRA...` in a fresh process; its output goes to stderr."""
    from end_to_end import environment

    argv = [sys.executable, "-m", "moderator", "batch", str(inputs), "--out", str(out), "--overwrite", *extra]
    log.info("running: moderate batch %s", " ".join(argv[4:]))
    start = time.perf_counter()
    done = subprocess.run(argv, env=environment(), stdout=sys.stderr, stderr=sys.stderr)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 7):
        raise SystemExit(f"moderate batch failed with exit code {done.returncode}")
    return {"wall_s": round(wall, 1), "exit_code": done.returncode}


def read_run(run: Path) -> list[dict]:
    """Every output row of a finished run as a dict (input columns plus `moderation`), in output order."""
    import pyarrow.parquet as pq

    parts = sorted((run / "output").glob("part-*.parquet"))
    rows: list[dict] = []
    if parts:
        for part in parts:
            rows.extend(pq.read_table(part).to_pylist())
    else:
        for part in sorted((run / "output").glob("part-*.jsonl")):
            rows.extend(json.loads(line) for line in part.read_text(encoding="utf-8").splitlines() if line.strip())
    if not rows:
        raise SystemExit(f"{run}: no output parts under {run / 'output'}")
    return rows


def manifest(run: Path) -> dict:
    path = run / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


# --- metrics -------------------------------------------------------------------------------------------

def judge(texts: list[str]) -> list[float]:
    """alt-profanity-check's probability that each text is profane: an independent judge."""
    from profanity_check import predict_prob

    return [float(p) for p in predict_prob(texts)] if texts else []


def delete_spans(text: str, spans: list[int]) -> str:
    """The oracle: the post without its marked characters, the double spaces left behind collapsed."""
    marked = set(spans)
    pieces: list[str] = []
    current: list[str] = []
    for i, char in enumerate(text):
        if i in marked:
            if current:
                pieces.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        pieces.append("".join(current))
    out = ""
    for piece in pieces:
        if out.endswith(" ") or not out:
            piece = piece.lstrip(" ")
        out += piece
    return out.strip(" ")


def kept_share(text: str, spans: list[int], output: str) -> float:
    """Share of the post's non-toxic, non-whitespace characters that lie in SequenceMatcher's matching blocks."""
    marked = set(spans)
    wanted = [i for i, c in enumerate(text) if i not in marked and not c.isspace()]
    if not wanted:
        return 1.0
    matched = set()
    for a, _, size in difflib.SequenceMatcher(None, text, output or "", autojunk=False).get_matching_blocks():
        matched.update(range(a, a + size))
    return sum(i in matched for i in wanted) / len(wanted)


def toxic_phrases(text: str, spans: list[int], min_len: int = 3) -> list[str]:
    """The marked runs of characters (contiguous offsets), without the punctuation and spaces around them, of at
    least min_len characters."""
    runs: list[list[int]] = []
    for i in sorted(set(spans)):
        if 0 <= i < len(text):
            if runs and i == runs[-1][1] + 1:
                runs[-1][1] = i
            else:
                runs.append([i, i])
    phrases = [re.sub(r"^\W+|\W+$", "", text[a:b + 1]) for a, b in runs]
    return [p for p in phrases if len(p) >= min_len]


def insults(posts: list[dict]) -> list[list[str]]:
    """Per post, its marked phrases that the judge alone finds toxic: this drops the names and neutral
    words that some raters marked (e.g. 'Carol', 'folks'), and keeps 'stupid', 'fool', 'liar'."""
    phrases = [toxic_phrases(p["text"], p["spans"]) for p in posts]
    probs = iter(judge([phrase for row in phrases for phrase in row]))
    return [[phrase for phrase in row if next(probs) >= JUDGE_TOXIC] for row in phrases]


def copies_insult(phrases: list[str], output: str) -> bool:
    lowered = (output or "").lower()
    return any(re.search(r"(?<!\w)" + re.escape(p.lower()) + r"(?!\w)", lowered) for p in phrases)


def mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 4) if values else None


def share(count: int, total: int) -> float | None:
    return round(count / total, 4) if total else None


def score_outputs(posts: list[dict], outputs: list[str], embedder) -> list[dict]:  # type: ignore[no-untyped-def]
    """Per published text: judge prob, similarity to the post (ours), kept share, insult copied.
    An empty text (a rewrite action without a rewrite) has similarity 0 and never counts as judged clean."""
    if not posts:
        return []
    probs = judge(outputs)
    marked = insults(posts)
    sims = [float(s) for s in embedder.similarity([p["text"] for p in posts], [o or " " for o in outputs])]
    return [{"judge_prob": prob, "empty": not (out or "").strip(), "sim_ours": sim if (out or "").strip() else 0.0,
             "keep": kept_share(p["text"], p["spans"], out), "copies_insult": copies_insult(phrases, out)}
            for p, out, prob, sim, phrases in zip(posts, outputs, probs, sims, marked)]


def summarize(scored: list[dict], total: int) -> dict:
    """The metrics of a set of published texts; the headline shares are over `total` posts."""
    clean = [s["judge_prob"] < JUDGE_TOXIC and not s["empty"] for s in scored]
    return {
        "published": len(scored),
        "empty": sum(s["empty"] for s in scored),
        "judge_nontoxic": share(sum(clean), len(scored)),  # empty texts count as not clean
        "judge_prob": mean([s["judge_prob"] for s in scored]),
        "sim_run": mean([s.get("sim_run") for s in scored]),
        "sim_ours": mean([s["sim_ours"] for s in scored]),
        "keep": mean([s["keep"] for s in scored]),
        "copies_insult": share(sum(s["copies_insult"] for s in scored), len(scored)),
        "headline_chars": share(sum(c and s["keep"] >= KEEP_MIN for c, s in zip(clean, scored)), total),
        "headline_sim": share(sum(c and s["sim_ours"] >= SIM_MIN for c, s in zip(clean, scored)), total),
    }


def evaluate(rows: list[dict], examples: int = 3) -> dict:
    """All metrics for the output rows of a run over the dev posts (their text and spans columns)."""
    from moderator.embed import Embedder

    posts = [{"id": r.get("id"), "text": r["text"], "spans": _spans(r.get("spans"))} for r in rows]
    moderation = [r.get("moderation") or {} for r in rows]
    total = len(rows)
    actions = Counter(m.get("action") or "none" for m in moderation)
    reasons = Counter(f"{m.get('action') or 'none'}/{m.get('reason') or 'none'}" for m in moderation)
    log.info("scoring %d posts (judge, embeddings, character matching)", total)
    embedder = Embedder(None, "cpu")
    rewritten = [i for i, m in enumerate(moderation) if m.get("action") == "rewrite"]
    product = score_outputs([posts[i] for i in rewritten], [moderation[i].get("rewrite") or "" for i in rewritten],
                            embedder)
    for s, i in zip(product, rewritten):
        s["sim_run"] = moderation[i].get("similarity")
    oracle_texts = [delete_spans(p["text"], p["spans"]) for p in posts]
    oracle = score_outputs(posts, oracle_texts, embedder)
    copy = score_outputs(posts, [p["text"] for p in posts], embedder)
    allowed = [i for i, m in enumerate(moderation) if m.get("action") == "allow"]
    allowed_probs = judge([posts[i]["text"] for i in allowed])
    result = {
        "posts": total,
        "actions": {k: share(v, total) for k, v in actions.most_common()},
        "action_counts": dict(actions.most_common()),
        "reasons": {k: share(v, total) for k, v in reasons.most_common()},
        "rows": {"product (published rewrites)": summarize(product, total),
                 "delete spans (oracle)": summarize(oracle, total),
                 "copy (floor)": summarize(copy, total)},
        "allowed_judged_toxic": share(sum(p >= JUDGE_TOXIC for p in allowed_probs), total),
    }
    result["targets"] = targets(result)
    result["examples"] = pick_examples(posts, moderation, rewritten, product, examples)
    return result


def _spans(value) -> list[int]:  # type: ignore[no-untyped-def]
    if value is None:
        return []
    if isinstance(value, str):
        return [int(v) for v in json.loads(value)]
    return [int(v) for v in value]


def targets(result: dict) -> dict:
    product = result["rows"]["product (published rewrites)"]
    measured = {"published_rewrite": share(product["published"] - product["empty"], result["posts"]),
                "review_max": result["actions"].get("review", 0.0),
                "judge_nontoxic": product["judge_nontoxic"], "keep": product["keep"]}
    out = {}
    for name, goal in TARGETS.items():
        value = measured[name]
        met = None if value is None else (value <= goal if name == "review_max" else value >= goal)
        out[name] = {"value": value, "target": goal, "met": met}
    return out


def pick_examples(posts: list[dict], moderation: list[dict], rewritten: list[int], scored: list[dict],
                  limit: int) -> dict[str, list[dict]]:
    """A few published rewrites that copy a marked insult, that the judge finds toxic, or that lose text."""
    def example(i: int, s: dict) -> dict:
        post = posts[i]
        return {"id": post["id"], "post": post["text"], "marked": toxic_phrases(post["text"], post["spans"]),
                "rewrite": moderation[i].get("rewrite"), "judge_prob": round(s["judge_prob"], 3),
                "keep": round(s["keep"], 3), "sim_ours": round(s["sim_ours"], 3)}
    pairs = list(zip(rewritten, scored))
    return {
        "copies_insult": [example(i, s) for i, s in pairs if s["copies_insult"]][:limit],
        "judged_toxic": [example(i, s) for i, s in pairs if s["judge_prob"] >= JUDGE_TOXIC][:limit],
        "keeps_little": [example(i, s) for i, s in sorted(pairs, key=lambda x: x[1]["keep"])
                         if s["keep"] < KEEP_MIN][:limit],
    }


# --- report --------------------------------------------------------------------------------------------

def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_report(result: dict) -> str:
    lines = [f"forum_posts dev split (sha1(text) % 10 == 0): {result['posts']} posts, all rated toxic"]
    run = result.get("run") or {}
    if run.get("wall_s"):
        lines.append(f"moderate batch: {run['wall_s']:.1f} s wall (model loading included), "
                     f"{result['posts'] / run['wall_s']:.2f} posts/s; load_models {run.get('load_models_s', '-')} s; "
                     f"options: {' '.join(run.get('extra') or []) or '(defaults)'}")
    lines.append("\naction mix: " + ", ".join(f"{k} {v:.1%} ({result['action_counts'][k]})"
                                              for k, v in result["actions"].items()))
    lines.append("reason mix: " + ", ".join(f"{k} {v:.1%}" for k, v in result["reasons"].items()))
    lines.append(f"allowed unchanged though the judge finds them toxic: {result['allowed_judged_toxic']:.1%} of posts")
    lines.append(f"\n{'published texts':<30} {'n':>5} {'empty':>5} {'judge ok':>8} {'judge p':>8} {'sim run':>8} "
                 f"{'sim ours':>8} {'keep':>6} {'insult':>7} {'HEAD chars':>10} {'HEAD sim':>9}")
    for name, row in result["rows"].items():
        lines.append(f"{name:<30} {row['published']:>5} {row['empty']:>5} {fmt(row['judge_nontoxic']):>8} "
                     f"{fmt(row['judge_prob']):>8} {fmt(row['sim_run']):>8} {fmt(row['sim_ours']):>8} "
                     f"{fmt(row['keep']):>6} {fmt(row['copies_insult']):>7} {fmt(row['headline_chars']):>10} "
                     f"{fmt(row['headline_sim']):>9}")
    lines.append("  empty: published with no text (action rewrite but no rewrite), never judged ok;\n"
                 f"  judge ok: share non-empty with alt-profanity-check prob < {JUDGE_TOXIC}; "
                 "keep: non-toxic characters kept;\n"
                 "  insult: still contains a marked span that the judge finds toxic")
    lines.append(f"  HEAD chars: share of ALL dev posts published (rewrite) AND judge ok AND keep >= {KEEP_MIN}")
    lines.append(f"  HEAD sim:   share of ALL dev posts published (rewrite) AND judge ok AND sim ours >= {SIM_MIN}")
    lines.append("  delete spans / copy: every dev post published that way (references, not the product)")
    lines.append("\ntargets (issue):")
    labels = {"published_rewrite": "toxic posts published as verified rewrites", "review_max": "sent to review",
              "judge_nontoxic": "published rewrites non-toxic by the judge",
              "keep": "non-toxic characters kept by published rewrites"}
    for name, t in result["targets"].items():
        sign = "<=" if name == "review_max" else ">="
        state = "-" if t["met"] is None else ("met" if t["met"] else "MISSED")
        lines.append(f"  {labels[name]:<50} {fmt(t['value'])}  target {sign} {t['target']:.2f}  {state}")
    for kind, items in result.get("examples", {}).items():
        if items:
            lines.append(f"\nexamples, {kind}:")
            for item in items:
                lines.append(f"  [{item['id']}] judge {item['judge_prob']}, keep {item['keep']}, "
                             f"sim {item['sim_ours']}, marked {item['marked'][:4]}")
                lines.append(f"    post:    {_short(item['post'])}")
                lines.append(f"    rewrite: {_short(item['rewrite'])}")
    return "\n".join(lines)


def _short(text: str | None, limit: int = 240) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- entry point ---------------------------------------------------------------------------------------

def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """Our options, and the `moderate batch` options after `--`."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=500, help="first N dev posts in sha1 order (0: all)")
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder laid out like ../shared/data")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "forum_posts")
    parser.add_argument("--from-run", type=Path, help="score this finished run folder; do not run moderate")
    parser.add_argument("--examples", type=int, default=3, help="examples printed per kind of failure")
    parser.add_argument("--json", type=Path, help="also write the results here")
    ours, extra = split_argv(sys.argv[1:])
    args = parser.parse_args(ours)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)

    run_info: dict = {"extra": extra}
    if args.from_run:
        run = args.from_run
        run_info["from_run"] = str(run)
    else:
        posts = dev_posts(args.data, args.posts or None)
        log.info("%d dev posts from %s", len(posts), args.data)
        inputs = write_posts(posts, args.work / f"dev-{len(posts)}.parquet")
        run = args.work / f"run-{len(posts)}"
        run_info.update(run_moderate(inputs, run, extra), run=str(run))
    info = manifest(run)
    run_info["load_models_s"] = (info.get("timings_s") or {}).get("load_models")
    run_info["counts"] = info.get("counts")
    rows = read_run(run)
    result = {"run": run_info, **evaluate(rows, args.examples)}
    if run_info.get("wall_s"):
        run_info["posts_per_s"] = round(len(rows) / run_info["wall_s"], 3)
    print(format_report(result), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False))
        log.info("written to %s", args.json)


if __name__ == "__main__":
    main()
