"""The hf engine's KV cache: per-layer buffers written in place, with the row surgery
continuous batching needs (drop finished rows, repeat a prompt's rows, merge batches)."""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer

# Columns added to a layer's KV buffer when it runs out of room: large enough that growth is rare,
# small enough that the unused tail costs little memory.
_GROWTH_CHUNK = 256


class GrowingLayer(DynamicLayer):
    """One layer's keys and values, written in place into a buffer grown by chunks.

    transformers' ``DynamicLayer`` concatenates on every step, copying the layer's whole cache
    once per generated token; here a step writes one column, and a finished row is replaced by
    a moved survivor instead of re-copying the batch. ``keys``/``values`` stay views of the
    filled part, so code reading them as a ``DynamicLayer`` still works. Buffers are allocated
    uninitialised: only columns inside ``[0, length)`` are ever read, and padding columns inside
    that range are zeroed when written (a masked column must not hold NaN: 0 * NaN is NaN).
    """

    def __init__(self) -> None:
        super().__init__()
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        self._set(self._alloc(key_states, 0), self._alloc(value_states, 0), 0)
        self.is_initialized = True

    @staticmethod
    def _alloc(like: torch.Tensor, columns: int, batch: int | None = None) -> torch.Tensor:
        b, h, _, d = like.shape
        return like.new_empty((b if batch is None else batch, h, columns + _GROWTH_CHUNK, d))

    def _set(self, k: torch.Tensor, v: torch.Tensor, length: int) -> None:
        self._k, self._v, self.length = k, v, length
        self.keys = k[:, :, :length]
        self.values = v[:, :, :length]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        assert self._k is not None and self._v is not None
        end = self.length + key_states.shape[-2]
        if end > self._k.shape[-2]:
            k, v = self._alloc(self._k, end), self._alloc(self._v, end)
            k[:, :, : self.length] = self.keys
            v[:, :, : self.length] = self.values
            self._set(k, v, self.length)
        self._k[:, :, self.length : end] = key_states
        self._v[:, :, self.length : end] = value_states
        self._set(self._k, self._v, end)
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def move_rows(self, sources: torch.Tensor, targets: torch.Tensor, rows: int) -> None:
        """Copy rows ``sources`` onto ``targets``, then keep the first ``rows`` rows."""
        assert self._k is not None and self._v is not None
        if sources.numel():
            self._k[targets] = self._k[sources]
            self._v[targets] = self._v[sources]
        self._set(self._k[:rows], self._v[:rows], self.length)

    def repeat_rows(self, repeats: int) -> None:
        self._set(self._repeat(self.keys, repeats), self._repeat(self.values, repeats), self.length)

    def repeated(self, repeats: int) -> GrowingLayer:
        """A new layer holding each of our rows ``repeats`` times; ours is left as it is."""
        layer = GrowingLayer()
        layer.device, layer.is_initialized = self.device, True
        layer._set(self._repeat(self.keys, repeats), self._repeat(self.values, repeats), self.length)
        return layer

    def _repeat(self, t: torch.Tensor, repeats: int) -> torch.Tensor:
        out = self._alloc(t, t.shape[-2], t.shape[0] * repeats)
        out[:, :, : t.shape[-2]] = t.repeat_interleave(repeats, dim=0)
        return out

    def drop_left(self, columns: int) -> None:
        assert self._k is not None and self._v is not None
        self._set(self._k[:, :, columns:], self._v[:, :, columns:], self.length - columns)

    def row_columns(self, row: int, columns: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of one row's keys and values at ``columns``, each (heads, columns, dim)."""
        return self.keys[row][:, columns], self.values[row][:, columns]

    @classmethod
    def stacked(cls, rows: list[tuple[torch.Tensor, torch.Tensor]], length: int) -> GrowingLayer:
        """A layer holding ``rows`` (each one row's keys and values, (heads, columns, dim)),
        right-aligned (left-padded with zeros) to ``length`` columns."""
        layer = cls()
        first = rows[0][0]
        layer.device, layer.is_initialized = first.device, True
        merged = []
        for part in (0, 1):
            out = layer._alloc(first[None], length, len(rows))
            for index, row in enumerate(rows):
                pad = length - row[part].shape[1]
                out[index, :, :pad] = 0
                out[index, :, pad:length] = row[part]
            merged.append(out)
        layer._set(merged[0], merged[1], length)
        return layer

    def combine(self, others: list[GrowingLayer], length: int) -> None:
        """Stack the rows of ``others`` under ours, all right-aligned (left-padded) to ``length`` columns."""
        parts = [self, *others]
        rows = sum(layer.keys.shape[0] for layer in parts)
        merged = []
        for name in ("keys", "values"):
            out = self._alloc(getattr(self, name), length, rows)
            start = 0
            for layer in parts:
                t = getattr(layer, name)
                end, pad = start + t.shape[0], length - t.shape[-2]
                out[start:end, :, :pad] = 0
                out[start:end, :, pad:length] = t
                start = end
            merged.append(out)
        self._set(merged[0], merged[1], length)


class BatchCache(Cache):
    """A transformers ``Cache`` of growing layers, with the batch surgery continuous batching needs."""

    def __init__(self, layers: list[GrowingLayer]) -> None:
        super().__init__(layers=layers)

    @classmethod
    def empty(cls, num_layers: int) -> BatchCache:
        return cls([GrowingLayer() for _ in range(num_layers)])

    def move_rows(self, sources: list[int], targets: list[int], rows: int) -> None:
        device = self.layers[0].keys.device
        src = torch.tensor(sources, dtype=torch.long, device=device)
        dst = torch.tensor(targets, dtype=torch.long, device=device)
        for layer in self.layers:
            layer.move_rows(src, dst, rows)

    def repeat_rows(self, repeats: int) -> None:
        for layer in self.layers:
            layer.repeat_rows(repeats)

    def repeated(self, repeats: int) -> BatchCache:
        """A new cache holding each of our rows ``repeats`` times; ours is left as it is."""
        return BatchCache([layer.repeated(repeats) for layer in self.layers])

    def drop_left(self, columns: int) -> None:
        for layer in self.layers:
            layer.drop_left(columns)

    def row_columns(self, row: int, columns: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, copies of one row's keys and values at ``columns`` (what :meth:`stacked` takes)."""
        return [layer.row_columns(row, columns) for layer in self.layers]

    @classmethod
    def stacked(cls, rows: list[list[tuple[torch.Tensor, torch.Tensor]]], length: int) -> BatchCache:
        """A cache of ``rows`` (each as :meth:`row_columns` returns it), right-aligned to ``length``."""
        layers = len(rows[0])
        return cls([GrowingLayer.stacked([row[index] for row in rows], length) for index in range(layers)])

    def combine(self, others: list[BatchCache], length: int) -> None:
        for index, layer in enumerate(self.layers):
            layer.combine([other.layers[index] for other in others], length)
