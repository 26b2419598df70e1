"""GRPO on the shaped math reward, with CoT or tool-integrated rollouts (``mathforge grpo``).

Built on TRL's ``GRPOTrainer``: group-normalised advantages, the clipped objective, the KL term
to a frozen reference, the loss forms (``grpo``, ``dapo``, ``dr_grpo``), optimiser, mixed
precision, checkpoints, resume and data parallelism are all TRL's and the Trainer's. What is
ours, and why:

- the rollouts (:mod:`mathforge.train.rollouts`) go through TRL's ``rollout_func`` hook:
  TRL's own generation is ``model.generate`` (or vLLM), several times slower on a CPU than our
  continuous-batching ``hf`` engine, and its tool loop uses the chat template's tool-call
  format, not the TIR transcript our solve loop and evaluation use. Executor output is marked in
  ``env_mask`` so TRL leaves it out of the policy loss and the KL.
- the reward (:mod:`mathforge.train.rewards`): the grader, shaped by the math RM when given.
- a per-step JSONL log with ETA, the run config, and refusal to resume a run with other settings.

The output directory is a complete model directory (weights, tokenizer with its chat template,
generation config) that ``mathforge eval --model DIR`` accepts, with ``config.yaml`` (the
settings, resolved device, dtype, world size and TRL loss settings), ``steps.jsonl`` (one line
per optimiser step) and ``metrics.json``; checkpoints go to ``checkpoints/`` and a rerun of the
same command resumes from the last one.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from mathforge.console import stderr_console
from mathforge.errors import MathforgeError
from mathforge.jsonl import read_jsonl
from mathforge.runtime import environment, training_placement
from mathforge.sampling.config import ProblemSelection
from mathforge.train.notices import quiet_library_notices

CONFIG_FILE = "config.yaml"
STEPS_FILE = "steps.jsonl"
METRICS_FILE = "metrics.json"

# Settings that change what is trained: a run directory only resumes a run with the same values.
IDENTITY_KEYS = (
    "model",
    "problems",
    "problems_sha256",
    "mode",
    "rm",
    "group",
    "problems_per_step",
    "lr",
    "beta",
    "epsilon",
    "loss",
    "temperature",
    "top_p",
    "max_new_tokens",
    "max_calls",
    "engine",
    "split",
    "limit",
    "gen_n",
    "gen_level",
    "gen_seed",
    "gen_families",
    "seed",
    "device",
    "dtype",
    "world_size",
)

__all__ = ["GRPOResult", "GRPORunConfig", "run"]


class GRPORunConfig(ProblemSelection):
    """Everything ``mathforge grpo`` needs; written to the output directory as ``config.yaml``.

    Named apart from TRL's ``GRPOConfig``, which :func:`run` builds from it. How ``problems`` is
    read (split, limit, folder, field map, generator settings) is the sampling commands' own
    :class:`ProblemSelection`, training split by default.
    """

    model: str = Field(
        description="Policy to train: a known name, a model directory (e.g. from sft) or a hub id."
    )
    problems: str = Field(description="Training problems: a benchmark name, 'generated' or a JSONL file.")
    out: str = Field(
        description="Output model directory (resumed when it holds the same run).",
        json_schema_extra={"short": "-o"},
    )
    mode: Literal["cot", "tir"] = Field("cot", description="cot (chain of thought) or tir (tool-integrated).")
    rm: str | None = Field(
        None, description="Reward-model directory: shaped reward (default: the grader alone)."
    )
    group: int = Field(8, ge=2, description="Responses sampled per problem (the GRPO group).")
    problems_per_step: int = Field(4, ge=1, description="Problems per optimiser step (over all processes).")
    steps: int = Field(100, ge=1, description="Optimiser steps.")
    lr: float = Field(1e-6, gt=0, description="Learning rate (constant).")
    beta: float = Field(1e-3, ge=0, description="KL coefficient to the reference model (0: no reference).")
    epsilon: float = Field(0.2, gt=0, description="Clipping range of the policy ratio.")
    loss: Literal["grpo", "dapo", "dr_grpo"] = Field(
        "grpo",
        description="Loss form: grpo (per-sequence mean), dapo (per-token), "
        "dr_grpo (no length or std normalising).",
    )
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the rollouts.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling of the rollouts.")
    max_new_tokens: int = Field(512, ge=1, description="Model-written tokens per response (all TIR rounds).")
    max_calls: int = Field(4, ge=0, description="TIR: most code executions per response.")
    engine: Literal["hf", "vllm", "trl"] = Field(
        "hf",
        description="Rollouts: hf (our engine on the live policy), vllm (TRL's colocated vLLM), "
        "trl (TRL's own model.generate; CoT only).",
    )
    split: str = Field("train", description="Benchmark split to train on.")
    bf16: bool | None = Field(None, description="Mixed precision (default: where bf16 is fast).")
    gradient_checkpointing: bool = Field(False, description="Trade compute for activation memory.")
    save_steps: int = Field(25, ge=1, description="Checkpoint every N optimiser steps.")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept.")
    seed: int = Field(0, description="Seed of the data order and the rollouts.")


@dataclass
class GRPOResult:
    """What a run produced, for the end table and ``metrics.json``."""

    out: str
    steps: int
    problems: int
    world_size: int
    reward_first: float | None
    reward_last: float | None
    accuracy_first: float | None
    accuracy_last: float | None
    seconds: float


def _trl_loss_settings(cfg: GRPORunConfig) -> dict[str, Any]:
    """TRL's settings for each loss form, as their papers run them (recorded in the config).

    Dr. GRPO drops the per-group std scaling with the length normalisation; DAPO raises the
    upper clip (clip-higher) and masks truncated responses out of the loss.
    """
    if cfg.loss == "dr_grpo":
        return {"loss_type": "dr_grpo", "scale_rewards": "none"}
    if cfg.loss == "dapo":
        return {"loss_type": "dapo", "epsilon_high": 0.28, "mask_truncated_completions": True}
    return {"loss_type": "grpo", "scale_rewards": "group"}


def _checkpoint_step(checkpoint: str | None) -> int:
    return int(Path(checkpoint).name.rsplit("-", 1)[1]) if checkpoint else 0


def _problems_fingerprint(rows: list[dict[str, Any]]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps([row["id"], row["prompt"], row["gold"]]).encode())
    return digest.hexdigest()


def training_rows(cfg: GRPORunConfig, tokenizer: Any) -> list[dict[str, Any]]:
    """The dataset TRL iterates: each problem's rendered prompt, gold answer and benchmark; problems
    overlapping an evaluation benchmark are dropped first (logged)."""

    from mathforge.data import GeneratedSpec, bench_label, load_problems, parse_field_map
    from mathforge.data.decontam import drop_contaminated
    from mathforge.prompts import render_prompt

    problems = load_problems(
        cfg.problems,
        data_dir=cfg.data_dir,
        split=cfg.split,
        limit=cfg.limit,
        field_map=parse_field_map(cfg.field_map),
        generated=GeneratedSpec(
            n=cfg.gen_n, seed=cfg.gen_seed, level=cfg.gen_level, families=tuple(cfg.gen_families)
        ),
    )
    if not problems:
        raise MathforgeError(f"{cfg.problems}: no problems to train on")
    problems, _ = drop_contaminated(problems, cfg.data_dir, stderr_console())
    if not problems:
        raise MathforgeError(f"{cfg.problems}: every problem overlaps an evaluation benchmark")
    label = bench_label(cfg.problems)
    return [
        {
            "id": problem.id,
            "prompt": render_prompt(problem.question, tokenizer, template=cfg.mode),
            "gold": problem.gold,
            "benchmark": problem.benchmark or label,
        }
        for problem in problems
    ]


def run(
    config: GRPORunConfig,
    *,
    overwrite: bool = False,
    callbacks: list[Any] | None = None,
    extra_rewards: list[Callable[..., list[float]]] | None = None,
    progress: bool = True,
) -> GRPOResult:
    """Train ``config.model`` with GRPO on ``config.problems``; resume from the last checkpoint in ``out``.

    ``extra_rewards`` are further TRL reward functions added to the math reward (e.g. a format
    bonus). A run directory holding a run with other settings is refused unless ``overwrite``.
    """
    import torch
    from accelerate import PartialState
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.trainer_callback import PrinterCallback
    from transformers.trainer_utils import get_last_checkpoint
    from trl import GRPOConfig

    from mathforge.engines.base import SamplingParams
    from mathforge.interrupt import train_or_restore
    from mathforge.models import resolve_model
    from mathforge.runs import (
        CHECKPOINT_DIR,
        ENVIRONMENT,
        check_identity,
        checkpoint_at_last_step,
        write_config_file,
    )
    from mathforge.train.grpo_log import SaveLastStep, StepLog, keep_steps_up_to
    from mathforge.train.rewards import MathReward
    from mathforge.train.rollouts import Rollout, hf_engine_on_policy, vllm_engine_on_policy
    from mathforge.train.trained_tokens import CompletionTokenGRPOTrainer

    if config.engine == "trl" and config.mode == "tir":
        raise MathforgeError(
            "--engine trl generates plain completions: use --engine hf or vllm for --mode tir"
        )
    if config.engine == "vllm" and importlib.util.find_spec("vllm") is None:
        raise MathforgeError("--engine vllm needs vLLM on a GPU machine: pip install 'mathforge[vllm]'")
    out = Path(config.out)
    where = training_placement(config.bf16)
    model_dir = resolve_model(config.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows = training_rows(config, tokenizer)

    # Told it runs on the CPU, accelerate sees the launcher's processes (gloo), as the Trainer will.
    state = PartialState(cpu=where.device.type == "cpu")
    world_size = state.num_processes
    if config.problems_per_step % world_size:
        raise MathforgeError(
            f"--problems-per-step {config.problems_per_step} must be a multiple of the {world_size} processes"
        )
    loss_settings = _trl_loss_settings(config)
    checkpoints = out / CHECKPOINT_DIR
    args = GRPOConfig(
        output_dir=str(checkpoints),
        # One problem's group per micro-batch; a step accumulates the problems of this process.
        per_device_train_batch_size=config.group,
        gradient_accumulation_steps=config.problems_per_step // world_size,
        num_generations=config.group,
        max_completion_length=config.max_new_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        max_steps=config.steps,
        learning_rate=config.lr,
        lr_scheduler_type="constant",
        beta=config.beta,
        epsilon=config.epsilon,
        **loss_settings,
        **where.trainer_arguments(),
        activation_checkpointing=config.gradient_checkpointing,
        logging_steps=1,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        report_to="none",
        disable_tqdm=True,
        seed=config.seed,
        data_seed=config.seed,
        use_vllm=config.engine == "vllm",
        vllm_mode="colocate",
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        ddp_find_unused_parameters=False,
    )
    settings = {
        **config.model_dump(),
        **where.describe(),
        "problems_sha256": _problems_fingerprint(rows),
        "problem_count": len(rows),
        "world_size": world_size,
        "trl": {
            "num_generations": config.group,
            "beta": config.beta,
            "epsilon": config.epsilon,
            **loss_settings,
        },
    }
    if not overwrite:
        free = [key for key in settings if key not in IDENTITY_KEYS]  # logging, cadence, output path
        check_identity(out / CONFIG_FILE, settings, free)
    finished = _finished(out, config.steps) if not overwrite else None
    if finished is not None:
        return finished  # the same run already ran to this step count
    state.wait_for_everyone()  # every rank has read the old config before rank 0 replaces it
    last = None if overwrite or not checkpoints.is_dir() else get_last_checkpoint(str(checkpoints))
    # Killed after its last checkpoint: the model is the checkpoint's and no step is redone.
    trained = checkpoint_at_last_step(last, config.steps)
    steps_log = out / STEPS_FILE
    if state.is_main_process:
        if overwrite and out.is_dir():
            shutil.rmtree(checkpoints, ignore_errors=True)
            steps_log.unlink(missing_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        write_config_file(out / CONFIG_FILE, {**settings, ENVIRONMENT: environment()})
        keep_steps_up_to(steps_log, _checkpoint_step(last))
    state.wait_for_everyone()

    torch.manual_seed(config.seed)
    model = AutoModelForCausalLM.from_pretrained(last if trained else model_dir, dtype=torch.float32)
    scorer = None
    if config.rm is not None:
        from mathforge.reward import load_scorer

        scorer = load_scorer(config.rm, device=str(where.device))
    sandbox = None
    rollout = None
    if config.engine != "trl":
        if config.mode == "tir":
            from mathforge.sandbox import Sandbox

            sandbox = Sandbox()
        rollout = Rollout(
            mode=config.mode,
            params=SamplingParams(
                temperature=config.temperature, top_p=config.top_p, max_new_tokens=config.max_new_tokens
            ),
            engine_factory=hf_engine_on_policy if config.engine == "hf" else vllm_engine_on_policy,
            sandbox=sandbox,
            max_calls=config.max_calls,
            dataset=bench_label_of(rows),
            seed=config.seed,
        )
    with quiet_library_notices(model):
        trainer = CompletionTokenGRPOTrainer(
            model=model,
            reward_funcs=[MathReward(scorer), *(extra_rewards or [])],
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            rollout_func=rollout,
            callbacks=[*(callbacks or []), StepLog(steps_log, progress), SaveLastStep()],
        )
    trainer.remove_callback(PrinterCallback)  # the step log and progress line replace its dict prints
    started = time.perf_counter()
    try:
        train_or_restore(trainer, last, finished=trained, quiet=quiet_library_notices(model))
    finally:
        if sandbox is not None:
            sandbox.close()
    trainer.save_model(str(out))
    seconds = time.perf_counter() - started
    steps = _read_steps(steps_log) if state.is_main_process else []
    result = GRPOResult(
        out=str(out),
        steps=trainer.state.global_step,
        problems=len(rows),
        world_size=world_size,
        reward_first=steps[0]["reward_mean"] if steps else None,
        reward_last=steps[-1]["reward_mean"] if steps else None,
        accuracy_first=steps[0]["accuracy"] if steps else None,
        accuracy_last=steps[-1]["accuracy"] if steps else None,
        seconds=seconds,
    )
    if trainer.args.should_save:
        (out / METRICS_FILE).write_text(json.dumps(asdict(result), indent=2) + "\n", encoding="utf-8")
    return result


def _finished(out: Path, steps: int) -> GRPOResult | None:
    """The result of a run in ``out`` that already reached ``steps`` (same settings, checked before)."""
    path = out / METRICS_FILE
    if not path.is_file():
        return None
    result = GRPOResult(**json.loads(path.read_text(encoding="utf-8")))
    return result if result.steps == steps else None


def bench_label_of(rows: list[dict[str, Any]]) -> str | None:
    """The answer-extraction rules of the rollouts: the problems' benchmark when they share one."""
    labels = {row["benchmark"] for row in rows}
    return labels.pop() if len(labels) == 1 else None


def _read_steps(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [step for _, step in read_jsonl(path)]
