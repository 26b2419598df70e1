"""`mathforge rs`: rejection sampling, the policy's correct solutions as SFT records."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mathforge.cli.app import app, console, err_console
from mathforge.cli.options import ConfigFactory, config_options
from mathforge.train.rejection import RejectionConfig


@app.command("rs")
@config_options(RejectionConfig, benches="gsm8k", split="train", n=8, mode="tir")
def rs_command(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="SFT records JSONL to write (for `mathforge sft`).")
    ],
    problems: Annotated[
        str | None,
        typer.Option(
            help="Benchmark name(s), comma-separated, or a problems JSONL file (as --bench); a file's "
            "rows may leave out the answer: such problems are labelled by majority vote (--min-vote)."
        ),
    ] = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="Where the sampled records go (default: OUT stem + .samples/).")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Discard an existing sampling run with other settings.")
    ] = False,
    *,
    config: ConfigFactory,
) -> None:
    """Sample n responses per problem; keep K correct ones (top RM score, else shortest) as SFT records."""
    from mathforge.data import split_bench_list
    from mathforge.data.sources import is_file_spec
    from mathforge.train.rejection import rejection_sample

    benches = (
        None if problems is None else [problems] if is_file_spec(problems) else split_bench_list(problems)
    )
    settings = config(**({"benches": benches} if benches is not None else {}))
    try:
        summary = rejection_sample(settings, out, run_dir=run_dir, overwrite=overwrite, console=err_console)
    except KeyboardInterrupt:
        err_console.print("interrupted: sampled problems are saved; rerun the same command to resume")
        raise typer.Exit(130) from None
    table = Table(title=f"rejection sampling -> {out}")
    table.add_column("")
    table.add_column("problems", justify="right")
    table.add_row("sampled", str(summary.problems))
    table.add_row(
        "all correct / some / none",
        f"{summary.all_correct} / {summary.some_correct} / {summary.none_correct}",
    )
    if summary.pseudo_labelled or summary.no_majority:
        table.add_row(
            "pseudo-labelled by vote / no majority", f"{summary.pseudo_labelled} / {summary.no_majority}"
        )
    table.add_row("with a kept response", str(summary.problems_kept))
    table.add_row("responses kept", str(summary.responses_kept))
    for reason, count in sorted(summary.dropped.items()):
        table.add_row(f"correct responses dropped: {reason}", str(count))
    console.print(table)
    console.print(f"samples: {summary.run_dir}")
