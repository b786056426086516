"""Training and evaluation data: toxicity labels and ParaDetox parallel pairs.

Sources are read from a folder laid out like `../shared/data` (see its README), or, for users with
network access, from the model hub's copies of the same sets (`hf:` ids, loaded with `datasets`).

Splits are deterministic and do not depend on file order: a text's split comes from the hash of
its normalised form, so the same sentence lands in the same split in every source and every run.
ParaDetox rewrites follow their toxic sentence (split by group), so no sentence's rewrites straddle
train and dev.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEV_SHARE = 0.1
SPLIT_SALT = "moderator-v1"

# The hub's copies of the shared data sets (for users with network access).
HUB_PARADETOX = "hf:s-nlp/paradetox"
HUB_DAVIDSON = "hf:tdavidson/hate_speech_offensive"


@dataclass(frozen=True)
class Labelled:
    text: str
    label: int  # 1 toxic, 0 clean
    source: str
    split: str  # "train" or "dev"


@dataclass(frozen=True)
class Pair:
    toxic: str
    neutral: tuple[str, ...]  # one to three human rewrites
    split: str


def normalize(text: str) -> str:
    """Key for deduplication and splitting: lower case, words only."""
    return " ".join(re.sub(r"[^\w]+", " ", text.lower()).split())


def split_of(key: str, dev_share: float = DEV_SHARE) -> str:
    digest = hashlib.sha256((SPLIT_SALT + normalize(key)).encode()).digest()
    return "dev" if int.from_bytes(digest[:8], "big") / 2**64 < dev_share else "train"


def _rows(path: Path, delimiter: str = ",") -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter=delimiter))


def _hub_rows(spec: str) -> list[dict]:
    from datasets import load_dataset

    name = spec.removeprefix("hf:")
    data = load_dataset(name)
    return [row for split in data.values() for row in split]


def paradetox_pairs(data: str | Path, dev_share: float = DEV_SHARE) -> list[Pair]:
    """ParaDetox: each toxic sentence with its 1-3 crowd rewrites, split by toxic sentence."""
    if str(data).startswith("hf:"):
        grouped: dict[str, list[str]] = defaultdict(list)
        for row in _hub_rows(str(data)):
            grouped[row["en_toxic_comment"]].append(row["en_neutral_comment"])
        items = list(grouped.items())
    else:
        path = Path(data)
        path = path / "paradetox" / "paradetox.tsv" if path.is_dir() else path
        items = [(r["toxic"], [r.get(k) or "" for k in ("neutral1", "neutral2", "neutral3")]) for r in _rows(path, "\t")]
    pairs = []
    for toxic, neutrals in items:
        neutral = tuple(n.strip() for n in neutrals if n and n.strip())
        if toxic and toxic.strip() and neutral:
            pairs.append(Pair(toxic.strip(), neutral, split_of(toxic, dev_share)))
    return pairs


def toxicity_examples(data: str | Path, dev_share: float = DEV_SHARE) -> list[Labelled]:
    """Jigsaw sentences, Davidson tweets and ParaDetox, labelled toxic/clean, deduplicated.

    Davidson: hate speech and offensive are toxic, neither is clean. ParaDetox: the toxic side is
    toxic, the crowd rewrites are clean (split with their toxic sentence). A text that occurs with
    both labels is dropped; a text in both splits is kept in dev only.
    """
    raw: list[tuple[str, int, str, str]] = []  # text, label, source, split key
    root = Path(data) if not str(data).startswith("hf:") else None
    if root is not None:
        for row in _rows(root / "toxicity" / "jigsaw_sentences.csv"):
            raw.append((row["text"], int(row["toxic"]), "jigsaw", row["text"]))
        davidson = _rows(root / "toxicity" / "davidson2017_tweets.csv")
    else:
        davidson = _hub_rows(HUB_DAVIDSON)
    for row in davidson:
        raw.append((row["tweet"], 0 if int(row["class"]) == 2 else 1, "davidson", row["tweet"]))
    for pair in paradetox_pairs(root if root is not None else HUB_PARADETOX, dev_share):
        raw.append((pair.toxic, 1, "paradetox", pair.toxic))
        raw.extend((n, 0, "paradetox", pair.toxic) for n in pair.neutral)
    return clean(raw, dev_share)


def clean(raw: list[tuple[str, int, str, str]], dev_share: float = DEV_SHARE) -> list[Labelled]:
    labels: dict[str, set[int]] = defaultdict(set)
    splits: dict[str, set[str]] = defaultdict(set)
    for text, label, _, key in raw:
        norm = normalize(text)
        labels[norm].add(label)
        splits[norm].add(split_of(key, dev_share))
    seen: set[str] = set()
    out = []
    dropped = {"empty": 0, "contradictory": 0, "duplicate": 0}
    for text, label, source, _ in raw:
        norm = normalize(text)
        if not norm:
            dropped["empty"] += 1
        elif len(labels[norm]) > 1:
            dropped["contradictory"] += 1
        elif norm in seen:
            dropped["duplicate"] += 1
        else:
            seen.add(norm)
            out.append(Labelled(text.strip(), label, source, "dev" if "dev" in splits[norm] else "train"))
    log.info("toxicity data: %d examples kept, dropped %s", len(out), dropped)
    return out


def cannot_rewrite(data: str | Path) -> list[tuple[str, list[str]]]:
    """ParaDetox's sentences that annotators could not rewrite, with their reasons."""
    path = Path(data) / "paradetox" / "paradetox_cannot_rewrite.tsv"
    out = []
    for row in _rows(path, "\t"):
        try:
            reasons = [k for k, v in json.loads(row["OUTPUT:reasons"]).items() if v]
        except (json.JSONDecodeError, AttributeError):
            reasons = []
        out.append((row["INPUT:toxic_comment"].strip().strip('"'), reasons))
    return out


def summary(examples: list[Labelled]) -> dict[str, dict[str, dict[str, int]]]:
    """Counts per source, split and label, for model cards."""
    table: dict[str, dict[str, dict[str, int]]] = {}
    for ex in examples:
        cell = table.setdefault(ex.source, {}).setdefault(ex.split, {"toxic": 0, "clean": 0})
        cell["toxic" if ex.label else "clean"] += 1
    return table


def extra_pairs(path: str | Path, dev_share: float = DEV_SHARE) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """(toxic, neutral) pairs from a JSONL file of {"toxic", "neutral"} objects (self-training's
    kept.jsonl), and what was dropped: pairs whose toxic text is in the dev split (split_of: so
    ParaDetox's dev sentences never reach training by this door), blank ones and repeats."""
    pairs: list[tuple[str, str]] = []
    dropped = {"dev": 0, "blank": 0, "duplicate": 0}
    seen: set[tuple[str, str]] = set()
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                toxic, neutral = row["toxic"], row["neutral"]
                if not isinstance(toxic, str) or not isinstance(neutral, str):
                    raise TypeError
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{path}:{number}: not a pair line ({{\"toxic\": ..., \"neutral\": ...}})") from None
            key = (normalize(toxic), normalize(neutral))
            if not key[0] or not key[1]:
                dropped["blank"] += 1
            elif split_of(toxic, dev_share) == "dev":
                dropped["dev"] += 1
            elif key in seen:
                dropped["duplicate"] += 1
            else:
                seen.add(key)
                pairs.append((toxic.strip(), neutral.strip()))
    log.info("extra pairs from %s: %d, dropped %s", path, len(pairs), dropped)
    return pairs, dropped
