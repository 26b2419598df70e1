"""Run an evaluation: sample problems into a run directory (:mod:`mathforge.sampling`), then
compute metrics and the report from its records."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from mathforge.errors import InputError, MathforgeError
from mathforge.eval.config import EvalConfig
from mathforge.eval.report import load_rm_scores, markdown_report
from mathforge.metrics import summarize
from mathforge.records import Problem, ProblemRecord
from mathforge.sampling import Sampler, Scorer, load_sampler, open_run, sample_run


def compute_metrics(
    records: dict[str, ProblemRecord],
    problems: dict[str, list[Problem]],
    rm_scores: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    """metrics.json: per benchmark :func:`mathforge.metrics.summarize`, plus the average pass@1."""
    benches = {}
    for bench, items in problems.items():
        done = [records[problem.id] for problem in items if problem.id in records]
        benches[bench] = summarize(done, rm_scores=rm_scores)
    headline: dict[str, list[float]] = {}
    for result in benches.values():
        for name, stat in result.get("metrics", {}).items():
            headline.setdefault(name, []).append(stat["value"])
    average = {
        name: sum(values) / len(values) for name, values in headline.items() if len(values) == len(benches)
    }
    return {"benchmarks": benches, "average": average}


def evaluate(
    config: EvalConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    sampler: Callable[[EvalConfig], Sampler] | None = None,
    scorer: Scorer | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run (or resume) an evaluation into ``out`` and return its metrics.

    ``sampler`` builds the model side instead of loading ``config.model`` (tests pass a tiny or
    scripted engine, a trainer its policy in memory); ``scorer`` overrides ``config.rm``.
    Problems already in ``samples.jsonl`` are not sampled again. Every setting is checked before
    ``out`` is created or, with ``overwrite``, emptied.
    """
    config = config.resolved()
    rm_scores = load_rm_scores(config.rm_scores) if config.rm_scores else None
    if config.rm and scorer is None and not (Path(config.rm) / "config.json").is_file():
        raise MathforgeError(f"--rm {config.rm}: not a reward-model directory (no config.json)")
    run, problems = open_run(config, out, overwrite=overwrite, check_model=sampler is None)
    build = sampler or (lambda cfg: load_sampler(cfg, scorer or _load_scorer(cfg)))
    records = sample_run(config, run, problems, sampler=build, console=console)
    if config.rm_scores and rm_scores is not None:
        _check_rm_scores(config.rm_scores, rm_scores, records)
    metrics = compute_metrics(records, problems, rm_scores)
    run.metrics_path.write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    run.report_path.write_text(markdown_report(config.model_dump(mode="json"), metrics), encoding="utf-8")
    return metrics


def _check_rm_scores(path: str, scores: dict[str, list[float]], records: dict[str, ProblemRecord]) -> None:
    """Every problem's scores cover its samples (a file from another run would not)."""
    for problem_id, values in scores.items():
        record = records.get(problem_id)
        if record is not None and len(values) < len(record.samples):
            problem = f"{len(values)} scores for the {len(record.samples)} samples of {problem_id!r}"
            raise InputError(path, problem, field="scores")


def _load_scorer(config: EvalConfig) -> Scorer | None:
    if not config.rm:
        return None
    from mathforge.reward import RewardModel

    return RewardModel.from_pretrained(config.rm, dtype=config.dtype or "auto")
