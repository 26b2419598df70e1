"""CoT and TIR solving: the TIR loop with a scripted engine (exact transcript) and with a tiny model
trained to write, run and read code; trajectory spans and serialisation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch

from fixtures_models import tiny_causal_lm
from mathforge.engines import Completion, SamplingParams, truncate_at_stop
from mathforge.engines.hf import HFEngine
from mathforge.errors import MathforgeError
from mathforge.prompts import render_prompt
from mathforge.solve import Trajectory, solve, solve_prompts, trailing_python_block


class ScriptedEngine:
    """An engine that replays fixed model outputs, one per round, honouring stop strings like a
    real engine (the text ends right before the first stop string). Records every call."""

    def __init__(self, tokenizer: Any, script: list[str]) -> None:
        self.tokenizer = tokenizer
        self.script = script
        self.calls: list[tuple[list[str], SamplingParams]] = []

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        self.calls.append((list(prompts), params))
        groups = []
        for prompt in prompts:
            rounds_done = prompt.count("```output\n")
            text, stop = truncate_at_stop(self.script[rounds_done], params.stop)
            finish = "stop" if stop else "eos"
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            groups.append([Completion(text, ids, finish, stop) for _ in range(params.n)])
        return groups


@pytest.fixture(scope="module")
def sandbox() -> Any:
    from mathforge.sandbox import Sandbox

    with Sandbox(timeout=5.0) as box:
        yield box


ROUND_1 = "Let me compute.\n```python\nx = 6\nprint(x * 7)\n```\n```output\n42\n```\nignored"
ROUND_2 = "So x is 6. Check with state kept:\n```python\nprint(x + 1)\n```\n```output\nzzz"
ROUND_3 = "The answer is $\\boxed{43}$."


def test_tir_transcript_is_exact(embedded_tokenizer: Any, sandbox: Any) -> None:
    engine = ScriptedEngine(embedded_tokenizer, [ROUND_1, ROUND_2, ROUND_3])
    [[trajectory]] = solve(["What is 6 * 7 + 1?"], engine, mode="tir", sandbox=sandbox)
    model_1 = "Let me compute.\n```python\nx = 6\nprint(x * 7)\n```\n"
    tool_1 = "```output\n42\n```\n"
    model_2 = "So x is 6. Check with state kept:\n```python\nprint(x + 1)\n```\n"
    tool_2 = "```output\n7\n```\n"
    assert trajectory.response == model_1 + tool_1 + model_2 + tool_2 + ROUND_3
    assert trajectory.answer == "43"
    assert trajectory.finish_reason == "eos"
    assert [e["code"] for e in trajectory.executions] == ["x = 6\nprint(x * 7)\n", "print(x + 1)\n"]
    assert [e["output"] for e in trajectory.executions] == ["42", "7"]
    assert all(e["status"] == "ok" for e in trajectory.executions)
    # Segments: character spans cover the response in order and mark tool output.
    kinds = [s.kind for s in trajectory.segments]
    assert kinds == ["model", "tool", "model", "tool", "model"]
    pieces = [trajectory.response[s.start : s.end] for s in trajectory.segments]
    assert pieces == [model_1, tool_1, model_2, tool_2, ROUND_3]
    # Token spans: each segment's tokens decode to its text; the mask marks tool tokens.
    for segment, piece in zip(trajectory.segments, pieces, strict=True):
        ids = trajectory.token_ids[segment.token_start : segment.token_end]
        assert embedded_tokenizer.decode(ids) == piece
    mask = trajectory.tool_mask()
    tool_tokens = sum(s.token_end - s.token_start for s in trajectory.segments if s.kind == "tool")
    assert sum(mask) == tool_tokens and len(mask) == len(trajectory.token_ids)
    assert trajectory.completion_tokens == len(trajectory.token_ids) - tool_tokens
    # Each round sent the prompt plus the response so far, stopping at ```output.
    prompt = render_prompt("What is 6 * 7 + 1?", embedded_tokenizer, "tir")
    assert [call[0] for call in engine.calls] == [
        [prompt],
        [prompt + model_1 + tool_1],
        [prompt + model_1 + tool_1 + model_2 + tool_2],
    ]
    assert all("```output" in params.stop for _, params in engine.calls)
    assert trajectory.prompt_tokens == len(embedded_tokenizer(prompt, add_special_tokens=False)["input_ids"])


def test_tir_respects_max_calls_and_reports_errors(embedded_tokenizer: Any, sandbox: Any) -> None:
    loop = "```python\nprint(undefined_name)\n```\n```output"
    engine = ScriptedEngine(embedded_tokenizer, [loop] * 10)
    [[trajectory]] = solve_prompts(["Q: "], engine, mode="tir", sandbox=sandbox, max_calls=2)
    assert len(trajectory.executions) == 2
    assert trajectory.finish_reason == "max_calls"
    assert trajectory.executions[0]["status"] == "error"
    assert trajectory.executions[0]["output"] == "NameError: name 'undefined_name' is not defined"
    assert trajectory.response.count("```output\nNameError") == 2
    assert len(engine.calls) == 3


def test_tir_does_not_run_code_once_an_answer_is_boxed(embedded_tokenizer: Any, sandbox: Any) -> None:
    text = "So $\\boxed{5}$.\n```python\nprint(5)\n```\n```output"
    engine = ScriptedEngine(embedded_tokenizer, [text])
    [[trajectory]] = solve_prompts(["Q"], engine, mode="tir", sandbox=sandbox)
    assert trajectory.executions == []
    assert trajectory.finish_reason == "stop"
    assert trajectory.answer == "5"


def test_tir_batches_live_trajectories_per_round(embedded_tokenizer: Any, sandbox: Any) -> None:
    engine = ScriptedEngine(embedded_tokenizer, [ROUND_1, ROUND_3])
    groups = solve_prompts(["A", "B", "C"], engine, mode="tir", n=2, sandbox=sandbox)
    assert [len(g) for g in groups] == [2, 2, 2]
    assert len(engine.calls) == 2
    assert engine.calls[0][1].n == 2 and len(engine.calls[0][0]) == 3  # n samples share a prompt
    assert len(engine.calls[1][0]) == 6 and engine.calls[1][1].n == 1
    assert all(t.answer == "43" and len(t.executions) == 1 for g in groups for t in g)


def test_cot_mode_and_serialisation(embedded_tokenizer: Any) -> None:
    engine = ScriptedEngine(embedded_tokenizer, ["Two plus two is $\\boxed{4}$."])
    [[trajectory]] = solve(["What is 2 + 2?"], engine, mode="cot")
    assert engine.calls[0][0][0] == render_prompt("What is 2 + 2?", embedded_tokenizer, "cot")
    assert "```output" not in engine.calls[0][1].stop
    assert trajectory.answer == "4"
    assert [s.kind for s in trajectory.segments] == ["model"]
    assert Trajectory.from_dict(trajectory.to_dict()) == trajectory
    with pytest.raises(MathforgeError, match="unknown solve mode"):
        solve(["q"], engine, mode="pal")


def test_multiple_choice_answers_use_the_dataset_rules(embedded_tokenizer: Any) -> None:
    engine = ScriptedEngine(embedded_tokenizer, ["The distance is 44.1 m. The answer is (C)."])
    [[trajectory]] = solve_prompts(["Q"], engine, dataset="mmlu_stem")
    assert trajectory.answer == "C"


def test_trailing_python_block() -> None:
    assert trailing_python_block("a\n```python\nprint(1)\n```\n") == "print(1)\n"
    assert trailing_python_block("```python\nx=1\n```\ntext after") is None
    assert trailing_python_block("```python\nx=1\n```\n```text\nhi\n```") is None
    assert trailing_python_block("no code") is None
    assert trailing_python_block("```python\n```") == ""


def _memorise(model: Any, tokenizer: Any, prompt: str, response: str, steps: int = 300) -> None:
    """Overfit ``model`` on one response to one prompt so greedy decoding reproduces it."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + tokenizer(response, add_special_tokens=False)["input_ids"]])
    labels = ids.clone()
    labels[0, : len(prompt_ids)] = -100  # learn the response only
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.02:
            break
    model.eval()


def test_tir_with_a_tiny_model_that_writes_code(embedded_tokenizer: Any, sandbox: Any) -> None:
    # A tiny model trained on one TIR transcript writes the code, stops at ```output, reads the
    # executor's real output appended by the loop, and finishes with the boxed answer.
    prompt = render_prompt("What is 6 times 7?", embedded_tokenizer, "tir")
    response = "```python\nprint(6 * 7)\n```\n```output\n42\n```\nThe answer is $\\boxed{42}$."
    model = tiny_causal_lm(embedded_tokenizer, seed=1)
    _memorise(model, embedded_tokenizer, prompt, response + embedded_tokenizer.eos_token)
    engine = HFEngine(model, embedded_tokenizer)
    [[trajectory]] = solve_prompts([prompt], engine, mode="tir", sandbox=sandbox)
    assert trajectory.response == response
    assert trajectory.executions[0]["stdout"] == "42\n"
    assert trajectory.answer == "42"
    assert trajectory.finish_reason == "eos"
    assert [s.kind for s in trajectory.segments] == ["model", "tool", "model"]
