"""Length bucketing: cut a list of sequences into model batches of similar lengths.

Sorting by length before batching means each batch is padded only to its own longest sequence
(dynamic padding), which saves most of the arithmetic spent on padding when lengths vary.

A token budget (`max_tokens`: batch size times its longest sequence, the padded tensor's size)
bounds the memory of one forward pass whatever the input holds: batches of short posts stay
`size` long, batches of long posts get fewer of them. Without it the peak memory of a run is set by
the longest posts it happens to meet, and a bigger input meets longer ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np


def length_sorted_chunks(lengths: Sequence[int], size: int, longest_first: bool = False,
                         max_tokens: int | None = None) -> Iterator[np.ndarray]:
    """Index arrays into the original order, each at most `size` long and (when `max_tokens` is
    set) with at most `max_tokens` padded tokens, grouped by similar length. A sequence longer
    than `max_tokens` on its own still gets a batch of its own."""
    lengths = np.asarray(lengths)
    order = np.argsort(lengths, kind="stable")
    if longest_first:
        order = order[::-1]
    start = 0
    while start < len(order):
        end, longest = start, 0
        while end < len(order) and end - start < size:
            longest_with = max(longest, int(lengths[order[end]]))
            if max_tokens is not None and end > start and (end - start + 1) * longest_with > max_tokens:
                break
            longest, end = longest_with, end + 1
        yield order[start:end]
        start = end


# Padded shapes. On CPUs, bf16 matrix products run through oneDNN, which builds (and keeps, up to
# 1024 of them) a compiled kernel with its own scratch memory for every new input shape. With
# dynamic padding every (rows, length) pair is a new shape, so a long run keeps meeting new ones
# and its memory grows with the input, by hundreds of MB. Rounding rows and lengths up to these
# steps leaves at most (max rows / ROW_STEP) x (max length / LENGTH_STEP) shapes, which a run
# meets within its first batches; the padding costs a few percent of arithmetic.
ROW_STEP = 8
LENGTH_STEP = 8


def round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def padded_chunks(lengths: Sequence[int], size: int, max_tokens: int, max_length: int
                  ) -> Iterator[tuple[np.ndarray, int, int]]:
    """Length-sorted batches with their padded shape: (indices, rows, length), where rows >=
    len(indices) and length >= the longest sequence are rounded up to ROW_STEP and LENGTH_STEP
    (length at most `max_length`). The token budget counts padded lengths."""
    padded = [min(round_up(n, LENGTH_STEP), max_length) for n in lengths]
    for chunk in length_sorted_chunks(padded, size, max_tokens=max_tokens):
        yield chunk, round_up(len(chunk), ROW_STEP), padded[chunk[-1]]  # shortest first: the last is the longest


def padded_batches(tokenizer: Any, encoded: Any, size: int, max_tokens: int, max_length: int
                   ) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    """Model inputs for already tokenized texts (`encoded`, unpadded), in `padded_chunks` shapes:
    (indices, tensors). The tensors have `round_up(len(indices), ROW_STEP)` rows: the filler rows
    repeat the chunk's last text, and callers keep only the first len(indices) rows of the output."""
    features = [{key: encoded[key][i] for key in encoded} for i in range(len(encoded["input_ids"]))]
    lengths = [len(f["input_ids"]) for f in features]
    for chunk, rows, length in padded_chunks(lengths, size, max_tokens, max_length):
        chunk_features = [features[i] for i in chunk]
        chunk_features += [chunk_features[-1]] * (rows - len(chunk))
        yield chunk, tokenizer.pad(chunk_features, padding="max_length", max_length=length, return_tensors="pt")
