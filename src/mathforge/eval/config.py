"""The settings of one evaluation run, with the Qwen2.5-Math protocol defaults."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

GREEDY = (0.0, 1.0)  # temperature, top-p for n = 1
SAMPLED = (0.7, 0.8)  # temperature, top-p for n > 1 (maj@k, RM@k)

# Settings that change what a problem's record would be: a run directory only resumes a run
# with the same values. The others (which benchmarks, how many problems, reward scores read
# from a file) may change between reruns, so a run can be extended or rescored in place.
IDENTITY_KEYS = (
    "model",
    "engine",
    "mode",
    "n",
    "temperature",
    "top_p",
    "max_new_tokens",
    "shots",
    "seed",
    "max_calls",
    "chunk_size",
    "split",
    "field_map",
    "gen_level",
    "gen_seed",
    "gen_families",
    "rm",
    "engine_options",
)


class EvalConfig(BaseModel):
    """Everything ``mathforge eval`` needs; written to the run directory as ``config.yaml``."""

    model_config = ConfigDict(extra="forbid")

    model: str
    benches: list[str]
    engine: Literal["hf", "vllm", "openai"] = "hf"
    mode: Literal["cot", "tir"] = "cot"
    n: int = Field(1, ge=1)
    temperature: float | None = Field(None, ge=0.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_new_tokens: int = Field(2048, ge=1)
    limit: int | None = Field(None, ge=1)
    shots: int | None = Field(None, ge=0)
    seed: int = 0
    max_calls: int = Field(4, ge=1)
    chunk_size: int = Field(16, ge=1)
    data_dir: str | None = None
    split: str = "test"
    field_map: str | None = None
    gen_n: int = Field(100, ge=1)
    gen_level: int = Field(1, ge=1, le=3)
    gen_seed: int = 0
    gen_families: list[str] = Field(default_factory=list)
    rm: str | None = None
    rm_scores: str | None = None
    engine_options: dict[str, Any] = Field(default_factory=dict)

    def resolved(self) -> EvalConfig:
        """A copy with the protocol defaults filled in: greedy for n = 1, T=0.7 / top-p 0.8 above."""
        temperature, top_p = GREEDY if self.n == 1 else SAMPLED
        return self.model_copy(
            update={
                "temperature": temperature if self.temperature is None else self.temperature,
                "top_p": top_p if self.top_p is None else self.top_p,
            }
        )
