"""The ``hf`` engine: transformers models on CPU or one GPU, with continuous batching.

``model.generate`` keeps every row of a batch alive until the longest one ends and recopies the
whole KV cache at each step; on a CPU that wastes most of the time. This engine drives the model's
forward pass itself (the decode loop is the only hand-written part; model code, attention and
masks come from transformers):

- prompts are encoded once, sorted by length and prefilled in groups of similar length (padding
  costs full compute in a prefill); the tokens all prompts share at their start (system prompt,
  few-shot exemplars) are encoded once per call, those a group shares beyond that once per
  group; ``n`` samples per prompt copy the prompt's KV cache instead of re-encoding it;
- each step decodes one token for every live row; rows that finish (end of sequence, a stop
  string, the length limit) leave the batch at once, their slots refilled by moving survivors,
  and new prompts are admitted when a quarter of the batch is free;
- the KV cache is written in place into buffers that grow by chunks, so a step does not copy it;
- sampling draws from a per-row random stream seeded by (seed, prompt index, sample index), so a
  seeded result does not depend on which prompts share the batch (up to float rounding).
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
# A prompt joins a prefill group only if it is at least this fraction of the group's longest.
_PREFILL_PADDING = 0.85


class _GrowingLayer(DynamicLayer):
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

    def repeated(self, repeats: int) -> _GrowingLayer:
        """A new layer holding each of our rows ``repeats`` times; ours is left as it is."""
        layer = _GrowingLayer()
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

    def combine(self, others: list[_GrowingLayer], length: int) -> None:
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


class _BatchCache(Cache):
    """A transformers ``Cache`` of growing layers, with the batch surgery continuous batching needs."""

    def __init__(self, layers: list[_GrowingLayer]) -> None:
        super().__init__(layers=layers)

    @classmethod
    def empty(cls, num_layers: int) -> _BatchCache:
        return cls([_GrowingLayer() for _ in range(num_layers)])

    def move_rows(self, sources: list[int], targets: list[int], rows: int) -> None:
        device = self.layers[0].keys.device
        src = torch.tensor(sources, dtype=torch.long, device=device)
        dst = torch.tensor(targets, dtype=torch.long, device=device)
        for layer in self.layers:
            layer.move_rows(src, dst, rows)

    def repeat_rows(self, repeats: int) -> None:
        for layer in self.layers:
            layer.repeat_rows(repeats)

    def repeated(self, repeats: int) -> _BatchCache:
        """A new cache holding each of our rows ``repeats`` times; ours is left as it is."""
        return _BatchCache([layer.repeated(repeats) for layer in self.layers])

    def drop_left(self, columns: int) -> None:
        for layer in self.layers:
            layer.drop_left(columns)

    def combine(self, others: list[_BatchCache], length: int) -> None:
        for index, layer in enumerate(self.layers):
            layer.combine([other.layers[index] for other in others], length)


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
    def combine(batches: list[_Batch]) -> _Batch:
        """One batch holding the rows of all ``batches`` (their caches copied once)."""
        first, others = batches[0], batches[1:]
        if others:
            length = max(b.mask.shape[1] for b in batches)
            first.cache.combine([b.cache for b in others], length)
            first.mask = torch.cat([_left_pad(b.mask, length) for b in batches])
            first.rows = [row for b in batches for row in b.rows]
            first.positions = torch.cat([b.positions for b in batches])
            first.pending = torch.cat([b.pending for b in batches])
        return first


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
        self.model = model
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
        pack_linear: bool = True,
        **options: Any,
    ) -> HFEngine:
        """Load a model by name, directory or hub id; ``dtype="auto"`` picks bf16 where it is fast.

        ``pack_linear``: on CPU, run float32 linear layers on MKL's packed GEMM where this torch
        has it (same outputs, faster); off keeps plain layers (the baseline, and a check).
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from mathforge.models import resolve_model
        from mathforge.runtime import placement

        if threads:
            torch.set_num_threads(threads)
        where = placement(device, dtype)
        path = resolve_model(model)
        tokenizer = AutoTokenizer.from_pretrained(path)
        lm = AutoModelForCausalLM.from_pretrained(path, dtype=where.dtype, attn_implementation="sdpa")
        lm = lm.to(where.device).eval()
        if where.device.type == "cpu":
            if pack_linear:
                _pack_linear_layers(lm)  # first: a tied output layer then needs no copy of its own
            _store_linear_weights_transposed(lm)  # the layers left unpacked
        return cls(lm, tokenizer, **options)

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
        results: list[dict[int, Completion]] = [{} for _ in prompts]
        bar = self._progress_bar(len(prompts) * params.n)
        batch: _Batch | None = None
        prefix: _BatchCache | None = None
        training = self.model.training  # a policy being trained generates in eval mode, then resumes
        self.model.eval()
        try:
            with torch.inference_mode():
                # The start all prompts share (system prompt, chat header, few-shot exemplars) is
                # encoded once for the whole call, not once per prefill group.
                common = _common_prefix_length(encoded) if encoded else 0
                if common:
                    prefix = self._encode_prefix(encoded[0][:common])
                while queue or batch is not None:
                    live = len(batch.rows) if batch is not None else 0
                    # Refill when a sizeable share of the batch is free (or it is empty): prefilling
                    # groups at once is cheaper than one prompt per step.
                    if queue and (
                        live == 0 or self.max_batch_size - live >= max(params.n, self.max_batch_size // 4)
                    ):
                        fresh = self._admit(
                            queue, encoded, limits, params, base_seed, live, results, bar, prefix
                        )
                        parts = ([batch] if batch is not None else []) + fresh
                        batch = _Batch.combine(parts) if parts else None
                    else:
                        assert batch is not None
                        self._advance(batch, self._step(batch), params, results, bar)
                        if not batch.rows:
                            batch = None
        finally:
            self.model.train(training)
            if bar is not None:
                bar.close()
        return [[done[j] for j in range(params.n)] for done in results]

    def _admit(
        self,
        queue: deque[int],
        encoded: list[list[int]],
        limits: list[int],
        params: SamplingParams,
        base_seed: int,
        live: int,
        results: list[dict[int, Completion]],
        bar: Any,
        prefix: _BatchCache | None,
    ) -> list[_Batch]:
        """Prefill prompts from the queue while there is room; their first tokens are sampled."""
        fresh: list[_Batch] = []
        room = self.max_batch_size - live
        # At least one prompt when the batch is empty, even if its n samples exceed the batch size.
        while queue and (room >= params.n or (live == 0 and not fresh)):
            group = self._take_group(queue, encoded, params.n, room)
            batch, logits = self._prefill(group, encoded, limits, params, base_seed, prefix)
            self._advance(batch, logits, params, results, bar)
            room -= len(group) * params.n
            if batch.rows:
                fresh.append(batch)
        return fresh

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
        """Prompts prefilled together: similar lengths (padding costs full compute in a prefill),
        within the row room and the prefill token budget."""
        group = [queue.popleft()]
        width = len(encoded[group[0]])  # the queue runs longest first
        while queue and (len(group) + 1) * n <= room:
            following = len(encoded[queue[0]])
            if following < _PREFILL_PADDING * width or width * (len(group) + 1) > self.prefill_tokens:
                break
            group.append(queue.popleft())
        return group

    def _prefill(
        self,
        group: list[int],
        encoded: list[list[int]],
        limits: list[int],
        params: SamplingParams,
        base_seed: int,
        prefix: _BatchCache | None,
    ) -> tuple[_Batch, torch.Tensor]:
        """Encode a group of prompts into a fresh batch; return it with each row's next-token logits.

        The group's common token prefix is encoded once and shared, starting from ``prefix`` (the
        start all prompts of the call share, already encoded); each prompt's remainder is then
        encoded left-padded after it.
        """
        prompts = [encoded[i] for i in group]
        shared = _common_prefix_length(prompts)
        if shared > (prefix.get_seq_length() if prefix is not None else 0):
            prefix = self._encode_prefix(prompts[0][:shared], after=prefix)
        cache = prefix.repeated(len(group)) if prefix is not None else _BatchCache.empty(self._num_layers)
        prefix_mask = torch.ones((len(group), shared), dtype=torch.long, device=self.device)
        width = max(len(p) for p in prompts) - shared
        ids = torch.full((len(group), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            rest = prompt[shared:]
            ids[row, width - len(rest) :] = torch.tensor(rest)
            mask[row, width - len(rest) :] = 1
        ids, mask = ids.to(self.device), torch.cat([prefix_mask, mask.to(self.device)], dim=1)
        positions = (mask.cumsum(1) - 1).clamp(min=0)[:, shared:]
        logits = self._forward(ids, mask, positions, cache)
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

    def _encode_prefix(self, ids: list[int], after: _BatchCache | None = None) -> _BatchCache:
        """A one-row cache holding ``ids`` encoded; ``after`` (left as it is) holds their start."""
        start = after.get_seq_length() if after is not None else 0
        cache = after.repeated(1) if after is not None else _BatchCache.empty(self._num_layers)
        tokens = torch.tensor([ids[start:]], device=self.device)
        positions = torch.arange(start, len(ids), device=self.device)[None]
        mask = torch.ones((1, len(ids)), dtype=torch.long, device=self.device)
        self._forward(tokens, mask, positions, cache)
        return cache

    def _forward(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: _BatchCache
    ) -> torch.Tensor:
        """Run the model on ``ids`` after what ``cache`` holds; the last position's logits (float32)."""
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_arg: cache},
        )
        return out.logits[:, -1, :].float()

    def _step(self, batch: _Batch) -> torch.Tensor:
        ones = torch.ones((len(batch.rows), 1), dtype=batch.mask.dtype, device=batch.mask.device)
        batch.mask = torch.cat([batch.mask, ones], dim=1)
        logits = self._forward(batch.pending[:, None], batch.mask, batch.positions[:, None], batch.cache)
        batch.positions = batch.positions + 1
        return logits

    def _advance(
        self,
        batch: _Batch,
        logits: torch.Tensor,
        params: SamplingParams,
        results: list[dict[int, Completion]],
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
                results[row.prompt][row.sample] = completion
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


def _store_linear_weights_transposed(model: Any) -> None:
    """Keep each linear layer's weight as the transpose of an (in, out) row-major matrix.

    ``F.linear`` computes ``x @ W.T``; with ``W`` stored (out, in) row-major, MKL's CPU matmul
    takes a path that costs as much at 16-48 rows as at 64 (measured here: 1.1-1.5 ms for a
    576x1536 layer at every batch size under 64, against 0.25-0.8 ms with the transposed layout).
    Decoding shrinks the batch as rows finish, so most steps run in that range. This serves the
    layers :func:`_pack_linear_layers` leaves as they are (no MKL, or not float32). Only for
    models the engine loads itself: a caller's model (a policy in training) keeps its own
    parameters. A tied output layer gets its own copy, since the input embedding needs the
    row-major layout.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module.weight.is_contiguous():
            transposed = module.weight.detach().t().contiguous().t()
            module.weight = torch.nn.Parameter(transposed, requires_grad=False)


class _PackedLinear(torch.nn.Module):
    """A linear layer computed by MKL's packed-weight GEMM (``cblas_sgemm_compute``).

    A plain CPU matmul re-packs the weight matrix into MKL's blocked layout on every call, and
    that path also splits poorly over threads at decoding's row counts. Packing once is faster
    for every layer of the embedded model at two threads (measured here at 64 rows: 1.3-1.4x
    for the MLP and attention projections, 1.4-1.8x for the 49,152 x 576 output layer at 8-64
    rows; 1.4x on the whole generation benchmark, same text) and about even at one thread.
    The packed layout does not depend on the number of rows, so one packed copy serves every
    batch size.

    The op reads the original weight only for its shape when it computes with the packed copy
    (always, here: it is told the rows given), so unless the weight is shared (a tied output
    layer is the input embedding), a zero-strided placeholder of the same shape replaces it
    and the layer costs the memory of one copy, not two.
    """

    def __init__(self, linear: torch.nn.Linear, packed: torch.Tensor, *, shared: bool) -> None:
        super().__init__()
        weight = linear.weight
        self.weight = weight if shared else weight.new_zeros(()).expand(weight.shape)
        self.bias = linear.bias
        self.packed = packed

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        hidden = hidden.contiguous()
        # The last argument says how many rows the weight was packed for; the op computes with the
        # packed copy only when it equals the rows given (all leading dimensions), so pass those.
        rows = hidden.numel() // hidden.shape[-1]
        return torch.ops.mkl._mkl_linear(hidden, self.packed, self.weight, self.bias, rows)


def _pack_linear_layers(model: Any) -> None:
    """Compute every float32 linear layer with MKL's packed GEMM where this torch has it (x86).

    Each distinct layer shape is first checked against the plain layer at a few batch sizes,
    so an MKL whose packed layout did depend on the row count leaves those layers as they were.
    """
    mkl = getattr(torch.ops, "mkl", None)
    if not torch.backends.mkl.is_available() or not hasattr(mkl, "_mkl_reorder_linear_weight"):
        return
    embedding = model.get_input_embeddings()
    tied = getattr(embedding, "weight", None)
    verdicts: dict[tuple[int, int, bool], bool] = {}
    with torch.no_grad():
        for parent in list(model.modules()):
            for name, linear in list(parent.named_children()):
                if type(linear) is not torch.nn.Linear or linear.weight.dtype != torch.float32:
                    continue
                shape = (linear.in_features, linear.out_features, linear.bias is not None)
                if verdicts.get(shape) is False:
                    continue
                weight = linear.weight.detach().contiguous()
                packed = mkl._mkl_reorder_linear_weight(weight, 64)
                candidate = _PackedLinear(linear, packed, shared=linear.weight is tied)
                if shape not in verdicts:
                    verdicts[shape] = _same_outputs(candidate, linear)
                if verdicts[shape]:
                    setattr(parent, name, candidate)


def _same_outputs(candidate: torch.nn.Module, linear: torch.nn.Linear) -> bool:
    for rows in (1, 7, 64):
        probe = torch.randn(rows, linear.in_features, generator=torch.Generator().manual_seed(rows))
        if not torch.allclose(candidate(probe), linear(probe), rtol=1e-4, atol=1e-4):
            return False
    return True


def _common_prefix_length(prompts: list[list[int]]) -> int:
    """Tokens all prompts share at their start, leaving each at least one token of its own
    (the last prompt token's logits start the generation)."""
    shortest = min(len(p) for p in prompts)
    length = 0
    while length < shortest - 1 and all(p[length] == prompts[0][length] for p in prompts):
        length += 1
    return length


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
