"""GRPO rollouts: TRL's ``rollout_func`` contract filled by our engines and the solve loop.

TRL's built-in generation calls ``model.generate`` (every row kept alive until the longest ends)
or vLLM, and its tool loop speaks the chat template's tool-call format, not the Qwen2.5-Math
TIR transcript (```python blocks answered by ```output blocks). So rollouts go through the same
code as evaluation: :func:`mathforge.solve.solve_prompts` over an :class:`Engine`, and each
trajectory becomes TRL's ``prompt_ids`` / ``completion_ids`` with ``env_mask`` 0 on the
executor's tokens, which TRL then leaves out of the policy loss and the KL term.

The ``hf`` engine is built on the trainer's live model at every call (it keeps no copy of the
weights when given a model), so every step samples from the policy as it is after the last
optimiser step; with ``--engine vllm`` TRL syncs its colocated vLLM weights before each call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mathforge.engines.base import Engine, SamplingParams
from mathforge.solve import solve_prompts
from mathforge.solve.trajectory import Trajectory

EngineFactory = Callable[[Any], Engine]


def hf_engine_on_policy(trainer: Any) -> Engine:
    """An ``hf`` engine on the trainer's current weights (unwrapped from DDP), sampling in eval mode."""
    from mathforge.engines.hf import HFEngine

    model = trainer.accelerator.unwrap_model(trainer.model)
    return HFEngine(model, trainer.processing_class)


def vllm_engine_on_policy(trainer: Any) -> Engine:
    """Our ``vllm`` engine on TRL's colocated vLLM instance (TRL loads the policy's weights into it)."""
    from mathforge.engines.vllm_engine import VLLMEngine

    return VLLMEngine(trainer.vllm_generation.llm)


def trajectory_ids(engine: Engine, trajectory: Trajectory) -> tuple[list[int], list[int], list[int]]:
    """``(prompt_ids, completion_ids, env_mask)`` of one trajectory, as TRL scores it.

    The end-of-sequence token the model sampled is part of what it wrote (it learns to stop), so
    it is appended to a trajectory that ended with it; ``env_mask`` is 1 on model tokens and 0 on
    executor output.
    """
    tokenizer = engine.tokenizer
    encode = getattr(engine, "encode", None)
    prompt_ids = (
        encode(trajectory.prompt)
        if encode is not None
        else tokenizer(trajectory.prompt, add_special_tokens=False)["input_ids"]
    )
    completion_ids = list(trajectory.token_ids)
    env_mask = [0 if tool else 1 for tool in trajectory.tool_mask()]
    if trajectory.finish_reason == "eos":
        completion_ids.append(tokenizer.eos_token_id)
        env_mask.append(1)
    return prompt_ids, completion_ids, env_mask


@dataclass
class Rollout:
    """A TRL ``rollout_func``: ``rollout(prompts, trainer) -> {prompt_ids, completion_ids, logprobs, ...}``.

    TRL hands each process its prompts already repeated ``num_generations`` times in a row; each
    run of equal prompts is sampled as one engine request with ``n`` = its length (the prompt is
    encoded once). Extra fields (``response``, ``tool_calls``, ``tool_ok``, ``truncated``,
    ``masked_tokens``) reach the reward function, which logs them.
    """

    mode: str
    params: SamplingParams
    engine_factory: EngineFactory
    sandbox: Any = None
    max_calls: int = 4
    dataset: str | None = None
    seed: int = 0

    def __call__(self, prompts: list[str], trainer: Any) -> dict[str, Any]:
        engine = self.engine_factory(trainer)
        runs: list[tuple[str, int]] = []
        for prompt in prompts:
            if runs and runs[-1][0] == prompt:
                runs[-1] = (prompt, runs[-1][1] + 1)
            else:
                runs.append((prompt, 1))
        # Seeded per step and process, so a resumed run samples what the uninterrupted one would.
        step_seed = (
            self.seed + 1_000_003 * trainer.state.global_step + 7919 * trainer.accelerator.process_index
        )
        started = time.perf_counter()
        by_run: dict[int, list[Trajectory]] = {}
        for size in sorted({count for _, count in runs}):
            indices = [i for i, (_, count) in enumerate(runs) if count == size]
            groups = solve_prompts(
                [runs[i][0] for i in indices],
                engine,
                self.mode,
                size,
                self.params.replace(seed=step_seed + size),
                self.sandbox,
                self.max_calls,
                self.dataset,
            )
            by_run.update(zip(indices, groups, strict=True))
        trajectories = [t for i in range(len(runs)) for t in by_run[i]]
        return self._output(engine, trajectories, time.perf_counter() - started)

    def _output(self, engine: Engine, trajectories: list[Trajectory], seconds: float) -> dict[str, Any]:
        prompt_ids, completion_ids, env_mask = [], [], []
        for trajectory in trajectories:
            p, c, m = trajectory_ids(engine, trajectory)
            prompt_ids.append(p)
            completion_ids.append(c)
            env_mask.append(m)
        model_tokens = sum(t.completion_tokens for t in trajectories)
        return {
            "prompt_ids": prompt_ids,
            "completion_ids": completion_ids,
            "logprobs": None,
            "env_mask": env_mask,
            "response": [t.response for t in trajectories],
            "answer": [t.answer for t in trajectories],
            "truncated": [t.finish_reason in ("length", "max_calls") for t in trajectories],
            "tool_calls": [len(t.executions) for t in trajectories],
            "tool_ok": [sum(e.get("status") == "ok" for e in t.executions) for t in trajectories],
            "masked_tokens": [m.count(0) for m in env_mask],
            "rollout_tokens_per_s": [model_tokens / seconds if seconds > 0 else 0.0] * len(trajectories),
        }
