"""GRPO gain and rollout throughput on the embedded model (issue 17's bench).

1. Held-out pass@1 (greedy CoT) of the embedded model on a ``generated`` family where it scores
   30-60% (level-1 arithmetic: 41-43% measured), before and after ``mathforge grpo`` on problems
   of the same family from another seed (held-out questions that also occur in training are
   dropped), with the paired difference and its 95% bootstrap CI.
2. Rollout throughput in the same run: a few GRPO steps from the same start with our rollouts
   (``--engine hf``) and with TRL's built-in generation (``--engine trl``, ``model.generate``),
   same group and problems per step; steps per minute and seconds per step.

Prints one JSON line. The defaults (40 steps of 2 problems x 8 responses) are sized for about 30
minutes on 2 cores but were only smoke-tested; ``--smoke`` runs every phase at toy size to check
the script. A killed run resumes its training phase from the last checkpoint.

    .venv/bin/python bench/grpo.py [--steps 40] [--out runs/bench-grpo] [--smoke]
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


def heldout(family: str, level: int, count: int, train_questions: set[str]) -> list[Any]:
    """Problems of the family from seed 1, minus any question the training problems also hold."""
    from mathforge.data import generate_problems

    problems = generate_problems(count * 2, seed=1, level=level, families=[family])
    return [p for p in problems if p.question not in train_questions][:count]


def pass_at_1(model: str, problems: list[Any], max_new_tokens: int) -> list[float]:
    """Per-problem greedy CoT correctness (1.0 or 0.0)."""
    from mathforge.answers import grade
    from mathforge.engines import SamplingParams
    from mathforge.engines.hf import HFEngine
    from mathforge.solve import solve

    engine = HFEngine.load(model)
    groups = solve(
        [p.question for p in problems], engine, "cot", params=SamplingParams(max_new_tokens=max_new_tokens)
    )
    return [float(bool(grade(group[0].response, p.gold))) for p, group in zip(problems, groups, strict=True)]


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

    from mathforge.data import generate_problems
    from mathforge.metrics import bootstrap_ci, paired_difference
    from mathforge.train.grpo import GRPORunConfig

    train_questions = {
        p.question for p in generate_problems(args.train_n, seed=0, level=args.level, families=[args.family])
    }
    problems = heldout(args.family, args.level, args.heldout_n, train_questions)
    config = GRPORunConfig(
        model=MODEL,
        problems="generated",
        gen_n=args.train_n,
        gen_seed=0,
        gen_level=args.level,
        gen_families=[args.family],
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

    before = pass_at_1(MODEL, problems, args.max_new_tokens)
    started = time.perf_counter()
    result = run(config)  # resumes a killed bench run
    train_seconds = time.perf_counter() - started
    after = pass_at_1(config.out, problems, args.max_new_tokens)

    throughput = {}
    for engine in ("hf", "trl"):
        probe = config.model_copy(
            update={
                "engine": engine,
                "steps": args.throughput_steps,
                "out": str(args.out / f"throughput-{engine}"),
            }
        )
        throughput[engine] = seconds_per_step(probe)
        shutil.rmtree(probe.out, ignore_errors=True)
    mean = sum(before) / len(before), sum(after) / len(after)
    print(
        json.dumps(
            {
                "bench": "grpo",
                "family": args.family,
                "level": args.level,
                "heldout_problems": len(problems),
                "pass@1_before": {"value": mean[0], "ci": bootstrap_ci(before)},
                "pass@1_after": {"value": mean[1], "ci": bootstrap_ci(after)},
                "difference": paired_difference(before, after),
                "steps": result.steps,
                "train_seconds": train_seconds,
                "reward_first": result.reward_first,
                "reward_last": result.reward_last,
                "throughput": throughput,
                "rollout_speedup": throughput["trl"]["seconds_per_step"]
                / throughput["hf"]["seconds_per_step"],
                "settings": {key: str(value) for key, value in vars(args).items()},
            }
        )
    )


if __name__ == "__main__":
    main()
