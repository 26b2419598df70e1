"""The hf engine's training-facing outputs: token-id prompts, the sampled ids, their log-probabilities
checked against a plain forward pass, and an engine on a live policy following its weights."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from fixtures_models import tiny_causal_lm
from mathforge.engines import SamplingParams
from mathforge.engines.base import engine_capabilities
from mathforge.engines.hf import HFEngine

PROMPTS = [
    "What is 2 + 2?",
    "A much longer prompt about trains leaving stations at different speeds, asking when they meet.",
    "Hi",
]


@pytest.fixture(scope="module")
def engine(embedded_tokenizer: Any) -> HFEngine:
    return HFEngine(tiny_causal_lm(embedded_tokenizer, arch="qwen2", sharpness=6), embedded_tokenizer)


def forward_logprobs(
    model: Any, prompt_ids: list[int], completion_ids: list[int], temperature: float = 1.0
) -> torch.Tensor:
    """log_softmax(logits / temperature) of each completion token, from one plain forward pass."""
    logits = forward_logits(model, prompt_ids, completion_ids) / temperature
    return torch.log_softmax(logits, dim=-1).gather(-1, torch.tensor(completion_ids)[:, None])[:, 0]


def forward_logits(model: Any, prompt_ids: list[int], completion_ids: list[int]) -> torch.Tensor:
    """The logits predicting each completion token, from one forward pass in eval mode."""
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt_ids + completion_ids])).logits[0].float()
    finally:
        model.train(training)
    return logits[len(prompt_ids) - 1 : -1]


def test_hf_engine_declares_token_ids_and_logprobs(engine: HFEngine) -> None:
    capabilities = engine_capabilities(engine)
    assert capabilities.token_ids_in and capabilities.logprobs
    assert not engine_capabilities(object()).token_ids_in  # an engine that declares nothing


def test_token_id_prompts_give_what_their_text_gives(engine: HFEngine) -> None:
    encoded = [engine.encode(p) for p in PROMPTS]
    for params in (
        SamplingParams(max_new_tokens=12),
        SamplingParams(n=2, temperature=1.0, top_p=0.9, max_new_tokens=12, seed=5),
    ):
        by_text = engine.generate(PROMPTS, params)
        by_ids = engine.generate(encoded, params)
        assert [[c.sampled_ids for c in g] for g in by_ids] == [[c.sampled_ids for c in g] for g in by_text]
    # Mixed in one call, and ids that no text re-encoding would produce are taken as they are.
    odd = encoded[0] + engine.tokenizer(" 2", add_special_tokens=False)["input_ids"][::-1]
    mixed = engine.generate([PROMPTS[2], odd], SamplingParams(max_new_tokens=6))
    assert (
        mixed[0][0].sampled_ids
        == engine.generate([PROMPTS[2]], SamplingParams(max_new_tokens=6))[0][0].sampled_ids
    )
    alone = engine.generate([odd], SamplingParams(max_new_tokens=6))[0][0]
    assert mixed[1][0].sampled_ids == alone.sampled_ids


def test_sampled_ids_keep_the_stop_and_end_tokens(engine: HFEngine) -> None:
    full = engine.generate(["Hi"], SamplingParams(max_new_tokens=30))[0][0]
    assert full.finish_reason == "length" and full.sampled_ids == full.token_ids
    stop = full.text[9:13]
    cut = engine.generate(["Hi"], SamplingParams(max_new_tokens=30, stop=[stop]))[0][0]
    assert cut.finish_reason == "stop"
    sampled_text = engine.tokenizer.decode(cut.sampled_ids)
    # The sampled tokens run through the token that completed the stop string, and no further.
    assert sampled_text.startswith(cut.text + stop)
    assert stop not in engine.tokenizer.decode(cut.sampled_ids[:-1])
    assert cut.sampled_ids == full.sampled_ids[: len(cut.sampled_ids)]
    # The end-of-sequence token is sampled (and scored by a trainer) but not part of the text.
    patched = HFEngine(engine.model, engine.tokenizer)
    patched.eos_ids = {*engine.eos_ids, full.sampled_ids[4]}
    ended = patched.generate(["Hi"], SamplingParams(max_new_tokens=30))[0][0]
    first = full.sampled_ids.index(full.sampled_ids[4])
    assert ended.finish_reason == "eos"
    assert ended.sampled_ids == full.sampled_ids[: first + 1] and ended.token_ids == full.sampled_ids[:first]


def test_logprobs_are_off_unless_asked(engine: HFEngine) -> None:
    completion = engine.generate(["Hi"], SamplingParams(max_new_tokens=4))[0][0]
    assert completion.logprobs is None and completion.sampled_ids is not None


@pytest.mark.parametrize("temperature", [0.0, 1.0, 0.7])
def test_logprobs_equal_a_single_forward_pass(engine: HFEngine, temperature: float) -> None:
    # Prompts of different lengths share padded batches and n samples share a prompt's cache;
    # each sampled token's log-probability still equals log_softmax(logits / T) of an unpadded
    # forward pass over prompt + sampled ids (T = 1 for greedy).
    params = SamplingParams(n=2, temperature=temperature, max_new_tokens=16, seed=3, logprobs=True)
    outputs = engine.generate(PROMPTS, params)
    for prompt, group in zip(PROMPTS, outputs, strict=True):
        for completion in group:
            assert completion.logprobs is not None and len(completion.logprobs) == len(completion.sampled_ids)
            expected = forward_logprobs(
                engine.model, engine.encode(prompt), completion.sampled_ids, temperature or 1.0
            )
            torch.testing.assert_close(torch.tensor(completion.logprobs), expected, rtol=0, atol=2e-4)
            if temperature == 0.0:  # greedy picks the forward pass's argmax at every step
                logits = forward_logits(engine.model, engine.encode(prompt), completion.sampled_ids)
                assert logits.argmax(-1).tolist() == completion.sampled_ids


def test_top_p_logprobs_are_renormalised_over_the_nucleus(engine: HFEngine) -> None:
    params = SamplingParams(temperature=0.8, top_p=0.7, max_new_tokens=12, seed=11, logprobs=True)
    completion = engine.generate(["Hi"], params)[0][0]
    probs = torch.softmax(forward_logits(engine.model, engine.encode("Hi"), completion.sampled_ids) / 0.8, -1)
    for step, (token, value) in enumerate(zip(completion.sampled_ids, completion.logprobs, strict=True)):
        ordered, _ = probs[step].sort(descending=True)
        size = int((ordered.cumsum(0) < 0.7).sum()) + 1  # smallest set reaching top_p
        nucleus = ordered[:size]
        assert probs[step, token] >= nucleus[-1]  # the token was drawn from the nucleus
        expected = torch.log(probs[step, token] / nucleus.sum())
        assert value == pytest.approx(float(expected), abs=2e-4)
    assert any(v < 0 for v in completion.logprobs)


def test_engine_on_a_live_policy_follows_its_weights(embedded_tokenizer: Any) -> None:
    # An engine built on the trainer's model: after an optimiser step that makes its greedy
    # completion more likely, the engine decodes the same completion with log-probabilities equal
    # to the updated model's own forward pass, not those of the weights before the step.
    policy = tiny_causal_lm(embedded_tokenizer, seed=2, sharpness=4).train()
    engine = HFEngine(policy, embedded_tokenizer)
    params = SamplingParams(max_new_tokens=10, logprobs=True)
    prompt_ids = engine.encode("What is 6 times 7?")

    def rollout() -> tuple[list[int], torch.Tensor]:
        completion = engine.generate([prompt_ids], params)[0][0]
        assert completion.sampled_ids is not None and completion.logprobs is not None
        return completion.sampled_ids, torch.tensor(completion.logprobs)

    ids, logprobs = rollout()
    torch.testing.assert_close(logprobs, forward_logprobs(policy, prompt_ids, ids), rtol=0, atol=2e-4)
    before = copy.deepcopy(policy)
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.003)
    loss = -forward_logprobs_with_grad(policy, prompt_ids, ids).sum()
    loss.backward()
    optimizer.step()
    assert policy.training  # generation left the policy in training mode
    new_ids, new_logprobs = rollout()
    assert new_ids == ids  # the fixed completion, now more likely
    torch.testing.assert_close(new_logprobs, forward_logprobs(policy, prompt_ids, ids), rtol=0, atol=2e-4)
    stale = forward_logprobs(before, prompt_ids, ids)
    assert (new_logprobs - stale).abs().max() > 0.05
    assert new_logprobs.sum() > logprobs.sum()


def forward_logprobs_with_grad(model: Any, prompt_ids: list[int], completion_ids: list[int]) -> torch.Tensor:
    logits = model(input_ids=torch.tensor([prompt_ids + completion_ids])).logits[0, len(prompt_ids) - 1 : -1]
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, torch.tensor(completion_ids)[:, None])[:, 0]
