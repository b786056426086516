"""Sentence splitting and reassembly: untouched sentences come back byte for byte."""

from __future__ import annotations

import csv

import pytest

from conftest import SHARED_DATA
from moderator import sentences

TRICKY = (
    "Dr. Smith said so.  You are an IDIOT!!! 😀 See https://example.com/a.b?c=1&d=2 now.\n"
    "\n"
    "\t\"Quoted, he wrote: 'stop.'\" — and then... nothing.\r\n"
    "Last line without a stop 🙃"
)


def test_spans_cover_every_non_space_character_in_order():
    spans = sentences.split(TRICKY)
    assert spans == sorted(spans)
    covered = set()
    for start, end in spans:
        assert TRICKY[start:end] == TRICKY[start:end].strip() and end > start
        covered.update(range(start, end))
    assert all(TRICKY[i].isspace() for i in range(len(TRICKY)) if i not in covered)


def test_the_splitter_finds_sentences_not_abbreviations_urls_or_ellipses():
    found = sentences.texts(TRICKY, sentences.split(TRICKY))
    assert found[0] == "Dr. Smith said so."  # "Dr." is no sentence end
    assert any(s.startswith("You are an IDIOT!!!") for s in found)
    assert any("https://example.com/a.b?c=1&d=2" in s for s in found)  # the URL is never cut
    assert found[-1] == "Last line without a stop 🙃"
    assert all("\n" not in s for s in found)  # a line break always ends a sentence


@pytest.mark.parametrize("replace", [{}, {1: "You are wrong."}, {0: "X", 2: "Y"}])
def test_reassembly_keeps_every_untouched_byte(replace):
    spans = sentences.split(TRICKY)
    out = sentences.reassemble(TRICKY, spans, replace)
    if not replace:
        assert out == TRICKY
    for k, (start, end) in enumerate(spans):
        if k not in replace:
            assert TRICKY[start:end] in out
    for text in replace.values():
        assert text in out
    # everything before the first replaced sentence and after the last one is the original's
    first, last = spans[min(replace, default=0)], spans[max(replace, default=0)]
    if replace:
        assert out.startswith(TRICKY[: first[0]]) and out.endswith(TRICKY[last[1]:])


def test_deleting_a_sentence_leaves_no_double_space_or_empty_line():
    text = "First point.  You moron.\nSecond point."
    spans = sentences.split(text)
    assert sentences.reassemble(text, spans, {1: ""}) == "First point.\nSecond point."
    assert sentences.reassemble(text, spans, {0: ""}) == "You moron.\nSecond point."
    assert sentences.reassemble(text, spans, {0: "", 1: ""}) == "Second point."


def test_blank_and_single_sentence_texts():
    assert sentences.split("   \n ") == []
    assert sentences.split("  just one thing  ") == [(2, 16)]
    assert sentences.split("no stop at all and a number 3.14 inside") == [(0, 39)]


def test_a_huge_line_is_split_in_pieces_and_kept_whole():
    text = ("word " * 6000).strip() + ". End."
    spans = sentences.split(text)
    assert sentences.reassemble(text, spans, {}) == text and spans
    # a huge line of sentences (single spaces): cut into pieces, each split into its sentences, so the
    # last sentence is its own span (the classifier reads it alone, not diluted in a window of padding)
    last = "You are a worthless idiot and a stupid moron, I hate you."
    text = " ".join(["The committee met on Tuesday to discuss the new schedule."] * 800) + " " + last
    spans = sentences.split(text)
    assert len(spans) == 801 and text[slice(*spans[-1])] == last
    assert sentences.reassemble(text, spans, {}) == text


@pytest.mark.skipif(not (SHARED_DATA / "forum_posts").is_dir(), reason="needs ../shared/data/forum_posts")
def test_real_forum_posts_reassemble_byte_for_byte():
    with open(SHARED_DATA / "forum_posts" / "tsd_trial.csv", newline="", encoding="utf-8") as handle:
        posts = [row["text"] for row in csv.DictReader(handle)]
    several = 0
    for text in posts:
        spans = sentences.split(text)
        assert sentences.reassemble(text, spans, {}) == text
        replaced = sentences.reassemble(text, spans, {k: f"<{k}>" for k in range(0, len(spans), 2)})
        for k in range(1, len(spans), 2):
            assert text[spans[k][0]:spans[k][1]] in replaced
        several += len(spans) > 1
    assert several > len(posts) // 3  # most real comments have several sentences
