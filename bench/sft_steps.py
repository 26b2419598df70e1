"""Step time of a long CPU SFT run: batch padding and the allocator (prints one JSON line).

On a CPU, glibc's malloc fragments under activations of many sizes and the steps of a long SFT
run grew 2x within ~40 (bench/RESULTS.md). This runs ``mathforge.train.sft.run`` for ``--steps``
optimiser steps on the same records from the same base, once per variant, each in a fresh
process, back to back:

- ``baseline``: batches padded to their longest row (``--pad-to-multiple-of 0``), glibc's malloc;
- ``padded``: our default, batches padded to a multiple of 64 tokens, glibc's malloc;
- ``jemalloc``: our default padding with the system's jemalloc preloaded, as ``mathforge loop``
  starts its commands (left out where none is installed);
- ``grouped``: ``jemalloc`` with each optimiser step's records drawn among records of similar
  length (``--group-by-length``, the default now); the three others draw them at random.

The padding each order costs over one epoch is counted exactly from the records' token lengths
(``padded_tokens``: random order vs length-grouped, both padded to a multiple of 64).

Per variant: mean seconds of steps 2-10 and of the last five, their ratio (growth) and the peak
RSS; a forward+backward microbenchmark before each variant shows the machine's own drift.

    MATHFORGE_DATA_DIR=../shared/data .venv/bin/python bench/sft_steps.py --steps 40
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("MATHFORGE_DATA_DIR", ROOT.parent / "shared" / "data"))
VARIANTS = ("baseline", "padded", "jemalloc", "grouped")


def records(args: argparse.Namespace) -> Path:
    """TIR records bootstrapped from GSM8K train (generated problems where GSM8K is absent)."""
    out = args.out / "records.jsonl"
    if not out.exists():
        source = ["--source", "generated"]
        if (args.data_dir / "gsm8k" / "train.jsonl").is_file():
            source = ["--source", "gsm8k", "--data-dir", str(args.data_dir)]
        command = [sys.executable, "-m", "mathforge.cli", "data", "bootstrap", *source, "--format", "tir"]
        command += ["--limit", str(args.records), "-o", str(out)]
        subprocess.run(command, check=True, stdout=sys.stderr)
    return out


def child(args: argparse.Namespace) -> None:
    """One variant: ``--steps`` steps in this process; prints its step times and peak RSS as JSON."""
    from transformers import TrainerCallback

    from mathforge.train.sft import SFTConfig, run

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.start = 0.0

        def on_step_begin(self, *_: Any, **__: Any) -> None:
            self.start = time.perf_counter()

        def on_step_end(self, _args: Any, state: Any, control: Any, **__: Any) -> None:
            self.seconds.append(time.perf_counter() - self.start)
            line = f"{args.child} step {state.global_step}: {self.seconds[-1]:.1f} s"
            print(line, file=sys.stderr, flush=True)

    clock = StepClock()
    config = SFTConfig(
        data=[str(args.data)],
        base=args.base,
        out=str(args.out / args.child),
        max_steps=args.steps,
        lr=1e-4,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        max_length=args.max_length,
        pad_to_multiple_of=0 if args.child == "baseline" else 64,
        group_by_length=args.child == "grouped",
        eval_examples=0,
        save_steps=10_000,
        data_dir=str(args.data_dir),
    )
    run(config, overwrite=True, callbacks=[clock])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(json.dumps({"seconds": clock.seconds, "max_rss_gb": round(peak, 2)}))


def machine_speed() -> float:
    """Tokens/s of forward+backward+AdamW on the embedded model (4 x 384 tokens), best of 3 steps."""
    code = (
        "import time, torch\n"
        "from transformers import AutoModelForCausalLM\n"
        "from mathforge.models.resolve import resolve_model\n"
        "from mathforge.runtime import cpu_has_fast_bf16\n"
        "torch.manual_seed(0)\n"
        "model = AutoModelForCausalLM.from_pretrained(resolve_model('smollm2-135m'))\n"
        "opt = torch.optim.AdamW(model.parameters(), lr=1e-5)\n"
        "ids = torch.randint(0, 49000, (4, 384))\n"
        "times = []\n"
        "for _ in range(4):\n"
        "    start = time.perf_counter()\n"
        "    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=cpu_has_fast_bf16()):\n"
        "        loss = model(input_ids=ids, labels=ids).loss\n"
        "    loss.backward(); opt.step(); opt.zero_grad()\n"
        "    times.append(time.perf_counter() - start)\n"
        "print(4 * 384 / min(times[1:]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return round(float(done.stdout.strip().splitlines()[-1]), 1)


def summary(seconds: list[float]) -> dict[str, Any]:
    first, last, after_first = seconds[1:10], seconds[-5:], seconds[1:]
    early, late = sum(first) / len(first), sum(last) / len(last)
    return {
        "early_s": round(early, 2),
        "late_s": round(late, 2),
        "growth": round(late / early, 3),
        "mean_s": round(sum(after_first) / len(after_first), 2),
    }


def padded_tokens(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    """Tokens one epoch computes in micro-batches padded to a multiple of 64: random order vs
    length-grouped order (global batch = batch size x accumulation), from the records' lengths."""
    import torch
    from transformers import AutoTokenizer

    from mathforge.models.resolve import resolve_model
    from mathforge.train.length_groups import length_grouped_order
    from mathforge.train.sft import encode_records, read_records

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(args.base))
    rows = encode_records(tokenizer, read_records([str(data)]), args.max_length, False).rows
    lengths = [len(row["input_ids"]) for row in rows]

    def computed(order: list[int]) -> int:
        total = 0
        for start in range(0, len(order), args.batch_size):
            batch = [lengths[i] for i in order[start : start + args.batch_size]]
            total += -(-max(batch) // 64) * 64 * len(batch)
        return total

    generator = torch.Generator().manual_seed(0)
    random_order = torch.randperm(len(lengths), generator=generator).tolist()
    grouped = length_grouped_order(lengths, args.batch_size * args.grad_accum, generator)
    plain, less = computed(random_order), computed(grouped)
    return {
        "records": len(lengths),
        "tokens": sum(lengths),
        "computed_random": plain,
        "computed_grouped": less,
        "random_vs_grouped": round(plain / less, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_sft_steps")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--base", default="smollm2-135m")
    parser.add_argument("--records", type=int, default=2000, help="TIR records bootstrapped.")
    parser.add_argument("--steps", type=int, default=40, help="Optimiser steps per variant (>= 15).")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--grad-accum", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 15:
        parser.error("--steps must be at least 15 (steps 2-10 and the last five are compared)")
    args.out = args.out.resolve()
    if args.child:
        child(args)
        return

    from mathforge.allocator import ALLOCATOR_ENV, child_environment, find_jemalloc

    args.out.mkdir(parents=True, exist_ok=True)
    data = records(args)
    library = find_jemalloc()
    results: dict[str, Any] = {}
    for variant in args.variants.split(","):
        if variant == "jemalloc" and library is None:
            results[variant] = {"skipped": "no jemalloc installed (Debian/Ubuntu: libjemalloc2)"}
            continue
        plain = {key: value for key, value in os.environ.items() if key != "LD_PRELOAD"}
        env = child_environment({**plain, ALLOCATOR_ENV: "auto"}) if variant == "jemalloc" else plain
        speed = machine_speed()
        command = [sys.executable, __file__, "--child", variant, "--data", str(data)]
        command += ["--out", str(args.out), "--data-dir", str(args.data_dir), "--base", args.base]
        command += ["--steps", str(args.steps), "--batch-size", str(args.batch_size)]
        command += ["--grad-accum", str(args.grad_accum), "--max-length", str(args.max_length)]
        done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=True)
        measured = json.loads(done.stdout.strip().splitlines()[-1])
        results[variant] = {**summary(measured["seconds"]), "max_rss_gb": measured["max_rss_gb"]}
        results[variant] |= {"machine_tokens_per_second_before": speed}
    padding = padded_tokens(args, data)
    baseline = results.get("baseline", {})
    for variant, row in results.items():
        if variant != "baseline" and "late_s" in row and "late_s" in baseline:
            row["late_vs_baseline"] = round(row["late_s"] / baseline["late_s"], 3)
    grouped, plain = results.get("grouped", {}), results.get("jemalloc", {})
    if "mean_s" in grouped and "mean_s" in plain:
        grouped["mean_vs_jemalloc"] = round(grouped["mean_s"] / plain["mean_s"], 3)
    settings = {key: str(value) for key, value in vars(args).items() if key not in ("child", "data")}
    line = {"bench": "sft_steps", "settings": settings, "records": str(data), "padding": padding}
    print(json.dumps({**line, "variants": results}))


if __name__ == "__main__":
    main()
