"""The classifier's training mix: every labelled source in `../shared/data`, toxicity and categories.

Each example carries the toxicity label and, where its source says so, the five categories the
classifier reports beside toxicity (CATEGORIES). A label a source does not carry is unknown (-1) and
does not count in the loss: Jigsaw says "toxic" but not whether it is an insult or a threat; Gab says
"attack on human dignity", "call for violence" and "vulgar" but nothing of insults. A clean example is
clean in every category.

    source          site, casing                       toxicity                       categories
    jigsaw          Wikipedia talk / news, lower-cased   toxic 1/0                      none (clean: all 0)
    davidson        Twitter                            hate, offensive / neither      hate -> identity_attack
    paradetox       Reddit, Twitter, Jigsaw, lower      toxic side / human rewrites    none (clean: all 0)
    olid            Twitter, cased                     OFF / NOT                      TIN -> insult, UNT -> obscene
    gab             Gab, cased                         hd or cv or vo / unknown*      hd -> identity_attack,
                                                                                      cv -> threat, vo -> obscene
    convabuse       messages to chatbots, cased        majority of annotators         sex_harassment -> sexual,
                                                                                      identity types -> identity_attack,
                                                                                      intellectual -> insult
    implicit_hate   Twitter, lower-cased               unknown*                       identity_attack; stage 2
                                                                                      threatening -> threat
    mlma            Twitter, cased                     unknown*                       hateful -> identity_attack
    stormfront      Stormfront forum sentences, cased  hate / unknown*                hate -> identity_attack
    forum           news-site comments, cased          toxic posts and their marked   none
                                                       sentences (all toxic)
    forum_rest      the same posts without their       clean                          none
                    marked sentences
    robustness      the project's own templates        see train/robustness.py        identity_attack, threat, insult
                                                                                      (an insult: threat and
                                                                                      identity_attack 0)
    counterfactual  clean posts of the above naming a group, the group swapped (label unchanged)
    obfuscated      toxic posts of the above, abusive words spelled to dodge a filter; clean posts, one
                    word so spelled (label unchanged)

* The hate-speech sets label hate, not toxicity: a post they call clean may still be rude or insulting
(a first model trained with those as clean learned that "imbeciles", "buffoon" and "scum" are fine, and
lost 0.03 ROC-AUC on Jigsaw), and coded hate without a rude word (Implicit Hate, MLMA) taught it to
flag plain talk about groups. So their clean posts leave the toxicity label unknown, and Implicit Hate
and MLMA teach only the categories; explicit hate (Gab, Stormfront) stays toxic.

Splits come from `data.split_of` (the hash of a text's normalised form; a forum sentence follows its
post), so the same text is in the same split in every source and in the rewriter's data. Texts are
deduplicated across sources on their normalised form; a text with contradictory toxicity labels is
dropped; a category label of duplicates is the known one, or unknown where the sources disagree.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

from train import data, robustness

log = logging.getLogger(__name__)

LABELS = ("toxic", "insult", "threat", "identity_attack", "obscene", "sexual")
CATEGORIES = LABELS[1:]
UNKNOWN = -1
IDENTITY_TYPES = ("ableist", "homophobic", "racist", "sexist", "transphobic")
COUNTERFACTUALS_PER_SOURCE = 3000  # clean posts naming a group, each swapped once
# Toxic posts with their abusive words obfuscated; clean posts, one word. (1200, 450) made the sources kept
# whole outgrow their tenth of the set (classifier-v8), so training subsampled the robustness templates.
OBFUSCATED_PER_SOURCE = (800, 300)
OBFUSCATED_SOURCES = ("jigsaw", "davidson", "olid", "gab", "forum", "paradetox")


@dataclass(frozen=True)
class Example:
    text: str
    labels: tuple[int, ...]  # one per LABELS: 1, 0 or UNKNOWN
    source: str
    split: str  # "train" or "dev"

    @property
    def toxic(self) -> int:
        """1 toxic, 0 clean, -1 unknown (a hate-speech source's clean post: see above)."""
        return self.labels[0]


def _labels(toxic: int, **categories: int) -> tuple[int, ...]:
    """Clean: every category 0. Toxic: the named categories, the others unknown."""
    unknown = 0 if not toxic else UNKNOWN
    return (toxic, *[categories.get(c, unknown) for c in CATEGORIES])


def _not_hate(**categories: int) -> tuple[int, ...]:
    """A post a hate-speech source calls clean: not hate, which is not the same as not toxic (a rude
    or insulting post that attacks no group is "clean" there). Its toxicity label stays unknown; only
    the categories the source judged are known."""
    return (UNKNOWN, *[categories.get(c, UNKNOWN) for c in CATEGORIES])


def _read(path: Path, delimiter: str = ",") -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter=delimiter))


# --- sources: each yields (text, labels, split key) ------------------------------------------------------------

def _jigsaw(root: Path):
    for row in _read(root / "toxicity" / "jigsaw_sentences.csv"):
        yield row["text"], _labels(int(row["toxic"])), row["text"]


def _davidson(root: Path):
    for row in _read(root / "toxicity" / "davidson2017_tweets.csv"):
        cls = int(row["class"])
        yield row["tweet"], (_labels(0) if cls == 2 else _labels(1, identity_attack=int(cls == 0))), row["tweet"]


def _paradetox(root: Path):
    for pair in data.paradetox_pairs(root):
        yield pair.toxic, _labels(1), pair.toxic
        for neutral in pair.neutral:
            yield neutral, _labels(0), pair.toxic


def _olid(root: Path):
    folder = root / "abuse" / "olid"
    rows = [(r["tweet"], r["subtask_a"], r["subtask_b"]) for r in _read(folder / "olid-training-v1.0.tsv", "\t")]
    test = {r["id"]: r["tweet"] for r in _read(folder / "testset-levela.tsv", "\t")}
    level_a = {r[0]: r[1] for r in csv.reader(open(folder / "labels-levela.csv", encoding="utf-8"))}
    level_b = {r[0]: r[1] for r in csv.reader(open(folder / "labels-levelb.csv", encoding="utf-8"))}
    rows += [(text, level_a.get(i, ""), level_b.get(i, "NULL")) for i, text in test.items()]
    for text, a, b in rows:
        if a == "NOT":
            yield text, _labels(0), text
        elif a == "OFF":
            yield text, _labels(1, insult=int(b == "TIN"), obscene=int(b == "UNT")) if b in ("TIN", "UNT") \
                else _labels(1), text


def _gab(root: Path):
    for name in ("ghc_train.tsv", "ghc_test.tsv"):
        for row in _read(root / "abuse" / "gab_hate_corpus" / name, "\t"):
            hd, cv, vo = (int(row[k]) for k in ("hd", "cv", "vo"))
            toxic = int(hd or cv or vo)
            yield row["text"], (_labels(1, identity_attack=hd, threat=cv, obscene=vo) if toxic
                                else _not_hate(threat=0, identity_attack=0, obscene=0)), row["text"]


def _convabuse(root: Path):
    for name in ("ConvAbuseEMNLPtrain.csv", "ConvAbuseEMNLPvalid.csv", "ConvAbuseEMNLPtest.csv"):
        for row in _read(root / "abuse" / "convabuse" / name):
            annotators = {k.split("_")[0] for k in row if k.startswith("Annotator")}
            votes = Counter()
            types = Counter()
            for a in annotators:
                severity = [s for s in ("1", "0", "-1", "-2", "-3") if row.get(f"{a}_is_abuse.{s}") == "1"]
                if not severity:
                    continue  # this annotator did not label this message
                votes["abuse" if int(severity[0]) < 0 else "clean" if severity[0] == "1" else "ambiguous"] += 1
                for t in (*IDENTITY_TYPES, "intellectual", "sex_harassment"):
                    types[t] += row.get(f"{a}_{t}") == "1"
            labelled = sum(votes.values())
            text = (row["user"] or "").strip()
            if not labelled or not text:
                continue
            if votes["clean"] * 2 > labelled:
                yield text, _labels(0), text
            elif votes["abuse"] * 2 > labelled:
                half = votes["abuse"] / 2
                yield text, _labels(1, sexual=int(types["sex_harassment"] >= half),
                                    insult=int(types["intellectual"] >= half),
                                    identity_attack=int(sum(types[t] for t in IDENTITY_TYPES) >= half)), text


def _implicit_hate(root: Path):
    folder = root / "abuse" / "implicit_hate"
    threatening = {r["post"] for r in _read(folder / "implicit_hate_v1_stg2_posts.tsv", "\t")
                   if "threatening" in (r["implicit_class"], r.get("extra_implicit_class"))}
    for row in _read(folder / "implicit_hate_v1_stg1_posts.tsv", "\t"):
        text, cls = row["post"], row["class"]
        if cls in ("implicit_hate", "explicit_hate"):  # hate, often coded: a category, not the toxicity label
            yield text, (UNKNOWN, *_labels(1, identity_attack=1, threat=1 if text in threatening else UNKNOWN)[1:]), text


def _mlma(root: Path):
    for row in _read(root / "abuse" / "mlma" / "en_dataset_with_stop_words.csv"):
        kinds = set(row["sentiment"].split("_"))
        if "hateful" in kinds:  # the toxicity label stays unknown: MLMA's tweets were picked for hostility
            yield row["tweet"], (UNKNOWN, *_labels(1, identity_attack=1)[1:]), row["tweet"]
        elif kinds == {"normal"}:
            yield row["tweet"], _not_hate(identity_attack=0), row["tweet"]


def _stormfront(root: Path):
    for row in _read(root / "abuse" / "stormfront" / "stormfront_sentences.csv"):
        if row["label"] == "noHate":
            yield row["text"], _not_hate(identity_attack=0), row["text"]
        elif row["label"] == "hate":
            yield row["text"], _labels(1, identity_attack=1), row["text"]


def _forum_rows(root: Path) -> list[dict[str, str]]:
    return [row for name in ("tsd_train.csv", "tsd_trial.csv") for row in _read(root / "forum_posts" / name)]


@functools.lru_cache(maxsize=2)
def _forum_posts(root: Path) -> tuple[tuple[str, tuple, tuple], ...]:
    """Each forum post with marked toxic spans: its text, its sentences and those of them that overlap a
    marked span (split once for both forum sources); posts without marked spans have no sentences here."""
    from moderator import sentences

    posts = []
    for row in _forum_rows(root):
        marked = set(json.loads(row["spans"] or "[]"))
        spans = tuple(sentences.split(row["text"])) if marked else ()
        posts.append((row["text"], spans, tuple(s for s in spans if marked.intersection(range(*s)))))
    return tuple(posts)


def _forum(root: Path):
    """Toxic news-site comments, whole, and their sentences that overlap a marked toxic span (a sentence
    outside every span is not known to be clean on its own: see _forum_rest)."""
    for text, spans, hit in _forum_posts(root):
        yield text, _labels(1), text
        if len(spans) >= 2:
            for start, end in hit:
                yield text[start:end], _labels(1), text


def _forum_rest(root: Path):
    """Clean: the rest of a toxic news-site comment, its sentences outside every marked span put back
    together (sentences.reassemble), when at least two are left and none holds a word the raters marked
    toxic elsewhere (`_marked_words`: an unmarked "morons" is a rater's miss, not a clean word). Without
    them every multi-sentence news comment the model saw was toxic, and it learned the length and the
    politics: classifier-v5 flagged 45% of such rests as a whole (alt-profanity-check: 12%)."""
    from moderator import sentences

    lexicon = _marked_words(_forum_rows(root))
    for text, spans, hit in _forum_posts(root):
        if len(spans) - len(hit) < 2:
            continue
        rest = sentences.reassemble(text, list(hit), {k: "" for k in range(len(hit))})
        if not lexicon.intersection(_WORDS.findall(rest.casefold())):
            yield rest, _labels(0), text


_WORDS = re.compile(r"[^\W\d_]+")
MARKED_SHARE, MARKED_MIN = 0.5, 3  # a word raters marked in at least half its uses, and 3 times at least


def _marked_words(rows: list[dict[str, str]]) -> set[str]:
    """Words (case folded) that the raters marked toxic in at least MARKED_SHARE of their uses, and at
    least MARKED_MIN times, in the posts of the training split (the dev posts teach nothing here)."""
    marked, used = Counter(), Counter()
    for row in rows:
        if data.split_of(row["text"]) != "train":
            continue
        spans = set(json.loads(row["spans"] or "[]"))
        for match in _WORDS.finditer(row["text"]):
            word = match.group().casefold()
            used[word] += 1
            marked[word] += bool(spans.intersection(range(match.start(), match.end())))
    return {w for w, n in marked.items() if n >= MARKED_MIN and n >= MARKED_SHARE * used[w]}


def _robustness(root: Path):
    for case in robustness.generate():
        if case.category == "insult":  # an insult, personal or at a group no law protects: no threat, no hate
            yield case.text, _labels(1, insult=1, threat=0, identity_attack=0), case.template
        elif case.expected:
            yield case.text, _labels(1, **({case.category: 1} if case.category else {})), case.template
        else:
            yield case.text, _labels(0), case.template


SOURCES = {
    "jigsaw": _jigsaw, "davidson": _davidson, "paradetox": _paradetox, "olid": _olid, "gab": _gab,
    "convabuse": _convabuse, "implicit_hate": _implicit_hate, "mlma": _mlma, "stormfront": _stormfront,
    "forum": _forum, "forum_rest": _forum_rest, "robustness": _robustness,
}


def examples(root: str | Path, dev_share: float = data.DEV_SHARE, sources: tuple[str, ...] | None = None,
             augment: bool = True, seed: int = 0) -> list[Example]:
    """The whole mix, deduplicated; with `augment`, counterfactual copies of training posts that name a
    group and obfuscated copies of training posts (a new list; the mix is built once per process and
    set of arguments: it takes a minute)."""
    return list(_examples(str(root), dev_share, tuple(sources or SOURCES), augment, seed))


@functools.lru_cache(maxsize=4)
def _examples(root: str | Path, dev_share: float, sources: tuple[str, ...], augment: bool,
              seed: int) -> tuple[Example, ...]:
    root = Path(root)
    template_split = {c.template: c.split for c in robustness.generate()}
    raw: list[tuple[str, tuple[int, ...], str, str]] = []
    for name in sources:
        count = 0
        for text, labels, key in SOURCES[name](root):
            split = template_split[key] if name == "robustness" else data.split_of(key, dev_share)
            raw.append((text, labels, name, split))
            count += 1
        log.info("source %s: %d rows", name, count)
    merged = _dedup(raw)
    if augment:  # training copies only: the dev split is the same either way
        merged += _counterfactuals(merged, COUNTERFACTUALS_PER_SOURCE, seed)
        merged += _obfuscated(merged, OBFUSCATED_PER_SOURCE, seed)
    return tuple(merged)


def _dedup(raw: list[tuple[str, tuple[int, ...], str, str]]) -> list[Example]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, (text, *_rest) in enumerate(raw):
        norm = data.normalize(text)
        if norm:
            groups[norm].append(i)
    out, counts = [], Counter()
    for norm, members in groups.items():
        known = [{raw[i][1][k] for i in members} - {UNKNOWN} for k in range(len(LABELS))]
        if len(known[0]) > 1:  # toxic in one source, clean in another
            counts["dropped: contradictory toxicity"] += len(members)
            continue
        labels = [next(iter(values)) if len(values) == 1 else UNKNOWN for values in known]
        counts["kept: a category left unknown (sources disagree)"] += any(len(values) > 1 for values in known)
        counts["dropped: duplicate"] += len(members) - 1
        text, _, source, _ = raw[members[0]]
        split = "dev" if any(raw[i][3] == "dev" for i in members) else "train"
        out.append(Example(text.strip(), tuple(labels), source, split))
    log.info("classifier data: %d examples; %s", len(out), dict(counts))
    return out


def _counterfactuals(examples: list[Example], per_source: int, seed: int) -> list[Example]:
    """Training posts (clean and toxic) that name an identity group, with the group swapped for another:
    naming a group must not change a score. Up to `per_source` per source, labels unchanged."""
    if per_source <= 0:
        return []
    rng = random.Random(seed)
    seen = {data.normalize(e.text) for e in examples}
    out = []
    by_source: dict[str, list[Example]] = defaultdict(list)
    for e in examples:
        if e.split == "train" and e.source != "robustness":
            by_source[e.source].append(e)
    for source, items in sorted(by_source.items()):
        rng.shuffle(items)
        added = 0
        for e in items:
            if added >= per_source:
                break
            if not robustness.identity_terms(e.text):
                continue
            swapped = robustness.swap_identity(e.text, seed=rng.randrange(1 << 30))
            norm = data.normalize(swapped)
            if swapped != e.text and norm not in seen:
                seen.add(norm)
                out.append(replace(e, text=swapped, source="counterfactual"))
                added += 1
    log.info("counterfactual examples: %d", len(out))
    return out


def _obfuscated(examples: list[Example], per_source: tuple[int, int], seed: int) -> list[Example]:
    """Real training posts spelled to dodge a filter (spaced letters, leetspeak, look-alike letters, typos,
    words glued together; dealt out in turn), labels unchanged: toxic posts with their abusive words
    (robustness.TOXIC_WORDS) obfuscated, so the model learns what the de-obfuscation leaves behind (and
    the typos and glued words it does not undo); and clean posts with one
    longer word obfuscated, so that odd spelling alone is not a sign of toxicity. Up to `per_source`
    (toxic, clean) from each of OBFUSCATED_SOURCES, training split only."""
    rng = random.Random(seed + 1)
    seen = {data.normalize(e.text) for e in examples}
    out: list[Example] = []
    for source in OBFUSCATED_SOURCES:
        items = [e for e in examples if e.source == source and e.split == "train" and e.toxic in (0, 1)]
        rng.shuffle(items)
        added = {0: 0, 1: 0}
        for e in items:
            quota = per_source[0] if e.toxic else per_source[1]
            if added[e.toxic] >= quota:
                continue
            if e.toxic:
                words = robustness.toxic_words(e.text)
            else:
                long = [w for w in e.text.split() if len(w) >= 4 and w.isalpha()]
                words = [rng.choice(long)] if long else []
            if not words:
                continue
            how = robustness.OBFUSCATIONS[(added[0] + added[1]) % len(robustness.OBFUSCATIONS)]
            text = robustness.obfuscate(e.text, how, seed=rng.randrange(1 << 30), words=words)
            norm = data.normalize(text)
            if text != e.text and norm not in seen:
                seen.add(norm)
                out.append(replace(e, text=text, source="obfuscated"))
                added[e.toxic] += 1
    log.info("obfuscated examples: %d", len(out))
    return out


def summary(items: list[Example]) -> dict[str, dict]:
    """Per source and split: toxic, clean, and known positives per category (for the model card)."""
    table: dict[str, dict] = {}
    for e in items:
        cell = table.setdefault(e.source, {}).setdefault(
            e.split, {"toxic": 0, "clean": 0, "unknown": 0, **{c: 0 for c in CATEGORIES}})
        cell["toxic" if e.toxic == 1 else "clean" if e.toxic == 0 else "unknown"] += 1
        for c, value in zip(CATEGORIES, e.labels[1:]):
            cell[c] += value == 1
    return table


# What each source brings to the classifier, and what it cannot teach (the model card prints these).
SOURCE_NOTES = {
    "jigsaw": ("Wikipedia talk and news-site sentences: the broadest notion of rudeness.",
               "lower-cased and tokenised, one sentence at a time; no categories"),
    "davidson": ("tweets with slurs and casual swearing; hate speech marked (identity_attack).",
                 "one community and era (2017); capped at 10,000 offensive tweets so its slang does not set "
                 "the model's idea of ordinary swearing"),
    "paradetox": ("toxic sentences beside their human rewrites: the same content, toxic and not.",
                  "lower-cased; no categories"),
    "olid": ("cased tweets; targeted insults (insult) versus untargeted profanity (obscene).",
             "TIN also holds threats, so insult is noisy; no identity labels"),
    "gab": ("cased, multi-sentence posts from a far-right site; attacks on human dignity (identity_attack), "
            "calls for violence (threat), vulgarity (obscene); its hate is toxic.",
            "its clean posts are only not-hate (toxicity unknown); few threats (about 150)"),
    "convabuse": ("messages to chatbots: sexual harassment (sexual), identity-based abuse, insults on "
                  "intelligence (insult).", "small (about 2,000 messages); short conversational text"),
    "implicit_hate": ("coded and implicit hate without slurs (identity_attack); threatening posts (threat).",
                      "toxicity (coded hate is not rude, and the label would teach flagging plain talk about "
                      "groups); its not-hate posts are left out"),
    "mlma": ("hateful tweets with targets (identity_attack); normal ones as not identity_attack.",
             "toxicity: its tweets were picked for hostility"),
    "stormfront": ("cased forum sentences from a white-supremacist forum; hate is toxic and identity_attack.",
                   "its noHate sentences are only not-hate (toxicity unknown)"),
    "forum": ("real toxic news-site comments, whole (multi-sentence) and their marked toxic sentences.",
              "no categories; its clean side is forum_rest"),
    "forum_rest": ("clean multi-sentence news-site text: the rest of a forum post without its marked sentences "
                   "(two sentences or more, no word the raters marked toxic elsewhere).",
                   "not clean posts as written: an unmarked insult or a remark toxic in context may remain "
                   "(alt-profanity-check flags 4%)"),
    "robustness": ("the project's own templates (train split): neutral, positive, negated and counter-speech "
                   "statements about groups and violent idioms (clean); attacks, written and composed threats "
                   "(personal and against groups), insults (personal, at groups no law protects, and people called "
                   "bigots: threat and identity_attack 0), and their obfuscations.",
                   "templated English; the dev templates are held out for the robustness table"),
    "obfuscated": ("real training posts spelled to dodge a filter: toxic ones with their abusive words spaced, "
                   "in leetspeak, in look-alike letters, with a typo or glued to a neighbouring word; clean "
                   "ones with one word so spelled.",
                   "only the abusive words the robustness suite lists; machine-made spellings"),
    "counterfactual": ("training posts that name a group, the group swapped for another (label unchanged).",
                       "swaps only the groups train/robustness.py knows"),
}


# The words `moderator.deobfuscate.readings` may read a slip as (bundled/toxic_words.txt).
TOXIC_WORD_MIN_TEXTS, TOXIC_WORD_MIN_SHARE = 10, 0.7
# Names of groups that train/robustness.py's GROUPS do not spell so (theirs are left out too).
GROUP_NAMES = frozenset({"jew", "jews", "islam", "islamic", "homosexual", "homosexuals", "homosexuality", "queer",
                         "queers", "transgender", "feminist", "feminists", "africans", "immigrants", "hispanic",
                         "hispanics", "mexico", "africa", "israel", "israeli"})


def toxic_words(root: str | Path, min_texts: int = TOXIC_WORD_MIN_TEXTS,
                min_share: float = TOXIC_WORD_MIN_SHARE) -> tuple[list[str], dict]:
    """Dictionary words of three letters or more (case folded) held by at least `min_texts` labelled
    training texts of the real sources, at least `min_share` of them toxic, less the names of groups;
    and the counts behind the choice. The project's own templates (robustness, and the counterfactual and
    obfuscated copies) are left out, so the list says what real posts mark as toxic, not what the
    robustness suite asks for."""
    items = [e for e in examples(root, augment=False)
             if e.split == "train" and e.toxic in (0, 1) and e.source != "robustness"]
    held, toxic = Counter(), Counter()
    for e in items:
        for word in set(_WORDS.findall(e.text.casefold())):
            held[word] += 1
            toxic[word] += e.toxic
    from moderator.deobfuscate import dictionary_words

    # Only dictionary words: a slip is read only into one, and the rest are handles and spellings ("bihhh").
    known = dictionary_words()
    marked = {w for w, n in held.items()
              if len(w) >= 3 and n >= min_texts and toxic[w] >= min_share * n and w in known}
    # Words naming a group ("muslims", "gay") mark toxic posts only because the sources hold more attacks on
    # groups than talk about them: a slip is never read as one (the groups train/robustness.py knows).
    forms = {w.casefold() for g in robustness.GROUPS for form in (g.plural, g.pred, g.singular, g.adj) if form
             for w in _WORDS.findall(form.casefold())} - {"a", "an", "people", "person", "with"}
    forms |= {f + "s" for f in forms} | GROUP_NAMES
    names = {w for w in marked
             if w in forms or robustness.identity_terms(w) or robustness.identity_terms(w.capitalize())}
    words = sorted(marked - names)
    stats = {"texts": len(items), "toxic_share": round(sum(e.toxic for e in items) / max(1, len(items)), 4),
             "sources": dict(sorted(Counter(e.source for e in items).items())), "min_texts": min_texts,
             "min_share": min_share, "words": len(words), "group_names_left_out": sorted(names)}
    return words, stats
