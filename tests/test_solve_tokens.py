"""Token-exact TIR: each round conditions on exactly the ids already in the trajectory, checked with
a single forward pass of a tiny model over the concatenation, and with a scripted token engine for
the transitions (the fence the model wrote, an end-of-sequence after code, the call limit)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch

from fixtures_models import tiny_causal_lm
from mathforge.engines import Completion, SamplingParams
from mathforge.engines.base import EngineCapabilities, Prompt, find_stop
from mathforge.engines.hf import HFEngine
from mathforge.prompts import render_prompt
from mathforge.solve import Trajectory, solve_prompts
from test_solve import _memorise

RESPONSE = "```python\nprint(6 * 7)\n```\n```output\n42\n```\nThe answer is $\\boxed{42}$."


@pytest.fixture(scope="module")
def sandbox() -> Any:
    from mathforge.sandbox import Sandbox

    with Sandbox(timeout=5.0) as box:
        yield box


@pytest.fixture(scope="module")
def coder(embedded_tokenizer: Any) -> tuple[HFEngine, str]:
    """A tiny model trained on one TIR transcript: it writes code, stops at ```output, reads the
    executor's reply and boxes the answer."""
    prompt = render_prompt("What is 6 times 7?", embedded_tokenizer, "tir")
    model = tiny_causal_lm(embedded_tokenizer, seed=1)
    _memorise(model, embedded_tokenizer, prompt, RESPONSE + embedded_tokenizer.eos_token)
    return HFEngine(model, embedded_tokenizer), prompt


def single_pass_logits(engine: HFEngine, trajectory: Trajectory) -> torch.Tensor:
    """The logits predicting each response token, from one forward pass over prompt + response ids."""
    ids = torch.tensor([trajectory.prompt_ids + trajectory.token_ids])
    with torch.no_grad():
        logits = engine.model(input_ids=ids).logits[0].float()
    return logits[len(trajectory.prompt_ids) - 1 : -1]


def check_spans(trajectory: Trajectory, tokenizer: Any) -> None:
    """Segments tile the response and its ids; each segment's text is its ids decoded."""
    assert trajectory.segments[0].start == 0 and trajectory.segments[0].token_start == 0
    for before, after in zip(trajectory.segments, trajectory.segments[1:], strict=False):
        assert before.end == after.start and before.token_end == after.token_start
    assert trajectory.segments[-1].end == len(trajectory.response)
    assert trajectory.segments[-1].token_end == len(trajectory.token_ids)
    for segment in trajectory.segments:
        ids = trajectory.token_ids[segment.token_start : segment.token_end]
        assert (
            tokenizer.decode(ids, skip_special_tokens=True)
            == trajectory.response[segment.start : segment.end]
        )


def test_greedy_tir_trajectory_equals_one_pass_over_its_ids(
    coder: tuple[HFEngine, str], sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, prompt = coder
    inputs: list[list[int]] = []
    generate = engine.generate

    def recording(prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        inputs.extend(list(p) for p in prompts)
        return generate(prompts, params)

    monkeypatch.setattr(engine, "generate", recording)
    params = SamplingParams(max_new_tokens=80, logprobs=True)
    [[trajectory]] = solve_prompts([prompt], engine, mode="tir", params=params, sandbox=sandbox)
    # Round 1 was given the prompt ids, round 2 those followed by every id in the trajectory so far.
    tool_end = trajectory.segments[1].token_end
    assert inputs == [trajectory.prompt_ids, trajectory.prompt_ids + trajectory.token_ids[:tool_end]]
    assert trajectory.response == RESPONSE and trajectory.answer == "42"
    assert [s.kind for s in trajectory.segments] == ["model", "tool", "model"]
    assert trajectory.prompt_ids == engine.encode(prompt)
    assert trajectory.token_ids[-1] in engine.eos_ids  # the model's end token is kept for training
    check_spans(trajectory, engine.tokenizer)
    mask = trajectory.tool_mask()
    tool = trajectory.segments[1]
    assert [i for i, masked in enumerate(mask) if masked] == list(range(tool.token_start, tool.token_end))
    # The tool tokens are the executor's reply tokenised on its own, after the fence the model wrote.
    reply = trajectory.token_ids[tool.token_start : tool.token_end]
    assert engine.tokenizer.decode(reply) == trajectory.response[tool.start : tool.end]
    assert (
        trajectory.response[: tool.start].endswith("```output")
        and "42" in trajectory.response[tool.start : tool.end]
    )
    # One forward pass over the concatenation reproduces every model token and its log-probability.
    logits = single_pass_logits(engine, trajectory)
    predicted = logits.argmax(-1).tolist()
    expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(trajectory.token_ids)[:, None])[:, 0]
    assert trajectory.logprobs is not None and len(trajectory.logprobs) == len(trajectory.token_ids)
    for position, (token, masked) in enumerate(zip(trajectory.token_ids, mask, strict=True)):
        if masked:
            assert trajectory.logprobs[position] is None
        else:
            assert predicted[position] == token
            assert trajectory.logprobs[position] == pytest.approx(float(expected[position]), abs=2e-4)
    assert trajectory.completion_tokens == len(trajectory.token_ids) - sum(mask)


def test_sampled_tir_logprobs_equal_one_pass_at_the_temperature(
    coder: tuple[HFEngine, str], sandbox: Any
) -> None:
    engine, prompt = coder
    params = SamplingParams(temperature=0.8, max_new_tokens=60, seed=7, logprobs=True)
    groups = solve_prompts([prompt], engine, mode="tir", n=3, params=params, sandbox=sandbox)
    assert sum(len(t.executions) for t in groups[0]) >= 1
    for trajectory in groups[0]:
        check_spans(trajectory, engine.tokenizer)
        logits = single_pass_logits(engine, trajectory) / 0.8
        expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(trajectory.token_ids)[:, None])[:, 0]
        assert trajectory.logprobs is not None
        for position, value in enumerate(trajectory.logprobs):
            if value is not None:
                assert value == pytest.approx(float(expected[position]), abs=2e-4)


def test_cot_trajectory_keeps_sampled_ids_and_logprobs(coder: tuple[HFEngine, str]) -> None:
    engine, prompt = coder
    params = SamplingParams(max_new_tokens=20, logprobs=True)
    [[trajectory]] = solve_prompts([prompt], engine, mode="cot", params=params)
    [[completion]] = engine.generate([prompt], params)
    assert trajectory.token_ids == completion.sampled_ids and trajectory.logprobs == completion.logprobs
    assert trajectory.response == completion.text and [s.kind for s in trajectory.segments] == ["model"]
    # Without logprobs asked for, none are kept.
    [[plain]] = solve_prompts([prompt], engine, mode="cot", params=SamplingParams(max_new_tokens=20))
    assert plain.logprobs is None and plain.token_ids == trajectory.token_ids


class TokenScriptedEngine:
    """A token-exact test engine replaying fixed round texts: it takes token-id prompts, records
    them, and returns each round's text tokenised as the 'sampled' ids, cut at the token that
    completes a stop string (or followed by an end-of-sequence token), with made-up log-probs."""

    capabilities = EngineCapabilities(token_ids_in=True, logprobs=True)

    def __init__(self, tokenizer: Any, script: list[str]) -> None:
        self.tokenizer = tokenizer
        self.script = script
        self.inputs: list[list[int]] = []

    def encode(self, prompt: str) -> list[int]:
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        groups = []
        for prompt in prompts:
            assert not isinstance(prompt, str)
            self.inputs.append(list(prompt))
            text = self.script[self.tokenizer.decode(list(prompt)).count("```output")]
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            completion = self._cut(ids, params)
            groups.append([completion] * params.n)
        return groups

    def _cut(self, ids: list[int], params: SamplingParams) -> Completion:
        for end in range(1, len(ids) + 1):
            match = find_stop(self.tokenizer.decode(ids[:end]), params.stop)
            if match is not None:
                text = self.tokenizer.decode(ids[:end])[: match[0]]
                sampled = ids[:end]
                return Completion(text, sampled, "stop", match[1], sampled, [-0.5] * len(sampled))
        sampled = [*ids, self.tokenizer.eos_token_id]
        return Completion(self.tokenizer.decode(ids), ids, "eos", None, sampled, [-0.5] * len(sampled))


def test_each_round_conditions_on_the_trajectory_ids(embedded_tokenizer: Any, sandbox: Any) -> None:
    # Round 1 stops at the fence the model wrote; round 2 ends its turn (end-of-sequence) right
    # after a code block, which still runs, and the next round continues without that token.
    rounds = [
        "Compute.\n```python\nx = 6\nprint(x * 7)\n```\n```output\nignored",
        "Again:\n```python\nprint(x + 1)\n```",
        "So $\\boxed{43}$.",
    ]
    engine = TokenScriptedEngine(embedded_tokenizer, rounds)
    params = SamplingParams(max_new_tokens=200, logprobs=True)
    [[trajectory]] = solve_prompts(["Q: "], engine, mode="tir", params=params, sandbox=sandbox)
    assert [e["output"] for e in trajectory.executions] == ["42", "7"]
    assert trajectory.response == (
        "Compute.\n```python\nx = 6\nprint(x * 7)\n```\n```output\n42\n```\n"
        "Again:\n```python\nprint(x + 1)\n```\n```output\n7\n```\nSo $\\boxed{43}$."
    )
    assert [s.kind for s in trajectory.segments] == ["model", "tool", "model", "tool", "model"]
    check_spans(trajectory, embedded_tokenizer)
    # Each round's input is the prompt ids followed by every id already in the trajectory.
    segments = trajectory.segments
    assert engine.inputs == [
        trajectory.prompt_ids,
        trajectory.prompt_ids + trajectory.token_ids[: segments[1].token_end],
        trajectory.prompt_ids + trajectory.token_ids[: segments[3].token_end],
    ]
    eos = embedded_tokenizer.eos_token_id
    assert trajectory.token_ids.count(eos) == 1 and trajectory.token_ids[-1] == eos  # round 2's was dropped
    # The fence is the model's own; the loop wrote the whole block after the ended turn.
    assert trajectory.response[segments[0].start : segments[0].end].endswith("```output")
    assert trajectory.response[segments[1].start : segments[1].end] == "\n42\n```\n"
    assert trajectory.response[segments[3].start : segments[3].end] == "\n```output\n7\n```\n"
    assert trajectory.logprobs == [None if m else -0.5 for m in trajectory.tool_mask()]
    assert trajectory.completion_tokens == len(trajectory.token_ids) - sum(trajectory.tool_mask())


def test_call_limit_and_budget_end_a_token_exact_trajectory(embedded_tokenizer: Any, sandbox: Any) -> None:
    loop = "```python\nprint(1)\n```\n```output"
    engine = TokenScriptedEngine(embedded_tokenizer, [loop] * 5)
    [[limited]] = solve_prompts(["Q"], engine, mode="tir", sandbox=sandbox, max_calls=2)
    assert len(limited.executions) == 2 and limited.finish_reason == "max_calls"
    assert limited.response.endswith("```output")  # the fence of the call that was refused
    first = len(embedded_tokenizer(loop, add_special_tokens=False)["input_ids"])
    params = SamplingParams(max_new_tokens=first + 3)
    [[short]] = solve_prompts(["Q"], engine, mode="tir", params=params, sandbox=sandbox)
    assert short.finish_reason == "length" and short.completion_tokens == first + 3
    assert len(short.executions) == 1 and short.logprobs is None


def test_output_after_the_models_own_fence() -> None:
    from mathforge.solve.code import output_after_fence

    assert output_after_fence("42", "") == "\n42\n```\n"
    assert output_after_fence("42", "\n") == "42\n```\n"  # the fence token carried the newline
    assert output_after_fence("42", "\n\n") == "\n42\n```\n"  # anything else: the whole reply after it
