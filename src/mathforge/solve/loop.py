"""CoT and TIR solving: prompts in, trajectories out, through any engine.

TIR follows the Qwen2.5-Math recipe: the model generates until it writes "```output" (or ends);
when that round's text ends with a complete ```python block and holds no ``\\boxed{}``, the code
runs in the trajectory's own sandbox session, "```output\\n{observation}\\n```\\n" is appended and
the model continues, for at most ``max_calls`` executions. Each round sends every live
trajectory to the engine in one ``generate`` call and runs all their cells in parallel.
``max_new_tokens`` bounds the model-written tokens of a whole trajectory, not of each round.

With an engine that takes token ids (``capabilities.token_ids_in``) the loop is token-exact:
round 0 conditions on the prompt's ids, each later round on exactly the ids already in the
trajectory (the model's tokens as sampled, through the "```output" fence it wrote, then the
tokenised executor reply), never on a re-encoding of the text; so the ids a trainer scores are
the ids the model saw. A text-only engine gets ``prompt + response`` as text each round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from mathforge.engines.base import Completion, Engine, SamplingParams, engine_capabilities
from mathforge.errors import MathforgeError
from mathforge.solve.code import OUTPUT_FENCE, output_after_fence, output_block, trailing_python_block
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
    ``params.logprobs`` keeps each model token's log-probability in ``Trajectory.logprobs``
    (token-exact engines only).
    """
    _check_mode(mode)
    if max_calls < 0:
        raise MathforgeError(f"max_calls must be >= 0, got {max_calls}")
    params = (params or SamplingParams()).replace(n=n)
    if mode == "cot":
        trajectories = _Rollout(engine, None, params, 0).run(prompts)
    elif sandbox is None:
        from mathforge.sandbox import Sandbox

        with Sandbox() as own:
            trajectories = _Rollout(engine, own, params, max_calls).run(prompts)
    else:
        trajectories = _Rollout(engine, sandbox, params, max_calls).run(prompts)
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


@dataclass
class _Live:
    """A trajectory still being generated, with its sandbox session (opened on first use)."""

    trajectory: Trajectory
    session: Any = None


class _Part(NamedTuple):
    """A round's model segment: its text, token ids, log-probabilities, and the model-written
    tokens it counts against ``max_new_tokens``."""

    text: str
    ids: list[int] | None
    logprobs: list[float] | None
    written: int


@dataclass
class _Cell:
    """Code a trajectory asked to run; ``fence_tail`` is what the model wrote after its own
    "```output" fence (token-exact rounds), None when the loop writes the whole output block."""

    live: _Live
    code: str
    fence_tail: str | None


class _Rollout:
    """The round loop over a batch of prompts: one round for CoT (no sandbox), up to
    ``max_calls + 1`` for TIR."""

    def __init__(self, engine: Engine, sandbox: Any, params: SamplingParams, max_calls: int) -> None:
        self.engine = engine
        self.sandbox = sandbox
        self.params = params
        self.max_calls = max_calls
        self.tools = sandbox is not None
        self.stops = tuple(dict.fromkeys((*params.stop, OUTPUT_FENCE))) if self.tools else params.stop
        self.exact = engine_capabilities(engine).token_ids_in
        self.keep_logprobs = self.exact and params.logprobs

    def run(self, prompts: Sequence[str]) -> list[list[Trajectory]]:
        groups = [[_Live(trajectory) for trajectory in self._start(p)] for p in prompts]
        everyone = [live for group in groups for live in group]
        try:
            # Round 0 samples all n continuations of a prompt in one request (shared prompt cache).
            inputs = [group[0].trajectory.prompt_ids for group in groups] if self.exact else list(prompts)
            first = self.engine.generate(inputs, self.params.replace(stop=self.stops))
            completions = [c for group in first for c in group]
            live, round_index = everyone, 0
            while live:
                cells = self._absorb(live, completions)
                self._execute(cells)
                live = [cell.live for cell in cells]
                if not live:
                    break
                round_index += 1
                completions = self._next_round(live, round_index)
        finally:
            for item in everyone:
                if item.session is not None:
                    item.session.close()
        return [[item.trajectory for item in group] for group in groups]

    def _start(self, prompt: str) -> list[Trajectory]:
        """The ``n`` empty trajectories of a prompt (a token-exact one starts from its prompt ids)."""
        if not self.exact:
            tokens = _prompt_tokens(self.engine, prompt)
            return [Trajectory(prompt=prompt, prompt_tokens=tokens) for _ in range(self.params.n)]
        ids = self.engine.encode(prompt)  # token_ids_in engines have encode()
        return [
            Trajectory(
                prompt=prompt,
                prompt_tokens=len(ids),
                prompt_ids=list(ids),
                logprobs=[] if self.keep_logprobs else None,
            )
            for _ in range(self.params.n)
        ]

    def _absorb(self, live: list[_Live], completions: list[Completion]) -> list[_Cell]:
        """Add each round's model tokens; return the cells to run now."""
        cells = []
        for item, completion in zip(live, completions, strict=True):
            trajectory = item.trajectory
            completion = self._within_budget(trajectory, completion)
            code = self._requested_code(completion)
            finish = completion.finish_reason
            if code is not None and len(trajectory.executions) >= self.max_calls:
                code, finish = None, "max_calls"
            # A model that ended its turn after a code block gets the output all the same; a
            # token-exact trajectory then continues without the end-of-sequence token.
            part = self._model_part(completion, continuing=code is not None)
            if code is not None and trajectory.completion_tokens + part.written >= self.params.max_new_tokens:
                code, finish = None, "length"  # no budget left to read the output
                part = self._model_part(completion, continuing=False)
            trajectory.add("model", part.text, part.ids, part.logprobs)
            trajectory.completion_tokens += part.written
            trajectory.finish_reason = finish
            if code is not None:
                tail = None
                if self.exact and completion.finish_reason == "stop":
                    fence = part.text.rfind(OUTPUT_FENCE)
                    tail = part.text[fence + len(OUTPUT_FENCE) :] if fence >= 0 else None
                cells.append(_Cell(item, code, tail))
        return cells

    def _requested_code(self, completion: Completion) -> str | None:
        """The code a round asks to run: a trailing ```python block, written before the model
        stopped at "```output" or ended, with no boxed answer yet."""
        if not self.tools:
            return None
        asks = completion.finish_reason == "eos" or (
            completion.finish_reason == "stop" and completion.stop == OUTPUT_FENCE
        )
        code = trailing_python_block(completion.text) if asks else None
        return None if code is None or "\\boxed" in completion.text else code

    def _model_part(self, completion: Completion, continuing: bool) -> _Part:
        """A round's model segment.

        Token-exact: the sampled ids (less a final end-of-sequence token when the trajectory
        continues, since the next round does not condition on it) and their decoded text.
        Text-only: the completion's text and ``token_ids``.
        """
        if not self.exact:
            ids = completion.token_ids if self.engine.tokenizer is not None else None
            return _Part(completion.text, ids, None, len(completion.token_ids))
        if completion.sampled_ids is None:
            raise MathforgeError("the engine declares token_ids_in but returned no sampled_ids")
        ids = list(completion.sampled_ids)
        logprobs = None
        if self.keep_logprobs:
            if completion.logprobs is None:
                raise MathforgeError("logprobs were asked for but the engine returned none")
            logprobs = list(completion.logprobs)
        if continuing and completion.finish_reason == "eos":
            ids = ids[:-1]
            logprobs = logprobs[:-1] if logprobs is not None else None
        return _Part(self._decode(ids), ids, logprobs, len(ids))

    def _decode(self, ids: list[int]) -> str:
        return self.engine.tokenizer.decode(ids, skip_special_tokens=True)

    def _within_budget(self, trajectory: Trajectory, completion: Completion) -> Completion:
        """Cut a round's completion to the trajectory's remaining token budget (rounds share one
        ``max_new_tokens`` for the whole trajectory, but a batched call uses the largest)."""
        left = self.params.max_new_tokens - trajectory.completion_tokens
        if self.exact and completion.sampled_ids is not None:
            if len(completion.sampled_ids) <= left:
                return completion
            ids = completion.sampled_ids[:left]
            logprobs = completion.logprobs[:left] if completion.logprobs is not None else None
            return Completion(self._decode(ids), ids, "length", sampled_ids=ids, logprobs=logprobs)
        if len(completion.token_ids) <= left:
            return completion
        ids = completion.token_ids[:left]
        tokenizer = self.engine.tokenizer
        text = tokenizer.decode(ids, skip_special_tokens=True) if tokenizer is not None else completion.text
        return Completion(text, ids, "length")

    def _execute(self, cells: list[_Cell]) -> None:
        if not cells:
            return
        for cell in cells:
            if cell.live.session is None:
                cell.live.session = self.sandbox.session()
        runs = [(cell.live.session, cell.code) for cell in cells]
        if hasattr(self.sandbox, "run_sessions"):
            results = self.sandbox.run_sessions(runs)
        else:
            results = [session.run(code) for session, code in runs]
        tokenizer = self.engine.tokenizer
        for cell, result in zip(cells, results, strict=True):
            trajectory = cell.live.trajectory
            observation = result.observation()
            if cell.fence_tail is not None:
                block = output_after_fence(observation, cell.fence_tail)
            else:
                block = output_block(observation, trajectory.response)
            ids = tokenizer(block, add_special_tokens=False)["input_ids"] if tokenizer is not None else None
            if self.exact and ids is not None:
                block = self._decode(ids)  # the text is what the model will read: these tokens
            trajectory.add("tool", block, ids)
            trajectory.executions.append({"code": cell.code, "output": observation, **result.to_dict()})

    def _next_round(self, live: list[_Live], round_index: int) -> list[Completion]:
        budget = max(self.params.max_new_tokens - item.trajectory.completion_tokens for item in live)
        seed = None if self.params.seed is None else self.params.seed + round_index * _ROUND_SEED_STRIDE
        params = self.params.replace(n=1, stop=self.stops, seed=seed, max_new_tokens=max(budget, 1))
        if self.exact:
            prompts: list[Any] = [item.trajectory.prompt_ids + item.trajectory.token_ids for item in live]
        else:
            prompts = [item.trajectory.prompt + item.trajectory.response for item in live]
        return [group[0] for group in self.engine.generate(prompts, params)]
