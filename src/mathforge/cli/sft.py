"""`mathforge sft`: supervised fine-tuning of a policy on SFT records.

Every field of :class:`mathforge.train.sft.SFTConfig` is an option (bound by
:func:`mathforge.cli.options.config_options`), so the command and ``run(SFTConfig(...))`` take
the same settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mathforge.cli.app import app, console, err_console
from mathforge.cli.options import ConfigFactory, config_options
from mathforge.models import DEFAULT_MODEL
from mathforge.train.sft import SFTConfig, run


@app.command("sft")
@config_options(SFTConfig, base=DEFAULT_MODEL)
def sft_command(
    overwrite: Annotated[bool, typer.Option(help="Restart a run in --out that has other settings.")] = False,
    *,
    config: ConfigFactory,
) -> None:
    """Fine-tune a model on SFT records (loss on model-written tokens only); resumable, data-parallel."""
    settings: SFTConfig = config()
    out = Path(settings.out)
    try:
        result = run(settings, overwrite=overwrite)
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: checkpoints are in {out / 'checkpoints'}; rerun the same command to resume"
        )
        raise typer.Exit(130) from None
    if result.world_size > 1:
        import torch.distributed as dist

        if dist.is_initialized() and dist.get_rank() != 0:
            return
    table = Table(title=f"sft -> {out}")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("optimiser steps", str(result.steps))
    table.add_row("training / held-out examples", f"{result.examples} / {result.eval_examples}")
    table.add_row("cut at --max-length", str(result.truncated))
    table.add_row("processes x global batch", f"{result.world_size} x {result.global_batch}")
    rate = f"{result.tokens_per_second:,.0f}" if result.tokens_per_second else "-"
    table.add_row("tokens/s (this session)", rate)
    table.add_row("train loss (last log)", _loss(result.train_loss))
    table.add_row(
        "held-out loss: start -> end", f"{_loss(result.eval_loss_start)} -> {_loss(result.eval_loss)}"
    )
    console.print(table)
    console.print(f"model: {out}  metrics: {out / 'metrics.json'}")


def _loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
