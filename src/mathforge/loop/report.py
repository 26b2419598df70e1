"""``mathforge loop report``: what each stage did to held-out accuracy, with paired CIs against the base.

Reads only the run directory: the held-out evaluations each stage left (greedy pass@1 per set
and mode; maj@k and RM@k of each iteration's policy scored by its RM), the RMs' held-out
ranking metrics, what each data stage kept and dropped, and each stage's time and tokens.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import yaml
from rich.table import Table

from mathforge.errors import MathforgeError
from mathforge.eval.report import Run, load_run
from mathforge.jsonl import read_jsonl
from mathforge.loop.state import STATE_FILE
from mathforge.metrics import paired_difference, per_problem_table
from mathforge.reward.ranking import ranking_metrics


def _state(folder: Path) -> dict[str, Any] | None:
    path = folder / STATE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _stage_folders(run_dir: Path) -> list[Path]:
    """Stage folders in the loop's order (base first, then iteration by iteration)."""
    from mathforge.loop.config import load_config
    from mathforge.loop.runner import CONFIG_FILE
    from mathforge.loop.stages import build_stages

    found = {path.parent for path in run_dir.glob("*/*/" + STATE_FILE)}
    order = [run_dir / stage.name for stage in build_stages(load_config(str(run_dir / CONFIG_FILE)), run_dir)]
    return [folder for folder in order if folder in found]


def _runs(folder: Path) -> dict[str, Run]:
    """The finished evaluation runs under a stage folder, by ``set-mode``."""
    runs = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if (path / "metrics.json").is_file():
            runs[path.name] = load_run(path)
    return runs


def _model_label(stage: str) -> str:
    return "base" if stage == "base/eval" else stage.removesuffix("-eval")


def _per_problem(run: Run, metric: str) -> dict[str, float]:
    return per_problem_table(list(run.records().values()), metric, run.rm_scores())


def _first_bench(run: Run) -> dict[str, Any]:
    return next(iter(run.benchmarks.values()), {})


def _metric(run: Run, metric: str) -> dict[str, Any] | None:
    return _first_bench(run).get("metrics", {}).get(metric)


def build_report(run_dir: str | Path) -> dict[str, Any]:
    """Every number of the report as plain data (the ``--json`` output)."""
    run_dir = Path(run_dir)
    from mathforge.loop.runner import CONFIG_FILE

    if not (run_dir / CONFIG_FILE).is_file():
        raise MathforgeError(
            f"{run_dir}: not a loop run directory (no {CONFIG_FILE}); run `mathforge loop run` first"
        )
    base_runs = _runs(run_dir / "base" / "eval")
    rows: list[dict[str, Any]] = []
    stages: list[dict[str, Any]] = []
    rm_quality: list[dict[str, Any]] = []
    for folder in _stage_folders(run_dir):
        name = str(folder.relative_to(run_dir))
        state = _state(folder) or {}
        stages.append(_stage_summary(name, folder, state))
        if name == "base/eval" or (name.endswith("-eval") and not name.endswith("rm-eval")):
            for key, run in _runs(folder).items():
                rows.append(_accuracy_row(_model_label(name), key, run, base_runs.get(key)))
        elif name.endswith("/rm-eval"):
            for key, run in _runs(folder).items():
                rm_quality.append(_rm_row(name, key, run, run_dir))
    return {"run_dir": str(run_dir), "rows": rows, "rm": rm_quality, "stages": stages}


def _accuracy_row(stage: str, key: str, run: Run, base: Run | None) -> dict[str, Any]:
    set_name, _, mode = key.rpartition("-")
    stat = _metric(run, "pass@1") or {"value": math.nan, "ci": [math.nan, math.nan]}
    row: dict[str, Any] = {
        "stage": stage,
        "set": set_name,
        "mode": mode,
        "metric": "pass@1",
        "value": stat["value"],
        "ci": stat["ci"],
        "problems": _first_bench(run).get("problems", 0),
        "diff_vs_base": None,
        "diff_ci": None,
    }
    if base is not None and stage != "base":
        before, after = _per_problem(base, "pass@1"), _per_problem(run, "pass@1")
        shared = sorted(set(before) & set(after))
        if shared:
            diff = paired_difference([before[i] for i in shared], [after[i] for i in shared])
            row |= {"diff_vs_base": diff["diff"], "diff_ci": diff["ci"], "shared": len(shared)}
    return row


def _rm_row(stage: str, key: str, run: Run, run_dir: Path) -> dict[str, Any]:
    """maj@n against RM@n of one iteration's policy, and its RM's held-out ranking metrics."""
    iteration = stage.split("/")[0]
    n = _first_bench(run).get("samples_per_problem", 0)
    row: dict[str, Any] = {"iteration": iteration, "set": key, "n": n}
    for metric in ("pass@1", f"maj@{n}", f"rm@{n}"):
        stat = _metric(run, metric)
        if stat is not None:
            row[metric.split("@")[0]] = {"value": stat["value"], "ci": stat["ci"]}
    if _metric(run, f"rm@{n}") is not None:
        majority, reranked = _per_problem(run, f"maj@{n}"), _per_problem(run, f"rm@{n}")
        shared = sorted(set(majority) & set(reranked))
        diff = paired_difference([majority[i] for i in shared], [reranked[i] for i in shared])
        row["rm_minus_maj"] = {"value": diff["diff"], "ci": diff["ci"]}
        row["sample_pairwise_accuracy"], row["sample_pair_problems"] = _sample_pairwise(run)
    metrics_path = run_dir / iteration / "rm" / "metrics.json"
    if metrics_path.is_file():
        trained = json.loads(metrics_path.read_text(encoding="utf-8"))
        row["pairwise_accuracy"] = trained.get("metrics", {}).get("pairwise_accuracy")
        row["rm_train_problems"] = trained.get("train_problems")
        row["rm_eval_problems"] = trained.get("eval_problems")
    skipped = run_dir / iteration / "rm" / "skipped.json"
    if skipped.is_file():
        row["rm_skipped"] = json.loads(skipped.read_text(encoding="utf-8")).get("reason")
    return row


def _sample_pairwise(run: Run) -> tuple[float | None, int]:
    """The RM's pairwise accuracy on the held-out samples it reranked (mean over the problems with
    a right and a wrong sample), and how many such problems there were: the ranking RM@n rests on,
    on more problems than the few the RM's training holds out."""
    external = run.rm_scores() or {}
    scores, correct = [], []
    for problem, record in run.records().items():
        ranked = external.get(problem) or [sample.rm_score for sample in record.samples]
        if len(ranked) == len(record.samples) and all(score is not None for score in ranked):
            scores.append(ranked)
            correct.append([sample.correct for sample in record.samples])
    metrics = ranking_metrics(scores, correct)
    pairs = int(metrics["problems_with_pairs"])
    return (metrics["pairwise_accuracy"] if pairs else None), pairs


def _stage_summary(name: str, folder: Path, state: dict[str, Any]) -> dict[str, Any]:
    """Time, tokens and data kept/dropped of one stage."""
    result = state.get("result", {})
    summary: dict[str, Any] = {
        "stage": name,
        "done": state.get("done", False),
        "seconds": state.get("seconds"),
    }
    tokens = 0
    for run in _runs(folder).values():
        for bench in run.benchmarks.values():
            tokens += bench.get("tokens", {}).get("completion", 0)
    tokens += _sampled_tokens(folder) + _rollout_tokens(folder)
    if tokens:
        summary["generated_tokens"] = tokens
    metrics_path = folder / "metrics.json"
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        for key in (
            "trained_tokens",
            "steps",
            "eval_loss_start",
            "eval_loss",
            "reward_first",
            "reward_last",
            "accuracy_first",
            "accuracy_last",
        ):
            if metrics.get(key) is not None:
                summary[key] = metrics[key]
    summary["data"] = _data_counts(result)
    return summary


def _sampled_tokens(folder: Path) -> int:
    """Tokens generated by a stage's sampling runs that are not evaluations (RM data, rejection
    sampling): their ``*.samples/samples.jsonl``."""
    total = 0
    for path in sorted(folder.glob("*.samples/samples.jsonl")):
        for _, record in read_jsonl(path):
            total += sum(int(sample.get("completion_tokens") or 0) for sample in record.get("samples", []))
    return total


def _rollout_tokens(folder: Path) -> int:
    """Tokens a GRPO stage generated: each step's mean response length times its rollouts."""
    steps, config = folder / "steps.jsonl", folder / "config.yaml"
    if not steps.is_file() or not config.is_file():
        return 0
    settings = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    rollouts = int(settings.get("group", 0)) * int(settings.get("problems_per_step", 0))
    return round(sum((step.get("response_length") or 0) * rollouts for _, step in read_jsonl(steps)))


def _data_counts(result: dict[str, Any]) -> dict[str, Any]:
    """Kept and dropped counts from a data stage's result (bootstrap, RM data, RS)."""
    counts: dict[str, Any] = {}
    if "records" in result:
        counts["records_kept"] = result["records"]
        counts["held_out_duplicates"] = result.get("held_out_duplicates", 0)
    dropped: dict[str, int] = {}
    for part in [*result.get("sources", {}).values(), *result.get("modes", {}).values()]:
        for reason, count in part.get("dropped", {}).items():
            dropped[reason] = dropped.get(reason, 0) + count
        if part.get("no_majority"):
            dropped["no majority"] = dropped.get("no majority", 0) + part["no_majority"]
    if "pairable" in result:
        counts |= {
            "problems": result.get("problems"),
            "pairable": result["pairable"],
            "contaminated": result.get("contaminated", 0),
        }
    if dropped:
        counts["dropped"] = dropped
    if result.get("skipped"):
        counts["skipped"] = result.get("reason")
    return counts


def _pct(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def _with_ci(value: float | None, ci: list[float] | None, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    sign = "+" if signed else ""
    text = f"{100 * value:{sign}.1f}"
    if ci and not any(math.isnan(bound) for bound in ci):
        text += f" [{100 * ci[0]:{sign}.1f}, {100 * ci[1]:{sign}.1f}]"
    return text


def accuracy_table(report: dict[str, Any]) -> Table:
    """Stage x held-out set: greedy pass@1 with its 95% CI and the paired difference from the base.

    One row per stage and set keeps the table narrow whatever the number of sets."""
    table = Table(title="held-out accuracy by stage (greedy pass@1 %, 95% CI; vs base: paired difference)")
    for column in ("stage", "held-out set", "problems", "pass@1", "vs base"):
        table.add_column(
            column, justify="left" if column in ("stage", "held-out set") else "right", no_wrap=True
        )
    keys = list(dict.fromkeys((row["set"], row["mode"]) for row in report["rows"]))
    for set_name, mode in keys:
        rows = [row for row in report["rows"] if (row["set"], row["mode"]) == (set_name, mode)]
        for index, row in enumerate(rows):
            table.add_row(
                row["stage"],
                f"{set_name} {mode}",
                str(row["problems"]),
                _with_ci(row["value"], row["ci"]),
                _with_ci(row["diff_vs_base"], row["diff_ci"], signed=True),
                end_section=index == len(rows) - 1,
            )
    return table


def rm_table(report: dict[str, Any]) -> Table:
    """Per iteration: its policy's sampled pass@1, maj@n and RM@n on a held-out set, the paired
    RM@n - maj@n, the RM's pairwise accuracy on those samples and on its training hold-out."""
    table = Table(title="reward model per iteration (held-out, sampled; %, 95% CI)")
    for column in ("iteration", "held-out set", "metric", "value"):
        table.add_column(column, justify="right" if column == "value" else "left", no_wrap=True)
    for index, row in enumerate(report["rm"]):
        n = row["n"]
        lines = [
            (f"pass@1 (n={n})", row.get("pass")),
            (f"maj@{n}", row.get("maj")),
            (f"RM@{n}", row.get("rm")),
        ]
        cells = [(name, _with_ci(stat["value"], stat["ci"])) for name, stat in lines if stat]
        diff = row.get("rm_minus_maj")
        if diff:
            cells.append((f"RM@{n} - maj@{n}", _with_ci(diff["value"], diff["ci"], signed=True)))
        if row.get("sample_pairwise_accuracy") is not None:
            label = f"RM pairwise accuracy ({row['sample_pair_problems']} problems with pairs)"
            cells.append((label, _pct(row["sample_pairwise_accuracy"])))
        if row.get("pairwise_accuracy") is not None:
            held_out = row.get("rm_eval_problems")
            label = "RM pairwise accuracy, training hold-out"
            label += f" ({held_out} problems)" if held_out else ""
            cells.append((label, _pct(row["pairwise_accuracy"])))
        if row.get("rm_skipped"):
            cells.append(("RM", f"not trained: {row['rm_skipped']}"))
        for position, (name, value) in enumerate(cells):
            table.add_row(
                row["iteration"] if position == 0 else "",
                row["set"] if position == 0 else "",
                name,
                value,
                end_section=position == len(cells) - 1 and index < len(report["rm"]) - 1,
            )
    return table


def stage_table(report: dict[str, Any]) -> Table:
    table = Table(
        title="stages: time, tokens, data kept / dropped",
        caption="tokens: generated (evaluations, sampling, GRPO rollouts) or trained on (SFT, RM)",
    )
    for column in ("stage", "status", "time", "tokens", "data"):
        table.add_column(column, justify="left" if column in ("stage", "data") else "right")
    for stage in report["stages"]:
        seconds = stage.get("seconds")
        tokens = stage.get("generated_tokens") or stage.get("trained_tokens")
        table.add_row(
            stage["stage"],
            "done" if stage["done"] else "unfinished",
            f"{seconds / 60:.1f} min" if seconds is not None else "-",
            f"{tokens:,}" if tokens else "-",
            _data_text(stage),
        )
    return table


def _data_text(stage: dict[str, Any]) -> str:
    data = stage.get("data", {})
    parts = []
    if "records_kept" in data:
        parts.append(f"{data['records_kept']:,} records kept")
    if data.get("held_out_duplicates"):
        parts.append(f"{data['held_out_duplicates']:,} held-out duplicates dropped")
    if "pairable" in data:
        parts.append(f"{data['pairable']:,}/{data['problems']:,} problems pairable")
    if data.get("contaminated"):
        parts.append(f"{data['contaminated']:,} contaminated")
    parts += [f"{count:,} {reason}" for reason, count in sorted(data.get("dropped", {}).items())]
    if data.get("skipped"):
        parts.append(f"skipped: {data['skipped']}")
    if stage.get("eval_loss") is not None:
        start = stage.get("eval_loss_start")
        parts.append(
            f"held-out loss {start:.3f} -> {stage['eval_loss']:.3f}"
            if start
            else f"held-out loss {stage['eval_loss']:.3f}"
        )
    if stage.get("reward_last") is not None:
        parts.append(f"reward {stage.get('reward_first', 0):.3f} -> {stage['reward_last']:.3f}")
    return "; ".join(parts)


def json_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``--json`` rows: one per stage, held-out set and metric."""
    rows = [
        {
            "stage": row["stage"],
            "set": f"{row['set']}-{row['mode']}",
            "metric": row["metric"],
            "value": row["value"],
            "ci": row["ci"],
            "diff_vs_base": row["diff_vs_base"],
            "diff_ci": row["diff_ci"],
            "problems": row["problems"],
        }
        for row in report["rows"]
    ]
    for row in report["rm"]:
        for key in ("pass", "maj", "rm"):
            if key in row:
                metric = "pass@1" if key == "pass" else f"{key}@{row['n']}"
                rows.append(
                    {
                        "stage": f"{row['iteration']}/rm-eval",
                        "set": row["set"],
                        "metric": metric,
                        "value": row[key]["value"],
                        "ci": row[key]["ci"],
                        "diff_vs_base": None,
                        "diff_ci": None,
                    }
                )
    return rows


def render_html(report: dict[str, Any]) -> str:
    """A self-contained page: the three tables and the accuracy-by-stage plot."""
    import io

    from rich.console import Console

    console = Console(record=True, width=200, file=io.StringIO())
    for table in (accuracy_table(report), rm_table(report), stage_table(report)):
        console.print(table)
    tables = console.export_html(inline_styles=True, code_format="<pre>{code}</pre>")
    plot = _accuracy_plot(report)
    image = f"<img alt='accuracy by stage' src='data:image/png;base64,{plot}'>" if plot else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>mathforge loop report</title></head>"
        "<body style='font-family:sans-serif;margin:2em'>"
        f"<h1>mathforge loop: {html.escape(report['run_dir'])}</h1>"
        f"<h2>Held-out accuracy by stage</h2>{image}{tables}</body></html>"
    )


def _accuracy_plot(report: dict[str, Any]) -> str | None:
    if not report["rows"]:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mathforge.eval.report import figure_png

    stages = list(dict.fromkeys(row["stage"] for row in report["rows"]))
    keys = list(dict.fromkeys(f"{row['set']} {row['mode']}" for row in report["rows"]))
    figure, axes = plt.subplots(figsize=(max(6.0, 1.4 * len(stages) + 2), 4))
    for key in keys:
        xs, ys, low, high = [], [], [], []
        for position, stage in enumerate(stages):
            row = next(
                (r for r in report["rows"] if r["stage"] == stage and f"{r['set']} {r['mode']}" == key), None
            )
            if row is None or math.isnan(row["value"]):
                continue
            xs.append(position)
            ys.append(100 * row["value"])
            low.append(100 * (row["value"] - row["ci"][0]))
            high.append(100 * (row["ci"][1] - row["value"]))
        axes.errorbar(xs, ys, yerr=[low, high], marker="o", capsize=3, label=key)
    axes.set_xticks(range(len(stages)), stages, rotation=20, ha="right")
    axes.set_ylabel("greedy pass@1 (%)")
    axes.set_title("Held-out accuracy by stage (95% CI)")
    axes.legend(fontsize=8)
    image = figure_png(figure)
    plt.close(figure)
    return image
