"""SFT batches of similar-length records: less padding per optimiser step, same records per step.

A batch is padded to its longest record, and GSM8K's records run from ~100 to ~1,000 tokens, so
in random batches of 4 nearly a third of the tokens computed are padding (measured on the laptop
preset's records: 2.08M computed for 1.45M real; 1.72M grouped). transformers'
``LengthGroupedSampler`` groups by length too, but it sizes its groups by one process's share of
a step (so two processes would train other records per step than one) and walks each
window of steps from the longest to the shortest; here each group is one global batch
(per-device batch x accumulation x processes), so a data-parallel run trains the same records
per step as one process, and the groups come in random order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

# Records sorted together: this many global batches drawn at random, then sorted by length.
WINDOW_BATCHES = 50


def length_grouped_order(
    lengths: Sequence[int], batch: int, generator: torch.Generator, window: int = WINDOW_BATCHES
) -> list[int]:
    """Record indices such that each run of ``batch`` consecutive ones holds records of similar length.

    The records are shuffled, cut into windows of ``window`` batches, each window sorted by
    length and cut into batches; the batches are then shuffled, except that a last incomplete
    batch stays last (so every earlier batch keeps its place on the batch grid).
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    shuffled = torch.randperm(len(lengths), generator=generator).tolist()
    span = batch * window
    batches: list[list[int]] = []
    for start in range(0, len(shuffled), span):
        ordered = sorted(shuffled[start : start + span], key=lambda index: lengths[index])
        batches += [ordered[i : i + batch] for i in range(0, len(ordered), batch)]
    tail = [batches.pop()] if batches and len(batches[-1]) < batch else []
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [index for position in order for index in batches[position]] + [i for part in tail for i in part]


class LengthGroupedBatches(Sampler[int]):
    """A training sampler giving :func:`length_grouped_order` for ``seed`` and the current epoch."""

    def __init__(self, lengths: Sequence[int], batch: int, seed: int) -> None:
        self.lengths = list(lengths)
        self.batch = batch
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the data loader at each epoch: each epoch draws its own order."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(length_grouped_order(self.lengths, self.batch, generator))
