"""The settings of a self-improvement loop: presets shipped as YAML, a user's YAML on top of one.

A loop config names the base model, the iteration-0 gold data, and per stage (reward-model
data and training, rejection sampling, SFT, GRPO, held-out evaluation) the problems and the
settings of the ``mathforge`` command that runs it. A user's file may start from a preset
(``preset: demo``) and override any key; ``--set sft.max_steps=40`` overrides one more.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mathforge.errors import MathforgeError

PRESETS = ("smoke", "demo", "laptop", "gpu")
Mode = Literal["cot", "tir"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problems(_Strict):
    """A problem set: benchmark names, JSONL files or ``generated`` (seeded families)."""

    benches: list[str] = Field(min_length=1)
    split: str = "train"
    limit: int | None = Field(None, ge=1)
    field_map: str | None = None
    gen_n: int = Field(100, ge=1)
    gen_level: int = Field(1, ge=1, le=3)
    gen_seed: int = 1
    gen_families: list[str] = Field(default_factory=list)

    def options(self) -> list[str]:
        """The problem-source options every sampling command takes."""
        argv = ["--bench", ",".join(self.benches), "--split", self.split]
        argv += ["--limit", str(self.limit)] if self.limit else []
        argv += ["--field-map", self.field_map] if self.field_map else []
        if "generated" in self.benches:
            argv += ["--gen-n", str(self.gen_n), "--gen-level", str(self.gen_level)]
            argv += ["--gen-seed", str(self.gen_seed)]
            argv += ["--gen-families", ",".join(self.gen_families)] if self.gen_families else []
        return argv


class BootstrapSource(_Strict):
    """Gold solutions turned into iteration-0 SFT records (``mathforge data bootstrap``)."""

    source: str = Field(description="gsm8k, generated, or a JSONL file of worked solutions")
    formats: list[Mode] = Field(default_factory=lambda: ["cot", "tir"], min_length=1)
    split: str = "train"
    limit: int | None = Field(None, ge=1)
    gen_level: int = Field(1, ge=1, le=3)
    gen_seed: int = 1
    gen_families: list[str] = Field(default_factory=list)
    optional: bool = Field(
        False, description="Skip (with a note) when the source's data file is absent instead of failing."
    )


class SFTStage(_Strict):
    """``mathforge sft`` for every policy the loop trains."""

    init: Literal["base", "previous"] = Field(
        "base",
        description="Start each iteration's SFT from the base model (as the report) or the last policy.",
    )
    mix_bootstrap: bool = Field(True, description="Iterations >= 1 also train on the iteration-0 gold data.")
    gold_replay: int | None = Field(
        None,
        ge=1,
        description="With mix_bootstrap: this many gold records (a seeded sample) per rejection-sampled "
        "record instead of all the gold data; with init: previous this keeps a short SFT from "
        "narrowing the policy to the problems it already solves.",
    )
    next_lr: float | None = Field(None, gt=0, description="Peak LR of the SFT of iterations >= 1 (null: lr).")
    epochs: float = 1.0
    max_steps: int = -1
    lr: float = 1e-5
    warmup: float = 0.03
    batch_size: int = 4
    grad_accum: int = 4
    max_length: int = 1024
    packing: bool = False
    eval_examples: int = 50
    save_steps: int = 100


class RMStage(_Strict):
    """Reward-model data from the current policy's samples, then ``mathforge rm train``."""

    problems: Problems
    mode: Mode = "cot"
    n: int = Field(6, ge=2)
    temperature: float = 0.7
    top_p: float = 0.8
    max_new_tokens: int = 512
    epochs: float = 2.0
    max_steps: int = -1
    lr: float = 1e-5
    grad_accum: int = 8
    max_length: int = 1024
    train_layers: int | None = None
    save_steps: int = 50


class RSStage(_Strict):
    """Rejection sampling with the iteration's RM (``mathforge rs``), one run per mode."""

    problems: Problems
    modes: list[Mode] = Field(default_factory=lambda: ["cot", "tir"], min_length=1)
    n: int = Field(8, ge=1)
    keep: int = Field(4, ge=1)
    min_vote: float = 0.5
    temperature: float = 0.7
    top_p: float = 0.8
    max_new_tokens: int = 512
    use_rm: bool = True


class GRPOStage(_Strict):
    """``mathforge grpo`` on the iteration's SFT policy, shaped by the iteration's RM."""

    enabled: bool = True
    problems: Problems
    mode: Mode = "cot"
    group: int = Field(8, ge=2)
    problems_per_step: int = 4
    steps: int = 50
    lr: float = 1e-6
    beta: float = 1e-3
    epsilon: float = 0.2
    loss: Literal["grpo", "dapo", "dr_grpo"] = "grpo"
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    use_rm: bool = True
    save_steps: int = 25


class EvalSet(_Strict):
    """A held-out problem set, evaluated greedy in each mode after every stage that makes a model."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    benches: list[str] = Field(min_length=1)
    split: str = "test"
    limit: int | None = Field(None, ge=1)
    gen_n: int = Field(100, ge=1)
    gen_level: int = Field(1, ge=1, le=3)
    gen_seed: int = 0
    gen_families: list[str] = Field(default_factory=list)
    modes: list[Mode] = Field(default_factory=lambda: ["cot", "tir"], min_length=1)
    max_new_tokens: int = 512
    at: Literal["every", "ends"] = Field(
        "every", description="Evaluate after every model stage, or only the base and the final model."
    )
    optional: bool = Field(False, description="Leave the set out (with a note) when its data is absent.")

    def problems(self) -> Problems:
        fields = self.model_dump(include=set(Problems.model_fields))
        return Problems(**fields)


class SampledEval(_Strict):
    """maj@k and RM@k of each iteration's policy on one held-out set, scored by that iteration's RM."""

    set: str
    mode: Mode = "cot"
    n: int = Field(4, ge=2)
    limit: int | None = Field(None, ge=1)


class EvalStage(_Strict):
    sets: list[EvalSet] = Field(min_length=1)
    sampled: SampledEval | None = None
    chunk_size: int = 128  # the hf engine keeps 128 rows live on a CPU: smaller chunks leave it idle


class Estimate(_Strict):
    """Throughputs ``loop plan`` uses to estimate each stage's time (tokens per second)."""

    generate_tokens_per_second: float = 150.0
    train_tokens_per_second: float = 120.0
    tokens_per_response: dict[str, float] = Field(default_factory=lambda: {"cot": 150.0, "tir": 180.0})
    base_tokens_per_response: dict[str, float] = Field(
        default_factory=dict,
        description="The base model's response length per mode where it differs (a model not yet "
        "trained on the format often runs on to the token budget); missing modes: tokens_per_response.",
    )
    tokens_per_record: float = 250.0
    rm_pairable_share: float = Field(
        0.3,
        gt=0,
        le=1,
        description="Share of the RM problems whose samples are both right and wrong: the RM trains "
        "on those only (the demo: 17 of 64).",
    )
    rs_kept_share: float = Field(
        0.35,
        gt=0,
        le=1,
        description="Responses rejection sampling keeps, as a share of problems x keep x modes "
        "(problems with no correct or only duplicate responses keep fewer; the demo: 82 of 192, "
        "a GSM8K TIR round: 156 of 592).",
    )
    seconds_per_command: float = 8.0


class LoopConfig(_Strict):
    """One loop: iteration 0 (gold-data SFT) and ``iterations`` rounds of RM -> RS -> SFT -> GRPO."""

    name: str = "custom"
    description: str = ""
    base: str = Field(description="Base model: a known name, a model directory or a hub id.")
    iterations: int = Field(1, ge=0)
    data_dir: str | None = None
    engine: Literal["hf", "vllm"] = "hf"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = None
    seed: int = 0
    train_launcher: list[str] = Field(
        default_factory=list,
        description="Prefix for training commands, e.g. [accelerate, launch, --config_file, F] (GPU runs).",
    )
    keep_checkpoints: bool = Field(
        False,
        description="Keep a finished training stage's resume checkpoints (weights and optimiser state, "
        "~3x its model each); by default only what marks the run finished is kept.",
    )
    bootstrap: list[BootstrapSource] = Field(min_length=1)
    sft: SFTStage = Field(default_factory=SFTStage)
    rm: RMStage
    rs: RSStage
    grpo: GRPOStage
    eval: EvalStage
    estimate: Estimate = Field(default_factory=Estimate)

    @model_validator(mode="after")
    def _sampled_set_exists(self) -> LoopConfig:
        names = [item.name for item in self.eval.sets]
        if len(set(names)) != len(names):
            raise ValueError(f"eval.sets: names must be unique, got {names}")
        if self.eval.sampled is not None and self.eval.sampled.set not in names:
            raise ValueError(f"eval.sampled.set: '{self.eval.sampled.set}' is not one of eval.sets {names}")
        return self


def preset_text(name: str) -> str:
    """The shipped YAML of preset ``name``."""
    if name not in PRESETS:
        raise MathforgeError(f"unknown preset '{name}'; known: {', '.join(PRESETS)}")
    return resources.files("mathforge.loop").joinpath("presets", f"{name}.yaml").read_text(encoding="utf-8")


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``: mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        raise MathforgeError(f"{where}{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MathforgeError(f"{where}: a loop config is a mapping of settings, got {type(data).__name__}")
    return data


def _assignment(text: str) -> dict[str, Any]:
    """``a.b=VALUE`` -> ``{"a": {"b": VALUE}}``, VALUE read as YAML (numbers, lists, true/false)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise MathforgeError(f"--set {text}: expected KEY=VALUE, e.g. sft.max_steps=40")
    nested: dict[str, Any] = {}
    cursor = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = yaml.safe_load(value) if value.strip() else None
    return nested


def load_config(spec: str, overrides: list[str] | None = None) -> LoopConfig:
    """A preset name or a YAML file (optionally ``preset: NAME`` plus overrides), then ``--set`` items."""
    if spec in PRESETS:
        data, where = _read_yaml(preset_text(spec), f"preset {spec}"), f"preset {spec}"
    else:
        path = Path(spec)
        if not path.is_file():
            raise MathforgeError(f"{spec}: neither a preset ({', '.join(PRESETS)}) nor a YAML file")
        where = str(path)
        data = _read_yaml(path.read_text(encoding="utf-8"), where)
        parent = data.pop("preset", None)
        if parent is not None:
            data = _merge(_read_yaml(preset_text(str(parent)), f"preset {parent}"), data)
    for item in overrides or []:
        data = _merge(data, _assignment(item))
    try:
        return LoopConfig(**data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"])
        raise MathforgeError(f"{where}: {field}: {error['msg']}") from None
