"""The hf engine's retained rows: the KV cache of rows that ended on a stop string, kept for the
next ``generate`` call, which reuses it for prompts that continue them.

A TIR round ends each trajectory at "```output"; the next round's prompt is the same tokens plus
the sampled fence token and the executor's reply. Encoding that whole context again costs a full
prefill per round (measured on a 2-core CPU: a quarter of a 100-problem TIR evaluation's time);
with the retained cache only the reply is encoded. vLLM gets the same from its prefix cache.

Only one call's rows are kept (a call replaces the store), and only while the model's weights
are unchanged: a policy trained between two calls (GRPO) bumps its parameters' version counters,
and the next call then encodes every prompt afresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

Columns = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: one row's keys and values


@dataclass
class Retained:
    """The tokens a row's cache holds (its prompt and every sampled token but the last, which the
    cache never saw) and, per layer, that row's keys and values for them."""

    ids: tuple[int, ...]
    columns: Columns

    @property
    def length(self) -> int:
        return len(self.ids)


@dataclass
class RetainedRows:
    """The rows one call retained, for the weights they were computed with (``stamp``)."""

    stamp: int | None
    _by_length: dict[int, dict[tuple[int, ...], Columns]] = field(default_factory=dict)

    def add(self, ids: Sequence[int], columns: Columns) -> None:
        self._by_length.setdefault(len(ids), {})[tuple(ids)] = columns

    def match(self, prompts: Sequence[Sequence[int]], stamp: int | None) -> list[Retained | None]:
        """Per prompt, the longest retained row its ids start with, leaving at least one token of
        its own (the last prompt token's logits start the generation); all None when the weights
        changed since the rows were retained."""
        if stamp is None or stamp != self.stamp or not self._by_length:
            return [None] * len(prompts)
        lengths = sorted(self._by_length, reverse=True)
        found: list[Retained | None] = []
        for prompt in prompts:
            hit = None
            for length in lengths:
                if length < len(prompt):
                    key = tuple(prompt[:length])
                    columns = self._by_length[length].get(key)
                    if columns is not None:
                        hit = Retained(key, columns)
                        break
            found.append(hit)
        return found


def weights_stamp(model: Any) -> int | None:
    """A value that changes when any parameter is updated in place (an optimiser step,
    ``load_state_dict``) or replaced; None where version counters cannot be read."""
    try:
        return hash(tuple((id(p), p._version) for p in model.parameters()))
    except RuntimeError:  # inference tensors keep no version counter
        return None
