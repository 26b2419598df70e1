"""`mathforge loop`: the self-improvement loop (gold-data SFT, then RM -> RS -> SFT -> GRPO rounds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mathforge.cli.app import app, console, err_console

loop_app = typer.Typer(
    help="The self-improvement loop: run it, see where it stands, report it, or plan it.",
    no_args_is_help=True,
)
app.add_typer(loop_app, name="loop")

ConfigArgument = Annotated[
    str, typer.Argument(help="A preset (smoke, demo, laptop, gpu) or a YAML file (may say `preset: NAME`).")
]
SetOption = Annotated[
    list[str] | None, typer.Option("--set", help="Override one setting: KEY=VALUE, e.g. sft.max_steps=40.")
]


@loop_app.command("run")
def run_command(
    config: ConfigArgument,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory (resumed when it exists).")],
    stage: Annotated[
        list[str] | None,
        typer.Option("--stage", help="Run only this stage (repeatable); its inputs must be done."),
    ] = None,
    overrides: SetOption = None,
    html: Annotated[Path | None, typer.Option(help="Also write the report as an HTML page here.")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the report's numbers here.")
    ] = None,
) -> None:
    """Run every unfinished stage into OUT, then print the stage table and the held-out report."""
    from mathforge.loop import Loop, load_config

    loop = Loop(load_config(config, overrides), out, console=err_console)
    try:
        loop.run(only=stage)
    except KeyboardInterrupt:
        err_console.print(
            "interrupted: finished stages and commands are kept; rerun the same command to resume"
        )
        raise typer.Exit(130) from None
    _print_report(out, html, json_out)


@loop_app.command("status")
def status_command(
    run_dir: Annotated[Path, typer.Argument(help="A loop run directory.")],
    config: Annotated[
        str | None, typer.Option(help="Compare with this config instead of the one the run was started with.")
    ] = None,
    overrides: SetOption = None,
) -> None:
    """Each stage: done, partial, changed (and why) or pending, with its time."""
    from mathforge.loop import Loop, load_config
    from mathforge.loop.plan import pace, seconds_left
    from mathforge.loop.runner import CONFIG_FILE
    from mathforge.loop.state import in_flight

    spec = config or str(run_dir / CONFIG_FILE)
    if config is None and not (run_dir / CONFIG_FILE).is_file():
        raise typer.BadParameter(f"{run_dir}: no {CONFIG_FILE}; pass --config", param_hint="RUN_DIR")
    loop = Loop(load_config(spec, overrides), run_dir, console=err_console)
    table = Table(title=f"loop {run_dir}")
    for column in ("stage", "status", "time", "commands", "why / in flight"):
        table.add_column(column)
    statuses = loop.statuses()
    for row in statuses:
        state = row.state
        commands = (
            f"{sum(1 for c in state.commands.values() if c.get('done'))}/{len(state.commands)}"
            if state
            else "-"
        )
        seconds = f"{state.seconds / 60:.1f} min" if state and state.seconds else "-"
        note = in_flight(state) if state is not None and row.status == "partial" else row.why
        table.add_row(row.stage.name, row.status, seconds, commands, note)
    console.print(table)
    factors = pace(loop.config, statuses)
    left = sum(seconds_left(loop.config, row, factors) for row in statuses)
    if left > 0:
        console.print(
            f"left: ~{left / 60:.0f} min (the config's estimates at this run's pace so far: "
            f"generation x{factors['generation']:.2f}, training x{factors['training']:.2f})"
        )


@loop_app.command("report")
def report_command(
    run_dir: Annotated[Path, typer.Argument(help="A loop run directory.")],
    html: Annotated[
        Path | None, typer.Option(help="Also write an HTML page with the accuracy-by-stage plot.")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the numbers as JSON here.")
    ] = None,
) -> None:
    """Held-out accuracy per stage with paired CIs against the base, RM quality, data and time per stage."""
    _print_report(run_dir, html, json_out)


def _print_report(run_dir: Path, html: Path | None = None, json_out: Path | None = None) -> None:
    from mathforge.loop.report import (
        accuracy_table,
        build_report,
        json_rows,
        render_html,
        rm_table,
        stage_table,
    )

    report = build_report(run_dir)
    console.print(stage_table(report))
    if report["rm"]:
        console.print(rm_table(report))
    console.print(accuracy_table(report))
    if json_out is not None:
        payload = {"rows": json_rows(report), "rm": report["rm"], "stages": report["stages"]}
        json_out.write_text(json.dumps(payload, indent=2), encoding="utf-8")
        console.print(f"json: {json_out}")
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(render_html(report), encoding="utf-8")
        console.print(f"html report: {html}")


@loop_app.command("plan")
def plan_command(
    config: ConfigArgument,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory the commands would write.")] = Path(
        "runs/loop"
    ),
    overrides: SetOption = None,
) -> None:
    """The stages, their commands, data sizes and estimated time; validates the config, runs nothing."""
    from mathforge.loop import load_config
    from mathforge.loop.plan import plan_rows

    loop_config = load_config(config, overrides)
    rows, total = plan_rows(loop_config, out)
    title = f"loop plan: {loop_config.name} ({loop_config.base}; iteration 0 + {loop_config.iterations})"
    table = Table(title=title)
    for column in ("stage", "sizes", "estimate"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["stage"], row["sizes"], row["estimate"])
    console.print(table)
    console.print(f"estimated total: {total / 60:.0f} min (throughputs from the config's `estimate` section)")
    for row in rows:
        console.print(f"\n[bold]{row['stage']}[/]")
        for command in row["commands"]:
            console.print(command, soft_wrap=True, highlight=False, markup=False)
