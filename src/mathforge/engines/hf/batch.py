"""The hf engine's batch of live rows: which prompt and sample each row is, its tokens so far,
and the padding mask and positions that go with the shared KV cache."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mathforge.engines.hf.cache import BatchCache


@dataclass
class Row:
    """One sequence being generated: which prompt and sample it is, the prompt's token ids, the
    tokens it has sampled (an end-of-sequence token included) and, when asked, their
    log-probabilities."""

    prompt: int
    sample: int
    limit: int
    generator: torch.Generator | None
    context: list[int] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)


@dataclass
class Batch:
    """The live rows with their cache, padding mask, next positions and the token each feeds next."""

    rows: list[Row]
    cache: BatchCache
    mask: torch.Tensor  # (rows, cache columns), 1 where a real token sits
    positions: torch.Tensor  # (rows,) position of the pending token
    pending: torch.Tensor  # (rows,) the token sampled last, not yet in the cache

    def keep(self, keep: list[int]) -> None:
        """Keep only the rows at ``keep``: each finished row's slot is refilled by a survivor
        from the end of the batch, so only those survivors' caches are copied."""
        rows = len(keep)
        kept = set(keep)
        holes = [i for i in range(rows) if i not in kept]
        movers = [i for i in keep if i >= rows]
        order = list(range(rows))
        for source, target in zip(movers, holes, strict=True):
            order[target] = source
        self.cache.move_rows(movers, holes, rows)
        index = torch.tensor(order, dtype=torch.long, device=self.mask.device)
        self.rows = [self.rows[i] for i in order]
        self.mask, self.positions, self.pending = self.mask[index], self.positions[index], self.pending[index]
        # Columns that are padding in every remaining row carry no information: drop them.
        unused = int((self.mask.cumsum(1) == 0).sum(1).min()) if self.rows else 0
        if unused:
            self.cache.drop_left(unused)
            self.mask = self.mask[:, unused:]

    @staticmethod
    def combine(batches: list[Batch]) -> Batch:
        """One batch holding the rows of all ``batches`` (their caches copied once)."""
        first, others = batches[0], batches[1:]
        if others:
            length = max(b.mask.shape[1] for b in batches)
            first.cache.combine([b.cache for b in others], length)
            first.mask = torch.cat([left_pad(b.mask, length) for b in batches])
            first.rows = [row for b in batches for row in b.rows]
            first.positions = torch.cat([b.positions for b in batches])
            first.pending = torch.cat([b.pending for b in batches])
        return first


def left_pad(mask: torch.Tensor, length: int) -> torch.Tensor:
    return torch.nn.functional.pad(mask, (length - mask.shape[1], 0))


def common_prefix_length(prompts: list[list[int]]) -> int:
    """Tokens all prompts share at their start, leaving each at least one token of its own
    (the last prompt token's logits start the generation)."""
    shortest = min(len(p) for p in prompts)
    length = 0
    while length < shortest - 1 and all(p[length] == prompts[0][length] for p in prompts):
        length += 1
    return length
