"""`mathforge data list` and `mathforge data generate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mathforge.cli.app import app, console, err_console
from mathforge.errors import MathforgeError

data_app = typer.Typer(help="Benchmarks and generated problems.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("list")
def list_benchmarks(
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Benchmark folder (<name>/test.jsonl); default $MATHFORGE_DATA_DIR or ./data."),
    ] = None,
) -> None:
    """List the registered benchmarks, their protocol settings and whether a local file is found."""
    from mathforge.data import BENCHMARKS, default_data_dir

    base = data_dir or default_data_dir()
    if not base.is_dir():
        if data_dir is not None:
            raise MathforgeError(f"{base}: no such directory (--data-dir)")
        err_console.print(
            f"[yellow]note:[/] {base} does not exist, so no local benchmark files are found; "
            "pass --data-dir DIR or set MATHFORGE_DATA_DIR"
        )
    table = Table(title=f"benchmarks (local files looked up in {base})")
    for column in ("name", "answers", "choice", "few-shot", "breakdown by", "local", "hub"):
        table.add_column(column)
    for bench in BENCHMARKS.values():
        choice = {True: "yes", False: "no", None: "per item"}[bench.multiple_choice]
        shots = {"always": "5", "choice_items": "5 (choice items)", "never": "0"}[bench.few_shot]
        local = "yes" if (base / bench.name / "test.jsonl").is_file() else "-"
        hub = "yes" if bench.hub else "-"
        breakdown = ", ".join(bench.meta_fields) or "-"
        table.add_row(bench.name, bench.answer_type, choice, shots, breakdown, local, hub)
    console.print(table)


@data_app.command("generate")
def generate(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="JSONL file to write (loads back with --bench FILE).")
    ],
    n: Annotated[int, typer.Option(help="Number of problems.")] = 100,
    level: Annotated[int, typer.Option(help="Difficulty 1-3 (1 suits a ~100M-parameter model).")] = 1,
    seed: Annotated[int, typer.Option(help="Generation seed.")] = 0,
    families: Annotated[str, typer.Option(help="Comma-separated families (default: all).")] = "",
) -> None:
    """Write procedurally generated problems with exact answers (no data or network needed)."""
    from mathforge.data import FAMILIES, generate_problems, write_problems

    chosen = [name.strip() for name in families.split(",") if name.strip()]
    problems = generate_problems(n, seed=seed, level=level, families=chosen or None)
    count = write_problems(problems, out)
    err_console.print(f"families: {', '.join(chosen or FAMILIES)}")
    console.print(f"wrote {count} problems to {out}")


@data_app.command("bootstrap")
def bootstrap(
    out: Annotated[Path, typer.Option("--out", "-o", help="SFT records JSONL to write.")],
    source: Annotated[
        str, typer.Option(help="gsm8k, generated, or a JSONL file of worked solutions (GSM8K or MATH style).")
    ] = "gsm8k",
    fmt: Annotated[
        str, typer.Option("--format", help="cot (gold reasoning) or tir (derived program).")
    ] = "cot",
    split: Annotated[str, typer.Option(help="Split to read (gsm8k).")] = "train",
    data_dir: Annotated[Path | None, typer.Option(help="Benchmark folder (<name>/<split>.jsonl).")] = None,
    limit: Annotated[
        int | None, typer.Option(help="First N problems ('generated': N problems, default 1000).")
    ] = None,
    gen_level: Annotated[int, typer.Option(help="'generated': difficulty 1-3.")] = 1,
    gen_seed: Annotated[int, typer.Option(help="'generated': generation seed.")] = 0,
    gen_families: Annotated[str, typer.Option(help="'generated': comma-separated families.")] = "",
) -> None:
    """Iteration-0 SFT records from gold solutions; TIR programs run in the sandbox, wrong ones dropped."""
    from mathforge.train.bootstrap import bootstrap as write_bootstrap

    families = [name.strip() for name in gen_families.split(",") if name.strip()] or None
    summary = write_bootstrap(
        source,
        fmt,
        out,
        split=split,
        data_dir=data_dir,
        limit=limit,
        gen_level=gen_level,
        gen_seed=gen_seed,
        gen_families=families,
        console=err_console,
    )
    table = Table(title=f"bootstrap {fmt} records -> {out}")
    table.add_column("")
    table.add_column("problems", justify="right")
    table.add_row("read", str(summary.read))
    for reason, count in sorted(summary.dropped.items()):
        table.add_row(f"dropped: {reason}", str(count))
    table.add_row("written", str(summary.written))
    console.print(table)
