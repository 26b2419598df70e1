"""The GRPO reward: the grader's verdict, shaped by the math reward model when one is given.

Qwen2.5-Math's RL reward is ``sigmoid(0.5 * r_m) + (r_v - 1)`` (:func:`mathforge.reward.shaped_reward`):
the answer check decides the sign, the RM orders responses within each class. Without an RM the
reward is the verdict alone (1 or 0). The function follows TRL's reward-function contract and
also logs what a rollout did (accuracy, RM mean, tool calls and outcomes, masked tokens,
truncation, rollout tokens/s) through TRL's ``log_metric``, so they land in the step log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from mathforge.answers import extract_answer, grade_answer
from mathforge.reward.shaping import shaped_reward

MetricLogger = Callable[[str, float], None]


class Scorer(Protocol):
    """A reward model: one score per (prompt, response)."""

    def score(self, prompts: list[str], responses: list[str]) -> list[float]: ...


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


class MathReward:
    """TRL reward function: ``reward(prompts, completions, completion_ids, **columns) -> list[float]``.

    Reads the dataset columns ``gold`` and ``benchmark`` (answer-extraction rules) and the rollout's
    ``response`` and ``answer`` fields (taken from TRL's decoded completions when TRL generated).
    """

    __name__ = "math"  # TRL names a reward's log entries after its callable's name

    def __init__(self, scorer: Scorer | None = None) -> None:
        self.scorer = scorer

    def __call__(
        self,
        prompts: list[str],
        completions: list[Any],
        completion_ids: list[list[int]],
        *,
        gold: list[str],
        benchmark: list[str],
        response: list[str] | None = None,
        answer: list[str | None] | None = None,
        log_metric: MetricLogger | None = None,
        **rollout: Any,
    ) -> list[float]:
        if response is None:  # TRL generated the completions itself (plain prompts: completions are text)
            response = [str(text) for text in completions]
        if answer is None:
            answer = [extract_answer(text, b) for text, b in zip(response, benchmark, strict=True)]
        verdicts = [
            bool(grade_answer(pred, g, dataset=b)) for pred, g, b in zip(answer, gold, benchmark, strict=True)
        ]
        if self.scorer is None:
            rewards = [float(v) for v in verdicts]
            rm_scores: list[float] = []
        else:
            rm_scores = self.scorer.score(list(prompts), list(response))
            rewards = [shaped_reward(s, v) for s, v in zip(rm_scores, verdicts, strict=True)]
        if log_metric is not None:
            log_metric("accuracy", _mean([float(v) for v in verdicts]))
            if rm_scores:
                log_metric("rm_mean", _mean(rm_scores))
            _log_rollout(log_metric, rollout)
        return rewards


def _log_rollout(log_metric: MetricLogger, rollout: dict[str, Any]) -> None:
    """Per-step rollout statistics from the fields :class:`~mathforge.train.rollouts.Rollout` adds."""
    calls = rollout.get("tool_calls") or []
    ok = rollout.get("tool_ok") or []
    if calls:
        log_metric("tool_calls", _mean(calls))
        log_metric("tool_ok_share", sum(ok) / sum(calls) if sum(calls) else 0.0)
    for name in ("truncated", "masked_tokens", "rollout_tokens_per_s"):
        values = rollout.get(name)
        if values:
            log_metric(name, _mean([float(v) for v in values]))
