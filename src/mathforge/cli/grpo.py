"""`mathforge grpo`: reinforcement learning of a policy with GRPO on the shaped math reward.

Every field of :class:`mathforge.train.grpo.GRPORunConfig` is an option (bound by
:func:`mathforge.cli.options.config_options`), so the command and ``run(GRPORunConfig(...))``
take the same settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mathforge.cli.app import app, console, err_console
from mathforge.cli.options import ConfigFactory, config_options
from mathforge.models import DEFAULT_MODEL
from mathforge.train.grpo import GRPORunConfig, run


@app.command("grpo")
@config_options(GRPORunConfig, model=DEFAULT_MODEL)
def grpo_command(
    overwrite: Annotated[bool, typer.Option(help="Restart a run in --out that has other settings.")] = False,
    *,
    config: ConfigFactory,
) -> None:
    """Train a policy with GRPO: sampled groups, the grader's (or RM-shaped) reward, KL to the start."""
    settings: GRPORunConfig = config()
    out = Path(settings.out)
    try:
        result = run(settings, overwrite=overwrite)
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
