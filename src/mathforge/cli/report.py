"""`mathforge report`: compare evaluation runs side by side, optionally as an HTML page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mathforge.cli.app import app, console


@app.command("report")
def report_command(
    runs: Annotated[list[Path], typer.Argument(help="Run directories written by `mathforge eval`.")],
    html: Annotated[Path | None, typer.Option(help="Also write an HTML page with plots here.")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the comparison as JSON here.")
    ] = None,
) -> None:
    """Benchmark x metric table, one column per run, with each run's difference from the first (95% CI)."""
    from mathforge.eval.report import compare_runs, comparison_table, load_run, render_html

    loaded = [load_run(path) for path in runs]
    comparison = compare_runs(loaded)
    console.print(comparison_table(comparison))
    if json_out is not None:
        json_out.write_text(json.dumps(comparison, indent=2), encoding="utf-8")
        console.print(f"comparison: {json_out}")
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(render_html(loaded, comparison), encoding="utf-8")
        console.print(f"html report: {html}")
