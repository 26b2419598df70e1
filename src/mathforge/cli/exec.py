"""`mathforge exec`: run model-written Python from a JSONL file in the sandbox."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mathforge.cli.app import app, console, err_console


@app.command("exec")
def exec_command(
    input_path: Annotated[
        Path,
        typer.Argument(
            metavar="IN.jsonl", help="One JSON object a line: 'code' (an execution) or 'cells' (a session)."
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Output JSONL (default: IN.exec.jsonl); ids in it are skipped."),
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.01, help="Wall-clock seconds per execution.")] = 5.0,
    workers: Annotated[int | None, typer.Option(min=1, help="Parallel executions (default: cores).")] = None,
    memory_mb: Annotated[int, typer.Option(min=32, help="Memory per execution, MiB.")] = 1024,
    max_output_chars: Annotated[int, typer.Option(min=16, help="Stdout kept per execution.")] = 4000,
    reuse: Annotated[
        int,
        typer.Option(
            min=1, help="'code' executions one process may serve (default 1: a fresh process for each)."
        ),
    ] = 1,
) -> None:
    """Execute code in the isolated sandbox; each output line adds status, stdout, error and wall_ms.

    For 'cells' lines those fields (and 'reset') are lists, one entry per cell; the cells share
    variables like a notebook. Lines are written in input order as they finish, so an
    interrupted run resumes where it stopped.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from mathforge.sandbox import default_exec_path, run_file

    out_path = output or default_exec_path(input_path)
    columns = (TextColumn("exec"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    progress = Progress(*columns, console=err_console)
    task = progress.add_task("exec", total=None)
    written = 0

    def advance(done: int, total: int) -> None:
        nonlocal written
        written = done
        progress.start()  # on the first call: a bad input file fails before any bar is drawn
        progress.update(task, completed=done, total=total)

    def notice(message: str) -> None:
        if message.startswith("warning:"):
            message = "[yellow]warning:[/]" + message.removeprefix("warning:")
        err_console.print(message, highlight=False, soft_wrap=True)

    try:
        summary = run_file(
            input_path,
            out_path,
            timeout=timeout,
            workers=workers,
            memory_mb=memory_mb,
            max_output_chars=max_output_chars,
            reuse=reuse,
            on_progress=advance,
            on_notice=notice,
        )
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: {written} new lines in {out_path}; rerun the same command to resume",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(130) from None
    finally:
        progress.stop()
    _print_summary(summary)


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.table import Table

    from mathforge.sandbox.files import STATUSES

    table = Table(title="mathforge exec")
    table.add_column("status")
    table.add_column("executions", justify="right")
    for status in STATUSES:
        table.add_row(status, str(summary[status]))
    table.add_row("[bold]total[/]", f"[bold]{summary['executions']}[/]")
    console.print(table)
    rate = f"{summary['executions_per_s']:.1f} executions/s"
    console.print(
        f"{summary['lines']} lines, {summary['seconds']:.1f} s, {rate} -> {summary['output']}",
        highlight=False,
    )
    keys = ("lines", "executions", *STATUSES, "seconds", "executions_per_s", "output")
    shown = {key: summary[key] for key in keys}
    console.print(json.dumps(shown), highlight=False, soft_wrap=True)
