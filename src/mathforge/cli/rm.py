"""`mathforge rm data|train|score`: build reward-model data, train the RM, score responses with it."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mathforge.cli.app import app, console, err_console
from mathforge.cli.options import ConfigFactory, config_options
from mathforge.sampling.config import SamplingRunConfig

rm_app = typer.Typer(
    name="rm",
    help="Math reward model: build listwise data, train it, score responses (RM@k, shaped RL reward).",
    no_args_is_help=True,
)
app.add_typer(rm_app, name="rm")


def _fmt(stat: Any) -> str:
    """``0.734 [0.701, 0.768]`` for a ``{"value", "ci"}`` dict, ``0.734`` for a float."""
    if isinstance(stat, dict):
        value, (low, high) = stat["value"], stat["ci"]
        return f"{value:.3f} [{low:.3f}, {high:.3f}]" if not math.isnan(value) else "-"
    return f"{stat:.3f}" if isinstance(stat, float) else str(stat)


@rm_app.command("data")
@config_options(SamplingRunConfig, benches="gsm8k", split="train", n=6)
def data_command(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="RM data JSONL: {id, prompt, responses, correct}.")
    ],
    problems: Annotated[
        Path | None, typer.Option(help="A JSONL file of problems instead of --bench (see --field-map).")
    ] = None,
    from_run: Annotated[
        Path | None, typer.Option(help="Build from an existing `mathforge eval --n K` run; no sampling.")
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
    """Sample n responses per problem with the policy, grade them, keep problems with a correct-wrong pair."""
    from mathforge.reward.collect import build_rm_data, rm_data_from_run

    if from_run is not None:
        summary = rm_data_from_run(from_run, out, config().data_dir, err_console)
    else:
        settings = config(**({"benches": [str(problems)]} if problems is not None else {}))
        try:
            summary = build_rm_data(settings, out, run_dir=run_dir, overwrite=overwrite, console=err_console)
        except KeyboardInterrupt:
            err_console.print("interrupted: sampled problems are saved; rerun the same command to resume")
            raise typer.Exit(130) from None
    table = Table(title=f"reward-model data -> {out}")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("removed: overlaps an eval benchmark", str(summary.contaminated))
    table.add_row("problems sampled", str(summary.problems))
    table.add_row("responses (correct share)", f"{summary.responses} ({summary.correct_share:.1%})")
    table.add_row("written: a correct and a wrong response", str(summary.pairable))
    table.add_row("skipped: all correct", str(summary.all_correct))
    table.add_row("skipped: all wrong", str(summary.all_wrong))
    console.print(table)
    if summary.run_dir:
        console.print(f"samples: {summary.run_dir}")


@rm_app.command("train")
def train_command(
    data: Annotated[Path, typer.Option(help="RM data: JSONL lines {id, prompt, responses, correct}.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="RM directory to write (resumed when it exists).")],
    base: Annotated[
        str | None, typer.Option(help="Causal LM to start from (normally the SFT policy; default: embedded).")
    ] = None,
    eval_data: Annotated[
        Path | None, typer.Option(help="Held-out RM data (default: a seeded --eval-fraction of --data).")
    ] = None,
    eval_fraction: Annotated[
        float, typer.Option(help="Share of problems held out when no --eval-data.")
    ] = 0.1,
    epochs: Annotated[float, typer.Option(help="Passes over the training problems.")] = 2.0,
    max_steps: Annotated[
        int, typer.Option(help="Stop after this many optimiser steps (-1: by epochs).")
    ] = -1,
    lr: Annotated[float, typer.Option(help="Peak learning rate (cosine schedule with warmup).")] = 1e-5,
    warmup: Annotated[
        float, typer.Option(help="Warmup: a fraction of the steps (<1) or a step count.")
    ] = 0.05,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.0,
    max_length: Annotated[
        int, typer.Option(help="Tokens per prompt+response (longer: the middle is cut).")
    ] = 1024,
    problems_per_batch: Annotated[
        int, typer.Option(help="Problems per device batch (all n responses of each in one pass).")
    ] = 1,
    grad_accum: Annotated[int, typer.Option(help="Batches accumulated per optimiser step.")] = 8,
    train_layers: Annotated[
        int | None, typer.Option(help="Train only the top K transformer layers and the head (default: all).")
    ] = None,
    bf16: Annotated[
        bool | None, typer.Option("--bf16/--no-bf16", help="Mixed precision (default: where bf16 is fast).")
    ] = None,
    gradient_checkpointing: Annotated[
        bool, typer.Option(help="Trade compute for activation memory.")
    ] = False,
    save_steps: Annotated[int, typer.Option(help="Checkpoint every N optimiser steps.")] = 50,
    eval_steps: Annotated[int | None, typer.Option(help="Held-out evaluation every N steps.")] = None,
    logging_steps: Annotated[int, typer.Option(help="Log the loss every N steps.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the split, the head and the data order.")] = 0,
    deepspeed: Annotated[str | None, typer.Option(help="DeepSpeed config file (GPU runs).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Restart a run in --out that has other settings.")] = False,
) -> None:
    """Train a reward model with the listwise ranking loss; prints held-out pairwise accuracy and top-1."""
    from mathforge.models import DEFAULT_MODEL
    from mathforge.reward.training import RewardTrainingConfig, train_reward_model

    cfg = RewardTrainingConfig(
        base=base or DEFAULT_MODEL,
        data=str(data),
        out=str(out),
        eval_data=str(eval_data) if eval_data else None,
        eval_fraction=eval_fraction,
        epochs=epochs,
        max_steps=max_steps,
        lr=lr,
        weight_decay=weight_decay,
        warmup=warmup,
        max_length=max_length,
        problems_per_batch=problems_per_batch,
        grad_accum=grad_accum,
        bf16=bf16,
        train_layers=train_layers,
        gradient_checkpointing=gradient_checkpointing,
        logging_steps=logging_steps,
        save_steps=save_steps,
        eval_steps=eval_steps,
        seed=seed,
        deepspeed=deepspeed,
    )
    try:
        result = train_reward_model(cfg, overwrite=overwrite)
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: checkpoints are in {out / 'checkpoints'}; rerun the same command to resume"
        )
        raise typer.Exit(130) from None
    table = Table(title=f"reward model -> {out}")
    table.add_column("held-out metric")
    table.add_column("value", justify="right")
    metrics = result.metrics
    if metrics:
        table.add_row("pairwise accuracy", _fmt(metrics["pairwise_accuracy"]))
        table.add_row("top-1 response correct", _fmt(metrics["top1_correct"]))
        table.add_row("  random choice", _fmt(metrics["top1_random"]))
    table.add_row("training / held-out problems", f"{result.train_problems} / {result.eval_problems}")
    table.add_row("skipped (no correct-wrong pair)", str(result.unpairable))
    table.add_row("responses at the length limit", str(result.truncated))
    table.add_row("optimiser steps", str(result.steps))
    console.print(table)
    console.print(f"metrics: {out / 'metrics.json'}")


@rm_app.command("score")
def score_command(
    in_path: Annotated[
        Path, typer.Argument(metavar="IN.jsonl", help="Lines with prompt and responses (or eval samples).")
    ],
    rm: Annotated[Path, typer.Option(help="Reward-model directory (from `mathforge rm train`).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output JSONL (default: IN.scored.jsonl); resumed.")
    ] = None,
    summary_json: Annotated[
        Path | None, typer.Option(help="Summary JSON (default: next to the output, .summary.json).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Responses per forward pass.")] = 8,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: GPU if any).")] = None,
) -> None:
    """Add `scores` (one per response) to each line; with labels, report how well the RM ranks."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from mathforge.reward.model import RewardModel
    from mathforge.reward.scoring import score_file, summarize_scored, write_summary

    out = output or in_path.with_name(f"{in_path.stem}.scored.jsonl")
    model = RewardModel.from_pretrained(rm, device=device)
    columns = (*Progress.get_default_columns()[:2], BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console) as progress:
        task = progress.add_task("scoring", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        try:
            score_file(partial(model.score, batch_size=batch_size), in_path, out, on_progress=advance)
        except KeyboardInterrupt:
            err_console.print(f"interrupted: scored lines are in {out}; rerun the same command to resume")
            raise typer.Exit(130) from None
    summary = summarize_scored(out)
    summary_path = summary_json or out.with_name(f"{out.stem}.summary.json")
    write_summary(summary, summary_path)
    console.print(_summary_table(summary, title=f"{rm} on {in_path}"))
    console.print(f"scores: {out}  summary: {summary_path}")


def _summary_table(summary: dict[str, Any], title: str) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value [95% CI]", justify="right")
    table.add_row("problems / responses", f"{summary['problems']} / {summary['responses']}")
    if "pairwise_accuracy" in summary:
        table.add_row(
            f"pairwise accuracy ({summary['problems_with_pairs']} problems with a pair)",
            _fmt(summary["pairwise_accuracy"]),
        )
        table.add_row("top-1 response correct", _fmt(summary["top1_correct"]))
        table.add_row("  random choice", _fmt(summary["top1_random"]))
    for name, stat in summary.get("selection", {}).items():
        if name == "samples_per_problem":
            continue
        if "diff" in stat:
            table.add_row(name, f"{stat['diff']:+.3f} [{stat['ci'][0]:+.3f}, {stat['ci'][1]:+.3f}]")
        else:
            table.add_row(name, _fmt(stat))
    return table
