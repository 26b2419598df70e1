"""Length-grouped SFT batches: a permutation, batches of similar length, less padding, seeded."""

from __future__ import annotations

import random

import pytest
import torch

from mathforge.train.length_groups import LengthGroupedBatches, length_grouped_order


def _lengths(count: int, seed: int = 0) -> list[int]:
    draw = random.Random(seed)
    return [draw.choice([draw.randint(60, 200), draw.randint(300, 1000)]) for _ in range(count)]


def _padded(lengths: list[int], order: list[int], batch: int) -> int:
    return sum(
        max(lengths[i] for i in order[start : start + batch]) * len(order[start : start + batch])
        for start in range(0, len(order), batch)
    )


def test_the_order_is_a_permutation_with_less_padding_than_a_random_one() -> None:
    lengths = _lengths(1003)
    order = length_grouped_order(lengths, 16, torch.Generator().manual_seed(0))
    assert sorted(order) == list(range(len(lengths)))
    shuffled = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0)).tolist()
    grouped, plain = _padded(lengths, order, 16), _padded(lengths, shuffled, 16)
    assert grouped < 0.8 * plain
    assert grouped >= sum(lengths)


def test_each_batch_comes_from_one_window_and_the_incomplete_batch_stays_last() -> None:
    lengths = _lengths(205, seed=1)
    order = length_grouped_order(lengths, 4, torch.Generator().manual_seed(3), window=5)
    batches = [order[i : i + 4] for i in range(0, len(order), 4)]
    assert [len(b) for b in batches] == [4] * 51 + [1]
    for batch in batches:
        assert [lengths[i] for i in batch] == sorted(lengths[i] for i in batch)
    # The batches are shuffled: not in the windows' order of increasing lengths.
    firsts = [lengths[b[0]] for b in batches[:-1]]
    assert firsts != sorted(firsts)


def test_the_sampler_is_seeded_and_draws_a_new_order_each_epoch() -> None:
    lengths = _lengths(300, seed=2)
    sampler = LengthGroupedBatches(lengths, 8, seed=7)
    first = list(sampler)
    assert list(LengthGroupedBatches(lengths, 8, seed=7)) == first
    assert len(sampler) == 300
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(sampler) == sorted(first)


def test_a_batch_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="batch"):
        length_grouped_order([1, 2], 0, torch.Generator())
