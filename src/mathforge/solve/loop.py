"""CoT and TIR solving: prompts in, trajectories out, through any engine.

TIR follows the Qwen2.5-Math recipe: the model generates until it writes "```output" (or ends);
when that round's text ends with a complete ```python block and holds no ``\\boxed{}``, the code
runs in the trajectory's own sandbox session, "```output\\n{observation}\\n```\\n" is appended and
the model continues, for at most ``max_calls`` executions. Each round sends every live
trajectory to the engine in one ``generate`` call and runs all their cells in parallel.
``max_new_tokens`` bounds the model-written tokens of a whole trajectory, not of each round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mathforge.engines.base import Completion, Engine, SamplingParams
from mathforge.errors import MathforgeError
from mathforge.solve.code import OUTPUT_FENCE, output_block, trailing_python_block
from mathforge.solve.trajectory import Trajectory

MODES = ("cot", "tir")
# Offset between the seeds of successive TIR rounds, so each round draws fresh random streams.
_ROUND_SEED_STRIDE = 7919


def solve(
    problems: Sequence[str],
    engine: Engine,
    mode: str = "cot",
    n: int = 1,
    params: SamplingParams | None = None,
    sandbox: Any = None,
    max_calls: int = 4,
    template: str | Path | None = None,
    dataset: str | None = None,
) -> list[list[Trajectory]]:
    """``n`` trajectories per problem: each question rendered with ``template`` (default: the
    mode's own prompt) through the engine's chat template, then solved by :func:`solve_prompts`."""
    from mathforge.prompts import render_prompt

    _check_mode(mode)
    prompts = [render_prompt(q, engine.tokenizer, template=template or mode) for q in problems]
    return solve_prompts(prompts, engine, mode, n, params, sandbox, max_calls, dataset)


def solve_prompts(
    prompts: Sequence[str],
    engine: Engine,
    mode: str = "cot",
    n: int = 1,
    params: SamplingParams | None = None,
    sandbox: Any = None,
    max_calls: int = 4,
    dataset: str | None = None,
) -> list[list[Trajectory]]:
    """``n`` trajectories for each already-rendered prompt, in prompt order.

    TIR needs a sandbox; when ``sandbox`` is None one is started for this call and closed after.
    ``dataset`` selects the answer-extraction rules (e.g. choice letters for multiple choice).
    """
    _check_mode(mode)
    if max_calls < 0:
        raise MathforgeError(f"max_calls must be >= 0, got {max_calls}")
    params = (params or SamplingParams()).replace(n=n)
    if mode == "cot":
        groups = engine.generate(list(prompts), params)
        trajectories = [
            [_single_round(engine, prompt, completion) for completion in group]
            for prompt, group in zip(prompts, groups, strict=True)
        ]
    elif sandbox is None:
        from mathforge.sandbox import Sandbox

        with Sandbox() as own:
            trajectories = _TirRun(engine, own, params, max_calls).run(prompts)
    else:
        trajectories = _TirRun(engine, sandbox, params, max_calls).run(prompts)
    from mathforge.answers import extract_answer

    for group in trajectories:
        for trajectory in group:
            trajectory.answer = extract_answer(trajectory.response, dataset)
    return trajectories


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise MathforgeError(f"unknown solve mode '{mode}': use one of {', '.join(MODES)}")


def _prompt_tokens(engine: Engine, prompt: str) -> int:
    tokenizer = engine.tokenizer
    if tokenizer is None:
        return 0
    encode = getattr(engine, "encode", None)
    ids = encode(prompt) if encode is not None else tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return len(ids)


def _single_round(engine: Engine, prompt: str, completion: Completion) -> Trajectory:
    trajectory = Trajectory(prompt=prompt, prompt_tokens=_prompt_tokens(engine, prompt))
    _add_model_text(engine, trajectory, completion)
    trajectory.finish_reason = completion.finish_reason
    return trajectory


def _add_model_text(engine: Engine, trajectory: Trajectory, completion: Completion) -> None:
    ids = completion.token_ids if engine.tokenizer is not None else None
    trajectory.add("model", completion.text, ids)
    trajectory.completion_tokens += len(completion.token_ids)


@dataclass
class _Live:
    """A TIR trajectory still being generated, with its sandbox session (opened on first use)."""

    trajectory: Trajectory
    session: Any = None


class _TirRun:
    """The multi-round TIR loop over a batch of prompts."""

    def __init__(self, engine: Engine, sandbox: Any, params: SamplingParams, max_calls: int) -> None:
        self.engine = engine
        self.sandbox = sandbox
        self.params = params
        self.max_calls = max_calls
        self.stops = tuple(dict.fromkeys((*params.stop, OUTPUT_FENCE)))

    def run(self, prompts: Sequence[str]) -> list[list[Trajectory]]:
        n = self.params.n
        groups = [
            [_Live(Trajectory(prompt=p, prompt_tokens=_prompt_tokens(self.engine, p))) for _ in range(n)]
            for p in prompts
        ]
        everyone = [live for group in groups for live in group]
        try:
            # Round 0 samples all n continuations of a prompt in one request (shared prompt cache).
            first = self.engine.generate(list(prompts), self.params.replace(stop=self.stops))
            completions = [c for group in first for c in group]
            live, round_index = everyone, 0
            while live:
                to_run = self._absorb(live, completions)
                self._execute(to_run)
                live = [item for item, _ in to_run]
                if not live:
                    break
                round_index += 1
                completions = self._next_round(live, round_index)
        finally:
            for item in everyone:
                if item.session is not None:
                    item.session.close()
        return [[item.trajectory for item in group] for group in groups]

    def _absorb(self, live: list[_Live], completions: list[Completion]) -> list[tuple[_Live, str]]:
        """Add each round's text; return the trajectories whose code should run now."""
        to_run = []
        for item, completion in zip(live, completions, strict=True):
            trajectory = item.trajectory
            completion = self._within_budget(trajectory, completion)
            _add_model_text(self.engine, trajectory, completion)
            trajectory.finish_reason = completion.finish_reason
            wants_tool = completion.finish_reason == "eos" or (
                completion.finish_reason == "stop" and completion.stop == OUTPUT_FENCE
            )
            code = trailing_python_block(completion.text) if wants_tool else None
            if code is None or "\\boxed" in completion.text:
                continue
            if len(trajectory.executions) >= self.max_calls:
                trajectory.finish_reason = "max_calls"
                continue
            if trajectory.completion_tokens >= self.params.max_new_tokens:
                trajectory.finish_reason = "length"  # no budget left to read the output
                continue
            to_run.append((item, code))
        return to_run

    def _within_budget(self, trajectory: Trajectory, completion: Completion) -> Completion:
        """Cut a round's completion to the trajectory's remaining token budget (rounds share one
        ``max_new_tokens`` for the whole trajectory, but a batched call uses the largest)."""
        left = self.params.max_new_tokens - trajectory.completion_tokens
        if len(completion.token_ids) <= left:
            return completion
        ids = completion.token_ids[:left]
        tokenizer = self.engine.tokenizer
        text = tokenizer.decode(ids, skip_special_tokens=True) if tokenizer is not None else completion.text
        return Completion(text, ids, "length")

    def _execute(self, to_run: list[tuple[_Live, str]]) -> None:
        if not to_run:
            return
        for item, _ in to_run:
            if item.session is None:
                item.session = self.sandbox.session()
        cells = [(item.session, code) for item, code in to_run]
        if hasattr(self.sandbox, "run_sessions"):
            results = self.sandbox.run_sessions(cells)
        else:
            results = [session.run(code) for session, code in cells]
        tokenizer = self.engine.tokenizer
        for (item, code), result in zip(to_run, results, strict=True):
            trajectory = item.trajectory
            observation = result.observation()
            block = output_block(observation, trajectory.response)
            ids = tokenizer(block, add_special_tokens=False)["input_ids"] if tokenizer is not None else None
            trajectory.add("tool", block, ids)
            trajectory.executions.append({"code": code, "output": observation, **result.to_dict()})

    def _next_round(self, live: list[_Live], round_index: int) -> list[Completion]:
        budget = max(self.params.max_new_tokens - item.trajectory.completion_tokens for item in live)
        seed = None if self.params.seed is None else self.params.seed + round_index * _ROUND_SEED_STRIDE
        params = self.params.replace(n=1, stop=self.stops, seed=seed, max_new_tokens=max(budget, 1))
        prompts = [item.trajectory.prompt + item.trajectory.response for item in live]
        return [group[0] for group in self.engine.generate(prompts, params)]
