"""The hf engine's sampler: greedy, or temperature/top-p by inverse CDF from per-row random streams,
and the log-probability of each chosen token under the distribution it was drawn from."""

from __future__ import annotations

import torch

from mathforge.engines.base import SamplingParams


def row_generator(base_seed: int, prompt: int, sample: int) -> torch.Generator:
    """The random stream of one (prompt, sample) row: independent of the batch it shares."""
    generator = torch.Generator()
    generator.manual_seed((base_seed * 1_000_003 + prompt * 65_537 + sample) % (2**63))
    return generator


def sample_tokens(
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
    cdf = _sampling_probs(logits, params).double().cumsum(dim=-1)
    uniforms = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in generators])
    picks = torch.searchsorted(cdf, (uniforms.to(cdf.device) * cdf[:, -1])[:, None])
    return picks[:, 0].clamp(max=cdf.shape[-1] - 1)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Per row, the log-probability of ``tokens`` under the distribution :func:`sample_tokens`
    draws from (the definition ``Completion.logprobs`` documents), in float32.

    Greedy: ``log_softmax(logits)``. Sampled: ``log_softmax(logits / temperature)``, minus the
    log of the nucleus mass when ``top_p < 1`` (the nucleus is renormalised before drawing).
    Computed with ``log_softmax`` rather than ``log(probs)`` so unlikely tokens keep a finite value.
    """
    scaled = logits.float() if params.greedy else logits.float() / params.temperature
    picked = torch.log_softmax(scaled, dim=-1).gather(-1, tokens[:, None])[:, 0]
    if not params.greedy and params.top_p < 1.0:
        mass = _sampling_probs(logits, params).double().sum(dim=-1)
        picked = picked - mass.log().float()
    return picked


def _sampling_probs(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """``softmax(logits / temperature)`` with the tail outside the top-p nucleus zeroed (not renormalised)."""
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        probs = probs.masked_fill(probs < nucleus_threshold(probs, params.top_p), 0.0)
    return probs


def nucleus_threshold(probs: torch.Tensor, top_p: float) -> torch.Tensor:
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
