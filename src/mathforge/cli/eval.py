"""`mathforge eval`: evaluate a model on math benchmarks into a resumable run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mathforge.cli.app import app, console, err_console
from mathforge.errors import MathforgeError


@app.command("eval")
def eval_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory (resumed when it exists).")],
    bench: Annotated[
        str,
        typer.Option(help="Comma-separated benchmarks: registry names, JSONL paths, or 'generated'."),
    ] = "gsm8k",
    model: Annotated[
        str | None, typer.Option(help="Model name or directory (default: the embedded small model).")
    ] = None,
    engine: Annotated[str, typer.Option(help="hf, vllm or openai.")] = "hf",
    mode: Annotated[str, typer.Option(help="cot (chain of thought) or tir (tool-integrated).")] = "cot",
    n: Annotated[int, typer.Option("--n", help="Samples per problem (maj@n, pass@n, RM@n).")] = 1,
    temperature: Annotated[
        float | None, typer.Option(help="Default: 0 (greedy) for n=1, 0.7 for n>1.")
    ] = None,
    top_p: Annotated[float | None, typer.Option(help="Default: 1 for n=1, 0.8 for n>1.")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Token budget per generation call.")] = 2048,
    limit: Annotated[int | None, typer.Option(help="First L problems of each benchmark.")] = None,
    shots: Annotated[
        int | None, typer.Option(help="Few-shot examples (default: 5 for multiple-choice items, else 0).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    max_calls: Annotated[int, typer.Option(help="TIR: most code executions per response.")] = 4,
    chunk_size: Annotated[
        int, typer.Option(help="Problems generated together (and lost at most on a kill).")
    ] = 16,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Benchmark folder (<name>/test.jsonl); default $MATHFORGE_DATA_DIR or ./data."),
    ] = None,
    split: Annotated[str, typer.Option(help="Split file to read (test or train).")] = "test",
    field_map: Annotated[
        str | None, typer.Option(help="For JSONL paths: question=FIELD,answer=FIELD[,id=FIELD,level=FIELD].")
    ] = None,
    gen_n: Annotated[int, typer.Option(help="'generated': number of problems.")] = 100,
    gen_level: Annotated[int, typer.Option(help="'generated': difficulty 1-3.")] = 1,
    gen_seed: Annotated[int, typer.Option(help="'generated': generation seed.")] = 0,
    gen_families: Annotated[
        str, typer.Option(help="'generated': comma-separated families (default all).")
    ] = "",
    dtype: Annotated[
        str | None, typer.Option(help="hf engine: float32, bfloat16 or auto (engine default).")
    ] = None,
    rm: Annotated[
        Path | None, typer.Option(help="Reward-model directory: score every sample (RM@k).")
    ] = None,
    rm_scores: Annotated[
        Path | None, typer.Option(help="Precomputed reward scores: JSONL lines with id and scores.")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Discard an existing run in --out with another config.")
    ] = False,
) -> None:
    """Evaluate a model: greedy or sampled CoT/TIR, pass@k, maj@k, RM@k, resumable."""
    from mathforge.data import split_bench_list
    from mathforge.eval.config import EvalConfig
    from mathforge.eval.report import metrics_table
    from mathforge.eval.runner import evaluate
    from mathforge.models import DEFAULT_MODEL

    if mode not in ("cot", "tir"):
        raise MathforgeError(f"--mode must be cot or tir, got '{mode}'")
    if engine not in ("hf", "vllm", "openai"):
        raise MathforgeError(f"--engine must be hf, vllm or openai, got '{engine}'")
    if rm is not None and rm_scores is not None:
        raise MathforgeError("give --rm or --rm-scores, not both")
    config = EvalConfig(
        model=model or DEFAULT_MODEL,
        benches=split_bench_list(bench),
        engine=engine,
        mode=mode,
        n=n,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        limit=limit,
        shots=shots,
        seed=seed,
        max_calls=max_calls,
        chunk_size=chunk_size,
        data_dir=str(data_dir) if data_dir else None,
        split=split,
        field_map=field_map,
        gen_n=gen_n,
        gen_level=gen_level,
        gen_seed=gen_seed,
        gen_families=[name.strip() for name in gen_families.split(",") if name.strip()],
        rm=str(rm) if rm else None,
        rm_scores=str(rm_scores) if rm_scores else None,
        engine_options={"dtype": dtype} if dtype else {},
    )
    try:
        metrics = evaluate(config, out, overwrite=overwrite, console=err_console)
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: finished problems are saved in {out}; rerun the same command to resume"
        )
        raise typer.Exit(130) from None
    console.print(metrics_table(metrics, title=f"{config.model} ({mode}) -> {out}"))
    console.print(f"metrics: {out / 'metrics.json'}  report: {out / 'report.md'}")
