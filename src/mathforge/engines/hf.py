"""The ``hf`` engine: transformers models on CPU or one GPU, with continuous batching.

``model.generate`` keeps every row of a batch alive until the longest one ends and recopies the
whole KV cache at each step; on a CPU that wastes most of the time. This engine drives the model's
forward pass itself (the decode loop is the only hand-written part; model code, attention and
masks come from transformers):

- prompts are encoded once, sorted by length and admitted into a running batch while there is
  room, prefilled together with left padding; ``n`` samples per prompt copy the prompt's KV cache
  instead of re-encoding it;
- each step decodes one token for every live row; rows that finish (end of sequence, a stop
  string, the length limit) leave the batch at once, and new prompts take their place;
- the KV cache is written in place into buffers that grow by chunks, so a step does not copy it;
- sampling draws from a per-row random stream seeded by (seed, prompt index, sample index), so a
  seeded result does not depend on batch size or on which prompts share the batch.
"""

from __future__ import annotations

import inspect
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer

from mathforge.engines.base import Completion, SamplingParams, align_token_ids, find_stop
from mathforge.errors import MathforgeError

# Columns added to a layer's KV buffer when it runs out of room: large enough that growth is rare,
# small enough that the unused tail costs little memory.
_GROWTH_CHUNK = 256


class _GrowingLayer(DynamicLayer):
    """One layer's keys and values, written in place into a buffer grown by chunks.

    transformers' ``DynamicLayer`` concatenates on every step, copying the layer's whole cache
    once per generated token; here a step writes one column. ``keys``/``values`` stay views of
    the filled part, so code reading them as a ``DynamicLayer`` still works.
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
        return like.new_zeros((b if batch is None else batch, h, columns + _GROWTH_CHUNK, d))

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

    def select_rows(self, rows: torch.Tensor) -> None:
        self._set(self._pad_capacity(self.keys[rows]), self._pad_capacity(self.values[rows]), self.length)

    def _pad_capacity(self, t: torch.Tensor) -> torch.Tensor:
        out = self._alloc(t, t.shape[-2])
        out[:, :, : t.shape[-2]] = t
        return out

    def drop_left(self, columns: int) -> None:
        assert self._k is not None and self._v is not None
        self._set(self._k[:, :, columns:], self._v[:, :, columns:], self.length - columns)

    def merge(self, other: _GrowingLayer, length: int) -> None:
        """Stack ``other``'s rows under ours, both right-aligned (left-padded) to ``length`` columns."""
        rows_a, rows_b = self.keys.shape[0], other.keys.shape[0]
        k = self._alloc(self.keys, length, rows_a + rows_b)
        v = self._alloc(self.values, length, rows_a + rows_b)
        k[:rows_a, :, length - self.length : length] = self.keys
        v[:rows_a, :, length - self.length : length] = self.values
        k[rows_a:, :, length - other.length : length] = other.keys
        v[rows_a:, :, length - other.length : length] = other.values
        self._set(k, v, length)


class _BatchCache(Cache):
    """A transformers ``Cache`` of growing layers, with the batch surgery continuous batching needs."""

    def __init__(self, num_layers: int) -> None:
        super().__init__(layers=[_GrowingLayer() for _ in range(num_layers)])

    def select_rows(self, rows: torch.Tensor) -> None:
        for layer in self.layers:
            layer.select_rows(rows)

    def repeat_rows(self, repeats: int) -> None:
        keys = self.layers[0].keys
        self.select_rows(torch.arange(keys.shape[0], device=keys.device).repeat_interleave(repeats))

    def drop_left(self, columns: int) -> None:
        for layer in self.layers:
            layer.drop_left(columns)

    def merge(self, other: _BatchCache, length: int) -> None:
        for mine, theirs in zip(self.layers, other.layers, strict=True):
            mine.merge(theirs, length)


@dataclass
class _Row:
    """One sequence being generated: which prompt and sample it is, and what it has produced."""

    prompt: int
    sample: int
    limit: int
    generator: torch.Generator | None
    ids: list[int] = field(default_factory=list)
    completion: Completion | None = None


@dataclass
class _Batch:
    """The live rows with their cache, padding mask, next positions and the token each feeds next."""

    rows: list[_Row]
    cache: _BatchCache
    mask: torch.Tensor  # (rows, cache columns), 1 where a real token sits
    positions: torch.Tensor  # (rows,) position of the pending token
    pending: torch.Tensor  # (rows,) the token sampled last, not yet in the cache

    def keep(self, keep: list[int]) -> None:
        index = torch.tensor(keep, dtype=torch.long, device=self.mask.device)
        self.rows = [self.rows[i] for i in keep]
        self.cache.select_rows(index)
        self.mask, self.positions, self.pending = self.mask[index], self.positions[index], self.pending[index]
        # Columns that are padding in every remaining row carry no information: drop them.
        unused = int((self.mask.cumsum(1) == 0).sum(1).min()) if self.rows else 0
        if unused:
            self.cache.drop_left(unused)
            self.mask = self.mask[:, unused:]

    def merge(self, other: _Batch) -> None:
        length = max(self.mask.shape[1], other.mask.shape[1])
        self.cache.merge(other.cache, length)
        self.mask = torch.cat([_left_pad(self.mask, length), _left_pad(other.mask, length)])
        self.rows += other.rows
        self.positions = torch.cat([self.positions, other.positions])
        self.pending = torch.cat([self.pending, other.pending])


def _left_pad(mask: torch.Tensor, length: int) -> torch.Tensor:
    return torch.nn.functional.pad(mask, (length - mask.shape[1], 0))


class HFEngine:
    """Generate with a transformers causal LM held in this process (CPU or one GPU).

    Build it from a loaded ``model`` and ``tokenizer`` (e.g. a policy being trained), or with
    :meth:`load` from a model name. ``max_batch_size`` bounds live rows; ``prefill_tokens`` bounds
    the padded prompt tokens prefilled in one forward pass.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_batch_size: int | None = None,
        prefill_tokens: int | None = None,
        progress: bool = False,
    ) -> None:
        text_config = model.config.get_text_config()
        layer_types = getattr(text_config, "layer_types", None) or []
        if any(kind != "full_attention" for kind in layer_types):
            raise MathforgeError(
                "the hf engine supports full-attention models only; use the vllm engine for this model"
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        on_gpu = self.device.type == "cuda"
        self.max_batch_size = max_batch_size or (256 if on_gpu else 64)
        self.prefill_tokens = prefill_tokens or (32768 if on_gpu else 4096)
        self.progress = progress
        self._num_layers = text_config.num_hidden_layers
        self._max_positions = getattr(text_config, "max_position_embeddings", None)
        # transformers 5 names the cache argument ``cache``; 4.x called it ``past_key_values``.
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self.eos_ids = _eos_ids(model, tokenizer)
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)
        self._bos = tokenizer.bos_token if _adds_bos(tokenizer) else None

    @classmethod
    def load(
        cls,
        model: str = "smollm2-135m",
        *,
        dtype: str = "auto",
        device: str | None = None,
        threads: int | None = None,
        **options: Any,
    ) -> HFEngine:
        """Load a model by name, directory or hub id; ``dtype="auto"`` picks bf16 where it is fast."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from mathforge.models import resolve_model
        from mathforge.models.loading import default_device, resolve_dtype

        if threads:
            torch.set_num_threads(threads)
        device = device or default_device()
        path = resolve_model(model)
        tokenizer = AutoTokenizer.from_pretrained(path)
        lm = AutoModelForCausalLM.from_pretrained(
            path, dtype=resolve_dtype(dtype, device), attn_implementation="sdpa"
        )
        return cls(lm.to(device), tokenizer, **options)

    def encode(self, prompt: str) -> list[int]:
        """Token ids of a rendered prompt (special tokens written in the text are kept as such)."""
        if self._bos is not None and not prompt.startswith(self._bos):
            prompt = self._bos + prompt
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        """``params.n`` completions for each prompt, in prompt order."""
        if isinstance(prompts, str):
            raise TypeError("generate() takes a list of prompts")
        encoded = [self.encode(p) for p in prompts]
        limits = [self._row_limit(i, ids, params) for i, ids in enumerate(encoded)]
        base_seed = params.seed if params.seed is not None else random.SystemRandom().randrange(2**62)
        # Longest prompts first: they pad the least when admitted together, and memory peaks early.
        queue = deque(sorted(range(len(prompts)), key=lambda i: -len(encoded[i])))
        results: list[list[Completion]] = [[] for _ in prompts]
        bar = self._progress_bar(len(prompts) * params.n)
        batch: _Batch | None = None
        try:
            with torch.inference_mode():
                while queue or (batch is not None and batch.rows):
                    live = len(batch.rows) if batch is not None else 0
                    room = self.max_batch_size - live
                    # Refill when a sizeable share of the batch is free (or it is empty): prefilling
                    # a group at once is cheaper than one prompt per step.
                    if queue and (live == 0 or room >= max(params.n, self.max_batch_size // 4)):
                        group = self._take_group(queue, encoded, params.n, room)
                        fresh, logits = self._prefill(group, encoded, limits, params, base_seed)
                        self._advance(fresh, logits, params, results, bar)
                        if batch is None or not batch.rows:
                            batch = fresh
                        elif fresh.rows:
                            batch.merge(fresh)
                    else:
                        assert batch is not None
                        self._advance(batch, self._step(batch), params, results, bar)
        finally:
            if bar is not None:
                bar.close()
        for completions in results:
            completions.sort(key=lambda c: c[0])  # type: ignore[index]
        return [[c for _, c in completions] for completions in results]  # type: ignore[misc]

    def _row_limit(self, index: int, ids: list[int], params: SamplingParams) -> int:
        if self._max_positions is None:
            return params.max_new_tokens
        room = self._max_positions - len(ids)
        if room < 1:
            raise MathforgeError(
                f"prompt {index} has {len(ids)} tokens, more than the model's {self._max_positions} positions"
            )
        return min(params.max_new_tokens, room)

    def _take_group(self, queue: deque[int], encoded: list[list[int]], n: int, room: int) -> list[int]:
        group = [queue.popleft()]
        longest = len(encoded[group[0]])
        while queue and (len(group) + 1) * n <= room:
            width = max(longest, len(encoded[queue[0]]))
            if width * (len(group) + 1) > self.prefill_tokens:
                break
            longest = width
            group.append(queue.popleft())
        return group

    def _prefill(
        self,
        group: list[int],
        encoded: list[list[int]],
        limits: list[int],
        params: SamplingParams,
        base_seed: int,
    ) -> tuple[_Batch, torch.Tensor]:
        width = max(len(encoded[i]) for i in group)
        ids = torch.full((len(group), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for row, i in enumerate(group):
            ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
            mask[row, width - len(encoded[i]) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        cache = _BatchCache(self._num_layers)
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_arg: cache},
        )
        logits = out.logits[:, -1, :].float()
        n = params.n
        if n > 1:  # the samples of one prompt share its prefilled cache
            cache.repeat_rows(n)
            mask, logits = mask.repeat_interleave(n, 0), logits.repeat_interleave(n, 0)
        rows = [
            _Row(i, j, limits[i], None if params.greedy else _row_generator(base_seed, i, j))
            for i in group
            for j in range(n)
        ]
        pending = torch.zeros(len(rows), dtype=torch.long, device=self.device)
        return _Batch(rows, cache, mask, mask.sum(1), pending), logits

    def _step(self, batch: _Batch) -> torch.Tensor:
        ones = torch.ones((len(batch.rows), 1), dtype=batch.mask.dtype, device=batch.mask.device)
        batch.mask = torch.cat([batch.mask, ones], dim=1)
        out = self.model(
            input_ids=batch.pending[:, None],
            attention_mask=batch.mask,
            position_ids=batch.positions[:, None],
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_arg: batch.cache},
        )
        batch.positions = batch.positions + 1
        return out.logits[:, -1, :].float()

    def _advance(
        self,
        batch: _Batch,
        logits: torch.Tensor,
        params: SamplingParams,
        results: list[list[Any]],
        bar: Any,
    ) -> None:
        """Sample one token per row, finish the rows that are done and drop them from the batch."""
        tokens = _sample(logits, [row.generator for row in batch.rows], params)
        batch.pending = tokens
        keep = []
        for index, (row, token) in enumerate(zip(batch.rows, tokens.tolist(), strict=True)):
            completion = self._finish_if_done(row, token, params.stop)
            if completion is None:
                keep.append(index)
            else:
                results[row.prompt].append((row.sample, completion))
                if bar is not None:
                    bar.update(1)
        if len(keep) < len(batch.rows):
            batch.keep(keep)

    def _finish_if_done(self, row: _Row, token: int, stops: Sequence[str]) -> Completion | None:
        if token in self.eos_ids:
            return Completion(self._decode(row.ids), row.ids, "eos")
        row.ids.append(token)
        if stops:
            window = 4 * max(len(s) for s in stops) + 8  # tokens enough to spell any stop string
            if find_stop(self._decode(row.ids[-window:]), stops) is not None:
                return self._cut_at_stop(row.ids, stops)
        if len(row.ids) >= row.limit:
            return Completion(self._decode(row.ids), row.ids, "length")
        return None

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _cut_at_stop(self, ids: list[int], stops: Sequence[str]) -> Completion:
        """The completion ending right before the first stop string, with token ids that decode to it."""
        text = self._decode(ids)
        match = find_stop(text, stops)
        assert match is not None
        kept_text = text[: match[0]]
        return Completion(kept_text, align_token_ids(self.tokenizer, ids, kept_text), "stop", match[1])

    def _progress_bar(self, total: int) -> Any:
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc="generate", unit="seq", dynamic_ncols=True)


def _row_generator(base_seed: int, prompt: int, sample: int) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed((base_seed * 1_000_003 + prompt * 65_537 + sample) % (2**63))
    return generator


def _sample(
    logits: torch.Tensor, generators: list[torch.Generator | None], params: SamplingParams
) -> torch.Tensor:
    """Next token per row: argmax when greedy, else temperature/top-p sampling by inverse CDF.

    Inverse-CDF sampling needs one uniform per row, drawn from that row's own generator, which
    keeps seeded results independent of which rows share the batch. The CDF runs over the
    vocabulary in its fixed order (top-p only zeroes the tail), so the tiny logit differences
    that padding causes move a draw only when it falls right at a boundary.
    """
    if params.greedy:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        probs = probs.masked_fill(probs < _nucleus_threshold(probs, params.top_p), 0.0)
    cdf = probs.double().cumsum(dim=-1)
    uniforms = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in generators])
    picks = torch.searchsorted(cdf, (uniforms.to(cdf.device) * cdf[:, -1])[:, None])
    return picks[:, 0].clamp(max=cdf.shape[-1] - 1)


def _nucleus_threshold(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Per row, the smallest probability inside the top-p nucleus (shape ``(rows, 1)``).

    A full sort of the vocabulary costs more than a model step on a CPU; the nucleus of a real
    model is usually a few dozen tokens, so the top 64, then 1024, are tried before sorting.
    """
    threshold = torch.empty((probs.shape[0], 1), dtype=probs.dtype, device=probs.device)
    pending = torch.arange(probs.shape[0], device=probs.device)
    vocab = probs.shape[-1]
    for k in (64, 1024, vocab):
        top = probs[pending].topk(min(k, vocab), dim=-1).values
        mass = top.cumsum(dim=-1)
        done = (mass[:, -1] >= top_p) | (top.shape[-1] == vocab)
        size = (mass < top_p).sum(dim=-1, keepdim=True).clamp(max=top.shape[-1] - 1)
        threshold[pending[done]] = top.gather(-1, size)[done]
        pending = pending[~done]
        if pending.numel() == 0:
            break
    return threshold


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    config = getattr(model, "generation_config", None)
    for source in (getattr(config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif source is not None:
            ids.update(int(i) for i in source)
    if not ids:
        raise MathforgeError("the tokenizer defines no end-of-sequence token")
    return ids


def _adds_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer normally starts a sequence with BOS (Llama-style), which chat
    templates sometimes leave to the tokenizer."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a", add_special_tokens=True)["input_ids"][:1] == [bos]
