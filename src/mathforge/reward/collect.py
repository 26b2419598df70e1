"""Reward-model data: n sampled responses per problem, labelled by the grader, kept when they form a pair.

Sampling runs through :mod:`mathforge.sampling` into a run directory (``config.yaml`` +
append-only ``samples.jsonl``), so it resumes after a kill exactly like ``mathforge eval``, and
``mathforge rm data --from-run`` builds the same file from an evaluation run. The RM data file is
derived from those records and rewritten whole after every run. Problems that overlap an
evaluation benchmark's test items are dropped before sampling (see :mod:`mathforge.data.decontam`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from mathforge.console import stderr_console
from mathforge.data.decontam import DecontamSummary, drop_contaminated
from mathforge.records import ProblemRecord
from mathforge.reward.records import RankedGroup
from mathforge.runs import RunDirectory
from mathforge.sampling import Sampler, SamplingRunConfig, open_run, sample_run


@dataclass
class RMDataSummary:
    """What sampling gave: how many problems can train the RM and why the others cannot."""

    problems: int
    responses: int
    correct_share: float
    pairable: int
    all_correct: int
    all_wrong: int
    out: str
    run_dir: str | None
    contaminated: int = 0  # problems dropped before sampling: they overlap an evaluation benchmark
    contaminated_by: dict[str, dict[str, int]] = field(default_factory=dict)


def default_run_dir(out: str | Path) -> Path:
    """``rm_data.jsonl`` -> ``rm_data.samples/``: where the sampled records live."""
    out = Path(out)
    return out.with_name(f"{out.stem}.samples")


def write_rm_data(
    records: Iterable[ProblemRecord],
    out: str | Path,
    run_dir: str | Path | None = None,
    decontamination: DecontamSummary | None = None,
) -> RMDataSummary:
    """Write one ``{id, prompt, responses, correct}`` line per problem with a correct and a wrong response.

    Problems whose responses are all correct or all wrong cannot form a pair: they are counted,
    not written. The file is replaced atomically, so a reader never sees half of it; the counts
    also go to ``OUT stem + .summary.json``.
    """
    out = Path(out)
    records = list(records)
    groups = [
        RankedGroup(
            id=record.id,
            prompt=record.prompt,
            responses=[sample.response for sample in record.samples],
            correct=list(record.correct),
        )
        for record in records
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    with partial.open("w", encoding="utf-8") as handle:
        for group in groups:
            if group.has_pair:
                handle.write(json.dumps(group.to_dict(), ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, out)
    responses = sum(len(group.correct) for group in groups)
    summary = RMDataSummary(
        problems=len(groups),
        responses=responses,
        correct_share=sum(group.n_correct for group in groups) / responses if responses else 0.0,
        pairable=sum(group.has_pair for group in groups),
        all_correct=sum(group.n_correct == len(group.correct) for group in groups),
        all_wrong=sum(group.n_correct == 0 for group in groups),
        out=str(out),
        run_dir=str(run_dir) if run_dir is not None else None,
        contaminated=decontamination.flagged if decontamination else 0,
        contaminated_by=decontamination.by_benchmark if decontamination else {},
    )
    summary_path = out.with_name(f"{out.stem}.summary.json")
    summary_path.write_text(json.dumps(asdict(summary), indent=2) + "\n", encoding="utf-8")
    return summary


def build_rm_data(
    config: SamplingRunConfig,
    out: str | Path,
    *,
    run_dir: str | Path | None = None,
    overwrite: bool = False,
    console: Any = None,
    sampler: Callable[[SamplingRunConfig], Sampler] | None = None,
) -> RMDataSummary:
    """Sample ``config.n`` responses per problem with the policy (resuming), grade them, write RM data.

    Problems overlapping an evaluation benchmark are dropped first (counted in the summary).
    ``sampler`` builds the model side instead of loading ``config.model`` (tests use a scripted engine).
    """
    run_path = Path(run_dir) if run_dir is not None else default_run_dir(out)
    config = config.resolved()
    console = console or stderr_console()
    run, selected = open_run(config, run_path, overwrite=overwrite, check_model=sampler is None)
    clean, removed = drop_contaminated(
        [problem for items in selected.values() for problem in items], config.data_dir, console
    )
    kept = {problem.id for problem in clean}
    problems = {bench: [p for p in items if p.id in kept] for bench, items in selected.items()}
    records = sample_run(config, run, problems, sampler=sampler, console=console)
    return write_rm_data([r for r in records.values() if r.id in kept], out, run_path, removed)


def rm_data_from_run(
    run_dir: str | Path, out: str | Path, data_dir: str | Path | None, console: Console
) -> RMDataSummary:
    """RM data from an existing ``mathforge eval --n K`` run, its contaminated problems left out."""
    records, removed = drop_contaminated(list(RunDirectory(run_dir).store.load().values()), data_dir, console)
    return write_rm_data(records, out, run_dir, removed)
