"""TIR rounds: the ``hf`` engine reusing the KV cache of rows that stopped at "```output",
against the same engine encoding each round's whole context again (what a loop that calls
``generate`` once per round on the full text does, e.g. an HF ``generate`` TIR loop).

Workload: the first 64 GSM8K test questions, TIR prompt with two worked tool-use exemplars (so
the untrained embedded model writes code and reads its output), greedy, 256 new tokens per
trajectory, the sandbox's default mode. Each configuration runs in its own fresh process; the
clock covers the solving only (model loaded, sandbox warm). Prints one JSON line.

    .venv/bin/python bench/tir_rounds.py [--questions 64] [--max-new-tokens 256]
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
DATA_DIR = Path(os.environ.get("MATHFORGE_DATA_DIR", REPO.parent / "shared" / "data"))
MODEL = "smollm2-135m"
# Worked tool-use exemplars in the TIR format the loop continues ("```output" is where it stops).
EXEMPLARS = [
    (
        "Tom has 3 boxes with 12 pencils in each box. He gives away 10 pencils. "
        "How many pencils does he have left?",
        "```python\nboxes = 3\nper_box = 12\nleft = boxes * per_box - 10\nprint(left)\n```\n"
        "```output\n26\n```\nTom has 26 pencils left. The answer is $\\boxed{26}$.",
    ),
    (
        "A shop sells pens for $2 each and notebooks for $5 each. How much do 4 pens and 3 notebooks cost?",
        "```python\ncost = 4 * 2 + 3 * 5\nprint(cost)\n```\n```output\n23\n```\n"
        "They cost $23. The answer is $\\boxed{23}$.",
    ),
]


def phase(count: int, max_new: int, keep: bool) -> dict:
    from mathforge.answers import extract_answer
    from mathforge.engines import SamplingParams
    from mathforge.engines.hf import HFEngine
    from mathforge.prompts import render_prompt
    from mathforge.sandbox import Sandbox
    from mathforge.solve import solve_prompts

    engine = HFEngine.load(MODEL, keep_stopped_rows=keep)
    with (DATA_DIR / "gsm8k" / "test.jsonl").open(encoding="utf-8") as handle:
        questions = [json.loads(line)["question"] for line, _ in zip(handle, range(count), strict=False)]
    prompts = [render_prompt(q, engine.tokenizer, "tir", few_shot=EXEMPLARS) for q in questions]
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
        "answers": [extract_answer(t.response, "gsm8k") for t in trajectories],
    }


def _run_phase(args: argparse.Namespace, keep: bool) -> dict:
    command = [sys.executable, __file__, "--phase", "keep" if keep else "reencode"]
    command += ["--questions", str(args.questions), "--max-new-tokens", str(args.max_new_tokens)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit("phase failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--phase", choices=["keep", "reencode"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.questions, args.max_new_tokens, keep=args.phase == "keep")))
        return

    load_before = os.getloadavg()[0]
    baseline = _run_phase(args, keep=False)
    ours = _run_phase(args, keep=True)
    same = sum(a == b for a, b in zip(ours.pop("answers"), baseline.pop("answers"), strict=True))
    line = {
        "bench": "tir_rounds",
        "workload": f"gsm8k[:{args.questions}] tir 2-shot greedy {args.max_new_tokens} new tokens, {MODEL}",
        "baseline_reencode": baseline,
        "ours": ours,
        "speedup": round(baseline["seconds"] / ours["seconds"], 2),
        "prefilled_ratio": round(ours["prefilled_tokens"] / baseline["prefilled_tokens"], 3),
        "same_answers": same,
        "questions": args.questions,
        "load_average_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
