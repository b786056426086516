import random

import numpy as np
import pytest

from moderator.batching import length_sorted_chunks


def check(lengths, chunks, size, max_tokens):
    flat = np.concatenate(chunks)
    assert sorted(flat.tolist()) == list(range(len(lengths)))  # every sequence exactly once
    for chunk in chunks:
        assert 1 <= len(chunk) <= size
        padded = len(chunk) * max(lengths[i] for i in chunk)
        assert padded <= max_tokens or len(chunk) == 1
    ordered = [lengths[i] for i in flat]
    assert ordered == sorted(ordered)


@pytest.mark.parametrize("seed", range(5))
def test_token_budget_bounds_every_batch_and_keeps_every_sequence(seed):
    rng = random.Random(seed)
    lengths = [rng.choice([1, 3, 10, 40, 120, 300, 700]) for _ in range(rng.randint(1, 400))]
    chunks = list(length_sorted_chunks(lengths, 64, max_tokens=512))
    check(lengths, chunks, 64, 512)
    # Greedy: a batch stops only when the next sequence would not fit.
    for chunk, following in zip(chunks, chunks[1:]):
        grown = len(chunk) + 1
        assert grown > 64 or grown * lengths[following[0]] > 512


def test_short_sequences_fill_whole_batches_and_long_ones_get_fewer():
    lengths = [10] * 100 + [200] * 10 + [5000]
    sizes = [len(c) for c in length_sorted_chunks(lengths, 64, max_tokens=1000)]
    assert sizes == [64, 36, 5, 5, 1]  # 64*10 fits; 5*200 = 1000 fits; 5000 alone
    assert [len(c) for c in length_sorted_chunks(lengths, 64)] == [64, 47]


def test_without_a_budget_batches_are_cut_by_size_only():
    lengths = [5, 1, 4, 2, 3]
    chunks = list(length_sorted_chunks(lengths, 2))
    assert [c.tolist() for c in chunks] == [[1, 3], [4, 2], [0]]
    assert [c.tolist() for c in length_sorted_chunks(lengths, 2, longest_first=True)] == [[0, 2], [4, 3], [1]]


def test_padded_shapes_cover_their_batch_and_come_from_a_small_set():
    from moderator.batching import LENGTH_STEP, ROW_STEP, padded_chunks

    rng = random.Random(7)
    shapes = set()
    for _ in range(200):  # 200 record batches of random forum-like lengths
        lengths = [min(256, 1 + int(rng.expovariate(1 / 40))) for _ in range(rng.randint(1, 512))]
        for chunk, rows, length in padded_chunks(lengths, 64, 4096, 256):
            assert rows >= len(chunk) and rows % ROW_STEP == 0 and rows - len(chunk) < ROW_STEP
            assert length >= max(lengths[i] for i in chunk)
            assert length % LENGTH_STEP == 0 or length == 256
            assert len(chunk) * length <= 4096 or len(chunk) == 1
            shapes.add((rows, length))
    assert len(shapes) <= (64 // ROW_STEP) * (256 // LENGTH_STEP)
    # Without rounding these batches would have had hundreds more distinct shapes.
    assert len(shapes) < 200


def test_the_longest_allowed_length_is_not_rounded_past_the_model_limit():
    from moderator.batching import padded_chunks

    [(chunk, rows, length)] = list(padded_chunks([510, 3], 64, 100_000, 510))
    assert length == 510 and rows == 8 and sorted(chunk.tolist()) == [0, 1]
