"""Rejection sampling: the policy's own correct solutions become the next round's SFT data.

As in the Qwen2.5-Math recipe: sample n responses per problem, label them with the grader
against the gold answer (or, for a problem without one, by majority vote: a pseudo-label kept
only when the winning answer's share reaches ``min_vote``), keep the correct ones, and choose
K of them: the top K by reward-model score when the samples carry one, else K distinct
responses preferring shorter. Truncated responses (out of tokens or of tool calls) and
degenerate ones (looping text) are never kept.

Sampling runs through :mod:`mathforge.sampling` into a run directory, so it resumes after a
kill like ``mathforge eval`` and stores every sample before selection: another ``--keep`` or
``--min-vote`` reselects without sampling again. Problems overlapping an evaluation benchmark
are dropped before sampling (:mod:`mathforge.data.decontam`).
"""

from __future__ import annotations

import json
import os
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field
from rich.console import Console

from mathforge.console import stderr_console
from mathforge.data.decontam import drop_contaminated
from mathforge.prompts import prompt_messages
from mathforge.records import ProblemRecord, SampleRecord
from mathforge.sampling import Sampler, SamplingRunConfig, load_sampler, open_run, sample_run
from mathforge.solve.code import FENCE, OUTPUT_FENCE

# A response this long whose zlib-compressed size is below this share of its length repeats itself.
_DEGENERATE_MIN_CHARS = 400
_DEGENERATE_RATIO = 0.12
_DEGENERATE_LINE_REPEATS = 5


class RejectionConfig(SamplingRunConfig):
    """Everything ``mathforge rs`` needs; its sampling settings are those of every sampling command."""

    # Selection happens after sampling: changing it reselects from the stored samples.
    FREE_KEYS: ClassVar[tuple[str, ...]] = (*SamplingRunConfig.FREE_KEYS, "keep", "min_vote")
    GOLD_OPTIONAL: ClassVar[bool] = True  # problems without gold are labelled by majority vote

    rm: str | None = Field(None, description="Reward-model directory: keep the top K correct by RM score.")
    keep: int = Field(4, ge=1, description="Responses kept per problem (K).")
    min_vote: float = Field(
        0.5, ge=0.0, le=1.0, description="Without gold: the majority answer's share needed to pseudo-label."
    )


@dataclass
class RSSummary:
    """How many problems had 0, some or all samples correct, and what was kept or dropped."""

    problems: int = 0
    none_correct: int = 0
    some_correct: int = 0
    all_correct: int = 0
    pseudo_labelled: int = 0
    no_majority: int = 0
    problems_kept: int = 0
    responses_kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    out: str = ""
    run_dir: str = ""

    def drop(self, reason: str, count: int = 1) -> None:
        if count:
            self.dropped[reason] = self.dropped.get(reason, 0) + count


def is_degenerate(text: str) -> bool:
    """A looping response: one line repeated many times, or text that compresses far too well."""
    lines = Counter(line.strip() for line in text.splitlines() if len(line.strip()) >= 8)
    if lines and max(lines.values()) >= _DEGENERATE_LINE_REPEATS:
        return True
    if len(text) < _DEGENERATE_MIN_CHARS:
        return False
    return len(zlib.compress(text.encode("utf-8"))) < _DEGENERATE_RATIO * len(text.encode("utf-8"))


def sample_segments(sample: SampleRecord) -> list[dict[str, Any]] | None:
    """Model and tool spans of a sampled response; None when they cannot be recovered.

    Samples that carry ``segments`` keep them; otherwise each execution's ```output block is
    found in the response, where the solve loop appended it (the model never writes that fence
    itself: generation stops on it).
    """
    stored = (sample.model_extra or {}).get("segments")
    if stored:
        return [{"kind": s["kind"], "start": s["start"], "end": s["end"]} for s in stored]
    response, position, segments = sample.response, 0, []
    for call in sample.executions:
        start = response.find(OUTPUT_FENCE, position)
        block = f"{OUTPUT_FENCE}\n{call.output}\n{FENCE}\n"
        if start < 0 or not response.startswith(block, start):
            return None
        if start > position:
            segments.append({"kind": "model", "start": position, "end": start})
        segments.append({"kind": "tool", "start": start, "end": start + len(block)})
        position = start + len(block)
    if OUTPUT_FENCE in response[position:]:
        return None
    if position < len(response):
        segments.append({"kind": "model", "start": position, "end": len(response)})
    return segments


def labels(record: ProblemRecord, min_vote: float) -> tuple[list[bool], str, float | None] | None:
    """Per-sample correctness, its source (``gold`` or ``vote``) and the winning vote share.

    Without a gold answer the most common answer (by the eval's equivalence groups) is the
    pseudo-label when its share of all samples is at least ``min_vote``; else None.
    """
    if record.gold.strip():
        return list(record.correct), "gold", None
    votes = Counter(group for group in record.groups if group >= 0)
    if not votes:
        return None
    winner, count = max(votes.items(), key=lambda item: (item[1], -item[0]))
    share = count / len(record.samples)
    if share < min_vote:
        return None
    return [group == winner for group in record.groups], "vote", share


def select(
    record: ProblemRecord, mode: str, keep: int, min_vote: float, summary: RSSummary, source_run: str = ""
) -> list[dict[str, Any]]:
    """The kept SFT records of one problem (see the module docstring), counting what was dropped."""
    labelled = labels(record, min_vote)
    summary.problems += 1
    if labelled is None:
        summary.no_majority += 1
        return []
    correct, label_source, share = labelled
    summary.pseudo_labelled += label_source == "vote"
    n_correct = sum(correct)
    if n_correct == 0:
        summary.none_correct += 1
    elif n_correct == len(correct):
        summary.all_correct += 1
    else:
        summary.some_correct += 1
    candidates = []
    for index, (sample, ok) in enumerate(zip(record.samples, correct, strict=True)):
        if not ok:
            continue
        if sample.finish_reason in ("length", "max_calls"):
            summary.drop("truncated")
            continue
        if is_degenerate(sample.response):
            summary.drop("degenerate (repetitive)")
            continue
        segments = sample_segments(sample)
        if segments is None:
            summary.drop("tool spans not recoverable")
            continue
        candidates.append((index, sample, segments))
    if all(sample.rm_score is not None for _, sample, _ in candidates) and candidates:
        candidates.sort(key=lambda item: -float(item[1].rm_score or 0.0))
    else:
        candidates.sort(key=lambda item: (item[1].completion_tokens or len(item[1].response), item[0]))
    chosen, seen = [], set()
    for index, sample, segments in candidates:
        text = " ".join(sample.response.split())
        if text in seen:
            summary.drop("duplicate")
            continue
        if len(chosen) >= keep:
            summary.drop("beyond --keep")
            continue
        seen.add(text)
        chosen.append(_record(record, mode, index, sample, segments, label_source, share, source_run))
    summary.problems_kept += bool(chosen)
    summary.responses_kept += len(chosen)
    return chosen


def _record(
    record: ProblemRecord,
    mode: str,
    index: int,
    sample: SampleRecord,
    segments: list[dict[str, Any]],
    label_source: str,
    share: float | None,
    source_run: str,
) -> dict[str, Any]:
    return {
        "id": f"{record.id}#{index}",
        "problem_id": record.id,
        "prompt": prompt_messages(record.question, mode),
        "response": sample.response,
        "segments": segments,
        "answer": record.gold if label_source == "gold" else sample.answer,
        "source": record.benchmark,
        "format": mode,
        "provenance": {
            "kind": "rejection_sampling",
            "run_dir": source_run,
            "sample_index": index,
            "label": label_source,
            "vote_share": share,
            "rm_score": sample.rm_score,
            "completion_tokens": sample.completion_tokens,
            "executions": len(sample.executions),
        },
    }


def write_selection(
    records: Iterable[ProblemRecord],
    mode: str,
    out: str | Path,
    keep: int,
    min_vote: float,
    run_dir: str = "",
) -> RSSummary:
    """Select from sampled records and write the SFT file (replaced atomically) and its summary JSON."""
    out = Path(out)
    summary = RSSummary(out=str(out), run_dir=run_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    with partial.open("w", encoding="utf-8") as handle:
        for record in records:
            for line in select(record, mode, keep, min_vote, summary, run_dir):
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, out)
    out.with_name(f"{out.stem}.summary.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return summary


def default_run_dir(out: str | Path) -> Path:
    """``rs.jsonl`` -> ``rs.samples/``: where the sampled records live."""
    out = Path(out)
    return out.with_name(f"{out.stem}.samples")


def rejection_sample(
    config: RejectionConfig,
    out: str | Path,
    *,
    run_dir: str | Path | None = None,
    overwrite: bool = False,
    console: Console | None = None,
    sampler: Callable[[SamplingRunConfig], Sampler] | None = None,
) -> RSSummary:
    """Sample ``config.n`` responses per problem (resuming), then select and write SFT records to ``out``.

    ``sampler`` builds the model side instead of loading ``config.model`` (tests pass a tiny model).
    """
    run_path = Path(run_dir) if run_dir is not None else default_run_dir(out)
    config = config.resolved()
    console = console or stderr_console()
    run, selected = open_run(config, run_path, overwrite=overwrite, check_model=sampler is None)
    clean, _ = drop_contaminated([p for items in selected.values() for p in items], config.data_dir, console)
    kept = {problem.id for problem in clean}
    problems = {bench: [p for p in items if p.id in kept] for bench, items in selected.items()}
    build = sampler or (lambda cfg: load_sampler(cfg, _load_scorer(config)))
    records = sample_run(config, run, problems, sampler=build, console=console)
    chosen = [record for record in records.values() if record.id in kept]
    return write_selection(chosen, config.mode, out, config.keep, config.min_vote, str(run_path))


def _load_scorer(config: RejectionConfig) -> Any:
    """The reward model that scores every sample when ``config.rm`` names one (top-K selection)."""
    if not config.rm:
        return None
    from mathforge.reward import RewardModel

    return RewardModel.from_pretrained(config.rm, dtype=config.dtype or "auto")
