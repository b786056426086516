"""Compliance reports: `moderate report RUN_DIR...` -> HTML, JSON and Markdown summaries, DSA export.

Built from what finished runs left behind, never by running models again:

    RUN/manifest.json   thresholds, models (content hashes), package versions, inputs with sha256
    RUN/audit.jsonl     one line per input record: action, reason, scores, rewrite scores

`summarize` streams each audit log once (constant memory whatever its length: counters, fixed-bin
histograms, and one reservoir per QA stratum) and runs `moderate audit verify`'s own check
(`auditchain.verify_runs`: each log's hash chain, the manifest's counts against the log, the output
parts' sha256 and rows) on each chain of runs, in chain order (`auditchain.chain_order`: a run
comes after the run it continues; unlinked runs by start time). Anything that check finds makes the
report say so and `moderate report` exit 6. Its result is one JSON-able dict, the single source of
every rendering:

    summary = summarize([Path("runs/2026-11-24"), Path("runs/2026-11-25")], JobConfig().report)
    Path("report.html").write_text(render_html(summary))

The QA sample is stratified by (action, reason): up to `qa_per_stratum` decisions per stratum,
drawn by reservoir sampling with a seeded generator, so the same runs and seed give the same
sample. Texts appear only when the run stored them (`--audit-text`); otherwise the sample holds
the post's id, source, row and text hash, which a reviewer with access to the data can look up.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moderator import __version__, records
from moderator.errors import InputError
from moderator.rundir import AUDIT, MANIFEST, RunDir

log = logging.getLogger(__name__)

BINS = 20  # histogram bins over [0, 1] for toxicity and similarity
ACTIONS = (*records.ACTIONS, "quarantine")
# Reasons of posts that were rewritten but whose rewrite failed verification and went to review.
REVIEW_AFTER_REWRITE = records.REWRITE_FAILURES  # failed rewrites go to [policy] on_rewrite_failure
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _bin(value: float) -> int:
    return min(max(int(value * BINS), 0), BINS - 1)


def expand_runs(paths: list[Path]) -> list[Path]:
    """Run folders in chain order (`auditchain.chain_order`: a run after the run whose chain it
    continues; runs of separate chains by start time). A folder that is not a run but holds
    finished runs (a job's output_root: one folder per date) stands for those runs."""
    runs: list[Path] = []
    for path in paths:
        if (path / MANIFEST).exists() or (path / AUDIT).exists():
            runs.append(path)
            continue
        if not path.is_dir():
            raise InputError(f"{path}: no such folder")
        inside = sorted(p for p in path.iterdir() if p.is_dir() and RunDir(p).finished() is not None)
        if not inside:
            raise InputError(f"{path}: neither a finished run nor a folder of finished runs")
        runs.extend(inside)
    manifests = []
    for run in runs:
        manifest = RunDir(run).finished()
        if manifest is None:
            raise InputError(f"{run}: no finished run here ({MANIFEST} missing or incomplete)")
        manifests.append((manifest.get("started") or "", run))
    if len({str(r.resolve()) for r in runs}) != len(runs):
        raise InputError("the same run folder is named twice")
    from moderator.auditchain import chain_order

    return [run for chain in chain_order([run for _, run in manifests]) for run in chain]


@dataclass
class Tally:
    """What one or several audit logs hold, counted in one streaming pass."""

    lines: int = 0
    actions: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    quarantine: Counter = field(default_factory=Counter)
    labels: Counter = field(default_factory=Counter)
    # Categories (records.CATEGORIES, of a classifier that scores them): posts at or above their run's
    # [policy] category_threshold in each, by action; empty for a classifier without categories.
    categories: dict[str, Counter] = field(default_factory=dict)
    category_thresholds: set = field(default_factory=set)
    carried_over: int = 0
    toxicity: dict[str, list[int]] = field(default_factory=lambda: {a: [0] * BINS for a in records.ACTIONS})
    toxicity_sum: float = 0.0
    scored: int = 0
    attempted: int = 0  # posts the rewriter rewrote (rewrite scores present)
    rewritten: int = 0  # ... whose rewrite passed verification
    before: list[int] = field(default_factory=lambda: [0] * BINS)
    after: list[int] = field(default_factory=lambda: [0] * BINS)
    similarity: list[int] = field(default_factory=lambda: [0] * BINS)
    sums: Counter = field(default_factory=Counter)  # before, after, similarity sums over attempts; candidates
    texts: int = 0  # lines that carry the post's text (--audit-text)
    first_time: str | None = None
    last_time: str | None = None

    def add(self, line: dict[str, Any], multi_label: bool) -> None:
        self.lines += 1
        action, reason = line.get("action"), line.get("reason")
        self.actions[action] += 1
        if "text" in line:
            self.texts += 1
        time = line.get("time")
        if isinstance(time, str):
            self.first_time = time if self.first_time is None else min(self.first_time, time)
            self.last_time = time if self.last_time is None else max(self.last_time, time)
        if action == "quarantine":
            self.quarantine[reason] += 1
            return
        self.reasons[reason] += 1
        if line.get("carried_from"):
            self.carried_over += 1
        toxicity, scores = line.get("toxicity"), line.get("scores")
        if isinstance(toxicity, (int, float)) and action in self.toxicity:
            self.toxicity[action][_bin(toxicity)] += 1
            self.toxicity_sum += toxicity
            self.scored += 1
        self._add_categories(line, action)
        if isinstance(scores, dict) and scores:
            if multi_label:
                self.labels.update(k for k, v in scores.items() if isinstance(v, (int, float)) and v >= 0.5)
            else:
                self.labels[max(scores, key=lambda k: scores[k] if isinstance(scores[k], (int, float)) else -1)] += 1
        after, similarity = line.get("rewrite_toxicity"), line.get("similarity")
        if isinstance(after, (int, float)) and isinstance(toxicity, (int, float)):
            self.attempted += 1
            self.rewritten += action == "rewrite"
            self.before[_bin(toxicity)] += 1
            self.after[_bin(after)] += 1
            self.sums.update(before=toxicity, after=after)
            if isinstance(similarity, (int, float)):
                self.similarity[_bin(similarity)] += 1
                self.sums.update(similarity=similarity, with_similarity=1)
            if isinstance(line.get("candidates"), int):
                self.sums.update(candidates=line["candidates"], sentences=line.get("rewritten_sentences") or 0,
                                 with_candidates=1)

    def _add_categories(self, line: dict[str, Any], action: str) -> None:
        present = records.categories_of(line.get("scores"))
        if not present:
            return
        threshold = records.category_threshold(line.get("thresholds"))
        self.category_thresholds.add(threshold)
        for name, score in present.items():
            counts = self.categories.setdefault(name, Counter())  # listed even when no post holds it
            if score >= threshold:
                counts[action] += 1

    def merge(self, other: Tally) -> None:
        for name in ("lines", "carried_over", "toxicity_sum", "scored", "attempted", "rewritten", "texts"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("actions", "reasons", "quarantine", "labels", "sums"):
            getattr(self, name).update(getattr(other, name))
        for name, counts in other.categories.items():
            self.categories.setdefault(name, Counter()).update(counts)
        self.category_thresholds |= other.category_thresholds
        for action, counts in other.toxicity.items():
            self.toxicity[action] = [a + b for a, b in zip(self.toxicity[action], counts)]
        for name in ("before", "after", "similarity"):
            setattr(self, name, [a + b for a, b in zip(getattr(self, name), getattr(other, name))])
        for name, pick in (("first_time", min), ("last_time", max)):
            values = [v for v in (getattr(self, name), getattr(other, name)) if v]
            setattr(self, name, pick(values) if values else None)

    def to_dict(self) -> dict[str, Any]:
        decided = self.lines - sum(self.quarantine.values())

        def shares(counter: Counter, total: int, order: tuple[str, ...] = ()) -> dict[str, dict[str, float]]:
            keys = [k for k in order if k in counter] + sorted(k for k in counter if k not in order)
            return {k: {"count": counter[k], "share": round(counter[k] / total, 6) if total else 0.0} for k in keys}

        review = self.attempted - self.rewritten
        return {
            "posts": self.lines,
            "decided": decided,
            "quarantined": self.lines - decided,
            "carried_over": self.carried_over,
            "actions": shares(self.actions, self.lines, ACTIONS),
            "reasons": shares(self.reasons, decided, tuple(records.REASONS)),
            "labels": shares(self.labels, decided),
            "categories": self._categories(decided),
            "category_thresholds": sorted(self.category_thresholds),
            "quarantine_reasons": shares(self.quarantine, self.lines),
            "toxicity": {
                "bins": BINS,
                "by_action": {a: list(c) for a, c in self.toxicity.items()},
                "mean": round(self.toxicity_sum / self.scored, 6) if self.scored else None,
            },
            "rewrite": {
                "attempted": self.attempted,
                "rewritten": self.rewritten,
                "sent_to_review": review,
                "review_share": round(review / self.attempted, 6) if self.attempted else None,
                "review_reasons": {r: self.reasons[r] for r in REVIEW_AFTER_REWRITE if self.reasons[r]},
                "toxicity_before_mean": self._mean("before", self.attempted),
                "toxicity_after_mean": self._mean("after", self.attempted),
                "similarity_mean": self._mean("similarity", self.sums["with_similarity"]),
                "candidates_mean": self._mean("candidates", self.sums["with_candidates"]),
                "rewritten_sentences_mean": self._mean("sentences", self.sums["with_candidates"]),
                "toxicity_before": list(self.before),
                "toxicity_after": list(self.after),
                "similarity": list(self.similarity),
            },
            "lines_with_text": self.texts,
            "first_decision": self.first_time,
            "last_decision": self.last_time,
        }

    def _categories(self, decided: int) -> dict[str, dict[str, Any]]:
        """Per category (in records.CATEGORIES order): posts at or above the category threshold, their
        share of decided posts, and their actions."""
        out = {}
        for name in [c for c in records.CATEGORIES if c in self.categories]:
            counts = self.categories[name]
            total = sum(counts.values())
            out[name] = {"count": total, "share": round(total / decided, 6) if decided else 0.0,
                         "by_action": {a: counts[a] for a in records.ACTIONS}}
        return out

    def _mean(self, name: str, n: int) -> float | None:
        return round(self.sums[name] / n, 6) if n else None


class Sampler:
    """Reservoir sampling per (action, reason) stratum: `k` decisions each, uniformly, in one pass."""

    def __init__(self, k: int, seed: int) -> None:
        self.k = k
        self.rng = random.Random(seed)
        self.seen: Counter = Counter()
        self.kept: dict[str, list[dict[str, Any]]] = {}

    def offer(self, line: dict[str, Any], run_dir: Path) -> None:
        if line.get("action") == "quarantine":
            return
        key = f"{line.get('action')}/{line.get('reason')}"
        self.seen[key] += 1
        n, kept = self.seen[key], self.kept.setdefault(key, [])
        if len(kept) < self.k:
            kept.append(self._item(line, run_dir))
        else:
            j = self.rng.randrange(n)
            if j < self.k:
                kept[j] = self._item(line, run_dir)

    @staticmethod
    def _item(line: dict[str, Any], run_dir: Path) -> dict[str, Any]:
        return {
            "run_id": line.get("run_id"), "run": str(run_dir), "seq": line.get("seq"), "id": line.get("id"),
            "source": line.get("source"), "row": line.get("row"), "action": line.get("action"),
            "reason": line.get("reason"), "toxicity": line.get("toxicity"),
            "rewrite_toxicity": line.get("rewrite_toxicity"), "similarity": line.get("similarity"),
            "text_sha256": line.get("text_sha256"), "text": line.get("text"), "rewrite": line.get("rewrite"),
            "text_stored": "text" in line,
        }

    def to_dict(self, seed: int) -> dict[str, Any]:
        order = {a: i for i, a in enumerate(ACTIONS)}
        keys = sorted(self.kept, key=lambda k: (order.get(k.split("/")[0], 99), k))
        items = []
        for key in keys:
            items.extend(sorted(self.kept[key], key=lambda x: (x["run_id"] or "", x["seq"] or 0)))
        return {"seed": seed, "per_stratum": self.k,
                "strata": {k: {"population": self.seen[k], "drawn": len(self.kept[k])} for k in keys},
                "items": items}


def audit_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The audit log's objects, streamed; a line that is not a JSON object is an input error
    (the chain check names what happened to it)."""
    try:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, 1):
                try:
                    line = json.loads(raw)
                except ValueError:
                    raise InputError(f"{path}: line {number} is not valid JSON (run `moderate audit verify`)") from None
                if not isinstance(line, dict):
                    raise InputError(f"{path}: line {number} is not a JSON object")
                yield line
    except FileNotFoundError:
        raise InputError(f"{path}: missing") from None


def _run_label(run_dir: Path, manifest: dict[str, Any]) -> str:
    """What a run is called in the trend: its folder's date (job runs), else its start time."""
    if DATE.fullmatch(run_dir.name):
        return run_dir.name
    started = manifest.get("started") or ""
    return started[:16].replace("T", " ") or run_dir.name


def _audit_entry(verdict: Any) -> dict[str, Any]:
    """A run's `audit` entry: what `moderate audit verify` says about it."""
    problem = verdict.problem
    if problem is not None and problem.kind == "unreadable":
        return {"intact": False, "problem": problem.detail, "notes": verdict.notes}
    return {
        "intact": verdict.ok, "lines": verdict.lines, "head_sha256": verdict.head_sha256,
        "chain_from": verdict.chain_from, "previous_run_id": verdict.previous_run_id,
        "problem": None if problem is None else problem.describe(), "notes": verdict.notes,
    }


def verify_chains(chains: list[list[Path]]) -> dict[Path, dict[str, Any]]:
    """Each run's `audit` entry: `auditchain.verify_runs` (the check of `moderate audit verify`) on
    each chain (`auditchain.chain_order`). A run that cannot be checked is reported, not raised."""
    from moderator.auditchain import verify_runs

    entries = {}
    for chain in chains:
        for run_dir, verdict in zip(chain, verify_runs(chain, keep_going=True)):
            entries[run_dir] = _audit_entry(verdict)
    return entries


def _counts_match(recorded: dict[str, Any], found: dict[str, Any]) -> bool:
    """The manifest's counts against the audit log's, field by field; a field the manifest does not
    record (older or synthetic manifests) is not held against it."""
    for name, value in found.items():
        if recorded.get(name) is None:
            continue
        if name == "actions":
            if not isinstance(recorded[name], dict) or {k: v for k, v in recorded[name].items() if v} != value:
                return False
        elif recorded[name] != value:
            return False
    return True


def summarize(run_dirs: list[Path], settings: Any, verify: bool = True) -> dict[str, Any]:
    """The report's content for `run_dirs`, reported in chain order (see `expand_runs`). `settings`
    is the [report] section (`config.ReportConfig`)."""
    from moderator.auditchain import GENESIS, chain_order

    chains = chain_order(list(run_dirs))
    run_dirs = [run for chain in chains for run in chain]
    checked = verify_chains(chains) if verify else {}
    sampler = Sampler(settings.qa_per_stratum, settings.seed)
    total = Tally()
    runs = []
    for run_dir in run_dirs:
        manifest = RunDir(run_dir).finished()
        if manifest is None:
            raise InputError(f"{run_dir}: no finished run here ({MANIFEST} missing or incomplete)")
        multi_label = bool((manifest.get("classifier") or {}).get("multi_label"))
        tally = Tally()
        for line in audit_lines(run_dir / AUDIT):
            tally.add(line, multi_label)
            sampler.offer(line, run_dir)
        total.merge(tally)
        counts = manifest.get("counts") if isinstance(manifest.get("counts"), dict) else {}
        recorded = {"posts": counts.get("input_rows"), "quarantined": counts.get("quarantined_rows"),
                    "actions": counts.get("actions")}
        found = {"posts": tally.lines, "quarantined": sum(tally.quarantine.values()),
                 "actions": {a: n for a, n in tally.actions.items() if a != "quarantine"}}
        audit = checked[run_dir] if verify else {"intact": None, "problem": "not checked"}
        config = manifest.get("config") or {}
        runs.append({
            "label": _run_label(run_dir, manifest),
            "path": str(run_dir),
            "run_id": manifest.get("run_id"),
            "started": manifest.get("started"),
            "finished": manifest.get("finished"),
            "resumed": manifest.get("resumed") or [],
            "command": manifest.get("command"),
            "moderator_version": manifest.get("moderator_version"),
            "engine": manifest.get("engine"),
            "device": manifest.get("device"),
            "posts_per_s": manifest.get("posts_per_s"),
            "policy": config.get("policy") or {},
            "audit_text": (config.get("output") or {}).get("audit_text"),
            "classifier": manifest.get("classifier") or {},
            "models": manifest.get("models") or {},
            "packages": manifest.get("packages") or {},
            "host": manifest.get("host") or {},
            "inputs": manifest.get("inputs") or [],
            "audit": audit,
            "matches_manifest": _counts_match(recorded, found),
            "manifest_counts": recorded,
            "tally": tally.to_dict(),
        })
    for run in runs:
        run["audit"].setdefault("continues_previous", False)
    for before, after in zip(runs, runs[1:]):
        after["audit"]["continues_previous"] = (
            after["audit"].get("chain_from") is not None
            and after["audit"].get("chain_from") == before["audit"].get("head_sha256"))
    for run in runs:
        run["audit"]["new_chain"] = run["audit"].get("chain_from") == GENESIS
    summary = {
        "report": {
            "title": settings.title,
            "generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "moderator_version": __version__,
            "runs": len(runs),
        },
        "audit_verified": all(r["audit"]["intact"] for r in runs) if verify else None,
        "counts_match_manifests": all(r["matches_manifest"] for r in runs),
        "totals": total.to_dict(),
        "runs": runs,
        "trend": [_trend_point(r) for r in runs],
        "qa_sample": sampler.to_dict(settings.seed),
    }
    return summary


def _trend_point(run: dict[str, Any]) -> dict[str, Any]:
    tally = run["tally"]
    return {
        "label": run["label"], "run_id": run["run_id"], "posts": tally["posts"],
        "shares": {a: tally["actions"].get(a, {"share": 0.0})["share"] for a in ACTIONS},
        "mean_toxicity": tally["toxicity"]["mean"], "rewrite_review_share": tally["rewrite"]["review_share"],
        "posts_per_s": run["posts_per_s"],
    }


# ---------------------------------------------------------------------------------------------------
# Renderings


def render_json(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=2, ensure_ascii=False) + "\n"


def render_html(summary: dict[str, Any]) -> str:
    import jinja2

    from moderator import plots

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("moderator", "templates"),
        autoescape=True,  # post texts and ids are user content
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = _pct
    env.filters["num"] = _num
    env.filters["score"] = _score
    env.filters["when"] = _when
    return env.get_template("report.html.j2").render(s=summary, plots=plots.all_plots(summary),
                                                     reasons=records.REASONS,
                                                     quarantine_reasons=records.QUARANTINE_REASONS,
                                                     category_help=records.CATEGORY_HELP)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _num(value: int | float | None) -> str:
    return "–" if value is None else f"{value:,}"


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _when(value: str | None) -> str:
    """An ISO timestamp of the audit log (UTC) as YYYY-MM-DD HH:MM:SS UTC."""
    return "–" if not value else value[:19].replace("T", " ") + " UTC"


_MD_ESCAPE = {ord(c): "\\" + c for c in "\\|[]`*_"} | {ord("<"): "&lt;", ord("\n"): " ", ord("\r"): " "}


def _md(value: Any) -> str:
    """A value as inert Markdown table text: no cell breaks, no HTML, and no link or image syntax
    (a post's `[x](javascript:...)` or `![](https://tracker/...)` stays text)."""
    text = "–" if value is None else str(value)
    return text.translate(_MD_ESCAPE)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return lines + [""]


def render_markdown(summary: dict[str, Any]) -> str:
    s, t = summary, summary["totals"]
    audit = {True: "all audit logs intact", False: "AUDIT CHAIN BROKEN", None: "not checked"}[s["audit_verified"]]
    out = [f"# {s['report']['title']}", "",
           f"{s['report']['runs']} run(s), {t['posts']:,} posts; decisions from {_when(t['first_decision'])} to "
           f"{_when(t['last_decision'])}; {audit}. Generated {s['report']['generated']} by moderator "
           f"{s['report']['moderator_version']}.", "", "## Actions", ""]
    out += _table(["action", "posts", "share"], [[a, f"{v['count']:,}", _pct(v["share"])] for a, v in t["actions"].items()])
    out += ["## Reasons", ""]
    out += _table(["reason", "posts", "share of decided"],
                  [[r, f"{v['count']:,}", _pct(v["share"])] for r, v in t["reasons"].items()])
    if t["quarantine_reasons"]:
        out += ["## Quarantine", ""]
        out += _table(["reason", "records", "share"],
                      [[r, f"{v['count']:,}", _pct(v["share"])] for r, v in t["quarantine_reasons"].items()])
    out += ["## Labels", ""]
    out += _table(["label", "posts", "share of decided"],  # categories get their own table, below
                  [[k, f"{v['count']:,}", _pct(v["share"])] for k, v in t["labels"].items() if k not in t["categories"]])
    if t["categories"]:
        out += ["## Categories", "",
                f"Posts scoring at or above the category threshold ({', '.join(map(str, t['category_thresholds']))}) "
                "in each category, by action.", ""]
        out += _table(["category", "posts", "share of decided", *records.ACTIONS],
                      [[k, f"{v['count']:,}", _pct(v["share"]), *(f"{v['by_action'][a]:,}" for a in records.ACTIONS)]
                       for k, v in t["categories"].items()])
    rw = t["rewrite"]
    out += ["## Rewrites", ""]
    out += _table(["rewritten by the model", "passed verification", "sent to review", "review share",
                   "toxicity before (mean)", "toxicity after (mean)", "similarity (mean)"],
                  [[rw["attempted"], rw["rewritten"], rw["sent_to_review"], _pct(rw["review_share"]),
                    _score(rw["toxicity_before_mean"]), _score(rw["toxicity_after_mean"]), _score(rw["similarity_mean"])]])
    out += ["## Trend", ""]
    out += _table(["run", "posts", *ACTIONS, "mean toxicity"],
                  [[p["label"], f"{p['posts']:,}", *(_pct(p["shares"][a]) for a in ACTIONS), _score(p["mean_toxicity"])]
                   for p in s["trend"]])
    out += ["## Audit chain", ""]
    out += _table(["run", "run id", "lines", "status", "head sha256"],
                  [[r["label"], r["run_id"], r["audit"].get("lines"), "intact" if r["audit"]["intact"] else
                    f"BROKEN: {r['audit']['problem']}", r["audit"].get("head_sha256")] for r in s["runs"]])
    out += ["## Policy thresholds", ""]
    out += _table(["run", "rewrite", "remove", "max rewrite toxicity", "min similarity"],
                  [[r["label"], r["policy"].get("rewrite_threshold"), r["policy"].get("remove_threshold"),
                    r["policy"].get("max_rewrite_toxicity"), r["policy"].get("min_similarity")] for r in s["runs"]])
    out += ["## Models", ""]
    out += _table(["run", "model", "reference", "sha256"],
                  [[r["label"], name, (m or {}).get("ref"), (m or {}).get("sha256")]
                   for r in s["runs"] for name, m in r["models"].items()])
    out += ["## Inputs", ""]
    out += _table(["run", "file", "rows", "bytes", "sha256"],
                  [[r["label"], i.get("name"), i.get("rows"), i.get("size"), i.get("sha256")]
                   for r in s["runs"] for i in r["inputs"]])
    qa = s["qa_sample"]
    out += [f"## QA sample (seed {qa['seed']}, up to {qa['per_stratum']} per action and reason)", ""]
    out += _table(["action", "reason", "id", "toxicity", "text", "rewrite"],
                  [[i["action"], i["reason"], i["id"], _score(i["toxicity"]),
                    i["text"] if i["text_stored"] else f"[not stored; sha256 {(i['text_sha256'] or '')[:12]}]",
                    i["rewrite"] if i["text_stored"] else ("[not stored]" if i["rewrite_toxicity"] is not None else "")]
                   for i in qa["items"]])
    return "\n".join(out)
