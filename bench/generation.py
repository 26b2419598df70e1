"""Generation throughput: our ``hf`` engine against plain ``model.generate`` (the HF path of the
Qwen2.5-Math evaluation code: float32, batches of 16 in input order, left padding, greedy).

Workload: the first 64 GSM8K test questions, CoT prompt, embedded model, greedy, 256 new tokens.
Each configuration runs in its own fresh process (so peak memory is its own); tokens/s counts
generated tokens up to the end of sequence. Prints one JSON line.

    .venv/bin/python bench/generation.py [--questions 64] [--max-new-tokens 256]
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

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("MATHFORGE_DATA_DIR", REPO.parent / "shared" / "data"))
MODEL = "smollm2-135m"


def _prompts(count: int) -> tuple[list[str], object]:
    from transformers import AutoTokenizer

    from mathforge.models import resolve_model
    from mathforge.prompts import render_prompt

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(MODEL))
    with (DATA_DIR / "gsm8k" / "test.jsonl").open(encoding="utf-8") as handle:
        questions = [json.loads(line)["question"] for line, _ in zip(handle, range(count), strict=False)]
    return [render_prompt(q, tokenizer, "cot") for q in questions], tokenizer


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_ours(count: int, max_new: int, dtype: str, batch: int) -> dict:
    from mathforge.engines import SamplingParams
    from mathforge.engines.hf import HFEngine

    prompts, _ = _prompts(count)
    engine = HFEngine.load(MODEL, dtype=dtype, max_batch_size=batch)
    engine.generate(prompts[:2], SamplingParams(max_new_tokens=4))  # warm-up
    start, cpu = time.perf_counter(), time.process_time()
    outputs = engine.generate(prompts, SamplingParams(max_new_tokens=max_new))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    texts = [group[0].text for group in outputs]
    tokens = sum(len(group[0].token_ids) for group in outputs)
    return {
        "seconds": seconds,
        "cpu_s": cpu,
        "tokens": tokens,
        "texts": texts,
        "dtype": str(engine.model.dtype),
    }


def phase_baseline(count: int, max_new: int, batch: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from mathforge.models import resolve_model

    prompts, tokenizer = _prompts(count)
    model = AutoModelForCausalLM.from_pretrained(resolve_model(MODEL), dtype=torch.float32).eval()
    tokenizer.padding_side = "left"
    eos = tokenizer.eos_token_id
    texts, tokens = [], 0
    start, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        for offset in range(0, len(prompts), batch):
            inputs = tokenizer(prompts[offset : offset + batch], return_tensors="pt", padding=True)
            out = model.generate(**inputs, max_new_tokens=max_new, do_sample=False, pad_token_id=eos)
            for row in out[:, inputs["input_ids"].shape[1] :].tolist():
                row = row[: row.index(eos)] if eos in row else row
                tokens += len(row)
                texts.append(tokenizer.decode(row, skip_special_tokens=True))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": seconds, "cpu_s": cpu, "tokens": tokens, "texts": texts, "dtype": "torch.float32"}


def phase_load() -> dict:
    """Seconds to load the embedded model from the GGUF file vs from the materialised copy."""
    import torch
    from transformers import AutoModelForCausalLM

    from mathforge.models import resolve_model
    from mathforge.models.embedded import locate_gguf

    directory = resolve_model(MODEL)
    gguf = locate_gguf()
    start = time.perf_counter()
    AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    from_gguf = time.perf_counter() - start
    start = time.perf_counter()
    AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    return {"load_s_gguf": from_gguf, "load_s_materialised": time.perf_counter() - start}


def _run_phase(args: argparse.Namespace, phase: str, *extra: str) -> dict:
    command = [sys.executable, __file__, "--phase", phase, "--questions", str(args.questions)]
    command += ["--max-new-tokens", str(args.max_new_tokens), "--threads", str(args.threads), *extra]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"phase {phase} failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _summary(result: dict) -> dict:
    return {
        "tokens_per_s": round(result["tokens"] / result["seconds"], 1),
        "tokens_per_cpu_s": round(result["tokens"] / result["cpu_s"], 1),
        "seconds": round(result["seconds"], 1),
        "tokens": result["tokens"],
        "peak_rss_mb": round(result["peak_rss_mb"]),
        "dtype": result["dtype"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64, help="our engine's max batch size")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    parser.add_argument("--phase", choices=["ours", "baseline", "load"], help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        if args.phase == "ours":
            result = phase_ours(args.questions, args.max_new_tokens, args.dtype, args.batch)
        elif args.phase == "baseline":
            result = phase_baseline(args.questions, args.max_new_tokens, 16)
        else:
            result = phase_load()
        result["peak_rss_mb"] = _peak_rss_mb()
        print(json.dumps(result))
        return

    from mathforge.answers import extract_answer

    load_before = os.getloadavg()[0]
    baseline = _run_phase(args, "baseline")
    ours = _run_phase(args, "ours", "--dtype", "auto", "--batch", str(args.batch))
    # The dtype "auto" did not pick, to show the choice was the faster one at equal answers.
    other_dtype = "bfloat16" if ours["dtype"] == "torch.float32" else "float32"
    other = _run_phase(args, "ours", "--dtype", other_dtype, "--batch", str(args.batch))
    load = _run_phase(args, "load")

    def answers(result: dict) -> list[str | None]:
        return [extract_answer(text, "gsm8k") for text in result["texts"]]

    def speedup(result: dict) -> float:
        return round((result["tokens"] / result["seconds"]) / (baseline["tokens"] / baseline["seconds"]), 2)

    def same(result: dict) -> int:
        return sum(a == b for a, b in zip(answers(result), answers(baseline), strict=True))

    line = {
        "bench": "generation",
        "workload": f"gsm8k[:{args.questions}] cot greedy {args.max_new_tokens} new tokens, {MODEL}",
        "baseline_generate_fp32_b16": _summary(baseline),
        "ours": _summary(ours),
        f"ours_{other_dtype}": _summary(other),
        "speedup": speedup(ours),
        f"speedup_{other_dtype}": speedup(other),
        "same_answers": same(ours),
        f"same_answers_{other_dtype}": same(other),
        "same_text": sum(a == b for a, b in zip(ours["texts"], baseline["texts"], strict=True)),
        "questions": args.questions,
        "load_s_gguf": round(load["load_s_gguf"], 1),
        "load_s_materialised": round(load["load_s_materialised"], 1),
        "torch_threads": args.threads or os.cpu_count(),
        "load_average_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
