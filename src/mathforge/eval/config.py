"""The settings of one evaluation run: a sampling run plus how samples are reranked."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from mathforge.sampling.config import SamplingRunConfig


class EvalConfig(SamplingRunConfig):
    """Everything ``mathforge eval`` needs; written to the run directory as ``config.yaml``."""

    # Reward scores read from a file may change between reruns: a run can be rescored in place.
    FREE_KEYS: ClassVar[tuple[str, ...]] = (*SamplingRunConfig.FREE_KEYS, "rm_scores")

    rm: str | None = Field(None, description="Reward-model directory: score every sample (RM@k).")
    rm_scores: str | None = Field(
        None, description="Precomputed reward scores: JSONL lines with id and scores."
    )
