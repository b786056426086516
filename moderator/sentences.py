"""Sentences: split a post into sentences, and put it back together around rewritten ones.

A long post is rarely toxic from end to end: usually one or two of its sentences are. Scoring each
sentence lets the classifier see text past its window (a post padded with harmless sentences cannot
hide an insult at its end), and sending only the toxic sentences to the rewriter spares the engine
the rest and keeps every other sentence exactly as its author wrote it.

Sentence boundaries come from pysbd (rule-based, many abbreviations and edge cases handled), run
line by line, so a line break always ends a sentence. A sentence is a span of the post, (start,
end) character offsets without the whitespace around it; the characters between spans (spaces,
line breaks) belong to no sentence. `reassemble` copies everything outside the replaced spans as it
stands, so untouched sentences, emoji, URLs, quotes and line breaks come back byte for byte.
"""

from __future__ import annotations

import functools
import re

Span = tuple[int, int]

MAX_SPLIT_CHARS = 20_000  # longer lines are cut into pieces this long first (pysbd is slow on huge inputs)
_WORD = re.compile(r"\w")
_LINE = re.compile(r"[^\n]+")


@functools.lru_cache(maxsize=1)
def _segmenter():  # type: ignore[no-untyped-def]
    import pysbd

    return pysbd.Segmenter(language="en", clean=False, char_span=False)


def split(text: str) -> list[Span]:
    """The sentences of `text` as spans, in order, none overlapping, each without surrounding
    whitespace. A text without sentence boundaries is one span; a blank text has none."""
    spans: list[Span] = []
    for line in _LINE.finditer(text):
        start, chunk = line.start(), line.group()
        if not chunk.strip():
            continue
        for piece_start, piece in _pieces(chunk):
            spans.extend(_line_spans(text, start + piece_start, piece))
    return _merge_fragments(text, spans)


def _pieces(line: str) -> list[tuple[int, str]]:
    """A line cut into pieces of at most MAX_SPLIT_CHARS for the splitter (pysbd is slow on huge
    inputs): after the last ". ", "! " or "? " of each, else at its last whitespace; a line with no
    whitespace to cut at stays whole."""
    pieces, start = [], 0
    while len(line) - start > MAX_SPLIT_CHARS:
        end = start + MAX_SPLIT_CHARS
        cut = max(line.rfind(mark, start, end) for mark in (". ", "! ", "? ")) + 1  # after a sentence's end
        if cut <= start:
            cut = max(line.rfind(" ", start, end), line.rfind("\t", start, end))
        if cut <= start:
            break
        pieces.append((start, line[start:cut]))
        start = cut
    pieces.append((start, line[start:]))
    return pieces


def _line_spans(text: str, offset: int, line: str) -> list[Span]:
    """pysbd's sentences of one line, located in the line from left to right."""
    pieces = _segmenter().segment(line) if re.search(r"[.!?;:…]\W*\s+\S", line) else [line]
    spans, cursor = [], 0
    for piece in pieces:
        core = piece.strip()
        if not core:
            continue
        at = line.find(core, cursor)
        if at < 0:  # the splitter changed the text: keep the rest of the line as one sentence
            rest = _strip(text, offset + cursor, offset + len(line))
            return spans + ([rest] if rest[0] < rest[1] else [])
        spans.append((offset + at, offset + at + len(core)))
        cursor = at + len(core)
    tail = _strip(text, offset + cursor, offset + len(line))
    if tail[0] < tail[1]:  # text the splitter left out (never seen, but nothing may be lost)
        spans.append(tail)
    return spans


def _strip(text: str, start: int, end: int) -> Span:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _merge_fragments(text: str, spans: list[Span]) -> list[Span]:
    """Join pieces without a single word character ("...", ":)", "!!") to the sentence before them
    on the same line: alone they are no sentence to score or rewrite. Also join pieces that the
    splitter cut without whitespace between them (inside a URL or a number)."""
    merged: list[Span] = []
    for start, end in spans:
        joined = merged and (start == merged[-1][1]  # cut inside a token (a URL's "?")
                             or not _WORD.search(text, start, end) and "\n" not in text[merged[-1][1]:start])
        if joined:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def texts(text: str, spans: list[Span]) -> list[str]:
    return [text[start:end] for start, end in spans]


def reassemble(text: str, spans: list[Span], replacements: dict[int, str]) -> str:
    """`text` with the sentences numbered in `replacements` replaced; everything else kept as is.

    An empty replacement deletes its sentence together with the whitespace before it (after it,
    when nothing stands before it), so no double space or empty line is left where it stood.
    """
    out: list[str] = []
    cursor = 0
    for index, (start, end) in enumerate(spans):
        if index not in replacements:
            continue
        new = replacements[index]
        if new:
            out.append(text[cursor:start])
        elif "".join(out).strip() or text[cursor:start].strip():  # something stands before: drop the gap before
            out.append(text[cursor:_gap_start(text, cursor, start)])
        else:  # a post's first sentence: drop the gap after it
            out.append(text[cursor:start])
            end = _gap_end(text, end, spans[index + 1][0] if index + 1 < len(spans) else len(text))
        out.append(new)
        cursor = end
    out.append(text[cursor:])
    return "".join(out)


def _gap_start(text: str, floor: int, start: int) -> int:
    while start > floor and text[start - 1].isspace():
        start -= 1
    return start


def _gap_end(text: str, end: int, ceiling: int) -> int:
    while end < ceiling and text[end].isspace():
        end += 1
    return end
