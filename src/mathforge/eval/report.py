"""Reports of evaluation runs: the terminal table, ``report.md``, side-by-side comparison, HTML.

The comparison puts runs side by side per benchmark and metric and gives each run's
difference from the first run with a paired-bootstrap 95% CI over the problems both runs
share: this is how later stages (SFT, RL, reward-model reranking) show their gains.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from mathforge.errors import InputError, MathforgeError
from mathforge.jsonl import read_jsonl
from mathforge.metrics import paired_difference, per_problem_table
from mathforge.records import ProblemRecord
from mathforge.runs import RunDirectory


@dataclass
class Run:
    """A finished run directory: its config, metrics and (loaded on demand) records."""

    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    _records: dict[str, ProblemRecord] | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        mode = self.config.get("mode")
        name = self.path.name or str(self.path)
        return f"{name} ({mode})" if mode and mode not in name else name

    @property
    def benchmarks(self) -> dict[str, Any]:
        return self.metrics.get("benchmarks", {})

    def records(self) -> dict[str, ProblemRecord]:
        if self._records is None:
            self._records = RunDirectory(self.path).store.load()
        return self._records

    def rm_scores(self) -> dict[str, list[float]] | None:
        path = self.config.get("rm_scores")
        return load_rm_scores(path) if path else None


def load_rm_scores(path: str | Path) -> dict[str, list[float]]:
    """A precomputed reward-score file: JSONL lines ``{"id": ..., "scores": [one per sample]}``."""
    scores: dict[str, list[float]] = {}
    for line, row in read_jsonl(path):
        if "id" not in row:
            raise InputError(path, "missing", line=line, field="id")
        values = row.get("scores")
        if not isinstance(values, list) or not all(isinstance(v, (int, float)) for v in values):
            raise InputError(path, "expected a list of numbers", line=line, field="scores")
        scores[str(row["id"])] = [float(v) for v in values]
    return scores


def load_run(path: str | Path) -> Run:
    """Read a run directory written by ``mathforge eval`` (needs ``config.yaml`` and ``metrics.json``)."""
    run_dir = RunDirectory(path)
    config = run_dir.read_config()
    if not run_dir.metrics_path.is_file():
        raise MathforgeError(
            f"{run_dir.path}: no {run_dir.metrics_path.name} yet; run `mathforge eval` to finish it"
        )
    try:
        metrics = json.loads(run_dir.metrics_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MathforgeError(f"{run_dir.metrics_path}: not valid JSON ({exc.msg})") from None
    return Run(Path(path), config, metrics)


def headline_metrics(bench_metrics: dict[str, Any]) -> list[str]:
    """The metrics a table shows for a benchmark: pass@1, then maj/rm/pass at the largest k."""
    metrics = bench_metrics.get("metrics", {})
    n = bench_metrics.get("samples_per_problem", 1)
    names = ["pass@1"] + [f"{family}@{n}" for family in ("maj", "rm", "pass") if n > 1]
    return [name for name in names if name in metrics]


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def _with_ci(stat: dict[str, Any] | None) -> str:
    if not stat:
        return "-"
    low, high = stat["ci"]
    return f"{_pct(stat['value'])} [{_pct(low)}, {_pct(high)}]"


def metrics_table(metrics: dict[str, Any], title: str = "evaluation") -> Table:
    """One run: a row per benchmark with accuracy metrics (%, 95% CI) and counts.

    Tool-call columns appear only when some response called the sandbox (TIR runs).
    """
    benches = metrics.get("benchmarks", {})
    names: list[str] = []
    for bench in benches.values():
        names += [name for name in headline_metrics(bench) if name not in names]
    tools = any(bench.get("counts", {}).get("tool_calls", 0) for bench in benches.values())
    counts = [("empty", "empty_answers"), ("trunc", "truncated")]
    if tools:
        counts += [("calls", "tool_calls"), ("timeouts", "sandbox_timeouts")]
    table = Table(title=title)
    table.add_column("benchmark")
    table.add_column("n", justify="right")
    for name in names:
        table.add_column(f"{name} % [95% CI]", justify="right")
    for header, _ in counts:
        table.add_column(header, justify="right")
    table.add_column("tok/resp", justify="right")
    table.add_column("s", justify="right")
    for bench_name, bench in benches.items():
        row_counts = bench.get("counts", {})
        table.add_row(
            bench_name,
            str(bench.get("problems", 0)),
            *[_with_ci(bench.get("metrics", {}).get(name)) for name in names],
            *[str(row_counts.get(key, "-")) for _, key in counts],
            f"{bench.get('tokens', {}).get('completion_mean', 0):.0f}",
            f"{bench.get('wall_seconds', 0):.0f}",
        )
    if len(benches) > 1 and "average" in metrics:
        table.add_row("average", "", *[_pct(metrics["average"].get(name)) for name in names])
    return table


def markdown_report(config: dict[str, Any], metrics: dict[str, Any]) -> str:
    """``report.md``: the run's settings, the metrics table and breakdowns, in Markdown."""
    lines = ["# Evaluation report", "", "| setting | value |", "|---|---|"]
    for key in (
        "model",
        "engine",
        "mode",
        "benches",
        "n",
        "temperature",
        "top_p",
        "max_new_tokens",
        "limit",
        "seed",
    ):
        if key in config:
            lines.append(f"| {key} | {config[key]} |")
    lines += ["", "## Results (%, 95% bootstrap CI)", ""]
    benches = metrics.get("benchmarks", {})
    names: list[str] = []
    for bench in benches.values():
        names += [name for name in headline_metrics(bench) if name not in names]
    lines.append(
        "| benchmark | problems | " + " | ".join(names) + " | empty | truncated | timeouts | tokens/resp |"
    )
    lines.append("|---" * (len(names) + 6) + "|")
    for bench_name, bench in benches.items():
        counts = bench.get("counts", {})
        cells = [str(bench.get("problems", 0))]
        cells += [_with_ci(bench.get("metrics", {}).get(name)) for name in names]
        cells += [str(counts.get(key, "-")) for key in ("empty_answers", "truncated", "sandbox_timeouts")]
        cells.append(f"{bench.get('tokens', {}).get('completion_mean', 0):.0f}")
        lines.append(f"| {bench_name} | " + " | ".join(cells) + " |")
    for bench_name, bench in benches.items():
        for key, buckets in bench.get("breakdown", {}).items():
            lines += [
                "",
                f"### {bench_name} by {key}",
                "",
                "| " + key + " | problems | pass@1 % |",
                "|---|---|---|",
            ]
            for value, row in buckets.items():
                lines.append(f"| {value} | {row['problems']} | {_pct(row['pass@1'])} |")
    return "\n".join(lines) + "\n"


def compare_runs(runs: list[Run]) -> dict[str, Any]:
    """Per benchmark and metric: each run's value and CI, and its paired difference from the first run."""
    if not runs:
        raise MathforgeError("give at least one run directory")
    base = runs[0]
    benches: list[str] = []
    for run in runs:
        benches += [name for name in run.benchmarks if name not in benches]
    comparison: dict[str, Any] = {"runs": [run.label for run in runs], "benchmarks": {}}
    for bench in benches:
        metrics: list[str] = []
        for run in runs:
            if bench in run.benchmarks:
                metrics += [name for name in headline_metrics(run.benchmarks[bench]) if name not in metrics]
        rows: dict[str, Any] = {}
        for metric in metrics:
            row: dict[str, Any] = {"values": [], "problems": [], "diffs": []}
            for run in runs:
                stat = run.benchmarks.get(bench, {}).get("metrics", {}).get(metric)
                row["values"].append(stat)
                row["problems"].append(run.benchmarks.get(bench, {}).get("problems", 0))
            base_table = _per_problem(base, bench, metric)
            for run in runs[1:]:
                other = _per_problem(run, bench, metric)
                shared = sorted(set(base_table) & set(other))
                if not shared:
                    row["diffs"].append(None)
                    continue
                diff = paired_difference([base_table[i] for i in shared], [other[i] for i in shared])
                row["diffs"].append(diff | {"problems": len(shared)})
            rows[metric] = row
        comparison["benchmarks"][bench] = rows
    return comparison


def _per_problem(run: Run, bench: str, metric: str) -> dict[str, float]:
    records = [record for record in run.records().values() if record.benchmark == bench]
    return per_problem_table(records, metric, run.rm_scores())


def _signed(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:+.1f}"


def _diff_texts(row: dict[str, Any]) -> list[str]:
    """``+4.0 [+1.0, +7.0]`` per later run, naming the shared problems when the runs' sets differ."""
    texts = []
    for index, diff in enumerate(row["diffs"], start=1):
        if diff is None:
            texts.append("-")
            continue
        text = f"{_signed(diff['diff'])} [{_signed(diff['ci'][0])}, {_signed(diff['ci'][1])}]"
        if not diff["problems"] == row["problems"][0] == row["problems"][index]:
            text += f"\non {diff['problems']} shared"  # a line of its own: keeps the column narrow
        texts.append(text)
    return texts


def comparison_table(comparison: dict[str, Any]) -> Table:
    """Benchmark x metric rows, one column per run, then each run's difference from the first."""
    runs = comparison["runs"]
    table = Table(title="runs compared (%, 95% CI; differences are paired over shared problems)")
    # Row labels and a value with its interval each read as one unit: never wrapped. A column is
    # as wide as its longest line, so long texts (a difference's header, its "on N shared") are
    # split over two lines instead.
    table.add_column("benchmark", no_wrap=True)
    table.add_column("metric", no_wrap=True)
    for label in runs:
        table.add_column(label, justify="right", no_wrap=True)
    for label in runs[1:]:
        table.add_column(f"{label}\n- {runs[0]}", justify="right", no_wrap=True)
    for bench, rows in comparison["benchmarks"].items():
        for metric, row in rows.items():
            table.add_row(bench, metric, *[_with_ci(v) for v in row["values"]], *_diff_texts(row))
    return table


def figure_png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _plots(runs: list[Run]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images: list[tuple[str, str]] = []
    benches: list[str] = []
    for run in runs:
        benches += [name for name in run.benchmarks if name not in benches]
    figure, axes = plt.subplots(figsize=(max(6.0, 1.2 * len(benches) * max(1, len(runs)) / 2 + 3), 4))
    width = 0.8 / len(runs)
    for index, run in enumerate(runs):
        values, lows, highs = [], [], []
        for bench in benches:
            stat = run.benchmarks.get(bench, {}).get("metrics", {}).get("pass@1")
            value = 100 * stat["value"] if stat else 0.0
            values.append(value)
            lows.append(value - 100 * stat["ci"][0] if stat else 0.0)
            highs.append(100 * stat["ci"][1] - value if stat else 0.0)
        positions = [b + index * width for b in range(len(benches))]
        axes.bar(positions, values, width, yerr=[lows, highs], capsize=3, label=run.label)
    axes.set_xticks(
        [b + width * (len(runs) - 1) / 2 for b in range(len(benches))], benches, rotation=30, ha="right"
    )
    axes.set_ylabel("pass@1 (%)")
    axes.set_title("Accuracy per benchmark and run (95% CI)")
    axes.legend(fontsize=8)
    images.append(("Accuracy per benchmark", figure_png(figure)))
    plt.close(figure)

    for bench in benches:
        curves = [(run, run.benchmarks.get(bench, {}).get("curves")) for run in runs]
        curves = [(run, curve) for run, curve in curves if curve]
        if not curves:
            continue
        figure, axes = plt.subplots(figsize=(6, 4))
        for run, curve in curves:
            for family, style in (("maj", "-o"), ("rm", "-s"), ("pass", ":")):
                if family in curve:
                    ks = [int(k) for k in curve[family]]
                    axes.plot(
                        ks, [100 * curve[family][str(k)] for k in ks], style, label=f"{family}@k {run.label}"
                    )
        axes.set_xscale("log", base=2)
        all_ks = sorted({int(k) for _, curve in curves for family in curve.values() for k in family})
        axes.set_xticks(all_ks, [str(k) for k in all_ks])
        axes.set_xlabel("k (samples)")
        axes.set_ylabel("accuracy (%)")
        axes.set_title(f"{bench}: maj@k / RM@k / pass@k")
        axes.legend(fontsize=7)
        images.append((f"{bench}: curves over k", figure_png(figure)))
        plt.close(figure)
    return images


def render_html(runs: list[Run], comparison: dict[str, Any]) -> str:
    """A self-contained HTML page: the comparison table and matplotlib plots (PNG, base64)."""
    labels = comparison["runs"]
    head = "".join(f"<th>{html.escape(label)}</th>" for label in labels)
    head += "".join(f"<th>{html.escape(label)} &minus; {html.escape(labels[0])}</th>" for label in labels[1:])
    body = []
    for bench, rows in comparison["benchmarks"].items():
        for metric, row in rows.items():
            cells = "".join(f"<td>{_with_ci(v)}</td>" for v in row["values"])
            cells += "".join(f"<td>{html.escape(text)}</td>" for text in _diff_texts(row))
            body.append(f"<tr><td>{html.escape(bench)}</td><td>{metric}</td>{cells}</tr>")
    images = "".join(
        f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>"
        for title, data in _plots(runs)
    )
    settings = "".join(
        f"<tr><td>{html.escape(run.label)}</td><td>{html.escape(str(run.config.get('model')))}</td>"
        f"<td>{run.config.get('n')}</td><td>{run.config.get('temperature')}</td></tr>"
        for run in runs
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>mathforge report</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}</style>"
        "</head><body><h1>mathforge evaluation report</h1>"
        f"<table><tr><th>run</th><th>model</th><th>n</th><th>temperature</th></tr>{settings}</table>"
        "<h2>Results (%, 95% CI; differences paired over shared problems)</h2>"
        f"<table><tr><th>benchmark</th><th>metric</th>{head}</tr>{''.join(body)}</table>"
        f"{images}</body></html>"
    )
