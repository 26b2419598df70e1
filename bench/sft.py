"""Benchmark: the measured gain of bootstrap SFT (issue 16, section 4).

A gain counts only when measured on held-out problems against the model it started from, on the
same problems, with the paired difference and its 95% CI. In one run (every stage resumable: a
rerun skips finished stages and the commands themselves resume unfinished ones):

1. bootstrap iteration-0 records from GSM8K train gold solutions, TIR and CoT
   (``mathforge data bootstrap``; dropped programs counted);
2. decontaminate both against every local evaluation benchmark (``mathforge data decontam``);
3. fine-tune the embedded model on both (``mathforge sft``); its ``metrics.json`` gives tokens/s
   and losses;
4. greedy GSM8K test, the first ``--eval-problems`` problems, CoT and TIR, before (the base model)
   and after (the SFT model), ``--dtype auto`` (the resolved dtype is read back from each run);
5. per mode, pass@1 before and after with CIs and the paired difference after - before on the
   same problem ids (``mathforge.eval.report.compare_runs``, as ``mathforge report`` does), and
   the TIR model's tool use: executions per problem, the share that ran ok, responses with code;
6. the loop's step on real data: one rejection-sampling round on GSM8K train with the
   bootstrapped model (``mathforge rs``, n samples per problem, TIR, graded against gold) and a
   second SFT that continues from the bootstrapped model on the kept responses (with
   ``--rs-gold-replay`` gold records per kept response mixed in), then the same
   greedy evaluation of that model, compared with the base and with the bootstrapped model
   (``--rs-problems 0`` leaves the round out);
7. training throughput against TRL's plain ``SFTTrainer`` on the same records and settings
   (conversational prompt-completion data through TRL's own chat-template handling with
   ``completion_only_loss``; TRL cannot mask the executor output, so it trains on it too):
   ``--trl-steps`` steps of our trainer (``mathforge.train.sft.run``) and then of TRL's, each in
   a subprocess, back to back; tokens/s is TRL's ``num_tokens`` over the time in optimiser steps
   2..K (the first step's one-time costs left out), the same count for both. The whole SFT run's
   tokens/s (its ``metrics.json``) is reported beside it.

Prints a table to stderr and ONE JSON line to stdout; every command's output goes to stderr.

    .venv/bin/python bench/sft.py [--out runs/bench_sft] [--data-dir DIR] [--train-problems N]
        [--max-steps S] [--eval-problems 200] [--max-new-tokens 512] [--trl-steps 10]
        [--rs-problems 300] [--rs-n 8] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("MATHFORGE_DATA_DIR", ROOT.parent / "shared" / "data"))
BASE = "smollm2-135m"
MODES = ("tir", "cot")
STATE_FILE = "bench_state.json"


def _env() -> dict[str, str]:
    """The commands' environment: this checkout's sources, and jemalloc where installed (as the loop
    runs them: long CPU training slows down under glibc's malloc; the TRL child gets the same)."""
    from mathforge.allocator import child_environment

    env = child_environment()
    src = str(ROOT / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _mathforge(*args: str) -> None:
    """Run one ``mathforge`` command, its output on stderr; a failure stops the bench with its status."""
    command = [sys.executable, "-m", "mathforge.cli", *args]
    print("$ mathforge " + " ".join(args), file=sys.stderr, flush=True)
    done = subprocess.run(command, stdout=sys.stderr, stderr=sys.stderr, env=_env(), cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"bench/sft.py: `mathforge {' '.join(args)}` exited with {done.returncode}")


class Stages:
    """Seconds per stage: this invocation's, and the last completed run's (kept in the state file)."""

    def __init__(self, out: Path) -> None:
        self.path = out / STATE_FILE
        self.state: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.now: dict[str, float] = {}

    def record(self, name: str, seconds: float, **extra: Any) -> None:
        self.now[name] = round(seconds, 1)
        self.state[name] = {"seconds": round(seconds, 1), **extra}
        self.path.write_text(json.dumps(self.state, indent=2) + "\n")

    def done(self, name: str) -> dict[str, Any] | None:
        return self.state.get(name)


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text()) if path.exists() else {}


# --- stages ------------------------------------------------------------------------------------


def bootstrap(args: argparse.Namespace, stages: Stages) -> dict[str, Any]:
    from mathforge.train.bootstrap import bootstrap as write_bootstrap

    counts: dict[str, Any] = {}
    for fmt in MODES:
        name = f"bootstrap_{fmt}"
        out = args.out / f"{fmt}.jsonl"
        limit = args.cot_problems if fmt == "cot" and args.cot_problems >= 0 else args.train_problems
        previous = stages.done(name)
        if previous and out.exists() and previous.get("limit") == limit:
            counts[fmt] = previous["summary"]
            continue
        command = f"$ mathforge data bootstrap --format {fmt} --limit {limit} -o {out}"
        print(command, file=sys.stderr, flush=True)
        start = time.perf_counter()
        summary = write_bootstrap("gsm8k", fmt, out, split="train", data_dir=args.data_dir, limit=limit)
        counts[fmt] = {"read": summary.read, "written": summary.written, "dropped": dict(summary.dropped)}
        stages.record(name, time.perf_counter() - start, limit=limit, summary=counts[fmt])
    return counts


def decontaminate(args: argparse.Namespace, stages: Stages) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    for fmt in MODES:
        source = _with_question(args.out / f"{fmt}.jsonl")
        clean = args.out / f"{fmt}.clean.jsonl"
        summary = args.out / f"{fmt}.decontam.json"
        name = f"decontam_{fmt}"
        fresh = summary.exists() and clean.exists() and summary.stat().st_mtime >= source.stat().st_mtime
        if not fresh:
            start = time.perf_counter()
            _mathforge(
                "data", "decontam", str(source), "--data-dir", str(args.data_dir),
                "-o", str(clean), "--flagged", str(args.out / f"{fmt}.flagged.jsonl"),
                "--summary-json", str(summary),
            )  # fmt: skip
            stages.record(name, time.perf_counter() - start)
        report = json.loads(summary.read_text())
        kept = sum(1 for line in clean.read_text().splitlines() if line.strip())
        removed = _flagged_count(report)
        counts[fmt] = {"kept": kept, "removed": removed, "by_benchmark": report.get("by_benchmark")}
    return counts


def _with_question(path: Path) -> Path:
    """A copy of the records with ``question`` (the user message) added: ``data decontam`` reads one
    text field, and bootstrap records keep the question inside their ``prompt`` messages."""
    target = path.with_suffix(".q.jsonl")
    if target.exists() and target.stat().st_mtime >= path.stat().st_mtime:
        return target
    with path.open(encoding="utf-8") as source, target.open("w", encoding="utf-8") as out:
        for line in source:
            if line.strip():
                record = json.loads(line)
                users = [m["content"] for m in record["prompt"] if m.get("role") == "user"]
                out.write(json.dumps({**record, "question": users[-1]}) + "\n")
    return target


def _flagged_count(report: Any) -> int | None:
    if isinstance(report, dict):
        for key in ("flagged", "removed", "dropped"):
            if isinstance(report.get(key), int):
                return report[key]
    return None


def sft(args: argparse.Namespace, stages: Stages) -> dict[str, Any]:
    model = args.out / "model"
    metrics_file = model / "metrics.json"
    from mathforge.train.sft import data_fingerprint

    data = [str(args.out / f"{fmt}.clean.jsonl") for fmt in MODES]
    trained = _read_yaml(model / "config.yaml").get("data_sha256")
    done = (
        metrics_file.exists()
        and trained == data_fingerprint(data)
        and (args.max_steps < 0 or json.loads(metrics_file.read_text()).get("steps", 0) >= args.max_steps)
    )  # else the command resumes the run, or refuses other settings
    if not done:
        start = time.perf_counter()
        _mathforge("sft", *_sft_args(args, model))
        stages.record("sft", time.perf_counter() - start)
    metrics = json.loads(metrics_file.read_text())
    config = _read_yaml(model / "config.yaml")
    print("sft metrics.json: " + json.dumps(metrics), file=sys.stderr, flush=True)
    return {"metrics": metrics, "device": config.get("device"), "dtype": config.get("dtype")}


def _sft_args(
    args: argparse.Namespace, model: Path, max_steps: int | None = None, eval_examples: int | None = None
) -> list[str]:
    data = ",".join(str(args.out / f"{fmt}.clean.jsonl") for fmt in MODES)
    steps = args.max_steps if max_steps is None else max_steps
    held_out = args.sft_eval_examples if eval_examples is None else eval_examples
    return [
        "--data", data, "--base", BASE, "--out", str(model),
        "--max-steps", str(steps), "--epochs", str(args.epochs), "--lr", str(args.lr),
        "--batch-size", str(args.batch_size), "--grad-accum", str(args.grad_accum),
        "--max-length", str(args.max_length), "--eval-examples", str(held_out),
        "--logging-steps", str(args.logging_steps), "--save-steps", str(args.save_steps),
        "--eval-steps", str(args.sft_eval_steps),
    ]  # fmt: skip


def evaluated_models(args: argparse.Namespace) -> dict[str, str]:
    """The models evaluated, by name: the base, the bootstrapped model, the rejection-sampling one."""
    models = {"before": BASE, "after": str(args.out / "model")}
    if args.rs_problems > 0:
        models["after_rs"] = str(args.out / "model_rs")
    return models


def evaluate(args: argparse.Namespace, stages: Stages, models: dict[str, str]) -> dict[tuple[str, str], Path]:
    runs = {}
    for mode in MODES:
        for when, model in models.items():
            run = args.out / f"{when}_{mode}"
            runs[(when, mode)] = run
            if _finished(run, model, mode, args):
                continue
            start = time.perf_counter()
            _mathforge(
                "eval", "--bench", "gsm8k", "--data-dir", str(args.data_dir),
                "--limit", str(args.eval_problems), "--mode", mode, "--n", "1",
                "--max-new-tokens", str(args.max_new_tokens), "--dtype", args.eval_dtype,
                "--model", model, "--out", str(run),
            )  # fmt: skip
            stages.record(f"eval_{when}_{mode}", time.perf_counter() - start)
    return runs


def _finished(run: Path, model: str, mode: str, args: argparse.Namespace) -> bool:
    """The run holds all problems with these settings (else the command resumes, extends or refuses)."""
    config, metrics = _read_yaml(run / "config.yaml"), run / "metrics.json"
    limit = args.eval_problems
    wanted = {"model": model, "mode": mode, "max_new_tokens": args.max_new_tokens, "limit": limit}
    if args.eval_dtype != "auto":
        wanted["dtype"] = args.eval_dtype
    if not metrics.exists() or any(config.get(key) != value for key, value in wanted.items()):
        return False
    return json.loads(metrics.read_text())["benchmarks"].get("gsm8k", {}).get("problems") == limit


def compare(runs: dict[tuple[str, str], Path], names: list[str]) -> dict[str, Any]:
    """Per mode: each model's pass@1 with its CI, every later model's paired difference from the
    base (``paired_diff`` for the bootstrapped model, ``paired_diff_rs`` for the rejection-sampling
    one) and the rejection-sampling model's from the bootstrapped one, and tool use."""
    from mathforge.eval.report import compare_runs, load_run

    result: dict[str, Any] = {}
    for mode in MODES:
        loaded = [load_run(runs[(name, mode)]) for name in names]
        row = compare_runs(loaded)["benchmarks"]["gsm8k"]["pass@1"]
        entry: dict[str, Any] = {"problems": row["problems"]}
        for name, stat in zip(names, row["values"], strict=True):
            entry[name] = _value(stat)
        for name, diff in zip(names[1:], row["diffs"], strict=True):
            key = "paired_diff" if name == "after" else f"paired_diff_{name.removeprefix('after_')}"
            entry[key] = _diff(diff)
        if "after_rs" in names:
            step = compare_runs([loaded[1], loaded[2]])["benchmarks"]["gsm8k"]["pass@1"]["diffs"][0]
            entry["paired_diff_rs_vs_after"] = _diff(step)
        entry["dtype"] = {name: _dtype(runs[(name, mode)]) for name in names}
        entry["tools"] = {name: tool_stats(run) for name, run in zip(names, loaded, strict=True)}
        result[mode] = entry
    return result


def _diff(diff: dict[str, Any]) -> dict[str, Any]:
    return {"diff": diff["diff"], "ci": diff["ci"], "problems": diff["problems"]}


def rejection_sampling(args: argparse.Namespace, stages: Stages) -> dict[str, Any]:
    """``mathforge rs`` with the bootstrapped model on the first ``--rs-problems`` GSM8K train problems
    (it resumes its own sampling run), then ``mathforge sft`` from that model on the kept records."""
    records = args.out / "rs.jsonl"
    summary_file = args.out / "rs.summary.json"  # the command writes it beside its records
    previous = stages.done("rs")
    settings = {"problems": args.rs_problems, "n": args.rs_n, "max_new_tokens": args.max_new_tokens}
    if not (previous and records.exists() and previous.get("settings") == settings):
        start = time.perf_counter()
        _mathforge(
            "rs", "--model", str(args.out / "model"), "--problems", "gsm8k", "--split", "train",
            "--data-dir", str(args.data_dir), "--limit", str(args.rs_problems), "--mode", "tir",
            "--n", str(args.rs_n), "--max-new-tokens", str(args.max_new_tokens),
            "-o", str(records),
        )  # fmt: skip
        stages.record("rs", time.perf_counter() - start, settings=settings)
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    if not summary.get("responses_kept"):
        print("rs kept no response: no second SFT", file=sys.stderr, flush=True)
        return {"rs": summary, "sft": None}
    model = args.out / "model_rs"
    metrics_file = model / "metrics.json"
    from mathforge.train.sft import data_fingerprint

    data = [str(records)]
    if args.rs_gold_replay > 0:
        data.append(str(gold_replay(args, summary["responses_kept"])))
    trained = _read_yaml(model / "config.yaml").get("data_sha256")
    if not (metrics_file.exists() and trained == data_fingerprint(data)):
        start = time.perf_counter()
        _mathforge(
            "sft", "--data", ",".join(data), "--base", str(args.out / "model"), "--out", str(model),
            "--epochs", "1", "--lr", str(args.rs_lr), "--batch-size", str(args.batch_size),
            "--grad-accum", str(args.grad_accum), "--max-length", str(args.max_length),
            "--eval-examples", "0", "--logging-steps", str(args.logging_steps),
        )  # fmt: skip
        stages.record("sft_rs", time.perf_counter() - start)
    metrics = json.loads(metrics_file.read_text())
    return {"rs": summary, "sft": {key: metrics.get(key) for key in SFT_KEYS}}


def gold_replay(args: argparse.Namespace, kept: int) -> Path:
    """``--rs-gold-replay`` x ``kept`` gold records drawn (seeded) from the decontaminated bootstrap
    files, TIR and CoT alike: the second SFT continues from the bootstrapped model, and training it on
    a few self-generated responses to easy problems alone narrows what it learnt from the gold data
    (the report instead retrains from the base on gold + rejection-sampled data, a full SFT again)."""
    import random

    target = args.out / "rs_gold_replay.jsonl"
    gold = [
        line
        for fmt in MODES
        for line in (args.out / f"{fmt}.clean.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    chosen = random.Random(0).sample(gold, min(len(gold), args.rs_gold_replay * kept))
    text = "".join(line + "\n" for line in chosen)
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")
    return target


def _value(stat: Any) -> dict[str, Any]:
    if isinstance(stat, dict):
        return {"value": stat.get("value"), "ci": stat.get("ci")}
    return {"value": stat, "ci": None}


def _dtype(run: Path) -> str | None:
    config = _read_yaml(run / "config.yaml")
    stack = [config]
    while stack:  # the resolved dtype wherever the run's config keeps it
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("dtype"), str) and item["dtype"] != "auto":
                return item["dtype"]
            stack += list(item.values())
    return None


def tool_stats(run: Any) -> dict[str, Any]:
    records = list(run.records().values())
    samples = [sample for record in records for sample in record.samples]
    executions = [execution for sample in samples for execution in sample.executions]
    ok = sum(execution.status == "ok" for execution in executions)
    return {
        "problems": len(records),
        "executions_per_problem": len(executions) / len(records) if records else None,
        "executions_ok_share": ok / len(executions) if executions else None,
        "responses_with_code": sum("```python" in sample.response for sample in samples),
        "responses": len(samples),
    }


def trl_baseline(args: argparse.Namespace, stages: Stages) -> dict[str, Any]:
    out = args.out / "trl"
    result_file = out / "result.json"
    from mathforge.train.sft import data_fingerprint

    data = [str(args.out / f"{fmt}.clean.jsonl") for fmt in MODES]
    spec = {
        "data": data,
        "data_sha256": data_fingerprint(data),
        "out": str(out),
        "steps": args.trl_steps,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "max_length": args.max_length,
    }
    previous = json.loads(result_file.read_text()) if result_file.exists() else {}
    if previous.get("spec") != spec or "ours_same_steps" not in previous:
        out.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()  # ours for the same steps, back to back with TRL (same machine load)
        print(f"$ mathforge.train.sft.run, {args.trl_steps} steps", file=sys.stderr, flush=True)
        _child("--ours-child", spec)
        ours = json.loads((out / "ours.json").read_text())
        shutil.rmtree(out / "ours", ignore_errors=True)
        stages.record("ours_short", time.perf_counter() - start)
        print(f"$ TRL SFTTrainer baseline, {args.trl_steps} steps", file=sys.stderr, flush=True)
        start = time.perf_counter()
        _child("--trl-child", spec)
        stages.record("trl", time.perf_counter() - start)
        result = json.loads(result_file.read_text())
        result["ours_same_steps"] = ours
        result_file.write_text(json.dumps(result, indent=2) + "\n")
    return json.loads(result_file.read_text())


def _child(flag: str, spec: dict[str, Any]) -> None:
    command = [sys.executable, str(Path(__file__).resolve()), flag, json.dumps(spec)]
    done = subprocess.run(command, stdout=sys.stderr, stderr=sys.stderr, env=_env(), cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"bench/sft.py: {flag} exited with {done.returncode}")


def _steady_timer() -> Any:
    """Seconds and TRL's ``num_tokens`` per optimiser step (log every step), the first step apart:
    tokens/s over steps 2..K leaves out one-time warm-up costs."""
    from transformers import TrainerCallback

    class SteadyTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.tokens: list[float] = []
            self._start = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.seconds.append(time.perf_counter() - self._start)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs and "num_tokens" in logs and "loss" in logs:
                self.tokens.append(float(logs["num_tokens"]))

        def summary(self) -> dict[str, Any]:
            total = sum(self.seconds)
            steady = sum(self.seconds[1:])
            return {
                "steps": len(self.seconds),
                "tokens": self.tokens[-1] if self.tokens else None,
                "seconds": total,
                "tokens_per_second": self.tokens[-1] / total if self.tokens and total > 0 else None,
                "first_step_seconds": self.seconds[0] if self.seconds else None,
                "steady_tokens_per_second": (self.tokens[-1] - self.tokens[0]) / steady
                if len(self.tokens) > 1 and steady > 0
                else None,
            }

    return SteadyTimer()


def ours_child(spec: dict[str, Any]) -> None:
    """Our trainer (``mathforge.train.sft.run``) for the same steps, timed like the TRL baseline."""
    from mathforge.train.sft import SFTConfig, run

    timer = _steady_timer()
    config = SFTConfig(
        data=spec["data"],
        base=BASE,
        out=str(Path(spec["out"]) / "ours"),
        eval_examples=0,
        max_steps=spec["steps"],
        lr=spec["lr"],
        batch_size=spec["batch_size"],
        grad_accum=spec["grad_accum"],
        max_length=spec["max_length"],
        logging_steps=1,
        save_steps=10**6,
    )
    result = run(config, overwrite=True, callbacks=[timer])
    summary = timer.summary() | {"train_loss": result.train_loss}
    (Path(spec["out"]) / "ours.json").write_text(json.dumps(summary, indent=2) + "\n")


def trl_child(spec: dict[str, Any]) -> None:
    """TRL's plain SFTTrainer on the same records: conversational prompt-completion, TRL's own masks."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from mathforge.models.resolve import resolve_model
    from mathforge.runtime import placement
    from mathforge.train.records import read_records

    records = read_records(spec["data"])
    rows = [
        {"prompt": record.prompt, "completion": [{"role": "assistant", "content": record.response}]}
        for record in records
    ]
    base_dir = resolve_model(BASE)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    where = placement(None, "auto")
    checkpoints = Path(spec["out"]) / "checkpoints"
    config = SFTConfig(
        output_dir=str(checkpoints),
        per_device_train_batch_size=spec["batch_size"],
        gradient_accumulation_steps=spec["grad_accum"],
        max_steps=spec["steps"],
        learning_rate=spec["lr"],
        warmup_steps=0.03,
        lr_scheduler_type="cosine",
        **where.trainer_arguments(),
        max_length=spec["max_length"],
        completion_only_loss=True,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=0,
        data_seed=0,
        dataloader_num_workers=0,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    timer = _steady_timer()
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[timer],
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    result = {
        **timer.summary(),
        "records": len(rows),
        "train_loss": float(logs[-1]["loss"]) if logs else None,
        **where.describe(),
        "spec": spec,
    }
    shutil.rmtree(checkpoints, ignore_errors=True)
    (Path(spec["out"]) / "result.json").write_text(json.dumps(result, indent=2) + "\n")


# --- report ------------------------------------------------------------------------------------


SFT_KEYS = (
    "steps",
    "examples",
    "eval_examples",
    "truncated",
    "trained_tokens",
    "tokens_per_second",
    "train_loss",
    "eval_loss_start",
    "eval_loss",
    "global_batch",
)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _ci(stat: dict[str, Any]) -> str:
    ci = stat.get("ci") or [None, None]
    return f"{_pct(stat.get('value'))} [{_pct(ci[0])}, {_pct(ci[1])}]"


def _signed(diff: dict[str, Any]) -> str:
    return f"{100 * diff['diff']:+.1f} [{100 * diff['ci'][0]:+.1f}, {100 * diff['ci'][1]:+.1f}]"


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="SFT: held-out GSM8K test, greedy pass@1 %")
    columns = ("mode", "model", "problems", "pass@1", "vs base (paired)", "exec/problem", "exec ok")
    for column in columns:
        table.add_column(column, justify="right")
    for mode, row in result["eval"].items():
        for name in ("before", "after", "after_rs"):
            if name not in row:
                continue
            key = {"before": None, "after": "paired_diff", "after_rs": "paired_diff_rs"}[name]
            tools = row["tools"][name]
            table.add_row(
                mode,
                {"before": "base", "after": "bootstrap SFT", "after_rs": "+ RS round"}[name],
                str(max(row["problems"])) if isinstance(row["problems"], list) else str(row["problems"]),
                _ci(row[name]),
                _signed(row[key]) if key else "",
                "-" if tools["executions_per_problem"] is None else f"{tools['executions_per_problem']:.2f}",
                _pct(tools["executions_ok_share"]),
            )
    console = Console(stderr=True, width=140)
    console.print(table)
    speed = result["throughput"]
    console.print(
        f"train tokens/s, steps 2..{speed['steps_each']} of each, back to back: ours "
        f"{speed['ours_tokens_per_second']}, TRL {speed['trl_tokens_per_second']}, ratio {speed['ratio']}; "
        f"ours over the whole SFT run {speed['ours_full_run_tokens_per_second']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_sft")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--train-problems", type=int, default=1100, help="GSM8K train problems bootstrapped.")
    parser.add_argument(
        "--cot-problems", type=int, default=-1,
        help="GSM8K train problems bootstrapped as CoT (-1: --train-problems); fewer weights the mix to TIR.",
    )  # fmt: skip
    parser.add_argument("--max-steps", type=int, default=-1, help="SFT optimiser steps (-1: --epochs).")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=1e-4, help="Peak LR (full fine-tuning of a 135M model).")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--grad-accum", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--sft-eval-examples", type=int, default=50, help="SFT held-out-loss problems.")
    parser.add_argument("--logging-steps", type=int, default=5)
    parser.add_argument("--save-steps", type=int, default=100, help="SFT checkpoint cadence.")
    parser.add_argument("--sft-eval-steps", type=int, default=100, help="SFT held-out-loss cadence.")
    parser.add_argument("--eval-problems", type=int, default=200, help="GSM8K test problems per mode.")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--eval-dtype", default="auto", help="eval --dtype (auto: bf16 where native).")
    parser.add_argument("--trl-steps", type=int, default=10, help="Steps of each throughput run.")
    parser.add_argument(
        "--rs-problems", type=int, default=300, help="GSM8K train problems of the RS round (0: none)."
    )
    parser.add_argument("--rs-n", type=int, default=8, help="Samples per problem in the RS round.")
    parser.add_argument("--rs-lr", type=float, default=5e-5, help="Peak LR of the SFT after the RS round.")
    parser.add_argument(
        "--rs-gold-replay", type=int, default=3,
        help="Gold records mixed into the RS round's SFT per kept response (0: the kept responses only).",
    )  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="Tiny everything (checks the pipeline).")
    parser.add_argument("--trl-child", help=argparse.SUPPRESS)
    parser.add_argument("--ours-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trl_child:
        trl_child(json.loads(args.trl_child))
        return
    if args.ours_child:
        ours_child(json.loads(args.ours_child))
        return
    if args.smoke:
        args.train_problems, args.max_steps, args.batch_size, args.grad_accum = 8, 2, 2, 1
        args.eval_problems, args.max_new_tokens, args.trl_steps = 5, 48, 2
        args.sft_eval_examples, args.logging_steps = 0, 1
        args.rs_problems, args.rs_n = 4, 2
        if args.out == ROOT / "runs" / "bench_sft":
            args.out = ROOT / "runs" / "bench_sft_smoke"
    gsm8k = args.data_dir / "gsm8k"
    if not (gsm8k / "train.jsonl").exists() or not (gsm8k / "test.jsonl").exists():
        print(f"skipped: GSM8K train/test not found in {gsm8k} (set --data-dir or MATHFORGE_DATA_DIR)")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT / "src"))
    stages = Stages(args.out)

    data = bootstrap(args, stages)
    clean = decontaminate(args, stages)
    trained = sft(args, stages)
    trl = trl_baseline(args, stages)
    models = evaluated_models(args)
    runs = evaluate(args, stages, {name: models[name] for name in ("before", "after")})
    rs_round = rejection_sampling(args, stages) if "after_rs" in models else None
    if rs_round is not None and rs_round["sft"] is not None:
        runs |= evaluate(args, stages, {"after_rs": models["after_rs"]})
    else:
        models.pop("after_rs", None)
    eval_result = compare(runs, list(models))

    ours = trl["ours_same_steps"].get("steady_tokens_per_second")
    theirs = trl.get("steady_tokens_per_second")
    full = trained["metrics"].get("tokens_per_second")
    metrics = trained["metrics"]
    result = {
        "bench": "sft",
        "settings": {
            key: (str(value) if isinstance(value, Path) else value)
            for key, value in vars(args).items()
            if key not in ("trl_child", "ours_child")
        }
        | {"base": BASE, "train_device": trained["device"], "train_dtype": trained["dtype"]},
        "data": {
            fmt: {
                "bootstrapped": data[fmt]["written"],
                "read": data[fmt]["read"],
                "dropped": data[fmt]["dropped"],
                "decontaminated_removed": clean[fmt]["removed"],
                "removed_by_benchmark": clean[fmt]["by_benchmark"],
                "kept": clean[fmt]["kept"],
            }
            for fmt in MODES
        },
        "sft": {key: metrics.get(key) for key in SFT_KEYS},
        "rs_round": rs_round,
        "throughput": {
            "ours_tokens_per_second": round(ours, 1) if ours else None,
            "trl_tokens_per_second": round(theirs, 1) if theirs else None,
            "ratio": round(ours / theirs, 3) if ours and theirs else None,
            "steps_each": args.trl_steps,
            "ours_full_run_tokens_per_second": round(full, 1) if full else None,
            "trl": trl,
        },
        "eval": eval_result,
        "seconds": {"this_run": stages.now, "recorded": {k: v["seconds"] for k, v in stages.state.items()}},
    }
    print_table(result)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
