"""GRPO gain and rollout throughput on the embedded model (issue 17's bench).

1. Held-out pass@1 (greedy CoT) of the embedded model on a ``generated`` family where it scores
   30-60% (level-1 arithmetic: 41-43% measured), before and after ``mathforge grpo`` on problems
   of the same family from another seed (held-out questions that also occur in training are
   dropped), with the paired difference and its 95% bootstrap CI.
2. Rollout throughput in the same run: a few GRPO steps from the same start with our rollouts
   (``--engine hf``) and with TRL's built-in generation (``--engine trl``, ``model.generate``),
   same group and problems per step; steps per minute and seconds per step.

3. ``--mode tir`` (section 4's TIR half): the same before/after on greedy TIR, from a model that
   writes code (``--model``: the bootstrapped TIR model of ``bench/sft.py``, e.g.
   ``runs/bench_sft/model``), on ``--problems gsm8k`` (GSM8K train for training, the first
   ``--heldout-n`` test problems held out; ``--data-dir``) or a ``generated`` family; with tool
   use per rollout from the step log (code executions per rollout, the share that ran ok,
   executor-output tokens masked out of the loss) and per held-out response before and after.

Prints one JSON line. The defaults (40 steps of 2 problems x 8 responses) are sized for about 30
minutes on 2 cores but were only smoke-tested; ``--smoke`` runs every phase at toy size to check
the script. A killed run keeps its finished held-out evaluations and resumes training from the
last checkpoint.

    .venv/bin/python bench/grpo.py [--steps 40] [--out runs/bench-grpo] [--smoke]
    .venv/bin/python bench/grpo.py --mode tir --model runs/bench_sft/model --problems gsm8k \
        --lr 2e-6 --max-new-tokens 320 --out runs/bench-grpo-tir
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

MODEL = "smollm2-135m"


def heldout(args: argparse.Namespace) -> list[Any]:
    """The held-out problems: GSM8K test's first ``heldout_n``, or the family's problems from seed 1
    minus any question the training problems (seed 0) also hold."""
    from mathforge.data import generate_problems, load_problems

    if args.problems == "gsm8k":
        return load_problems("gsm8k", data_dir=args.data_dir, split="test", limit=args.heldout_n)
    family, level = [args.family], args.level
    train_questions = {
        p.question for p in generate_problems(args.train_n, seed=0, level=level, families=family)
    }
    problems = generate_problems(args.heldout_n * 2, seed=1, level=level, families=family)
    return [p for p in problems if p.question not in train_questions][: args.heldout_n]


def pass_at_1(model: str, problems: list[Any], max_new_tokens: int, mode: str) -> dict[str, Any]:
    """Per-problem greedy correctness (1.0 or 0.0) in ``mode``, and the responses' code executions."""
    from mathforge.answers import grade
    from mathforge.engines import SamplingParams
    from mathforge.engines.hf import HFEngine
    from mathforge.solve import solve

    engine = HFEngine.load(model)
    questions = [p.question for p in problems]
    groups = solve(questions, engine, mode, params=SamplingParams(max_new_tokens=max_new_tokens))
    responses = [group[0] for group in groups]
    executions = [execution for response in responses for execution in response.executions]
    return {
        "correct": [float(bool(grade(r.response, p.gold))) for p, r in zip(problems, responses, strict=True)],
        "executions_per_problem": len(executions) / len(responses),
        "executions_ok_share": sum(e["status"] == "ok" for e in executions) / len(executions)
        if executions
        else None,
    }


def cached_pass_at_1(
    file: Path, model: str, problems: list[Any], max_new_tokens: int, mode: str, steps: int | None = None
) -> dict[str, Any]:
    """``pass_at_1`` stored in ``file``, so a bench run killed later (training takes most of it)
    does not redo a finished evaluation; a stored result for other settings (or a policy trained
    for another number of ``steps``) is recomputed."""
    settings = {
        "model": str(model),
        "steps": steps,
        "problems": [p.id for p in problems],
        "max_new_tokens": max_new_tokens,
        "mode": mode,
    }
    if file.exists():
        stored = json.loads(file.read_text())
        if stored.get("settings") == settings:
            return stored["result"]
    result = pass_at_1(model, problems, max_new_tokens, mode)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps({"settings": settings, "result": result}))
    return result


def tool_use(out: str) -> dict[str, Any]:
    """Means over the training steps' log: code executions per rollout, the share that ran ok,
    executor-output tokens masked out of the loss per step."""
    steps = [json.loads(line) for line in (Path(out) / "steps.jsonl").read_text().splitlines()]

    def mean(key: str) -> float | None:
        values = [step[key] for step in steps if step.get(key) is not None]
        return statistics.mean(values) if values else None

    return {
        "tool_calls_per_rollout": mean("tool_calls"),
        "tool_ok_share": mean("tool_ok_share"),
        "masked_tokens_per_step": mean("masked_tokens"),
        "steps": len(steps),
    }


def seconds_per_step(config: Any) -> dict[str, float | None]:
    from mathforge.train.grpo import run

    started = time.perf_counter()
    result = run(config, overwrite=True, progress=False)
    seconds = time.perf_counter() - started
    steps = [json.loads(line) for line in (Path(config.out) / "steps.jsonl").read_text().splitlines()]
    # The first step also pays for warm-up (allocations, lazy imports): skip it when there are more.
    timed = [s["step_seconds"] for s in steps[1:] or steps if s["step_seconds"]]
    step_seconds = statistics.median(timed) if timed else seconds / result.steps
    rollout = [s["rollout_tokens_per_s"] for s in steps if s["rollout_tokens_per_s"]]
    return {
        "steps": result.steps,
        "seconds_per_step": step_seconds,
        "steps_per_minute": 60.0 / step_seconds,
        # Our rollouts report their own generation speed; TRL's built-in generation does not.
        "rollout_tokens_per_s": statistics.mean(rollout) if rollout else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("cot", "tir"), default="cot")
    parser.add_argument("--model", default=MODEL, help="Starting policy (tir: a model that writes code).")
    parser.add_argument("--problems", choices=("generated", "gsm8k"), default="generated")
    parser.add_argument("--data-dir", default=None, help="Benchmark folder for --problems gsm8k.")
    parser.add_argument("--family", default="arithmetic")
    parser.add_argument("--level", type=int, default=1)
    parser.add_argument("--train-n", type=int, default=200)
    parser.add_argument("--heldout-n", type=int, default=200)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--problems-per-step", type=int, default=2)
    parser.add_argument("--lr", type=float, default=5e-6)
    parser.add_argument("--beta", type=float, default=1e-3)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--throughput-steps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-grpo"))
    parser.add_argument(
        "--smoke", action="store_true", help="Toy sizes: checks the script, measures nothing."
    )
    args = parser.parse_args()
    if args.smoke:
        args.train_n, args.heldout_n, args.steps, args.group = 8, 8, 2, 2
        args.problems_per_step, args.max_new_tokens, args.throughput_steps = 2, 16, 1

    from mathforge.metrics import bootstrap_ci, paired_difference
    from mathforge.train.grpo import GRPORunConfig

    problems = heldout(args)
    source: dict[str, Any] = (
        {"problems": "gsm8k", "split": "train", "limit": args.train_n, "data_dir": args.data_dir}
        if args.problems == "gsm8k"
        else {
            "problems": "generated",
            "gen_n": args.train_n,
            "gen_seed": 0,
            "gen_level": args.level,
            "gen_families": [args.family],
        }
    )
    config = GRPORunConfig(
        model=args.model,
        mode=args.mode,
        **source,
        out=str(args.out / "policy"),
        group=args.group,
        problems_per_step=args.problems_per_step,
        steps=args.steps,
        lr=args.lr,
        beta=args.beta,
        max_new_tokens=args.max_new_tokens,
        save_steps=max(args.steps // 4, 1),
    )

    from mathforge.train.grpo import run

    before = cached_pass_at_1(
        args.out / "heldout-before.json", args.model, problems, args.max_new_tokens, args.mode
    )
    started = time.perf_counter()
    result = run(config)  # resumes a killed bench run
    train_seconds = time.perf_counter() - started
    after = cached_pass_at_1(
        args.out / "heldout-after.json", config.out, problems, args.max_new_tokens, args.mode, result.steps
    )
    correct = before.pop("correct"), after.pop("correct")

    throughput = {}
    # TRL's own generation writes plain completions: the comparison is CoT's.
    for engine in ("hf", "trl") if args.mode == "cot" else ():
        probe = config.model_copy(
            update={
                "engine": engine,
                "steps": args.throughput_steps,
                "out": str(args.out / f"throughput-{engine}"),
            }
        )
        throughput[engine] = seconds_per_step(probe)
        shutil.rmtree(probe.out, ignore_errors=True)
    mean = [sum(values) / len(values) for values in correct]
    print(
        json.dumps(
            {
                "bench": "grpo",
                "mode": args.mode,
                "model": args.model,
                "problems": args.problems,
                "family": args.family,
                "level": args.level,
                "heldout_problems": len(problems),
                "pass@1_before": {"value": mean[0], "ci": bootstrap_ci(correct[0])},
                "pass@1_after": {"value": mean[1], "ci": bootstrap_ci(correct[1])},
                "difference": paired_difference(*correct),
                "heldout_tools": {"before": before, "after": after} if args.mode == "tir" else None,
                "training_tools": tool_use(config.out) if args.mode == "tir" else None,
                "steps": result.steps,
                "train_seconds": train_seconds,
                "reward_first": result.reward_first,
                "reward_last": result.reward_last,
                "throughput": throughput,
                "rollout_speedup": throughput["trl"]["seconds_per_step"]
                / throughput["hf"]["seconds_per_step"]
                if throughput
                else None,
                "settings": {key: str(value) for key, value in vars(args).items()},
            }
        )
    )


if __name__ == "__main__":
    main()
