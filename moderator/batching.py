"""Length bucketing: cut a list of sequences into model batches of similar lengths.

Sorting by length before batching means each batch is padded only to its own longest sequence
(dynamic padding), which saves most of the arithmetic spent on padding when lengths vary.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


def length_sorted_chunks(lengths: Sequence[int], size: int, longest_first: bool = False) -> Iterator[np.ndarray]:
    """Index arrays into the original order, each at most `size` long, grouped by similar length."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    if longest_first:
        order = order[::-1]
    for start in range(0, len(order), size):
        yield order[start:start + size]
