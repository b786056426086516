"""Read abuse spelled to dodge a filter as the words it spells, before the classifier sees a text.

People who want an insult past a filter write it "i d i o t", "s.t.u.p.i.d", "1d10t", "idoit",
"youidiot" or with letters from another script that look Latin ("іdіоt" with Cyrillic і and о). The
classifier's tokenizer then sees single letters, digits, foreign letters or word pieces, not the word.
`normalize` undoes these, only where the spelling is unmistakable, and changes nothing else (the
classifier scores the normalised text; the post itself, its rewrite and every output keep the
original):

- look-alike letters: in a word that mixes ASCII letters with others, each other letter that Unicode's
  confusables table (the `confusable_homoglyphs` package) lists as a look-alike of an ASCII letter
  becomes that letter (Cyrillic "о", Armenian "ո", Latin script "ɡ"; and SMALL_CAPITALS, which it
  leaves out: Cyrillic "к", Greek "κ"). A letter that is only a bar
  ("ӏ", "І", "Ι") reads as I when it is a capital, and as i or l, whichever makes a dictionary word
  ("animaӏs" -> "animals"). A word written wholly in look-alikes is read so only in a text of mostly
  ASCII letters and only when it reads as an English dictionary word of three letters or more ("you are
  ԁеаԁ" -> "you are dead"); real Russian or Greek is left alone.
- spaced-out letters: three or more single letters joined by one and the same separator (a space, a
  dot, a hyphen, an underscore or an asterisk) are joined ("f u c k" -> "fuck", "s.t.u.p.i.d" ->
  "stupid"). Abbreviations with dots ("U.S.A.") come out as "USA", which reads the same. A joined
  word the dictionary lacks is read like any other (below): "I h a t e" -> "Ihate" -> "I hate".
- leetspeak: in a word of letters with digits or symbols standing for letters before a letter
  ("1d10t", "5tup!d", "b!tch", "@ss"), those become the letters (1 i, 3 e, 4 a, 0 o, 5 s, 7 t, 9 g,
  8 b, @ a, $ s, ! i), and in such a word up to two digits after its last letter too ("v1l3" ->
  "vile"). A word must hold at least two letters; otherwise a trailing run of digits or symbols
  ("covid19", "mp3", "wow!"), numbers with units or ordinals ("4th", "10am") and e-mail addresses and
  domain names are left alone, unless reading every leet character in it spells a dictionary word of
  four letters or more ("h473" -> "hate", "5h007" -> "shoot", "w0r7hl355" -> "worthless").
- words glued together and typos (read right after look-alike letters, before the other two, and only
  in words of ASCII letters as written: not in contractions, masked or leet words): a word of four letters or more that the
  English frequency dictionary of `symspellpy` (82,765 words) does not hold is read as the words it
  glues together when all are dictionary words of four letters or more or common function words
  (GLUE_WORDS: "youidiot" -> "you idiot", "aloser" -> "a loser", "arefilthyparasites" -> "are filthy
  parasites"; "MAGAphants", "raghead" and "asswipe" stay), else as the one word it is a typo of when
  that is unmistakable: two neighbouring letters swapped or one left out, and no other word one edit
  away at least a fifth as frequent ("stuipd" -> "stupid", "idoit" -> "idiot", "disgustng" ->
  "disgusting"; a changed or extra letter is not a typo: "trannies" is not "grannies"); or, in a word
  of five letters or more (SWAP_MIN_LENGTH: four-letter ones are as often slang, "imma", "isnt", as
  slips), two neighbouring letters swapped in one word, or in one at least five times as frequent as
  the others, whatever words a changed letter makes ("sohot" -> "shoot", though "shot" is commoner;
  "metnal" -> "mental", though "metal" is); or else, when it is a slip of some word, as the word one
  edit away that follows the word before it five times as often as any other in English text, if that
  one is a slip (symspellpy's bigram counts: "I haet" -> "I hate", "the haet" -> "the heat", "are
  usless" -> "are useless" though "unless" is commoner alone, "is daed" -> "is dead"). Three-letter
  words are read only so, and never in capitals ("I hte" -> "I hate"; "hte", "tbh", "WTH" stay). A
  letter left out is otherwise read only when no other word is near: a word one letter short of a
  dictionary word is as often a name or slang ("MAGA", "beaner") as a slip. A typo reading commoner
  than the rarest word of a glued reading wins ("wrothless" -> "worthless", not "wroth less").
  Dictionary words are never changed, and neither are the words for people and groups that it lacks
  (KEEP: "nonbinary", "incels"); an unknown name may be read as a near word ("Rthur" -> "Arthur"), which only the
  classifier sees.

`normalize` gives one reading. `readings` gives the others a slip allows where the slip is of a word that
marks toxic posts (bundled/toxic_words.txt): "disguting" is one letter short of "disgusting" and one
changed letter from the commoner "disputing", so `normalize` keeps it, and `readings` offers "disgusting";
the classifier scores each and keeps the most toxic (`[classifier] slip_readings`).
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable, Mapping
import unicodedata
from pathlib import Path

LEET = {"1": "i", "3": "e", "4": "a", "0": "o", "5": "s", "7": "t", "9": "g", "8": "b", "@": "a", "$": "s", "!": "i"}
_SPACED = re.compile(r"(?<![^\W\d_])(?:[^\W\d_]([ \u00a0.\-_*])){2,}[^\W\d_](?![^\W\d_])")
# A token of letters and leet characters with at least one of each, a leet character not at its start
# unless letters follow ("@ss", "1d10t"), and not ending like a number with a unit or an ordinal.
_LEET_TOKEN = re.compile(r"(?<![\w@$!])(?<!\w\.)[A-Za-z0-9@$!]*[A-Za-z][A-Za-z0-9@$!]*(?![\w@$])(?!\.\w)")
_UNIT = re.compile(r"^\d+(st|nd|rd|th|s|am|pm|k|m|x|d|h|gb|mb|kb|km|kg|mm|cm|ml|p|v)$", re.IGNORECASE)
_HAS_LATIN = re.compile(r"[A-Za-z]")


# What `normalize` reads as words, for the model cards (a classifier records the steps it was trained with).
READS = ("spaced-out letters (beside a single letter too), leetspeak (words read whole), look-alike letters of "
         "other scripts (words wholly in them too), words glued together and unmistakable typos (two letters "
         "swapped in longer words; a slip read by the word before when a changed letter makes another word, "
         "three-letter words only so)")
# A word of ASCII letters as written: not part of a contraction ("aren't"), a masked word ("d*sgusting"),
# leetspeak ("p@r4si735"), an identifier or a word with other letters ("Straße").
_WORD = re.compile(r"(?<![\w'\u2019*@$])[A-Za-z]{3,}(?![\w'\u2019*@$])")
# Words the dictionary lacks that must reach the classifier as written: words for people and groups
# ("nonbinary", "incels", "antifa") that would otherwise be split or respelled ("non binary", "inc els").
KEEP = frozenset({"nonbinary", "cisgender", "genderqueer", "pansexual", "lgbt", "lgbtq", "lgbtqia", "incel", "incels",
                  "feminazi", "feminazis", "antifa"})
# Common English insults and slurs that symspellpy's dictionary (built from general text) lacks, added to it
# as frequent as "idiot", so that their typos ("dmubass", "ashole") and glued forms ("youasshole") read as
# the words, and the words themselves are never respelled ("cuck" is not "chuck").
ABUSE_WORDS = ("dumbass", "dumbasses", "asshole", "assholes", "dipshit", "dipshits", "douchebag", "douchebags",
               "libtard", "libtards", "retards", "tranny", "trannies", "wetback", "wetbacks", "raghead", "ragheads",
               "towelhead", "towelheads", "cuck", "cucks", "feminazi", "feminazis", "dotard", "numbnuts", "halfwit",
               "halfwits", "shithead", "shitheads", "dickhead", "dickheads", "scumbag", "scumbags", "jackass",
               "motherfucker", "motherfuckers", "bullshit", "dumbfuck", "fuckwit", "fuckface", "shitbag", "twat",
               "twats", "wanker", "wankers", "cunt", "cunts", "faggot", "faggots", "dyke", "dykes", "kike", "kikes",
               "chink", "chinks", "spic", "spics", "nigger", "niggers", "whore", "whores", "slut", "sluts")
# The shortest word read as two neighbouring letters swapped when another word is one edit away: of the
# four-letter ones in the dev split most are slang or abbreviations ("isnt" -> "inst", "imma" -> "imam").
SWAP_MIN_LENGTH = 5
TYPO_DOMINANCE = 5  # a typo's correction must be this many times as frequent as any other at its distance
# The short words a glued word may hold: the commonest function words ("a", "to", "you"), not every short
# dictionary word ("as", "rag", "mag": "asswipe", "raghead" and "MAGA" are not glued words).
GLUE_WORDS = frozenset({"a", "i", "an", "to", "be", "is", "are", "the", "you", "we", "he", "she", "it", "of", "in",
                        "on", "at", "and", "or", "so", "no", "not", "my", "his", "her", "our", "can", "was", "ur",
                        "all", "too", "for", "but", "get", "out", "how", "who", "why", "him"})


def normalize(text: str) -> str:
    """The text with look-alike letters, typos, glued words, spaced-out letters and leetspeak read as
    plain words (typos and glued words only in words as written: not in what spacing or leetspeak
    leave): STEPS, in order."""
    for _, step in STEPS:
        text = step(text)
    return text


# The reading, step by step and in order (benchmarks/deobfuscate_cost.py times each one).
STEPS: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("look-alike letters", lambda text: _fold_lookalikes(text)),
    ("glued words and typos", lambda text: _WORD.sub(_respell, text)),
    ("spaced-out letters", lambda text: _SPACED.sub(_join_spaced, text)),
    ("leetspeak", lambda text: _LEET_TOKEN.sub(_unleet, text)),
)


@functools.lru_cache(maxsize=1)
def _speller():  # type: ignore[no-untyped-def]
    import importlib.resources

    from symspellpy import SymSpell

    speller = SymSpell(max_dictionary_edit_distance=1, prefix_length=7)
    dictionary = importlib.resources.files("symspellpy") / "frequency_dictionary_en_82_765.txt"
    with importlib.resources.as_file(dictionary) as path:
        speller.load_dictionary(str(path), term_index=0, count_index=1)
    count = speller.words["idiot"]
    for word in ABUSE_WORDS:  # as common as "idiot": their typos and glued forms read as they do
        if word not in speller.words:
            speller.create_dictionary_entry(word, count)
    return speller


_WORD_BEFORE = re.compile(r"([A-Za-z]+)[ \t]+$")


def _respell(match: re.Match[str]) -> str:
    word = match.group(0)
    # A three-letter word is read only by the word before it ("I hte" -> "I hate"), and never in capitals:
    # alone, too many are abbreviations or slang one edit from a word ("tbh", "smh", "WTH").
    if len(word) < 4 and word.isupper():
        return word
    fixed = _respelled(word) if len(word) >= 4 else None
    if fixed is None and word.lower() not in _speller().words and _slips(word.lower()):
        # "haet": "hate" or "heat"; "usless": "useless", or "unless" with a letter changed; the word before may tell
        before = _WORD_BEFORE.search(match.string[max(0, match.start() - 40):match.start()])
        if before:
            fixed = _typo_after(word, before.group(1).lower())
    return fixed or word


@functools.lru_cache(maxsize=1)
def _bigrams() -> dict[str, int]:
    """symspellpy's English bigram counts ("i hate": 56,103,104), loaded on first need."""
    import importlib.resources

    speller = _speller()
    if not speller.bigrams:
        counts = importlib.resources.files("symspellpy") / "frequency_bigramdictionary_en_243_342.txt"
        with importlib.resources.as_file(counts) as path:
            speller.load_bigram_dictionary(str(path), term_index=0, count_index=2)
    return speller.bigrams


@functools.lru_cache(maxsize=65536)
def _typo_after(word: str, before: str) -> str | None:
    """The word that `word`, unknown and a slip (`_slip`) of some dictionary word, stands for after
    `before`: of the words one edit away, the one that follows `before` TYPO_DOMINANCE times as often as
    any other in English text, when it is a slip ("I haet" -> "I hate": "i hate" is common, "i heat" is
    not; "the haet" -> "the heat"; "are usless" -> "are useless", though "unless" is commoner alone);
    else None."""
    lower = word.lower()
    if lower in _speller().words or lower in KEEP or not _slips(lower):  # dictionary words are never changed
        return None
    follows = sorted(((_bigrams().get(f"{before} {term}", 0), term) for term, _ in _near(lower)), reverse=True)
    runner_up = follows[1][0] if len(follows) > 1 else 0
    if follows[0][0] > 0 and follows[0][0] >= TYPO_DOMINANCE * runner_up and _slip(lower, follows[0][1]):
        return _cased(follows[0][1], word)
    return None


@functools.lru_cache(maxsize=65536)
def _respelled(word: str) -> str | None:
    """The word a typo stands for, or the words a glued word joins, cased like `word`; None to keep it."""
    speller, lower = _speller(), word.lower()
    if lower in speller.words or lower in KEEP:
        return None
    # Glued words first: every letter stays as written ("aloser" is "a loser", not a typo of "closer"),
    # unless a typo reading is commoner than the rarest of the glued words ("wrothless" is "worthless",
    # not "wroth less"). Words of four letters or more, and short ones only from GLUE_WORDS: "rag head",
    # "as swipe" and "i do it" ("idoit": a typo of "idiot") are not read into a word.
    parts = speller.word_segmentation(lower, max_edit_distance=0).corrected_string.split()
    typo = _typo_of(lower, speller)
    if len(parts) >= 2 and "".join(parts) == lower and len(parts[-1]) > 1 and all(
            p in GLUE_WORDS or (len(p) >= 4 and p in speller.words) for p in parts) and not (  # not "scotus a"
            typo and speller.words[typo] > min(speller.words.get(p, 0) for p in parts)):  # "wrothless"
        return _split_at(word, parts)
    return _cased(typo, word) if typo else None


def _cased(fixed: str, word: str) -> str:
    """`fixed` cased like `word` as written: all capitals, a capital first, or as the dictionary has it."""
    return fixed.upper() if word.isupper() else fixed.capitalize() if word[0].isupper() else fixed


@functools.lru_cache(maxsize=65536)
def _near(lower: str) -> tuple[tuple[str, int], ...]:
    """The dictionary words one edit away from `lower` (Damerau: a swap of neighbours counts one), with
    their counts, the most frequent first."""
    from symspellpy import Verbosity

    found = _speller().lookup(lower, Verbosity.ALL, max_edit_distance=1, transfer_casing=False)
    return tuple((s.term, s.count) for s in sorted(found, key=lambda s: (s.distance, -s.count)) if s.distance == 1)


@functools.lru_cache(maxsize=65536)
def _slips(lower: str) -> tuple[str, ...]:
    """The words `lower` is a slip of (two neighbouring letters swapped or one left out; no contractions)."""
    return tuple(term for term, _ in _near(lower) if _slip(lower, term) and "'" not in term)


@functools.lru_cache(maxsize=65536)
def _swaps(lower: str) -> tuple[str, ...]:
    """The words `lower` is two neighbouring letters swapped in (no contractions), the most frequent first."""
    return tuple(term for term in _slips(lower) if len(term) == len(lower))


def _typo_of(lower: str, speller) -> str | None:  # type: ignore[no-untyped-def]
    """The dictionary word that `lower` is a slip of (`_slip`), or None: the closest word when it is one
    edit away, a slip, and TYPO_DOMINANCE times as frequent as any other word one edit away ("idoit",
    "disgustng"); else, in a word of SWAP_MIN_LENGTH letters or more, the word it is two neighbouring
    letters swapped in, when that is one word or TYPO_DOMINANCE times as frequent as the others
    ("sohot" is "shoot", though "shot" is a letter away and commoner). A letter left out is read only
    by the first rule: a word one letter short of a dictionary word is as often a name or slang
    ("MAGA", "beaner") as a slip. So is a contraction written without its apostrophe ("doesnt" ->
    "doesn't"; "dont" stays, "don" being near)."""
    found = _near(lower)
    if found and (len(found) == 1 or found[0][1] >= TYPO_DOMINANCE * found[1][1]) and _slip(lower, found[0][0]):
        return found[0][0]
    swaps = _swaps(lower) if len(lower) >= SWAP_MIN_LENGTH else ()
    if swaps and (len(swaps) == 1 or speller.words[swaps[0]] >= TYPO_DOMINANCE * speller.words[swaps[1]]):
        return swaps[0]
    return None


def _slip(written: str, word: str) -> bool:
    """Whether `written` is `word` with two neighbouring letters swapped or one letter left out: the slips
    that make no other word of a word. A changed or an extra letter is how one word becomes another
    ("trannies" / "grannies", "qwest" / "west"), so those are not read as typos."""
    if len(word) == len(written) + 1:
        return any(word[:i] + word[i + 1:] == written for i in range(len(word)))
    if len(word) == len(written):
        diff = [i for i in range(len(word)) if word[i] != written[i]]
        return (len(diff) == 2 and diff[1] == diff[0] + 1 and word[diff[0]] == written[diff[1]]
                and word[diff[1]] == written[diff[0]])
    return False


def _split_at(word: str, parts: list[str]) -> str:
    """The original letters, with spaces where the words meet."""
    out, at = [], 0
    for part in parts:
        out.append(word[at:at + len(part)])
        at += len(part)
    return " ".join(out)


def _join_spaced(match: re.Match[str]) -> str:
    spelled = match.group(0)
    separator = match.group(1)
    letters = spelled.split(separator)
    if any(len(part) != 1 for part in letters):  # mixed separators: not one spelled-out word
        return spelled
    joined = "".join(letters)
    # A word beside the spelled one may be a single letter too: "I h a t e" joins to "Ihate", read as
    # "I hate" (and a typo in the spelled word as the word it stands for, "s t u i p d" as "stupid").
    if len(joined) >= 4 and joined.isascii() and joined.isalpha():
        return _respelled(joined) or joined
    return joined


def _unleet(match: re.Match[str]) -> str:
    """The token with every leet character read as a letter when that spells a dictionary word of four
    letters or more ("h473" -> "hate", "Ch1n3$3" -> "Chinese"); otherwise leet characters followed by a
    letter in the token become letters, and then up to two digits after its last letter, and a trailing
    run of digits or symbols stays ("covid19", "mp3")."""
    token = match.group(0)
    whole = "".join(LEET.get(c, c) for c in token)
    if whole != token and not token.endswith("!") and len(whole) >= 4 and whole.isalpha() \
            and whole.lower() in _speller().words:  # not "yet!" -> "yeti"
        return whole  # every leet character read, and that spells a word: "h473", "5h007", "w0r7hl355"
    last_letter = max(i for i, c in enumerate(token) if c.isalpha())
    head, tail = token[:last_letter], token[last_letter:]
    if sum(c.isalpha() for c in token) < 2 or _UNIT.match(token) or not any(c in LEET for c in head):
        return token
    if len(tail) <= 3:  # a word already in leet ("v1l3", "h0m0"): its last digits too, not "!" ("h3ll0!")
        tail = tail[0] + "".join(LEET.get(c, c) if c.isdigit() else c for c in tail[1:])
    return "".join(LEET.get(c, c) for c in head) + tail


# Look-alikes the confusables table leaves out because some fonts draw them otherwise (small capitals
# in most fonts), which homoglyph lists for spoofing still use: Cyrillic and Greek k, Cyrillic m and t.
SMALL_CAPITALS = {"\u043a": "k", "\u03ba": "k", "\u043c": "m", "\u0442": "t"}


@functools.lru_cache(maxsize=4096)
def _latin_lookalike(char: str) -> str | None:
    from confusable_homoglyphs import confusables

    if char in SMALL_CAPITALS:
        return SMALL_CAPITALS[char]

    # Every script, Latin included: "ɡ" (Latin script g) and "ı" (dotless i) read as g and i too.
    for found in confusables.is_confusable(char, greedy=True) or []:
        for glyph in found["homoglyphs"]:
            candidate = glyph["c"]
            if len(candidate) == 1 and candidate.isascii() and candidate.isalpha():
                return candidate
    return None


def _fold_lookalikes(text: str) -> str:
    if text.isascii():
        return text
    out = []
    latin_text = None
    for word in re.split(r"(\W+)", text):
        if word and not word.isascii():
            if _HAS_LATIN.search(word):
                word = _folded(word)
            elif len(word) >= 3 and word.isalpha():
                if latin_text is None:  # mostly ASCII letters: an English post, not Russian or Greek
                    letters = [c for c in text if c.isalpha()]
                    latin_text = sum(c.isascii() for c in letters) > len(letters) / 2
                if latin_text:
                    folded = _folded(word)
                    if folded.isascii() and folded.lower() in _speller().words:
                        word = folded  # "ԁеаԁ" among English words: "dead"
        out.append(word)
    return "".join(out)


MAX_BARS = 4  # look-alikes of i and l in one word whose readings are tried against the dictionary


@functools.lru_cache(maxsize=4096)
def _folded(word: str) -> str:
    """`word` with each look-alike letter read as its ASCII letter. A letter that is only a vertical bar
    (Cyrillic "ӏ" and "І", Greek "Ι"; the table reads some as i, some as l) is first read as I when it
    is a capital and as the table says otherwise; then every reading with some bars the other way (i
    for l, l for i) is looked up, and the most frequent dictionary word wins ("animaӏs" -> "animals",
    "aӏӏ" -> "all", not "ali"; "ІDІOT" -> "IDIOT"), the first reading when none is a more frequent word."""
    letters, bars = [], []
    for k, c in enumerate(word):
        latin = None if c.isascii() or not c.isalpha() else _latin_lookalike(c)
        if latin is not None and latin.lower() in ("i", "l"):
            bars.append(k)
            latin = "I" if c.isupper() else latin.lower()
        letters.append(latin or c)
    if not bars or len(bars) > MAX_BARS:
        return "".join(letters)
    known, other = _speller().words, {"i": "l", "l": "i", "I": "L", "L": "I"}
    best, best_count = "".join(letters), known.get("".join(letters).lower(), 0)
    for n in range(1, len(bars) + 1):  # the fewest letters read the other way first, on a tie
        for chosen in itertools.combinations(bars, n):
            trial = "".join(other[letters[k]] if k in chosen else letters[k] for k in range(len(letters)))
            if known.get(trial.lower(), 0) > best_count:
                best, best_count = trial, known[trial.lower()]
    return best


def classifier_input(text: str) -> str:
    """What the classifier reads: NFKC (full-width and mathematical letters read as the letters they
    show, "ｉｄｉｏｔ" -> "idiot"), then `normalize`."""
    return normalize(unicodedata.normalize("NFKC", text))



TOXIC_WORDS = Path(__file__).parent / "bundled" / "toxic_words.txt"


def dictionary_words() -> Mapping[str, int]:
    """The words typos are read into (symspellpy's English frequency dictionary plus ABUSE_WORDS), with their
    counts: a slip is only ever read as one of these."""
    return _speller().words


@functools.lru_cache(maxsize=1)
def toxic_words() -> frozenset[str]:
    """The words a slip may be read as by `readings`: those that mark toxic posts in the classifier's
    training data (bundled/toxic_words.txt, written by `python -m train toxic-words`, which says how)."""
    lines = TOXIC_WORDS.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def readings(text: str, most: int) -> list[str]:
    """Other readings of a text than `classifier_input`'s, each read by it, up to `most`: a word as
    written (ASCII letters, as typos are read) that the dictionary lacks, that `normalize` leaves as it
    is, and that is a slip (`_slips`: two neighbouring letters swapped or one left out) of words that
    mark toxic posts (`toxic_words`), is read as each of those in turn, the most frequent first; reading
    k puts each such word's k-th in (its last where it has fewer). "Sikhs are disguting." -> "Sikhs are
    disgusting." (`normalize` keeps "disguting": "disputing", one letter changed, is commoner); "they
    are vle" -> "vile"; "I'll satb you" -> "stab". The classifier scores every reading and keeps the
    most toxic: a word spelled one slip away from an abusive word to get it past a filter reads as that
    word. Only abusive words are tried: the classifier's score moves with any rare word put in ("teaches
    meath" for "math" scores as toxic as "scum"), and the most toxic of many such readings would be
    noise. Capitals of three letters or fewer ("WTH") and KEEP are left alone, as `normalize` leaves
    them."""
    if most <= 0:
        return []
    folded = _fold_lookalikes(unicodedata.normalize("NFKC", text))
    words, known, toxic = [], _speller().words, toxic_words()
    for match in _WORD.finditer(folded):
        word = match.group(0)
        lower = word.lower()
        if (len(word) < 4 and word.isupper()) or lower in known or lower in KEEP or _respell(match) != word:
            continue
        slips = [_cased(s, word) for s in _slips(lower) if s in toxic]
        if slips:
            words.append((match.start(), match.end(), slips))
    out = []
    for k in range(min(most, max((len(s) for _, _, s in words), default=0))):
        pieces, last = [], 0
        for start, end, slips in words:
            pieces += [folded[last:start], slips[min(k, len(slips) - 1)]]
            last = end
        out.append(normalize("".join(pieces) + folded[last:]))
    return out
