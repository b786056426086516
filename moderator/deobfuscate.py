"""Read abuse spelled to dodge a filter as the words it spells, before the classifier sees a text.

People who want an insult past a filter write it "i d i o t", "s.t.u.p.i.d", "1d10t" or with letters
from another script that look Latin ("іdіоt" with Cyrillic і and о). The classifier's tokenizer then
sees single letters, digits or foreign letters, not the word. `normalize` undoes the three, only where
the spelling is unmistakable, and changes nothing else (the classifier scores the normalised text; the
post itself, its rewrite and every output keep the original):

- look-alike letters: in a word that mixes ASCII letters with others, each other letter that Unicode's
  confusables table (the `confusable_homoglyphs` package) lists as a look-alike of an ASCII letter
  becomes that letter (Cyrillic "о", Armenian "ո", Latin script "ɡ"). A word written wholly in
  Cyrillic or Greek (real Russian or Greek) is left alone.
- spaced-out letters: three or more single letters joined by one and the same separator (a space, a
  dot, a hyphen, an underscore or an asterisk) are joined ("f u c k" -> "fuck", "s.t.u.p.i.d" ->
  "stupid"). Abbreviations with dots ("U.S.A.") come out as "USA", which reads the same.
- leetspeak: in a word of letters with digits or symbols standing for letters before a letter
  ("1d10t", "5tup!d", "b!tch", "@ss"), those become the letters (1 i, 3 e, 4 a, 0 o, 5 s, 7 t, 9 g,
  8 b, @ a, $ s, ! i), and in such a word up to two digits after its last letter too ("v1l3" ->
  "vile"). A word must hold at least two letters; otherwise a trailing run of digits or symbols
  ("covid19", "mp3", "wow!"), numbers with units or ordinals ("4th", "10am") and e-mail addresses and
  domain names are left alone.
"""

from __future__ import annotations

import functools
import re
import unicodedata

LEET = {"1": "i", "3": "e", "4": "a", "0": "o", "5": "s", "7": "t", "9": "g", "8": "b", "@": "a", "$": "s", "!": "i"}
_SPACED = re.compile(r"(?<![^\W\d_])(?:[^\W\d_]([ \u00a0.\-_*])){2,}[^\W\d_](?![^\W\d_])")
# A token of letters and leet characters with at least one of each, a leet character not at its start
# unless letters follow ("@ss", "1d10t"), and not ending like a number with a unit or an ordinal.
_LEET_TOKEN = re.compile(r"(?<![\w@$!])(?<!\w\.)[A-Za-z0-9@$!]*[A-Za-z][A-Za-z0-9@$!]*(?![\w@$])(?!\.\w)")
_UNIT = re.compile(r"^\d+(st|nd|rd|th|s|am|pm|k|m|x|d|h|gb|mb|kb|km|kg|mm|cm|ml|p|v)$", re.IGNORECASE)
_HAS_LATIN = re.compile(r"[A-Za-z]")


def normalize(text: str) -> str:
    """The text with look-alike letters, spaced-out letters and leetspeak read as plain words."""
    text = _fold_lookalikes(text)
    text = _SPACED.sub(_join_spaced, text)
    return _LEET_TOKEN.sub(_unleet, text)


def _join_spaced(match: re.Match[str]) -> str:
    spelled = match.group(0)
    separator = match.group(1)
    letters = spelled.split(separator)
    if any(len(part) != 1 for part in letters):  # mixed separators: not one spelled-out word
        return spelled
    return "".join(letters)


def _unleet(match: re.Match[str]) -> str:
    """Leet characters followed by a letter in the token become letters, and then up to two digits
    after its last letter; otherwise a trailing run of digits or symbols stays ("covid19", "mp3")."""
    token = match.group(0)
    last_letter = max(i for i, c in enumerate(token) if c.isalpha())
    head, tail = token[:last_letter], token[last_letter:]
    if sum(c.isalpha() for c in token) < 2 or _UNIT.match(token) or not any(c in LEET for c in head):
        return token
    if len(tail) <= 3:  # a word already in leet ("v1l3", "h0m0"): its last digits too, not "!" ("h3ll0!")
        tail = tail[0] + "".join(LEET.get(c, c) if c.isdigit() else c for c in tail[1:])
    return "".join(LEET.get(c, c) for c in head) + tail


@functools.lru_cache(maxsize=4096)
def _latin_lookalike(char: str) -> str | None:
    from confusable_homoglyphs import confusables

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
    for word in re.split(r"(\W+)", text):
        if word and not word.isascii() and _HAS_LATIN.search(word):
            word = "".join(c if c.isascii() or not c.isalpha() else (_latin_lookalike(c) or c) for c in word)
        out.append(word)
    return "".join(out)


def classifier_input(text: str) -> str:
    """What the classifier reads: NFKC (full-width and mathematical letters read as the letters they
    show, "ｉｄｉｏｔ" -> "idiot"), then `normalize`."""
    return normalize(unicodedata.normalize("NFKC", text))
