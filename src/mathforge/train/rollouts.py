"""GRPO rollouts: TRL's ``rollout_func`` contract filled by our engines and the solve loop.

TRL's built-in generation calls ``model.generate`` (every row kept alive until the longest ends)
or vLLM, and its tool loop speaks the chat template's tool-call format, not the Qwen2.5-Math
TIR transcript (```python blocks answered by ```output blocks). So rollouts go through the same
code as evaluation: :func:`mathforge.solve.solve_prompts` over an :class:`Engine`, and each
trajectory becomes TRL's ``prompt_ids`` / ``completion_ids`` with ``env_mask`` 0 on the
executor's tokens, which TRL then leaves out of the policy loss and the KL term. The loop is
token-exact (the engines take and return token ids): the ids TRL scores are the ids the model
conditioned on and sampled, round after round, never a re-encoding of the text.

The ``hf`` engine is built on the trainer's live model at every call (it keeps no copy of the
weights when given a model), so every step samples from the policy as it is after the last
optimiser step; with ``--engine vllm`` TRL syncs its colocated vLLM weights before each call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mathforge.engines.base import Engine, SamplingParams, engine_capabilities
from mathforge.errors import MathforgeError
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


def trajectory_ids(trajectory: Trajectory) -> tuple[list[int], list[int], list[int]]:
    """``(prompt_ids, completion_ids, env_mask)`` of one token-exact trajectory, as TRL scores it.

    The ids are exactly those the model conditioned on and sampled (the end-of-sequence token it
    wrote included, so it learns to stop); ``env_mask`` is 1 on model tokens, 0 on executor output.
    """
    env_mask = [0 if tool else 1 for tool in trajectory.tool_mask()]
    return list(trajectory.prompt_ids), list(trajectory.token_ids), env_mask


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
        if not engine_capabilities(engine).token_ids_in:
            raise MathforgeError("GRPO rollouts need an engine that takes and returns token ids (hf or vllm)")
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
                self.params.replace(seed=step_seed + size, logprobs=True),
                self.sandbox,
                self.max_calls,
                self.dataset,
            )
            by_run.update(zip(indices, groups, strict=True))
        trajectories = [t for i in range(len(runs)) for t in by_run[i]]
        return self._output(trajectories, time.perf_counter() - started)

    def _output(self, trajectories: list[Trajectory], seconds: float) -> dict[str, Any]:
        prompt_ids, completion_ids, env_mask = [], [], []
        for trajectory in trajectories:
            p, c, m = trajectory_ids(trajectory)
            prompt_ids.append(p)
            completion_ids.append(c)
            env_mask.append(m)
        model_tokens = sum(t.completion_tokens for t in trajectories)
        return {
            "prompt_ids": prompt_ids,
            "completion_ids": completion_ids,
            # The sampling policy's log-probabilities (None on executor tokens, which TRL reads as NaN
            # and leaves out); TRL uses them to correct for vLLM's numerics against the trainer's.
            "logprobs": [t.logprobs for t in trajectories],
            "env_mask": env_mask,
            "response": [t.response for t in trajectories],
            "answer": [t.answer for t in trajectories],
            "truncated": [t.finish_reason in ("length", "max_calls") for t in trajectories],
            "tool_calls": [len(t.executions) for t in trajectories],
            "tool_ok": [sum(e.get("status") == "ok" for e in t.executions) for t in trajectories],
            "masked_tokens": [m.count(0) for m in env_mask],
            "rollout_tokens_per_s": [model_tokens / seconds if seconds > 0 else 0.0] * len(trajectories),
        }
