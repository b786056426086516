"""The report's plots: matplotlib figures rendered to PNG and embedded as data: URIs.

Every plot is drawn from the report summary (`report.summarize`), never from the audit logs
directly, so the plots, the tables and the JSON summary always show the same numbers. A report
always has every plot: one whose data is empty says so inside the figure instead of going missing.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

from moderator.records import Action

COLORS = {Action.ALLOW: "#4c9a6a", Action.REWRITE: "#3b75af", Action.REVIEW: "#e0a526", Action.REMOVE: "#c4473d",
          Action.QUARANTINE: "#8c8c8c"}
TRENDED = (Action.REWRITE, Action.REVIEW, Action.REMOVE, Action.QUARANTINE)  # the trend plot's lines


@dataclass(frozen=True)
class Plot:
    id: str
    title: str
    alt: str  # what the plot shows, for screen readers and when images are off
    uri: str  # data:image/png;base64,...


def _figure(width: float = 7.0, height: float = 3.2):  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110, layout="constrained")
    return figure, figure.add_subplot()


def _png(figure) -> str:  # type: ignore[no-untyped-def]
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _empty(axes, message: str) -> None:  # type: ignore[no-untyped-def]
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes, color="#555555")
    axes.set_xticks([])
    axes.set_yticks([])


def _edges(bins: int) -> list[float]:
    return [i / bins for i in range(bins + 1)]


def actions(summary: dict[str, Any]) -> Plot:
    totals = summary["totals"]["actions"]
    figure, axes = _figure(height=2.4)
    names = list(totals)
    counts = [totals[n]["count"] for n in names]
    if not names:
        _empty(axes, "no posts in these runs")
    else:
        bars = axes.barh(names[::-1], counts[::-1], color=[COLORS.get(n, "#777777") for n in names[::-1]])
        axes.bar_label(bars, labels=[f"{c:,} ({100 * totals[n]['share']:.1f}%)" for n, c in zip(names[::-1], counts[::-1])],
                       padding=3, fontsize=8)
        axes.set_xlabel("posts")
        axes.margins(x=0.25)
    alt = "Posts by action: " + ", ".join(f"{n} {totals[n]['count']:,}" for n in names)
    return Plot("actions", "Posts by action", alt, _png(figure))


def toxicity(summary: dict[str, Any]) -> Plot:
    data = summary["totals"]["toxicity"]
    edges = _edges(data["bins"])
    figure, axes = _figure()
    if not any(sum(c) for c in data["by_action"].values()):
        _empty(axes, "no scored posts in these runs")
    else:
        bottom = [0] * data["bins"]
        for action, counts in data["by_action"].items():
            if sum(counts):
                axes.bar(edges[:-1], counts, width=1 / data["bins"], bottom=bottom, align="edge",
                         color=COLORS[action], label=action, edgecolor="white", linewidth=0.4)
                bottom = [a + b for a, b in zip(bottom, counts)]
        axes.set_yscale("symlog", linthresh=1)
        axes.set_xlim(0, 1)
        axes.set_xlabel("toxicity score")
        axes.set_ylabel("posts (log scale)")
        axes.legend(fontsize=8, frameon=False, ncols=4, loc="upper center")
    alt = (f"Histogram of toxicity scores of {sum(sum(c) for c in data['by_action'].values()):,} posts in "
           f"{data['bins']} bins from 0 to 1, stacked by action; mean {data['mean']}")
    return Plot("toxicity", "Toxicity scores by action", alt, _png(figure))


def rewrite_toxicity(summary: dict[str, Any]) -> Plot:
    rewrite = summary["totals"]["rewrite"]
    bins = len(rewrite["toxicity_before"])
    edges = _edges(bins)
    figure, axes = _figure()
    if not rewrite["attempted"]:
        _empty(axes, "no posts were rewritten in these runs")
    else:
        axes.stairs(rewrite["toxicity_before"], edges, fill=True, alpha=0.45, color=COLORS[Action.REMOVE],
                    label="original post")
        axes.stairs(rewrite["toxicity_after"], edges, color=COLORS[Action.ALLOW], linewidth=2.2, label="rewrite")
        axes.set_xlim(0, 1)
        axes.set_xlabel("toxicity score")
        axes.set_ylabel("rewritten posts")
        axes.legend(fontsize=8, frameon=False)
    alt = (f"Toxicity of {rewrite['attempted']:,} rewritten posts before (mean {rewrite['toxicity_before_mean']}) "
           f"and after rewriting (mean {rewrite['toxicity_after_mean']})")
    return Plot("rewrite-toxicity", "Toxicity before and after rewriting", alt, _png(figure))


def similarity(summary: dict[str, Any]) -> Plot:
    rewrite = summary["totals"]["rewrite"]
    counts = rewrite["similarity"]
    edges = _edges(len(counts))
    figure, axes = _figure()
    if not sum(counts):
        _empty(axes, "no rewrites with a similarity score in these runs")
    else:
        axes.stairs(counts, edges, fill=True, color=COLORS[Action.REWRITE], alpha=0.7)
        floors = sorted({r["policy"].get("min_similarity") for r in summary["runs"]} - {None})
        for floor in floors:
            axes.axvline(floor, color="#333333", linestyle="--", linewidth=1)
            axes.annotate(f"min_similarity {floor}", (floor, 1), xycoords=("data", "axes fraction"),
                          xytext=(3, -12), textcoords="offset points", fontsize=8)
        axes.set_xlim(0, 1)
        axes.set_xlabel("similarity of rewrite to post (cosine)")
        axes.set_ylabel("rewritten posts")
    alt = f"Similarity of {sum(counts):,} rewrites to their posts; mean {rewrite['similarity_mean']}"
    return Plot("similarity", "Meaning kept by rewrites", alt, _png(figure))


def trend(summary: dict[str, Any]) -> Plot:
    points = summary["trend"]
    figure, axes = _figure(height=3.4)
    labels = [p["label"] for p in points]
    x = list(range(len(points)))
    for action in TRENDED:
        axes.plot(x, [100 * p["shares"][action] for p in points], marker="o", color=COLORS[action], label=action)
    top = max([100 * p["shares"][a] for p in points for a in TRENDED] + [1.0])
    axes.set_ylim(0, top * 1.15)
    axes.set_ylabel("share of posts (%)")
    axes.set_xticks(x, labels, rotation=30 if len(points) > 4 else 0, ha="right" if len(points) > 4 else "center",
                    fontsize=8)
    volume = axes.twinx()
    volume.bar(x, [p["posts"] for p in points], color="#cccccc", alpha=0.5, zorder=0, label="posts")
    volume.set_ylabel("posts")
    axes.set_zorder(volume.get_zorder() + 1)
    axes.patch.set_visible(False)
    axes.legend(fontsize=8, frameon=False, ncols=4, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    if len(points) == 1:
        axes.set_xlabel("one run: the trend needs several", fontsize=8, color="#555555")
    alt = "Per run: " + "; ".join(
        f"{p['label']}: {p['posts']:,} posts, rewrite {100 * p['shares'][Action.REWRITE]:.1f}%, "
        f"remove {100 * p['shares'][Action.REMOVE]:.1f}%" for p in points)
    return Plot("trend", "Trend per run", alt, _png(figure))


def all_plots(summary: dict[str, Any]) -> dict[str, Plot]:
    plots = [actions(summary), toxicity(summary), rewrite_toxicity(summary), similarity(summary), trend(summary)]
    return {p.id: p for p in plots}
