"""Benchmark: mathforge's sandbox against the Qwen2.5-Math executor and a subprocess per snippet.

    .venv/bin/python bench/sandbox.py [--snippets 1000] [--latency-sample 350] [--subprocess-sample 100]

One run measures, on the same ~1,000 distinct templated snippets (arithmetic, loops, numpy
linear algebra, sympy solve/simplify/factor/integrate):

* mathforge ``Sandbox`` with full isolation: the default (a fresh confined process per
  execution), and ``reuse=100`` (a confined process serves up to 100 executions, with fresh
  globals and restored state, like the Qwen worker but isolated from the machine);
* the Qwen2.5-Math evaluation executor, re-implemented faithfully: ``exec`` in one pebble pool
  worker, ``ProcessPool(max_workers=1).map(..., timeout=...)``, a SIGALRM timeout around each
  snippet (what ``timeout_decorator`` does), stdout captured with ``redirect_stdout``, its
  "print in the last line, else eval the last line" rule and its 400-character truncation;
  a new pool per ``batch_apply`` call, as its code does;
* a fresh ``python -c`` subprocess per snippet (on a sample: each one imports sympy).

Throughput is one batch of all snippets (``run_batch`` / ``batch_apply``). Latency is measured
one snippet at a time on a sample (no queueing): p50/p99, and p99 over the snippets that take
under 10 ms in a warm process. Prints one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from contextlib import redirect_stdout
from functools import partial
from multiprocessing import get_context
from typing import Any

KINDS = ("arithmetic", "loop", "numpy", "solve", "simplify", "factor", "integrate")


def corpus(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` distinct (kind, code) snippets in the style of TIR model code."""
    rng = random.Random(seed)
    snippets: list[tuple[str, str]] = []
    seen: set[str] = set()
    while len(snippets) < n:
        kind = KINDS[len(snippets) % len(KINDS)]
        a, b, c = rng.randint(2, 99), rng.randint(2, 99), rng.randint(2, 30)
        r, s = rng.randint(-20, 20), rng.randint(-20, 20)
        if kind == "arithmetic":
            code = (
                "from fractions import Fraction\n"
                f"total = Fraction({a}, {b}) + Fraction({c}, {a + b})\n"
                f"print(total, pow({a}, {c}, {b + 7}), round({a} / {b}, 6))"
            )
        elif kind == "loop":
            code = (
                f"count = 0\nfor n in range(1, {a * 50 + c}):\n"
                f"    if n % {c % 7 + 2} == 0 or n % {b % 5 + 3} == 0:\n        count += n\nprint(count)"
            )
        elif kind == "numpy":
            code = (
                "import numpy as np\n"
                f"A = np.array([[{a}, {b % 7}, 1], [{c % 5}, {b}, 2], [1, {r % 4}, {a + c}]], dtype=float)\n"
                f"x = np.linalg.solve(A, np.array([{r}, {s}, {c}], dtype=float))\n"
                "print(np.round(x, 6), round(float(np.linalg.det(A)), 3))"
            )
        elif kind == "solve":
            code = (
                "from sympy import symbols, solve\nx, y = symbols('x y')\n"
                f"print(solve([x + {a} * y - {b}, {c} * x - y + {r}], [x, y]))\n"
                f"print(solve(x**2 - ({r + s}) * x + ({r * s}), x))"
            )
        elif kind == "simplify":
            code = (
                "from sympy import symbols, simplify\nx = symbols('x')\n"
                f"print(simplify((x**2 - {r * r}) / (x - {r}) + {a} * x / {b}))"
            )
        elif kind == "factor":
            code = (
                "from sympy import symbols, factor, expand\nx = symbols('x')\n"
                f"print(factor(expand((x + {r}) * (x - {b}) * (x + {c}))))"
            )
        else:
            code = (
                "from sympy import symbols, integrate, Rational\nx = symbols('x')\n"
                f"print(integrate({a} * x**{c % 5 + 1} - Rational({b}, {c}) * x + {r}, (x, 0, {c % 9 + 1})))"
            )
        if code not in seen:
            seen.add(code)
            snippets.append((kind, code))
    return snippets


# --- the Qwen2.5-Math executor (evaluation/python_executor.py), same behaviour -------------


class GenericRuntime:
    def __init__(self) -> None:
        self._global_vars: dict[str, Any] = {}

    def exec_code(self, code_piece: str) -> None:
        exec(code_piece, self._global_vars)

    def eval_code(self, expr: str) -> Any:
        return eval(expr, self._global_vars)


def _with_alarm(seconds: float, function: Any, *args: Any) -> Any:
    """timeout_decorator's signal mode: SIGALRM raises in the worker's main thread."""

    def expire(*_: Any) -> None:
        raise TimeoutError("Timed Out")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return function(*args)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def qwen_execute(code: list[str], runtime: GenericRuntime, timeout_length: float) -> tuple[Any, str]:
    """PythonExecutor.execute with auto_mode=True."""
    try:
        if "print(" in code[-1]:
            program_io = io.StringIO()
            with redirect_stdout(program_io):
                _with_alarm(timeout_length, runtime.exec_code, "\n".join(code))
            program_io.seek(0)
            result = program_io.read()
        else:
            _with_alarm(timeout_length, runtime.exec_code, "\n".join(code[:-1]))
            result = _with_alarm(timeout_length, runtime.eval_code, code[-1])
        report = "Done"
        str(result)
    except BaseException:
        result = ""
        report = traceback.format_exc().split("\n")[-2]
    return result, report


def qwen_truncate(s: str, max_length: int = 400) -> str:
    half = max_length // 2
    return s[:half] + "..." + s[-half:] if len(s) > max_length else s


def qwen_batch_apply(batch_code: list[str], timeout_length: float = 5.0) -> list[tuple[str, str]]:
    """PythonExecutor.batch_apply: one pebble worker, a new pool per call, per-item timeout."""
    from concurrent.futures import TimeoutError as FutureTimeout

    from pebble import ProcessPool

    snippets = [g.strip().split("\n") for g in batch_code]
    results: list[tuple[Any, str]] = []
    with ProcessPool(max_workers=min(len(snippets), 1)) as pool:
        executor = partial(qwen_execute, runtime=GenericRuntime(), timeout_length=timeout_length)
        iterator = pool.map(executor, snippets, timeout=timeout_length).result()
        while True:
            try:
                results.append(next(iterator))
            except StopIteration:
                break
            except FutureTimeout:
                results.append(("", "Timeout Error"))
    return [(qwen_truncate(str(res).strip()), qwen_truncate(str(report).strip())) for res, report in results]


# --- measurements -------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def warm_process_times(codes: list[str]) -> list[float]:
    """Seconds per snippet in one warm interpreter (a fresh spawned process, like a pool worker)."""
    import numpy  # noqa: F401
    import sympy  # noqa: F401

    times = []
    for code in codes:
        started = time.perf_counter()
        with redirect_stdout(io.StringIO()):
            exec(code, {})
        times.append(time.perf_counter() - started)
    return times


def bench_ours(codes: list[str], sample: list[int], workers: int | None, reuse: int) -> dict[str, Any]:
    from mathforge.sandbox import Sandbox

    started = time.perf_counter()
    with Sandbox(workers=workers, timeout=5.0, reuse=reuse) as sandbox:
        startup = time.perf_counter() - started
        sandbox.run_batch(codes[:20])  # the zygote's caches and spares, as in steady state
        started = time.perf_counter()
        results = sandbox.run_batch(codes)
        elapsed = time.perf_counter() - started
        latencies = []
        for index in sample:
            started = time.perf_counter()
            sandbox.run(codes[index])
            latencies.append(time.perf_counter() - started)
        protections = sandbox.protections
        workers = sandbox.workers
    return {
        "exec_per_s": round(len(codes) / elapsed, 1),
        "ok": sum(r.status == "ok" for r in results),
        "latencies": latencies,
        "startup_s": round(startup, 2),
        "workers": workers,
        "isolation": sorted(name for name, on in protections.items() if on),
        "isolation_off": sorted(name for name, on in protections.items() if not on),
        "stdout": [r.stdout.strip() for r in results],
    }


def bench_qwen(codes: list[str], sample: list[int]) -> dict[str, Any]:
    import numpy  # noqa: F401  (Qwen's evaluation process has both imported when it forks the pool)
    import sympy  # noqa: F401
    from pebble import ProcessPool

    started = time.perf_counter()
    results = qwen_batch_apply(codes)
    elapsed = time.perf_counter() - started
    latencies = []
    with ProcessPool(max_workers=1) as pool:  # best case for latency: one pool kept warm
        executor = partial(qwen_execute, runtime=GenericRuntime(), timeout_length=5.0)
        pool.schedule(executor, args=(["import sympy, numpy"],)).result()
        for index in sample:
            started = time.perf_counter()
            pool.schedule(executor, args=(codes[index].strip().split("\n"),), timeout=5.0).result()
            latencies.append(time.perf_counter() - started)
    return {
        "exec_per_s": round(len(codes) / elapsed, 1),
        "ok": sum(report == "Done" for _, report in results),
        "latencies": latencies,
        "stdout": [res for res, _ in results],
    }


def bench_subprocess(codes: list[str], workers: int) -> dict[str, Any]:
    def run(code: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
        return time.perf_counter() - started

    from concurrent.futures import ThreadPoolExecutor

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(run, codes))
    elapsed = time.perf_counter() - started
    latencies = [run(code) for code in codes]
    return {"exec_per_s": round(len(codes) / elapsed, 1), "latencies": latencies}


def summarize(result: dict[str, Any], fast: set[int], sample: list[int]) -> dict[str, Any]:
    latencies = result.pop("latencies")
    out = {key: value for key, value in result.items() if key != "stdout"}
    out["p50_ms"] = round(percentile(latencies, 0.50) * 1000, 1)
    out["p99_ms"] = round(percentile(latencies, 0.99) * 1000, 1)
    if sample:
        quick = [lat for index, lat in zip(sample, latencies, strict=False) if index in fast]
        out["p99_fast_ms"] = round(percentile(quick, 0.99) * 1000, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snippets", type=int, default=1000)
    parser.add_argument("--latency-sample", type=int, default=350)
    parser.add_argument("--subprocess-sample", type=int, default=100)
    parser.add_argument("--workers", type=int, default=None, help="sandbox workers (default: CPU cores)")
    args = parser.parse_args()

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one execution per core for every executor
    snippets = corpus(args.snippets)
    codes = [code for _, code in snippets]
    step = max(1, len(codes) // args.latency_sample)
    sample = list(range(0, len(codes), step))[: args.latency_sample]
    load_before = os.getloadavg()[0]

    ours = bench_ours(codes, sample, args.workers, reuse=1)
    reused = bench_ours(codes, sample, args.workers, reuse=100)
    qwen = bench_qwen(codes, sample)
    sub_step = max(1, len(codes) // args.subprocess_sample)
    subproc = bench_subprocess(codes[::sub_step][: args.subprocess_sample], ours["workers"])
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        warm = pool.submit(warm_process_times, codes).result()
    fast = {index for index, seconds in enumerate(warm) if seconds < 0.010}

    agree = sum(a == b for a, b in zip(ours["stdout"], qwen["stdout"], strict=True))
    report = {
        "bench": "sandbox",
        "snippets": len(codes),
        "kinds": list(KINDS),
        "latency_sample": len(sample),
        "subprocess_sample": args.subprocess_sample,
        "warm_process_mean_ms": round(sum(warm) / len(warm) * 1000, 2),
        "fast_snippets": len(fast),
        "ours": summarize(ours, fast, sample),
        "ours_reuse100": summarize(reused, fast, sample),
        "qwen_style": summarize(qwen, fast, sample),
        "python_c_subprocess": summarize(subproc, set(), []),
        "same_stdout_as_qwen": agree,
        "same_stdout_reuse100": sum(a == b for a, b in zip(reused["stdout"], qwen["stdout"], strict=True)),
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    qwen_rate = report["qwen_style"]["exec_per_s"]
    report["throughput_ratio_vs_qwen"] = round(report["ours"]["exec_per_s"] / qwen_rate, 2)
    report["throughput_ratio_vs_qwen_reuse100"] = round(report["ours_reuse100"]["exec_per_s"] / qwen_rate, 2)
    report["targets_met"] = {
        "throughput_ratio>=1.5": report["throughput_ratio_vs_qwen"] >= 1.5,
        "throughput_ratio>=1.5_reuse100": report["throughput_ratio_vs_qwen_reuse100"] >= 1.5,
        "p99_fast<100ms": report["ours"]["p99_fast_ms"] < 100,
        "p99_fast<100ms_reuse100": report["ours_reuse100"]["p99_fast_ms"] < 100,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
