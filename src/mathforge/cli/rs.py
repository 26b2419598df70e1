"""`mathforge rs`: rejection sampling, the policy's correct solutions as SFT records."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mathforge.cli.app import app, console, err_console


@app.command("rs")
def rs_command(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="SFT records JSONL to write (for `mathforge sft`).")
    ],
    problems: Annotated[
        str, typer.Option(help="Benchmark name(s), comma-separated, or a problems JSONL file.")
    ],
    model: Annotated[
        str | None, typer.Option(help="Policy that samples (default: the embedded model).")
    ] = None,
    n: Annotated[int, typer.Option("--n", help="Responses sampled per problem.")] = 8,
    mode: Annotated[str, typer.Option(help="cot or tir.")] = "tir",
    rm: Annotated[
        str | None, typer.Option(help="Reward-model directory: keep the top K correct by RM score.")
    ] = None,
    keep: Annotated[int, typer.Option(help="Responses kept per problem (K).")] = 4,
    min_vote: Annotated[
        float, typer.Option(help="Without gold: the majority answer's share needed to pseudo-label.")
    ] = 0.5,
    engine: Annotated[str, typer.Option(help="hf, vllm or openai.")] = "hf",
    split: Annotated[str, typer.Option(help="Split to sample from (train keeps test sets clean).")] = "train",
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature (default 0.7).")] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus sampling (default 0.8).")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Token budget per response.")] = 2048,
    limit: Annotated[int | None, typer.Option(help="First L problems of each source.")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    max_calls: Annotated[int, typer.Option(help="TIR: most code executions per response.")] = 4,
    chunk_size: Annotated[int, typer.Option(help="Problems sampled together (lost at most on a kill).")] = 16,
    data_dir: Annotated[Path | None, typer.Option(help="Benchmark folder (<name>/<split>.jsonl).")] = None,
    field_map: Annotated[
        str | None, typer.Option(help="For a problems file: question=FIELD,answer=FIELD[,id=FIELD].")
    ] = None,
    dtype: Annotated[str | None, typer.Option(help="hf engine: float32, bfloat16 or auto.")] = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="Where the sampled records go (default: OUT stem + .samples/).")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Discard an existing sampling run with other settings.")
    ] = False,
) -> None:
    """Sample n responses per problem; keep K correct ones (top RM score, else shortest) as SFT records."""
    from mathforge.data import split_bench_list
    from mathforge.data.sources import is_file_spec
    from mathforge.errors import MathforgeError
    from mathforge.eval.config import EvalConfig
    from mathforge.models import DEFAULT_MODEL
    from mathforge.train.rejection import rejection_sample

    if mode not in ("cot", "tir"):
        raise MathforgeError(f"--mode must be cot or tir, got '{mode}'")
    if keep < 1 or not 0.0 <= min_vote <= 1.0:
        raise MathforgeError("--keep must be >= 1 and --min-vote between 0 and 1")
    config = EvalConfig(
        model=model or DEFAULT_MODEL,
        benches=[problems] if is_file_spec(problems) else split_bench_list(problems),
        engine=engine,
        mode=mode,
        n=n,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        limit=limit,
        seed=seed,
        max_calls=max_calls,
        chunk_size=chunk_size,
        data_dir=str(data_dir) if data_dir else None,
        split=split,
        field_map=field_map,
        rm=rm,
        engine_options={"dtype": dtype} if dtype else {},
    )
    try:
        summary = rejection_sample(
            config,
            out,
            keep=keep,
            min_vote=min_vote,
            run_dir=run_dir,
            overwrite=overwrite,
            console=err_console,
        )
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
