"""`mathforge grade`: grade a JSONL file of responses (or extracted answers) against gold answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mathforge.cli.app import app, console, err_console


@app.command("grade")
def grade_command(
    input_path: Annotated[
        Path,
        typer.Argument(
            metavar="IN.jsonl",
            help="One JSON object a line: 'gold' and 'response' (model output) or 'pred' "
            "(extracted answer); optional 'dataset' and 'id'.",
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Graded JSONL (default: IN.graded.jsonl next to the input)."),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Dataset rules for rows without a 'dataset' field (e.g. mmlu_stem grades letters)."
        ),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Grading processes.")] = 1,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Count and skip malformed lines instead of stopping.")
    ] = False,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds allowed for one comparison.")] = 5.0,
    summary_json: Annotated[
        Path | None, typer.Option(help="Also write the summary as a JSON file here.")
    ] = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="Regrade every row instead of resuming an existing output.")
    ] = False,
) -> None:
    """Grade responses against gold answers; output lines are the input plus 'pred' and 'correct'.

    Rows are written and flushed as they are graded, so an interrupted run keeps its work.

    A rerun resumes after the rows already in the output (matched by 'id', else line number).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from mathforge.answers import default_graded_path, grade_file

    out_path = output or default_graded_path(input_path)
    progress = Progress(
        TextColumn("grading"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )
    bar = progress.add_task("grading", total=None)

    def advance(done: int, total: int) -> None:
        progress.update(bar, completed=done, total=total)

    def notice(message: str) -> None:
        err_console.print(message, highlight=False, soft_wrap=True)

    try:
        with progress:
            summary = grade_file(
                input_path,
                out_path,
                dataset=dataset,
                workers=workers,
                skip_bad=skip_bad,
                timeout=timeout,
                restart=restart,
                on_progress=advance,
                on_notice=notice,
            )
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: the rows graded so far are saved in {out_path}; rerun the same command to resume"
        )
        raise typer.Exit(130) from None
    _print_summary(summary)
    if summary_json is not None:
        summary_json.parent.mkdir(parents=True, exist_ok=True)
        summary_json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"graded {summary['input']} -> {summary['output']}")
    table.add_column("dataset")
    table.add_column("rows", justify="right")
    table.add_column("accuracy", justify="right")
    for name, counts in summary["by_dataset"].items():
        table.add_row(name, str(counts["rows"]), f"{counts['accuracy']:.1%}")
    if len(summary["by_dataset"]) != 1:
        table.add_section()
        table.add_row("all", str(summary["rows"]), f"{summary['accuracy']:.1%}")
    console.print(table)
    details = Table(show_header=False, box=None)
    for label, key in (
        ("correct", "correct"),
        ("empty extractions", "empty_extractions"),
        ("timeouts", "timeouts"),
        ("bad lines skipped", "bad_lines"),
        ("resumed from earlier run", "resumed"),
    ):
        details.add_row(label, str(summary[key]))
    details.add_row(
        "decided by", ", ".join(f"{reason} {n}" for reason, n in summary["reasons"].items()) or "-"
    )
    console.print(details)
    console.print(json.dumps(summary), highlight=False, soft_wrap=True)
