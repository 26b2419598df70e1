"""Score files of sampled responses with a reward model, resumably, and summarise how well it ranks.

Input lines hold a ``prompt`` and either ``responses`` (RM data lines) or ``samples`` (the
per-problem records of ``mathforge eval`` / ``mathforge rm data``). Each output line is its
input line plus ``scores`` (one float per response); records also get each sample's
``rm_score``, so the output is again a valid ``samples.jsonl`` and ``mathforge eval
--rm-scores`` reads it directly. Output lines follow input order, so a rerun resumes after the
last complete line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mathforge.errors import InputError, MathforgeError
from mathforge.jsonl import JsonlWriter, read_jsonl, repair_tail
from mathforge.reward.ranking import pairwise_accuracy, top1_is_correct


@dataclass
class ScoredLine:
    """One input line, its responses and (when present) their correctness labels."""

    line: int
    obj: dict[str, Any]
    prompt: str
    responses: list[str]
    correct: list[bool] | None


def parse_line(path: Path, line: int, obj: dict[str, Any]) -> ScoredLine:
    """Read ``prompt`` and the responses of an RM data line or an eval record; bad input names its field."""
    prompt = obj.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise InputError(path, "missing or empty (the rendered chat prompt is needed)", line, "prompt")
    if "responses" in obj:
        responses = obj["responses"]
        if not isinstance(responses, list) or not responses or not all(isinstance(r, str) for r in responses):
            raise InputError(path, "expected a non-empty list of strings", line=line, field="responses")
        labels = obj.get("correct")
        if labels is not None and (not isinstance(labels, list) or len(labels) != len(responses)):
            raise InputError(path, f"expected {len(responses)} booleans", line=line, field="correct")
        correct = [bool(flag) for flag in labels] if labels is not None else None
        return ScoredLine(line, obj, prompt, responses, correct)
    samples = obj.get("samples")
    if isinstance(samples, list) and samples:
        responses, correct = [], []
        for index, sample in enumerate(samples):
            if not isinstance(sample, dict) or not isinstance(sample.get("response"), str):
                raise InputError(
                    path, "expected an object with a string 'response'", line, f"samples[{index}]"
                )
            responses.append(sample["response"])
            correct.append(bool(sample.get("correct", False)))
        return ScoredLine(line, obj, prompt, responses, correct)
    raise InputError(path, "expected 'responses' (RM data) or 'samples' (eval records)", line, "responses")


def _with_scores(item: ScoredLine, scores: list[float]) -> dict[str, Any]:
    out = dict(item.obj)
    out["scores"] = scores
    if "samples" in out and "responses" not in out:
        out["samples"] = [
            {**sample, "rm_score": score} for sample, score in zip(out["samples"], scores, strict=True)
        ]
    return out


def _identity(obj: dict[str, Any]) -> dict[str, Any]:
    """What scoring leaves unchanged in a line (its samples gain ``rm_score``, the line gains ``scores``)."""
    return {key: value for key, value in obj.items() if key not in ("scores", "samples")}


def _resume_point(in_path: Path, out_path: Path) -> int:
    """How many leading input lines the output already holds; refuses an output from another input."""
    if not out_path.is_file():
        return 0
    repair_tail(out_path)
    done = [obj for _, obj in read_jsonl(out_path)]
    if not done:
        return 0
    inputs = [obj for _, obj in read_jsonl(in_path)]
    if len(done) > len(inputs) or _identity(done[-1]) != _identity(inputs[len(done) - 1]):
        raise MathforgeError(
            f"{out_path} was not written from {in_path} (line {len(done)} differs); "
            "pass another output file or delete it"
        )
    return len(done)


def score_file(
    score: Callable[[list[str], list[str]], list[float]],
    in_path: str | Path,
    out_path: str | Path,
    *,
    lines_per_batch: int = 16,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Append scored lines to ``out_path``, resuming after the lines already there; returns lines scored now.

    ``score(prompts, responses)`` is normally ``RewardModel.score``; ``on_progress(done, total)``
    is called after every batch of lines.
    """
    in_path, out_path = Path(in_path), Path(out_path)
    items = [parse_line(in_path, line, obj) for line, obj in read_jsonl(in_path)]
    start = _resume_point(in_path, out_path)
    if on_progress is not None:
        on_progress(start, len(items))
    with JsonlWriter(out_path) as writer:
        for begin in range(start, len(items), lines_per_batch):
            batch = items[begin : begin + lines_per_batch]
            prompts = [item.prompt for item in batch for _ in item.responses]
            responses = [response for item in batch for response in item.responses]
            flat = score(prompts, responses)
            offset = 0
            for item in batch:
                writer.write(_with_scores(item, flat[offset : offset + len(item.responses)]))
                offset += len(item.responses)
            if on_progress is not None:
                on_progress(begin + len(batch), len(items))
    return len(items) - start


def _stat(values: Sequence[float]) -> dict[str, Any]:
    from mathforge.metrics import bootstrap_ci

    low, high = bootstrap_ci(values)
    return {"value": sum(values) / len(values) if values else math.nan, "ci": [low, high]}


def summarize_scored(path: str | Path) -> dict[str, Any]:
    """Ranking quality of a scored file, with 95% bootstrap CIs over problems.

    With labels: pairwise accuracy, top-1-correct share vs random choice. With eval records:
    also pass@1, maj@n, RM@n and pass@n on the same samples, and the paired difference RM@n - maj@n.
    """
    path = Path(path)
    items = [(parse_line(path, line, obj), obj.get("scores")) for line, obj in read_jsonl(path)]
    for item, scores in items:
        if not isinstance(scores, list) or len(scores) != len(item.responses):
            raise InputError(path, f"expected {len(item.responses)} numbers", line=item.line, field="scores")
    summary: dict[str, Any] = {
        "problems": len(items),
        "responses": sum(len(item.responses) for item, _ in items),
    }
    labelled = [(item, scores) for item, scores in items if item.correct is not None]
    if not labelled:
        return summary
    pairwise = [pairwise_accuracy(scores, item.correct) for item, scores in labelled]
    summary["problems_with_pairs"] = sum(value is not None for value in pairwise)
    summary["pairwise_accuracy"] = _stat([value for value in pairwise if value is not None])
    summary["top1_correct"] = _stat(
        [float(top1_is_correct(scores, item.correct)) for item, scores in labelled]
    )
    summary["top1_random"] = _stat([sum(item.correct) / len(item.correct) for item, _ in labelled])
    records = [item.obj for item, _ in items if "samples" in item.obj]
    if records and len(records) == len(items):
        summary["selection"] = _selection_metrics(
            records, {str(obj.get("id")): obj["scores"] for obj in records}
        )
    return summary


def _selection_metrics(records: list[dict[str, Any]], scores: dict[str, list[float]]) -> dict[str, Any]:
    """pass@1, maj@n, RM@n, pass@n of eval records (``mathforge.metrics``), and RM@n - maj@n paired."""
    from mathforge.metrics import paired_difference, per_problem_scores, summarize
    from mathforge.records import ProblemRecord

    parsed = [ProblemRecord.model_validate(record) for record in records]
    result = summarize(parsed, rm_scores=scores)
    n = result["samples_per_problem"]
    rows = [per_problem_scores(record, n, scores[record.id]) for record in parsed]
    keys = ["pass@1"] + ([f"maj@{n}", f"rm@{n}", f"pass@{n}"] if n > 1 else [f"rm@{n}"])
    selection: dict[str, Any] = {"samples_per_problem": n}
    selection.update({key: result["metrics"][key] for key in keys if key in result["metrics"]})
    if n > 1:
        selection[f"rm@{n}-maj@{n}"] = paired_difference(
            [row[f"maj@{n}"] for row in rows], [row[f"rm@{n}"] for row in rows]
        )
    return selection


def write_summary(summary: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
