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
- rows that end on a stop string keep their KV cache for the next call: a prompt that continues
  one (the next TIR round: the same tokens, then the executor's reply) encodes only its new
  tokens, as vLLM's prefix cache does;
- sampling draws from a per-row random stream seeded by (seed, prompt index, sample index), so a
  seeded result does not depend on which prompts share the batch (up to float rounding).

Modules: ``engine`` (the scheduler and decode loop), ``cache`` (the KV cache), ``batch`` (the
live rows), ``retained`` (rows kept for the next call), ``sampler`` (next-token choice and its
log-probability), ``kernels`` (faster CPU linear layers for models the engine loads itself).
"""

from mathforge.engines.hf.engine import HFEngine

__all__ = ["HFEngine"]
