"""The shaped RL reward of Qwen2.5-Math: the RM refines the ranking, the answer check dominates it."""

from __future__ import annotations

import math

# sigmoid(30) = 1 - 9.4e-14: clamping the logit keeps the sigmoid strictly inside (0, 1) in floating point,
# so a correct response (reward in (0, 1)) always strictly outranks a wrong one (reward in (-1, 0)), even
# for an infinite or huge RM score; the clamp changes no reward by more than 1e-13.
_MAX_LOGIT = 30.0


def shaped_reward(rm_score: float, correct: bool, alpha: float = 0.5) -> float:
    """``sigmoid(alpha * rm_score) + (correct - 1)``: every correct response outranks every wrong one.

    Within each class the order follows the RM score, which gives GRPO a dense signal among
    responses the answer check cannot tell apart.
    """
    logit = alpha * rm_score
    if math.isnan(logit):
        raise ValueError(f"reward-model score is NaN (rm_score={rm_score!r}, alpha={alpha!r})")
    logit = min(max(logit, -_MAX_LOGIT), _MAX_LOGIT)
    return 1.0 / (1.0 + math.exp(-logit)) + (float(bool(correct)) - 1.0)
