"""Reward-model data: n sampled responses per problem, labelled by the grader, kept when they form a pair.

Sampling runs through :mod:`mathforge.sampling` into a run directory (``config.yaml`` +
append-only ``samples.jsonl``), so it resumes after a kill exactly like ``mathforge eval``, and
``mathforge rm data --from-run`` builds the same file from an evaluation run. The RM data file is
derived from those records and rewritten whole after every run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mathforge.records import ProblemRecord
from mathforge.reward.records import RankedGroup
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


def default_run_dir(out: str | Path) -> Path:
    """``rm_data.jsonl`` -> ``rm_data.samples/``: where the sampled records live."""
    out = Path(out)
    return out.with_name(f"{out.stem}.samples")


def write_rm_data(
    records: Iterable[ProblemRecord], out: str | Path, run_dir: str | Path | None = None
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

    ``sampler`` builds the model side instead of loading ``config.model`` (tests use a scripted engine).
    """
    run_path = Path(run_dir) if run_dir is not None else default_run_dir(out)
    config = config.resolved()
    run, problems = open_run(config, run_path, overwrite=overwrite, check_model=sampler is None)
    records = sample_run(config, run, problems, sampler=sampler, console=console)
    return write_rm_data(records.values(), out, run_path)
