"""`mathforge eval`: evaluate a model on math benchmarks into a resumable run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mathforge.cli.app import app, console, err_console
from mathforge.cli.options import ConfigFactory, config_options
from mathforge.errors import MathforgeError
from mathforge.eval.config import EvalConfig


@app.command("eval")
@config_options(EvalConfig, benches="gsm8k")
def eval_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory (resumed when it exists).")],
    overwrite: Annotated[
        bool, typer.Option(help="Discard an existing run in --out with another config.")
    ] = False,
    *,
    config: ConfigFactory,
) -> None:
    """Evaluate a model: greedy or sampled CoT/TIR, pass@k, maj@k, RM@k, resumable."""
    from mathforge.eval.report import metrics_table
    from mathforge.eval.runner import evaluate

    settings: EvalConfig = config()
    if settings.rm is not None and settings.rm_scores is not None:
        raise MathforgeError("give --rm or --rm-scores, not both")
    try:
        metrics = evaluate(settings, out, overwrite=overwrite, console=err_console)
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: finished problems are saved in {out}; rerun the same command to resume"
        )
        raise typer.Exit(130) from None
    console.print(metrics_table(metrics, title=f"{settings.model} ({settings.mode}) -> {out}"))
    console.print(f"metrics: {out / 'metrics.json'}  report: {out / 'report.md'}")
