"""`mathforge data synthesize`: the model writes new problems from seeds; majority votes give them answers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mathforge.cli.app import console, err_console
from mathforge.cli.data import data_app
from mathforge.cli.options import ConfigFactory, config_options
from mathforge.synthesis import SynthesisConfig


@data_app.command("synthesize")
@config_options(SynthesisConfig)
def synthesize_command(
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Kept problems: {id, question, answer, vote_share, k, model, ...}."),
    ],
    run_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where the config and every candidate with its verdict go (default: OUT stem + .synth/)."
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Discard an existing run with other settings.")] = False,
    *,
    config: ConfigFactory,
) -> None:
    """Write new problems from seed problems; keep those whose majority answer has --min-vote of the k votes.

    Candidates overlapping an evaluation benchmark, or near-copying a seed or a kept problem, are
    dropped. Resumable: rerun the same command after a kill.
    """
    from mathforge.synthesis import synthesize

    settings = config()
    try:
        summary = synthesize(settings, out, run_dir=run_dir, overwrite=overwrite, console=err_console)
    except KeyboardInterrupt:
        err_console.print("interrupted: finished chunks are saved; rerun the same command to resume")
        raise typer.Exit(130) from None
    table = Table(title=f"synthesized problems -> {out}")
    table.add_column("")
    table.add_column("candidates", justify="right")
    table.add_row("written by the model", str(summary.written))
    table.add_row(f"kept (majority share >= {settings.min_vote})", str(summary.kept))
    for reason, label in (
        ("unparsable", "dropped: unparsable"),
        ("low_vote", "dropped: low vote"),
        ("contaminated", "dropped: contaminated"),
        ("duplicate", "dropped: duplicate"),
    ):
        table.add_row(label, str(summary.dropped[reason]))
        details = {
            "unparsable": summary.unparsable_by,
            "contaminated": summary.contaminated_by,
            "duplicate": summary.duplicate_of,
        }.get(reason, {})
        for detail, count in sorted(details.items()):
            if count:
                table.add_row(f"  {detail}", str(count))
    if summary.kept > summary.in_output:
        table.add_row("kept beyond --n (not in the output)", str(summary.kept - summary.in_output))
    console.print(table)
    kinds = Table(title="by prompt kind")
    kinds.add_column("kind")
    kinds.add_column("written", justify="right")
    kinds.add_column("kept", justify="right")
    for kind, counts in sorted(summary.by_kind.items()):
        kinds.add_row(kind, str(counts["written"]), str(counts["kept"]))
    console.print(kinds)
    share = "-" if summary.mean_vote_share is None else f"{summary.mean_vote_share:.3f}"
    console.print(
        f"{summary.in_output} problems in {out} (mean vote share {share}); "
        f"candidates: {summary.run_dir}; summary: {out.with_name(out.stem + '.summary.json')}",
        highlight=False,
        soft_wrap=True,
    )
