"""`mathforge sft`: supervised fine-tuning of a policy on SFT records."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mathforge.cli.app import app, console, err_console


def _help(name: str) -> str:
    """The option's help: the description of the ``SFTConfig`` field it sets (one source of truth)."""
    from mathforge.train.sft import SFTConfig

    return SFTConfig.model_fields[name].description or ""


def _default(name: str) -> Any:
    """The option's default: the ``SFTConfig`` field's (so the CLI and Python runs agree)."""
    from mathforge.train.sft import SFTConfig

    return SFTConfig.model_fields[name].default


def _files(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


@app.command("sft")
def sft_command(
    data: Annotated[str, typer.Option(help="SFT record files (JSONL), comma-separated.")],
    out: Annotated[Path, typer.Option("--out", "-o", help=_help("out"))],
    base: Annotated[str | None, typer.Option(help=_help("base") + " Default: the embedded model.")] = None,
    eval_data: Annotated[str | None, typer.Option(help=_help("eval_data"))] = _default("eval_data"),
    eval_examples: Annotated[int, typer.Option(help=_help("eval_examples"))] = _default("eval_examples"),
    epochs: Annotated[float, typer.Option(help=_help("epochs"))] = _default("epochs"),
    max_steps: Annotated[int, typer.Option(help=_help("max_steps"))] = _default("max_steps"),
    lr: Annotated[float, typer.Option(help=_help("lr"))] = _default("lr"),
    warmup: Annotated[float, typer.Option(help=_help("warmup"))] = _default("warmup"),
    weight_decay: Annotated[float, typer.Option(help=_help("weight_decay"))] = _default("weight_decay"),
    batch_size: Annotated[int, typer.Option(help=_help("batch_size"))] = _default("batch_size"),
    grad_accum: Annotated[int, typer.Option(help=_help("grad_accum"))] = _default("grad_accum"),
    max_length: Annotated[int, typer.Option(help=_help("max_length"))] = _default("max_length"),
    packing: Annotated[bool, typer.Option(help=_help("packing"))] = _default("packing"),
    bf16: Annotated[bool | None, typer.Option("--bf16/--no-bf16", help=_help("bf16"))] = _default("bf16"),
    gradient_checkpointing: Annotated[bool, typer.Option(help=_help("gradient_checkpointing"))] = _default(
        "gradient_checkpointing"
    ),
    logging_steps: Annotated[int, typer.Option(help=_help("logging_steps"))] = _default("logging_steps"),
    save_steps: Annotated[int, typer.Option(help=_help("save_steps"))] = _default("save_steps"),
    eval_steps: Annotated[int | None, typer.Option(help=_help("eval_steps"))] = _default("eval_steps"),
    save_total_limit: Annotated[int, typer.Option(help=_help("save_total_limit"))] = _default(
        "save_total_limit"
    ),
    seed: Annotated[int, typer.Option(help=_help("seed"))] = _default("seed"),
    deepspeed: Annotated[str | None, typer.Option(help=_help("deepspeed"))] = _default("deepspeed"),
    data_dir: Annotated[str | None, typer.Option(help=_help("data_dir"))] = _default("data_dir"),
    overwrite: Annotated[bool, typer.Option(help="Restart a run in --out that has other settings.")] = False,
) -> None:
    """Fine-tune a model on SFT records (loss on model-written tokens only); resumable, data-parallel."""
    from pydantic import ValidationError

    from mathforge.errors import MathforgeError
    from mathforge.models import DEFAULT_MODEL
    from mathforge.train.sft import SFTConfig, run

    values = {key: value for key, value in locals().items() if key in SFTConfig.model_fields}
    values.update(
        data=_files(data) or [], eval_data=_files(eval_data), out=str(out), base=base or DEFAULT_MODEL
    )
    try:
        config = SFTConfig(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise MathforgeError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from None
    try:
        result = run(config, overwrite=overwrite)
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
