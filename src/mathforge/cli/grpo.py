"""`mathforge grpo`: reinforcement learning of a policy with GRPO on the shaped math reward.

Every option is a field of :class:`mathforge.train.grpo.GRPORunConfig` (its description is the
option's help), so the command and ``run(GRPORunConfig(...))`` take the same settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mathforge.cli.app import app, console, err_console
from mathforge.train.grpo import GRPORunConfig

_FIELDS = GRPORunConfig.model_fields


def _help(name: str) -> str:
    """The field's description, with its default when it has one."""
    field = _FIELDS[name]
    default = field.get_default(call_default_factory=True)
    shown = f" (default: {default})" if default not in (None, []) and not field.is_required() else ""
    return (field.description or "") + shown


@app.command("grpo")
def grpo_command(
    problems: Annotated[str, typer.Option(help=_help("problems"))],
    out: Annotated[Path, typer.Option("--out", "-o", help=_help("out"))],
    model: Annotated[str | None, typer.Option(help=_help("model"))] = None,
    mode: Annotated[str | None, typer.Option(help=_help("mode"))] = None,
    rm: Annotated[Path | None, typer.Option(help=_help("rm"))] = None,
    group: Annotated[int | None, typer.Option(help=_help("group"))] = None,
    problems_per_step: Annotated[int | None, typer.Option(help=_help("problems_per_step"))] = None,
    steps: Annotated[int | None, typer.Option(help=_help("steps"))] = None,
    lr: Annotated[float | None, typer.Option(help=_help("lr"))] = None,
    beta: Annotated[float | None, typer.Option(help=_help("beta"))] = None,
    epsilon: Annotated[float | None, typer.Option(help=_help("epsilon"))] = None,
    loss: Annotated[str | None, typer.Option(help=_help("loss"))] = None,
    temperature: Annotated[float | None, typer.Option(help=_help("temperature"))] = None,
    top_p: Annotated[float | None, typer.Option(help=_help("top_p"))] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help=_help("max_new_tokens"))] = None,
    max_calls: Annotated[int | None, typer.Option(help=_help("max_calls"))] = None,
    engine: Annotated[str | None, typer.Option(help=_help("engine"))] = None,
    split: Annotated[str | None, typer.Option(help=_help("split"))] = None,
    limit: Annotated[int | None, typer.Option(help=_help("limit"))] = None,
    data_dir: Annotated[Path | None, typer.Option(help=_help("data_dir"))] = None,
    field_map: Annotated[str | None, typer.Option(help=_help("field_map"))] = None,
    gen_n: Annotated[int | None, typer.Option(help=_help("gen_n"))] = None,
    gen_level: Annotated[int | None, typer.Option(help=_help("gen_level"))] = None,
    gen_seed: Annotated[int | None, typer.Option(help=_help("gen_seed"))] = None,
    gen_families: Annotated[str | None, typer.Option(help=_help("gen_families"))] = None,
    bf16: Annotated[bool | None, typer.Option("--bf16/--no-bf16", help=_help("bf16"))] = None,
    gradient_checkpointing: Annotated[
        bool | None,
        typer.Option(
            "--gradient-checkpointing/--no-gradient-checkpointing", help=_help("gradient_checkpointing")
        ),
    ] = None,
    save_steps: Annotated[int | None, typer.Option(help=_help("save_steps"))] = None,
    seed: Annotated[int | None, typer.Option(help=_help("seed"))] = None,
    overwrite: Annotated[bool, typer.Option(help="Restart a run in --out that has other settings.")] = False,
) -> None:
    """Train a policy with GRPO: sampled groups, the grader's (or RM-shaped) reward, KL to the start."""
    from mathforge.models import DEFAULT_MODEL
    from mathforge.train.grpo import run

    given = {
        "model": model or DEFAULT_MODEL,
        "problems": problems,
        "out": str(out),
        "mode": mode,
        "rm": str(rm) if rm else None,
        "group": group,
        "problems_per_step": problems_per_step,
        "steps": steps,
        "lr": lr,
        "beta": beta,
        "epsilon": epsilon,
        "loss": loss,
        "temperature": temperature,
        "top_p": top_p,
        "max_new_tokens": max_new_tokens,
        "max_calls": max_calls,
        "engine": engine,
        "split": split,
        "limit": limit,
        "data_dir": str(data_dir) if data_dir else None,
        "field_map": field_map,
        "gen_n": gen_n,
        "gen_level": gen_level,
        "gen_seed": gen_seed,
        "gen_families": [name.strip() for name in gen_families.split(",") if name.strip()]
        if gen_families
        else None,
        "bf16": bf16,
        "gradient_checkpointing": gradient_checkpointing,
        "save_steps": save_steps,
        "seed": seed,
    }
    # Options left out take the config's defaults (shown in --help).
    config = GRPORunConfig(**{key: value for key, value in given.items() if value is not None})
    try:
        result = run(config, overwrite=overwrite)
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: checkpoints are in {out / 'checkpoints'}; rerun the same command to resume"
        )
        raise typer.Exit(130) from None
    if result.world_size > 1 and not _is_main_process():
        return
    table = Table(title=f"GRPO -> {out}")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("optimiser steps", str(result.steps))
    table.add_row("problems / processes", f"{result.problems} / {result.world_size}")
    for name, first, last in (
        ("reward (first step -> last)", result.reward_first, result.reward_last),
        ("accuracy (first step -> last)", result.accuracy_first, result.accuracy_last),
    ):
        if first is not None and last is not None:
            table.add_row(name, f"{first:.3f} -> {last:.3f}")
    table.add_row("seconds", f"{result.seconds:.0f}")
    console.print(table)
    console.print(f"model: {out}  step log: {out / 'steps.jsonl'}")


def _is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process
