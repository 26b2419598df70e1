"""The math reward model: listwise training, scoring, and the shaped RL reward.

The torch-free parts (``shaped_reward``, the data records, the ranking metrics) import fast;
``RewardModel``, ``listwise_loss`` and the training entry points load torch on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mathforge.reward.ranking import ranking_metrics
from mathforge.reward.records import RankedGroup, read_groups
from mathforge.reward.shaping import shaped_reward

if TYPE_CHECKING:
    from pathlib import Path

    from mathforge.reward.loss import listwise_loss
    from mathforge.reward.model import RewardModel
    from mathforge.reward.training import RewardTrainingConfig, RewardTrainingResult, train_reward_model

_LAZY = {
    "RewardModel": "mathforge.reward.model",
    "listwise_loss": "mathforge.reward.loss",
    "RewardTrainingConfig": "mathforge.reward.training",
    "RewardTrainingResult": "mathforge.reward.training",
    "train_reward_model": "mathforge.reward.training",
}

__all__ = [
    "RankedGroup",
    "RewardModel",
    "RewardTrainingConfig",
    "RewardTrainingResult",
    "listwise_loss",
    "load_scorer",
    "ranking_metrics",
    "read_groups",
    "shaped_reward",
    "train_reward_model",
]


def load_scorer(path: str | Path, device: str | None = None) -> RewardModel:
    """An RM directory ready to score: ``load_scorer(path).score(prompts, responses) -> list[float]``."""
    from mathforge.reward.model import RewardModel

    return RewardModel.from_pretrained(path, device=device)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
