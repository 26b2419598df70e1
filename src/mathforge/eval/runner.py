"""Run an evaluation: problems -> prompts -> engine (-> sandbox) -> graded records -> metrics.

Problems are processed in fixed chunks (``chunk_size`` problems of one benchmark, all their
samples generated together). Each chunk's sampling seed depends only on the run seed, the
benchmark and the chunk's position, and a chunk is always generated whole, so a run that is
killed and resumed produces exactly the records an uninterrupted run would; finished
problems are appended to ``samples.jsonl`` as soon as their chunk ends.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from mathforge.data import GeneratedSpec, Problem, bench_label, load_problems, parse_field_map
from mathforge.eval.config import IDENTITY_KEYS, EvalConfig
from mathforge.eval.records import Execution, ProblemRecord, SampleRecord
from mathforge.eval.report import load_rm_scores, markdown_report
from mathforge.eval.store import RunDirectory
from mathforge.metrics import group_answers, summarize


class Scorer(Protocol):
    """A reward model as evaluation uses it (``mathforge.reward.RewardModel`` fits)."""

    def score(self, prompts: list[str], responses: list[str]) -> list[float]: ...


def select_problems(config: EvalConfig) -> dict[str, list[Problem]]:
    """The problems of every benchmark of the run, in order, limited to ``config.limit`` each."""
    field_map = parse_field_map(config.field_map) if config.field_map else None
    generated = GeneratedSpec(
        n=config.gen_n, seed=config.gen_seed, level=config.gen_level, families=tuple(config.gen_families)
    )
    selected: dict[str, list[Problem]] = {}
    for name in config.benches:
        selected[bench_label(name)] = load_problems(
            name,
            data_dir=config.data_dir,
            split=config.split,
            limit=config.limit,
            field_map=field_map,
            generated=generated,
        )
    return selected


def exemplars(problem: Problem, shots: int | None) -> list[tuple[str, str]]:
    """The few-shot examples put before ``problem``: its protocol's, or ``shots`` when given."""
    from mathforge.prompts import few_shot_examples

    count = problem.shots if shots is None else shots
    return few_shot_examples(problem.benchmark, k=count) if count else []


def chunk_seed(seed: int, bench: str, chunk_index: int) -> int:
    """The sampling seed of one chunk: independent of which other chunks ran before it."""
    return (seed * 1_000_003 + zlib.crc32(f"{bench}/{chunk_index}".encode())) % 2**31


@dataclass
class _Generation:
    """The model side of a run: the engine, the TIR sandbox and an optional reward model.

    :func:`evaluate` builds one from the config; a caller holding a model in memory (a policy
    being trained) passes ``generation=lambda config: _Generation(config, engine, sandbox, None)``.
    """

    config: EvalConfig
    engine: Any
    sandbox: Any
    scorer: Scorer | None

    def prompts(self, problems: Sequence[Problem]) -> list[str]:
        from mathforge.prompts import render_prompt

        return [
            render_prompt(
                problem.question,
                self.engine.tokenizer,
                template=self.config.mode,
                few_shot=exemplars(problem, self.config.shots),
            )
            for problem in problems
        ]

    def close(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()

    def run(self, problems: Sequence[Problem], bench: str, seed: int) -> list[ProblemRecord]:
        from mathforge.engines import SamplingParams
        from mathforge.solve import solve_prompts

        config = self.config
        start = time.perf_counter()
        prompts = self.prompts(problems)
        params = SamplingParams(
            temperature=config.temperature,
            top_p=config.top_p,
            max_new_tokens=config.max_new_tokens,
            seed=seed,
        )
        trajectories = solve_prompts(
            prompts,
            self.engine,
            mode=config.mode,
            n=config.n,
            params=params,
            sandbox=self.sandbox,
            max_calls=config.max_calls,
            dataset=bench,
        )
        records = [
            build_record(problem, prompt, group, bench)
            for problem, prompt, group in zip(problems, prompts, trajectories, strict=True)
        ]
        if self.scorer is not None:
            flat = [(record.prompt, sample) for record in records for sample in record.samples]
            scores = self.scorer.score(
                [prompt for prompt, _ in flat], [sample.response for _, sample in flat]
            )
            for (_, sample), score in zip(flat, scores, strict=True):
                sample.rm_score = float(score)
        seconds = (time.perf_counter() - start) / max(len(records), 1)
        for record in records:
            record.seconds = seconds
        return records


def _execution(call: Any) -> Execution:
    data = (
        call.to_dict() if hasattr(call, "to_dict") else dict(call) if isinstance(call, dict) else vars(call)
    )
    return Execution.model_validate(data)


def build_record(problem: Problem, prompt: str, trajectories: Sequence[Any], bench: str) -> ProblemRecord:
    """Grade one problem's trajectories and group their answers for majority voting.

    Each response goes through :func:`mathforge.answers.grade` (the one grader every stage
    uses), and the answer it extracted is the one recorded, voted on and shown in reports.
    """
    from mathforge.answers import grade, is_equiv

    verdicts = [grade(trajectory.response, problem.gold, bench) for trajectory in trajectories]
    answers = [verdict.pred or "" for verdict in verdicts]
    groups = group_answers(answers, equiv=is_equiv)
    samples = [
        SampleRecord(
            response=trajectory.response,
            answer=answer,
            correct=verdict.correct,
            reason=verdict.reason,
            group=group,
            finish_reason=str(trajectory.finish_reason),
            completion_tokens=int(trajectory.completion_tokens),
            executions=[_execution(call) for call in trajectory.executions],
        )
        for trajectory, verdict, answer, group in zip(trajectories, verdicts, answers, groups, strict=True)
    ]
    return ProblemRecord(
        id=problem.id,
        benchmark=problem.benchmark,
        question=problem.question,
        gold=problem.gold,
        meta=problem.meta,
        prompt=prompt,
        prompt_tokens=int(trajectories[0].prompt_tokens) if trajectories else 0,
        samples=samples,
    )


def _load_generation(config: EvalConfig, scorer: Scorer | None) -> _Generation:
    from mathforge.engines import load_engine

    engine = load_engine(config.engine, config.model, **config.engine_options)
    sandbox = None
    if config.mode == "tir":
        from mathforge.sandbox import Sandbox

        sandbox = Sandbox()
    if scorer is None and config.rm:
        from mathforge.reward import RewardModel

        scorer = RewardModel.from_pretrained(config.rm, dtype=config.engine_options.get("dtype", "auto"))
    return _Generation(config, engine, sandbox, scorer)


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
    generation: Callable[[EvalConfig], Any] | None = None,
    scorer: Scorer | None = None,
    console: Console | None = None,
    problems: dict[str, list[Problem]] | None = None,
) -> dict[str, Any]:
    """Run (or resume) an evaluation into ``out`` and return its metrics.

    ``generation`` overrides how the engine is loaded (tests pass a tiny model); ``scorer``
    overrides ``config.rm``; ``problems`` replaces :func:`select_problems` (training stages
    pass the problems left after decontamination). Problems already in ``samples.jsonl`` are
    not generated again.
    """
    config = config.resolved()
    run = RunDirectory(out)
    if problems is None:
        problems = select_problems(config)  # bad data fails before the run directory is touched
    for items in problems.values():
        for problem in {(p.benchmark, p.shots): p for p in items}.values():
            exemplars(problem, config.shots)  # a missing few-shot set fails before any generation
    run.open(config.model_dump(mode="json"), identity=IDENTITY_KEYS, overwrite=overwrite)
    done = run.store.load()
    pending = sum(1 for items in problems.values() for problem in items if problem.id not in done)
    console = console or Console(stderr=True)
    if pending:
        model = generation(config) if generation is not None else _load_generation(config, scorer)
        try:
            _run_pending(config, model, problems, done, run, console)
        finally:
            run.store.close()
            model.close()
    rm_scores = load_rm_scores(config.rm_scores) if config.rm_scores else None
    metrics = compute_metrics(run.store.load(), problems, rm_scores)
    run.metrics_path.write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    run.report_path.write_text(markdown_report(config.model_dump(mode="json"), metrics), encoding="utf-8")
    return metrics


def _run_pending(
    config: EvalConfig,
    generation: _Generation,
    problems: dict[str, list[Problem]],
    done: dict[str, ProblemRecord],
    run: RunDirectory,
    console: Console,
) -> None:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    # A log file (nohup, CI) gets no live bar: one plain line per finished chunk instead.
    log_lines = not console.is_terminal
    with Progress(*columns, console=console, transient=False, disable=log_lines) as progress:
        for bench, items in problems.items():
            finished = sum(1 for problem in items if problem.id in done)
            task = progress.add_task(f"{bench} ({config.mode})", total=len(items), completed=finished)
            start, resumed_at = time.monotonic(), finished
            for index in range(0, len(items), config.chunk_size):
                chunk = items[index : index + config.chunk_size]
                missing = [problem for problem in chunk if problem.id not in done]
                if not missing:
                    continue
                seed = chunk_seed(config.seed, bench, index // config.chunk_size)
                records = generation.run(chunk, bench, seed)
                new = [record for record in records if record.id not in done]
                run.store.append(new)
                done.update((record.id, record) for record in new)
                progress.advance(task, len(new))
                finished += len(new)
                if log_lines:
                    elapsed = time.monotonic() - start
                    eta = elapsed / (finished - resumed_at) * (len(items) - finished)
                    console.print(
                        f"{bench} ({config.mode}): {finished}/{len(items)} problems, "
                        f"{_clock(elapsed)} elapsed, eta {_clock(eta)}",
                        highlight=False,
                    )


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
