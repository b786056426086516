"""Self-training (expert iteration), stage 1: rewrite candidates for real toxic texts.

    python -m train selftrain-candidates --out runs/selftrain/candidates.jsonl --max-texts 12000 --max-minutes 38
    python -m train selftrain-filter runs/selftrain/candidates.jsonl --out runs/selftrain/kept.jsonl \\
        --preferences runs/selftrain/preferences.jsonl
    python -m train detox --out runs/detox-self --fp32 --extra-pairs runs/selftrain/kept.jsonl

Why: the shipped rewriter learned from ParaDetox alone, and on real forum comments it often copies an
insult it never saw there. Here it proposes several rewrites of real toxic texts (greedy first, then
seeded samples, through the product's own engine and prompt template), `selftrain_filter` keeps only
the rewrites that the product's own checks pass strictly, and `detox --extra-pairs` trains on them.

The texts (the pool), each a sentence or a short post:
- forum: the sentences of the toxic forum posts (forum_posts/, SemEval-2021 toxic spans) that overlap a
  crowd-marked span, or that the classifier scores at least `forum_threshold`; the marked phrases
  inside a sentence travel with it (`insults`), so the filter can refuse a rewrite that keeps one.
- jigsaw: the toxic sentences of toxicity/jigsaw_sentences.csv (toxic == 1).
- davidson: the hate-speech and offensive tweets of toxicity/davidson2017_tweets.csv (class 0 or 1),
  with HTML entities decoded and retweet markers, mentions and links dropped.
- paradetox: the toxic sentences of ParaDetox's training split (the model saw them, not their
  sampled rewrites).

Held out, from every source (the rewriter is evaluated there): every sentence of a forum post in the
forum benchmark's dev split (benchmarks/forum_posts.py: sha1 of the whole post % 10 == 0), the dev
posts themselves, and every text in the project's hash dev split (`train.data.split_of`), which is
exactly ParaDetox's dev split wherever the same sentence turns up (Jigsaw holds many of ParaDetox's
sentences) and also the classifier's dev split. Texts are deduplicated by `train.data.normalize`,
the first source in SOURCES order keeping a text seen in several.

Order: each source is shuffled with the seed, then the sources are interleaved by drawing the next
source at random in proportion to its `mix` weight (seeded), until all are used up. `--max-texts N`
takes the first N of that order, so a larger N extends a smaller one, and every prefix has the mix.
The whole order is written beside the output (`*.pool.jsonl`), and what was sampled to `*.stats.json`.

Generation runs in chunks of `chunk_size` texts, one engine call each; the chunk's seed is derived
from `--seed` and the chunk's number, so a chunk's candidates do not depend on the chunks before it:
a run cut off (killed, or stopped by `--max-minutes` after a chunk) and resumed writes the same file
as a straight one, and whatever a cut-off run wrote is a usable prefix of it.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import logging
import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from moderator import prompts, sentences
from train import data

if TYPE_CHECKING:
    from moderator.rewrite import Rewriter

log = logging.getLogger(__name__)

SOURCES = ("forum", "paradetox", "jigsaw", "davidson")  # dedup priority: the first source keeps a text
DEFAULT_MIX = "forum=4,jigsaw=3,paradetox=2,davidson=1"
FORUM_FILES = ("tsd_train.csv", "tsd_trial.csv")  # the forum benchmark's order (its dedup keeps the first)
MIN_INSULT_CHARS = 3

Scorer = Callable[[list[str]], Sequence[float]]  # texts -> toxicity


@dataclass(frozen=True)
class Text:
    source: str
    text: str
    insults: tuple[str, ...] = ()  # forum: the crowd-marked phrases inside the sentence


@dataclass(frozen=True)
class PoolOptions:
    """What decides the pool and its order; a resumed run must use the same."""

    seed: int = 0
    mix: str = DEFAULT_MIX
    min_words: int = 3
    max_words: int = 40
    forum_threshold: float = 0.5

    def __post_init__(self) -> None:
        parse_mix(self.mix)
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError(f"word limits {self.min_words}..{self.max_words}: need 1 <= min-words <= max-words")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Pool:
    texts: list[Text]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # per source: found, held out, ...


def parse_mix(spec: str) -> dict[str, float]:
    """Weights from "forum=4,jigsaw=3"; an unknown source or a negative weight is an error."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, value = part.partition("=")
        if name not in SOURCES:
            raise ValueError(f"mix: unknown source {name!r} (sources: {', '.join(SOURCES)})")
        try:
            weights[name] = float(value)
        except ValueError:
            raise ValueError(f"mix: {part!r} is not SOURCE=WEIGHT") from None
        if weights[name] < 0:
            raise ValueError(f"mix: negative weight for {name}")
    if not any(weights.values()):
        raise ValueError(f"mix {spec!r} gives no source a weight")
    return weights


# --- held-out texts --------------------------------------------------------------------------------

def in_forum_dev(post: str) -> bool:
    """The forum benchmark's dev split (benchmarks/forum_posts.py `in_dev`), decided on the whole post."""
    return int(hashlib.sha1(post.encode("utf-8")).hexdigest(), 16) % 10 == 0


def held_out(text: str, forum_dev: set[str]) -> bool:
    """Whether a text may be evaluated on: the project's hash dev split (ParaDetox dev) or a forum dev
    sentence. `forum_dev` holds normalized texts."""
    return data.split_of(text) == "dev" or data.normalize(text) in forum_dev


# --- sources -----------------------------------------------------------------------------------------

def forum_posts(data_dir: Path) -> dict[str, list[int]]:
    """Every forum post once (the first occurrence's marked offsets, train file first)."""
    posts: dict[str, list[int]] = {}
    for name in FORUM_FILES:
        path = data_dir / "forum_posts" / name
        if not path.exists():
            continue
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row["text"].strip() and row["text"] not in posts:
                    posts[row["text"]] = sorted(set(json.loads(row["spans"] or "[]")))
    return posts


def marked_phrases(text: str, start: int, end: int, marked: set[int]) -> tuple[str, ...]:
    """The runs of marked characters inside text[start:end], trimmed of non-word edges, 3+ characters."""
    phrases, run = [], []
    for i in range(start, end + 1):
        if i < end and i in marked:
            run.append(i)
            continue
        if run:
            phrase = re.sub(r"^\W+|\W+$", "", text[run[0]:run[-1] + 1])
            if len(phrase) >= MIN_INSULT_CHARS:
                phrases.append(phrase)
            run = []
    return tuple(dict.fromkeys(phrases))


def forum_sentences(data_dir: Path, scorer: Scorer | None, threshold: float) -> tuple[list[Text], set[str], int]:
    """(toxic sentences of the non-dev posts, normalized dev texts, unmarked sentences scored). A
    sentence is toxic when it overlaps a marked span, or when `scorer` gives it `threshold` or more."""
    marked_texts, unmarked, dev = [], [], set()
    for post, spans in forum_posts(data_dir).items():
        pieces = sentences.split(post)
        if in_forum_dev(post):
            dev.add(data.normalize(post))
            dev.update(data.normalize(post[a:b]) for a, b in pieces)
            continue
        marked = set(spans)
        for a, b in pieces:
            if any(a <= offset < b for offset in marked):
                marked_texts.append(Text("forum", post[a:b], marked_phrases(post, a, b, marked)))
            else:
                unmarked.append(post[a:b])
    if scorer is not None and unmarked:
        log.info("scoring %d unmarked forum sentences with the classifier", len(unmarked))
        scores = scorer(unmarked)
        marked_texts.extend(Text("forum", t) for t, s in zip(unmarked, scores) if float(s) >= threshold)
    return marked_texts, dev, len(unmarked) if scorer is not None else 0


def clean_tweet(text: str) -> str:
    """A tweet as a forum sentence: entities decoded, retweet markers, mentions and links dropped."""
    text = html.unescape(html.unescape(text))
    text = re.sub(r"\bRT\b:?", " ", text)
    text = re.sub(r"@\w+:?", " ", text)
    text = re.sub(r"https?://\S+", " ", text)
    text = re.sub(r"^[\W_]+(?=\w)", "", text.strip())  # leading "!!! " runs
    return " ".join(text.split())


def _csv_rows(path: Path) -> Iterable[dict[str, str]]:
    if not path.exists():
        log.warning("%s not found: that source is skipped", path)
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def table_sources(data_dir: Path) -> dict[str, list[Text]]:
    """The toxic texts of the labelled sets and of ParaDetox's training split."""
    jigsaw = [Text("jigsaw", r["text"].strip()) for r in _csv_rows(data_dir / "toxicity" / "jigsaw_sentences.csv")
              if r["toxic"].strip() == "1"]
    davidson = [Text("davidson", clean_tweet(r["tweet"]))
                for r in _csv_rows(data_dir / "toxicity" / "davidson2017_tweets.csv")
                if r["class"].strip() in {"0", "1"}]
    paradetox_file = data_dir / "paradetox" / "paradetox.tsv"
    pairs = data.paradetox_pairs(paradetox_file) if paradetox_file.exists() else []
    paradetox = [Text("paradetox", p.toxic) for p in pairs if p.split == "train"]
    return {"jigsaw": jigsaw, "davidson": davidson, "paradetox": paradetox}


# --- the pool ------------------------------------------------------------------------------------------

def build_pool(data_dir: Path, options: PoolOptions, scorer: Scorer | None) -> Pool:
    """Every eligible text, held-out texts removed, deduplicated, in the seeded mixed order."""
    forum, forum_dev, scored = forum_sentences(data_dir, scorer, options.forum_threshold)
    found = {"forum": forum, **table_sources(data_dir)}
    counts: dict[str, Counter] = {name: Counter() for name in SOURCES}
    counts["forum"]["unmarked_scored"] = scored
    seen: set[str] = set()
    groups: dict[str, list[Text]] = {name: [] for name in SOURCES}
    for name in SOURCES:
        for item in found.get(name, []):
            counts[name]["found"] += 1
            words = len(item.text.split())
            norm = data.normalize(item.text)
            if not norm or not options.min_words <= words <= options.max_words:
                counts[name]["length"] += 1
            elif held_out(item.text, forum_dev):
                counts[name]["held_out"] += 1
            elif norm in seen:
                counts[name]["duplicate"] += 1
            else:
                seen.add(norm)
                groups[name].append(item)
                counts[name]["eligible"] += 1
    texts = interleave(groups, parse_mix(options.mix), options.seed)
    log.info("pool: %d texts (%s)", len(texts), ", ".join(f"{n} {len(g)}" for n, g in groups.items()))
    return Pool(texts, {name: dict(c) for name, c in counts.items()})


def interleave(groups: dict[str, list[Text]], weights: dict[str, float], seed: int) -> list[Text]:
    """All texts of the weighted sources: each source shuffled, the next source drawn by weight."""
    rng = random.Random(seed)
    queues = {name: rng.sample(texts, len(texts)) for name, texts in groups.items() if weights.get(name, 0) > 0}
    cursors = dict.fromkeys(queues, 0)
    out: list[Text] = []
    live = [name for name in queues if queues[name]]
    while live:
        name = rng.choices(live, weights=[weights[n] for n in live])[0]
        out.append(queues[name][cursors[name]])
        cursors[name] += 1
        if cursors[name] == len(queues[name]):
            live.remove(name)
    return out


def write_pool(pool: Pool, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for item in pool.texts:
            handle.write(json.dumps(asdict(item) | {"insults": list(item.insults)}, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_pool(path: Path) -> list[Text]:
    with open(path, encoding="utf-8") as handle:
        return [Text(r["source"], r["text"], tuple(r.get("insults") or ())) for r in map(json.loads, handle)]


def sample_counts(texts: Sequence[Text]) -> dict[str, int]:
    counts = Counter(t.source for t in texts)
    return {name: counts[name] for name in SOURCES if counts[name]}


# --- generation ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GenerationOptions:
    """What decides the candidates; a resumed run must use the same."""

    candidates: int = 4
    temperature: float = 1.0
    max_new_tokens: int = 64
    chunk_size: int = 64
    base: str | None = None
    adapter: str | None = None
    engine: str = "auto"

    def __post_init__(self) -> None:
        if self.candidates < 1 or self.chunk_size < 1 or self.max_new_tokens < 1:
            raise ValueError("candidates, chunk size and max new tokens must be at least 1")


def chunk_seed(seed: int, chunk: int) -> int:
    """A chunk's sampling seed: its own, whatever ran before it."""
    return (seed * 1_000_003 + chunk * 10_007) % (2**31 - 1)


def read_done(path: Path) -> dict[str, str]:
    """Texts already in a candidates file, with their source. A last line cut off mid-write (the run
    was killed) is dropped from the file; a broken line elsewhere is an error."""
    if not path.exists():
        return {}
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        keep = raw.rfind(b"\n") + 1
        log.warning("%s: dropping a last line cut off mid-write (%d bytes)", path, len(raw) - keep)
        with open(path, "r+b") as handle:
            handle.truncate(keep)
        raw = raw[:keep]
    done = {}
    for number, line in enumerate(raw.decode("utf-8").splitlines(), 1):
        try:
            record = json.loads(line)
            done[record["text"]] = record["source"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(f"{path}:{number}: not a candidates line; is it a selftrain-candidates output?") from None
    return done


def generate(texts: list[Text], out: Path, rewriter: Rewriter, options: GenerationOptions, seed: int,
             done: Collection[str], max_seconds: float | None = None) -> dict:
    """Candidates for every text not in `done`, appended to `out` a chunk at a time (flushed and
    synced, so a killed run loses at most the chunk it was generating). With `max_seconds`, stops after
    the chunk that reaches it: the file is then a prefix of the full run's, and --resume continues it.
    Returns counts and speed."""
    size = options.chunk_size
    chunks = [texts[i:i + size] for i in range(0, len(texts), size)]
    todo_total = sum(t.text not in done for t in texts)
    written, too_long, start = 0, 0, time.perf_counter()
    log.info("generating %d candidates for %d texts (%d already done), chunks of %d", options.candidates,
             todo_total, len(texts) - todo_total, size)
    with open(out, "a", encoding="utf-8") as handle:
        for number, chunk in enumerate(chunks):
            missing = [t for t in chunk if t.text not in done]
            if not missing:
                continue
            # The whole chunk is generated again (same prompts, same seed: same candidates) and only
            # the missing texts are written, so a chunk cut off mid-write resumes exactly.
            fitted = [rewriter.fit(t.text)[0] for t in chunk]  # None: does not fit the engine's context
            asked = [p for p in fitted if p is not None]
            generated = iter(rewriter.engine.candidates(asked, options.candidates, options.temperature,
                                                        chunk_seed(seed, number)) if asked else [])
            lines = []
            for item, prompt in zip(chunk, fitted):
                row = next(generated) if prompt is not None else []
                if item.text in done:
                    continue
                too_long += prompt is None
                candidates = list(dict.fromkeys(prompts.parse_completion(g.text) for g in row))
                record = {"source": item.source, "text": item.text, "candidates": candidates}
                if item.insults:
                    record["insults"] = list(item.insults)
                lines.append(json.dumps(record, ensure_ascii=False) + "\n")
            handle.write("".join(lines))
            handle.flush()
            os.fsync(handle.fileno())
            written += len(lines)
            elapsed = time.perf_counter() - start
            rate = written / elapsed if elapsed else 0.0
            log.info("chunk %d/%d: %d/%d texts, %.2f texts/s, eta %.0f s", number + 1, len(chunks), written,
                     todo_total, rate, (todo_total - written) / rate if rate else 0.0)
            if max_seconds is not None and elapsed >= max_seconds and written < todo_total:
                log.info("time limit reached after %d of %d texts: --resume continues the run", written, todo_total)
                break
    seconds = time.perf_counter() - start
    return {"written": written, "too_long": too_long, "seconds": round(seconds, 1),
            "texts_per_s": round(written / seconds, 3) if seconds and written else None,
            "complete": written == todo_total}


# --- the command -----------------------------------------------------------------------------------------

def side_paths(out: Path) -> tuple[Path, Path]:
    """(pool file, stats file) beside a candidates file: candidates.pool.jsonl, candidates.stats.json."""
    return out.with_suffix(".pool.jsonl"), out.with_suffix(".stats.json")


def product_rewriter(options: GenerationOptions, seed: int, threads: int = 0) -> Rewriter:
    """The product's rewriter (moderator.rewrite), with the same prompt template and engines as
    `moderate batch`; unset base and adapter mean the bundled ones."""
    from moderator.config import RewriterConfig, RuntimeConfig
    from moderator.rewrite import Rewriter

    config = RewriterConfig(base=options.base, adapter=options.adapter, engine=options.engine,
                            candidates=options.candidates, candidate_temperature=options.temperature, seed=seed,
                            max_new_tokens=options.max_new_tokens)
    return Rewriter(config, RuntimeConfig(threads=threads))


def product_scorer(classifier: str | None, threads: int = 0) -> Scorer:
    """Toxicity by the product's classifier (bundled unless named), in float32 so that the pool does
    not depend on whether the CPU has bf16 units."""
    from moderator.classify import Classifier
    from moderator.config import ClassifierConfig, RuntimeConfig

    config = ClassifierConfig(model=classifier, dtype="float32", cascade="off")
    model = Classifier(config, RuntimeConfig(threads=threads))
    return lambda texts: model.toxicity(model.predict(texts)).tolist()


def _model_ids(rewriter: Rewriter) -> dict:
    return {"engine": rewriter.engine.name, "base": rewriter.base.to_dict(),
            "adapter": rewriter.adapter.to_dict() if rewriter.adapter else None}


def _identity(models: dict) -> tuple:
    """What makes two runs' candidates comparable: the engine and the models' content (not their paths)."""
    return models["engine"], models["base"]["sha256"], (models["adapter"] or {}).get("sha256")


def _check_resumable(stats: dict, pool_options: PoolOptions, generation: GenerationOptions, stats_path: Path) -> None:
    for key, wanted in (("pool_options", pool_options.to_dict()), ("generation", asdict(generation))):
        had = stats.get(key)
        if had != wanted:
            changed = sorted(k for k in wanted if (had or {}).get(k) != wanted[k])
            raise ValueError(f"cannot resume: options {', '.join(changed)} differ from the run in {stats_path}; "
                             "use the same ones, or start a new output")


def run(data_dir: Path, out: Path, pool_options: PoolOptions, generation: GenerationOptions,
        max_texts: int | None = None, resume: bool = False, max_seconds: float | None = None,
        make_scorer: Callable[[], Scorer | None] = lambda: None,
        make_rewriter: Callable[[], Rewriter] | None = None) -> dict:
    """Build (or, resuming, read) the pool, take its first `max_texts`, and write their candidates to
    `out`; returns the stats also written beside it."""
    pool_path, stats_path = side_paths(out)
    started = out.exists() and out.stat().st_size > 0
    if started and not resume:
        raise ValueError(f"{out} already holds candidates: pass --resume to continue that run, or remove it")
    stats: dict = json.loads(stats_path.read_text()) if resume and stats_path.exists() else {}
    if started and not stats:
        raise ValueError(f"cannot resume: {stats_path} is missing, so the run's options are unknown")
    if stats:
        _check_resumable(stats, pool_options, generation, stats_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if stats and pool_path.exists():
        texts, pool_counts = read_pool(pool_path), stats["pool"]["per_source"]
        log.info("read the pool of %d texts from %s", len(texts), pool_path)
    else:
        pool = build_pool(data_dir, pool_options, make_scorer())
        write_pool(pool, pool_path)
        texts, pool_counts = pool.texts, pool.counts
    selected = texts[:max_texts] if max_texts is not None else texts
    done = read_done(out) if resume else {}
    unknown = done.keys() - {t.text for t in texts}
    if unknown:
        raise ValueError(f"cannot resume: {len(unknown)} texts of {out} are not in its pool {pool_path}")
    rewriter = (make_rewriter or (lambda: product_rewriter(generation, pool_options.seed)))()
    models = _model_ids(rewriter)
    if stats.get("models") and _identity(stats["models"]) != _identity(models):
        raise ValueError(f"cannot resume: the rewriter's models differ from those in {stats_path}")
    stats.update({"pool_options": pool_options.to_dict(), "generation": asdict(generation), "models": models,
                  "data": str(data_dir),
                  "pool": {"file": pool_path.name, "size": len(texts), "per_source": pool_counts},
                  "max_texts": max_texts, "sampled": {"texts": len(selected), "per_source": sample_counts(selected)}})
    stats.setdefault("runs", [])
    stats_path.write_text(json.dumps(stats, indent=2) + "\n")
    result = generate(selected, out, rewriter, generation, pool_options.seed, done, max_seconds)
    stats["runs"].append({**result, "resumed": bool(done), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    in_file = read_done(out)
    stats["texts_in_file"] = len(in_file)
    stats["in_file_per_source"] = sample_counts([Text(source, text) for text, source in in_file.items()])
    stats_path.write_text(json.dumps(stats, indent=2) + "\n")
    return stats
