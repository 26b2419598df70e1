"""TIR rounds: the ``hf`` engine reusing the KV cache of rows that stopped at "```output",
against the same engine encoding each round's whole context again (what a loop that calls
``generate`` once per round on the full text does, e.g. an HF ``generate`` TIR loop).

Workload: the demo's 100 held-out generated problems (arithmetic, word problems, polynomial
roots; seed 0), TIR prompt, greedy, 160 new tokens per trajectory, the sandbox's default mode,
solved by a model that writes code: by default the final model of ``make demo``
(``runs/demo/it1/grpo``; the untrained embedded model writes none, so it has no second round).
Each configuration runs in its own fresh process; the clock covers the solving only (model
loaded, sandbox warm). Prints one JSON line.

    .venv/bin/python bench/tir_rounds.py [--model runs/demo/it1/grpo] [--problems 100]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAMILIES = ["arithmetic", "word_problem", "polynomial_roots"]


def phase(model: str, count: int, max_new: int, keep: bool) -> dict:
    from mathforge.answers import extract_answer
    from mathforge.data.generated import generate_problems
    from mathforge.engines import SamplingParams
    from mathforge.engines.hf import HFEngine
    from mathforge.prompts import render_prompt
    from mathforge.sandbox import Sandbox
    from mathforge.solve import solve_prompts

    engine = HFEngine.load(model, keep_stopped_rows=keep)
    problems = generate_problems(count, seed=0, families=FAMILIES)
    prompts = [render_prompt(problem.question, engine.tokenizer, "tir") for problem in problems]
    engine.generate(prompts[:2], SamplingParams(max_new_tokens=4))  # warm-up
    with Sandbox() as sandbox:
        sandbox.run("print(1)")  # the zygote is started and warm before the clock
        encoded, reused = engine.prefilled_tokens, engine.reused_tokens
        start, cpu = time.perf_counter(), time.process_time()
        groups = solve_prompts(
            prompts, engine, "tir", params=SamplingParams(max_new_tokens=max_new), sandbox=sandbox
        )
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    trajectories = [group[0] for group in groups]
    return {
        "seconds": round(seconds, 1),
        "cpu_s": round(cpu, 1),
        "completion_tokens": sum(t.completion_tokens for t in trajectories),
        "tool_calls": sum(len(t.executions) for t in trajectories),
        "prefilled_tokens": engine.prefilled_tokens - encoded,
        "reused_tokens": engine.reused_tokens - reused,
        "answers": [extract_answer(t.response) for t in trajectories],
    }


def _run_phase(args: argparse.Namespace, keep: bool) -> dict:
    command = [sys.executable, __file__, "--phase", "keep" if keep else "reencode", "--model", args.model]
    command += ["--problems", str(args.problems), "--max-new-tokens", str(args.max_new_tokens)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit("phase failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "runs" / "demo" / "it1" / "grpo"))
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--phase", choices=["keep", "reencode"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.model, args.problems, args.max_new_tokens, keep=args.phase == "keep")))
        return

    if not (Path(args.model) / "config.json").is_file():
        raise SystemExit(f"--model {args.model}: no model directory (run `make demo` first, or pass one)")
    load_before = os.getloadavg()[0]
    baseline = _run_phase(args, keep=False)
    ours = _run_phase(args, keep=True)
    same = sum(a == b for a, b in zip(ours.pop("answers"), baseline.pop("answers"), strict=True))
    line = {
        "bench": "tir_rounds",
        "workload": f"generated[:{args.problems}] seed 0 tir greedy {args.max_new_tokens} new tokens",
        "model": args.model,
        "baseline_reencode": baseline,
        "ours": ours,
        "speedup": round(baseline["seconds"] / ours["seconds"], 2),
        "prefilled_ratio": round(ours["prefilled_tokens"] / baseline["prefilled_tokens"], 3),
        "same_answers": same,
        "problems": args.problems,
        "load_average_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
