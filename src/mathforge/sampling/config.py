"""The settings of every command that samples: which problems, which policy, how to sample.

One definition serves ``eval``, ``rm data`` and the training stages, and the CLI binds its
options to these fields once (``mathforge.cli.options``), so commands cannot drift apart. Each
field's ``description`` is its CLI help.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from mathforge.models.registry import DEFAULT_MODEL

GREEDY = (0.0, 1.0)  # temperature, top-p for n = 1
SAMPLED = (0.7, 0.8)  # temperature, top-p for n > 1 (maj@k, RM@k)


class ProblemSelection(BaseModel):
    """How problems are read from their source: split, limit, folder, JSONL field map and the
    generator's settings. Shared by every stage that reads problems (sampling, GRPO), so one
    flag means one thing everywhere."""

    model_config = ConfigDict(extra="forbid")

    limit: int | None = Field(None, ge=1, description="First L problems of each benchmark.")
    data_dir: str | None = Field(
        None,
        description="Benchmark folder (<name>/<split>.jsonl); default $MATHFORGE_DATA_DIR or ./data, "
        "then the Hugging Face hub.",
    )
    split: str = Field("test", description="Split file to read (test or train).")
    field_map: str | None = Field(
        None, description="For JSONL paths: question=FIELD,answer=FIELD[,id=FIELD,level=FIELD]."
    )
    gen_n: int = Field(100, ge=1, description="'generated': number of problems.")
    gen_level: int = Field(1, ge=1, le=3, description="'generated': difficulty 1-3.")
    gen_seed: int = Field(0, description="'generated': generation seed.")
    gen_families: list[str] = Field(
        default_factory=list, description="'generated': comma-separated families (default all)."
    )

    def resolved_data_dir(self) -> str:
        """The benchmark folder this source reads (recorded in run configs, whatever set it)."""
        from mathforge.data import default_data_dir

        return str(Path(self.data_dir).resolve() if self.data_dir else default_data_dir().resolve())


class ProblemSource(ProblemSelection):
    """Which problems: benchmarks from the registry, JSONL files, or seeded generated problems."""

    # Whether problem files may leave out the gold answer: only commands that label such
    # problems by majority vote say so; the rest need gold and refuse a row without it.
    GOLD_OPTIONAL: ClassVar[bool] = False

    benches: list[str] = Field(
        min_length=1,
        description="Comma-separated benchmarks: registry names, JSONL paths, or 'generated'.",
        json_schema_extra={"flag": "--bench"},
    )


class SamplingConfig(BaseModel):
    """The policy and how it samples; ``temperature``/``top_p`` None mean the protocol default."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        DEFAULT_MODEL, description="Model name or directory (default: the embedded small model)."
    )
    engine: Literal["hf", "vllm", "openai"] = Field("hf", description="hf, vllm or openai.")
    mode: Literal["cot", "tir"] = Field("cot", description="cot (chain of thought) or tir (tool-integrated).")
    n: int = Field(1, ge=1, description="Samples per problem (maj@n, pass@n, RM@n).")
    temperature: float | None = Field(None, ge=0.0, description="Default: 0 (greedy) for n=1, 0.7 for n>1.")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="Default: 1 for n=1, 0.8 for n>1.")
    max_new_tokens: int = Field(2048, ge=1, description="Token budget per response.")
    shots: int | None = Field(
        None, ge=0, description="Few-shot examples (default: 5 for multiple-choice items, else 0)."
    )
    seed: int = Field(0, description="Sampling seed.")
    max_calls: int = Field(4, ge=1, description="TIR: most code executions per response.")
    chunk_size: int = Field(
        128,
        ge=1,
        description="Problems sampled together, lost at most on a kill (the hf engine keeps 128 rows live).",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = Field(
        None, description="hf/vllm engine: float32, bfloat16, float16 or auto (engine default)."
    )
    engine_options: dict[str, Any] = Field(default_factory=dict, json_schema_extra={"cli": False})

    def resolved(self) -> Self:
        """A copy with the protocol defaults filled in: greedy for n = 1, T=0.7 / top-p 0.8 above."""
        temperature, top_p = GREEDY if self.n == 1 else SAMPLED
        return self.model_copy(
            update={
                "temperature": temperature if self.temperature is None else self.temperature,
                "top_p": top_p if self.top_p is None else self.top_p,
            }
        )

    def engine_arguments(self) -> dict[str, Any]:
        """Keyword arguments of :func:`mathforge.engines.load_engine` beyond kind and model."""
        return {**({"dtype": self.dtype} if self.dtype else {}), **self.engine_options}

    def runtime(self) -> dict[str, str | None]:
        """The device and dtype the engine will run in, resolved without loading it (part of a
        run's identity: samples of one run never mix precisions)."""
        if self.engine == "hf":
            from mathforge.runtime import placement

            return placement(self.engine_options.get("device"), self.dtype or "auto").describe()
        if self.engine == "vllm":
            return {"device": "cuda", "dtype": self.dtype or "auto"}
        return {"device": "remote", "dtype": None}  # the server decides; nothing to compare


class SamplingRunConfig(ProblemSource, SamplingConfig):
    """A sampling run into a run directory: problems x policy -> ``samples.jsonl``."""

    # Settings that may change between reruns of one run directory: more problems extend it.
    FREE_KEYS: ClassVar[tuple[str, ...]] = ("limit", "gen_n", "data_dir")

    def run_config(self) -> dict[str, Any]:
        """``config.yaml``: the settings with the data folder, device and dtype resolved (the requested
        ``dtype`` gives way to the one it resolves to), and the environment."""
        from mathforge.runtime import environment

        return {
            **self.model_dump(mode="json"),
            "data_dir": self.resolved_data_dir(),
            **self.runtime(),
            "environment": environment(),
        }
