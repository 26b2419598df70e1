"""Evaluation metrics: pass@1, unbiased pass@k, maj@k, RM@k, bootstrap confidence intervals.

Every metric is a mean over problems of a per-problem score, so one bootstrap (resampling
problems) gives its 95% confidence interval and a paired bootstrap gives the CI of a
difference between two runs on the same problems. maj@k and RM@k use the first k samples of
each problem, so a curve over k is a prefix scan of one set of samples.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from mathforge.records import ProblemRecord

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 1000
BREAKDOWN_MAX_VALUES = 40  # metadata fields with more distinct values are not broken down
_NOT_BROKEN_DOWN = {"source", "source_index"}


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): ``1 - C(n-c, k) / C(n, k)`` for c correct of n samples."""
    if not 0 < k <= n:
        raise ValueError(f"pass@k needs 0 < k <= n, got k={k}, n={n}")
    if not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n, got c={c}, n={n}")
    # Exact integer binomials (Python ints do not overflow), one rounding at the end.
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def group_answers(answers: Sequence[str], equiv: Callable[[str, str], bool] | None = None) -> list[int]:
    """Majority-vote groups: equal ids for equivalent answers, numbered by first appearance.

    An answer joins the first existing group whose first member it is equivalent to
    (``mathforge.answers.is_equiv`` by default); an empty answer gets -1 and never votes.
    """
    if equiv is None:
        from mathforge.answers import is_equiv

        equiv = is_equiv
    representatives: list[str] = []
    groups: list[int] = []
    for answer in answers:
        text = (answer or "").strip()
        if not text:
            groups.append(-1)
            continue
        for group, representative in enumerate(representatives):
            if text == representative or equiv(text, representative):
                groups.append(group)
                break
        else:
            representatives.append(text)
            groups.append(len(representatives) - 1)
    return groups


def majority_index(groups: Sequence[int], k: int | None = None) -> int | None:
    """Index of the sample the vote picks among the first ``k``: the first member of the largest
    group, ties going to the group seen first; None when every answer is empty."""
    window = list(groups[: len(groups) if k is None else k])
    counts = Counter(group for group in window if group >= 0)
    if not counts:
        return None
    best = max(counts.values())
    for index, group in enumerate(window):
        if group >= 0 and counts[group] == best:
            return index
    return None


def maj_at_k(groups: Sequence[int], correct: Sequence[bool], k: int) -> bool:
    """Whether the majority answer among the first ``k`` samples is correct."""
    index = majority_index(groups, k)
    return index is not None and bool(correct[index])


def rm_at_k(scores: Sequence[float], correct: Sequence[bool], k: int) -> bool:
    """Whether the highest-scored of the first ``k`` samples is correct (ties to the first)."""
    window = list(scores[:k])
    if not window:
        return False
    best = max(range(len(window)), key=lambda i: (window[i], -i))
    return bool(correct[best])


def bootstrap_ci(
    values: Sequence[float],
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of per-problem scores (problems resampled)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return (math.nan, math.nan)
    if data.size == 1 or np.all(data == data[0]):
        return (float(data[0]), float(data[0]))
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2
    return (float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha)))


def paired_difference(
    a: Sequence[float],
    b: Sequence[float],
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> dict[str, float]:
    """Mean of ``b - a`` over the same problems with its paired-bootstrap CI."""
    if len(a) != len(b):
        raise ValueError(f"paired difference needs equal lengths, got {len(a)} and {len(b)}")
    diff = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    low, high = bootstrap_ci(diff, confidence, resamples)
    return {"diff": float(diff.mean()) if diff.size else math.nan, "ci": [low, high]}


def _stat(values: Sequence[float]) -> dict[str, Any]:
    low, high = bootstrap_ci(values)
    return {"value": float(np.mean(values)) if len(values) else math.nan, "ci": [low, high]}


def k_values(n: int) -> list[int]:
    """The k reported for n samples: powers of two up to n, and n itself."""
    ks = [k for k in (2**i for i in range(int(math.log2(n)) + 1)) if k <= n] if n >= 1 else []
    if n >= 1 and n not in ks:
        ks.append(n)
    return ks


def per_problem_scores(
    record: ProblemRecord, n: int, rm_scores: Sequence[float] | None = None
) -> dict[str, float]:
    """Every metric for one problem, keyed like ``pass@1``, ``pass@4``, ``maj@8``, ``rm@8``."""
    correct = record.correct[:n]
    groups = record.groups[:n]
    scores: dict[str, float] = {"pass@1": sum(correct) / n}
    for k in range(1, n + 1):
        if k > 1:
            scores[f"pass@{k}"] = pass_at_k(n, sum(correct), k)
        scores[f"maj@{k}"] = float(maj_at_k(groups, correct, k))
        if rm_scores is not None:
            scores[f"rm@{k}"] = float(rm_at_k(rm_scores, correct, k))
    return scores


def _scalar_meta(record: ProblemRecord) -> Iterable[tuple[str, str]]:
    for key, value in record.meta.items():
        if key not in _NOT_BROKEN_DOWN and isinstance(value, (str, int, float, bool)):
            yield key, str(value)


def summarize(
    records: Sequence[ProblemRecord], rm_scores: dict[str, list[float]] | None = None
) -> dict[str, Any]:
    """Metrics of one benchmark's records (all with the same number of samples).

    ``rm_scores`` (problem id -> one score per sample) overrides scores stored in the records.
    Reports pass@1, pass@k / maj@k / rm@k for k in :func:`k_values` with CIs, curves over every
    k, breakdowns by metadata (level, subject, type ...), counts and token totals.
    """
    if not records:
        return {"problems": 0}
    n = min(len(record.samples) for record in records)
    if n == 0:
        raise ValueError("records without samples cannot be scored")
    scored: list[dict[str, float]] = []
    have_rm = True
    for record in records:
        scores = (rm_scores or {}).get(record.id) or record.rm_scores
        if scores is not None and len(scores) < n:
            raise ValueError(f"{record.id}: {len(scores)} reward scores for {n} samples")
        have_rm = have_rm and scores is not None
        scored.append(per_problem_scores(record, n, scores))
    names = [name for name in scored[0] if have_rm or not name.startswith("rm@")]
    columns = {name: [row[name] for row in scored] for name in names}

    ks = k_values(n)
    result: dict[str, Any] = {"problems": len(records), "samples_per_problem": n}
    metrics: dict[str, Any] = {"pass@1": _stat(columns["pass@1"])}
    for k in ks:
        if k > 1:
            metrics[f"pass@{k}"] = _stat(columns[f"pass@{k}"])
            metrics[f"maj@{k}"] = _stat(columns[f"maj@{k}"])
            if have_rm:
                metrics[f"rm@{k}"] = _stat(columns[f"rm@{k}"])
    result["metrics"] = metrics
    if n > 1:
        result["curves"] = {
            family: {str(k): float(np.mean(columns[f"{family}@{k}"])) for k in range(1, n + 1)}
            for family in ("pass", "maj", "rm")
            if family != "rm" or have_rm
        }

    by_field: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for position, record in enumerate(records):
        for key, value in _scalar_meta(record):
            by_field[key][value].append(position)
    breakdown: dict[str, Any] = {}
    for key, buckets in by_field.items():
        if len(buckets) > BREAKDOWN_MAX_VALUES or len(buckets) < 2:
            continue
        breakdown[key] = {
            value: {"problems": len(rows), "pass@1": float(np.mean([columns["pass@1"][i] for i in rows]))}
            | ({f"maj@{n}": float(np.mean([columns[f"maj@{n}"][i] for i in rows]))} if n > 1 else {})
            for value, rows in sorted(buckets.items(), key=lambda item: _natural_key(item[0]))
        }
    if breakdown:
        result["breakdown"] = breakdown

    samples = [sample for record in records for sample in record.samples[:n]]
    result["counts"] = {
        "responses": len(samples),
        "empty_answers": sum(1 for sample in samples if not sample.answer.strip()),
        "truncated": sum(1 for sample in samples if sample.truncated),
        "tool_calls": sum(len(sample.executions) for sample in samples),
        "sandbox_timeouts": sum(1 for sample in samples for call in sample.executions if call.timed_out),
        "sandbox_errors": sum(1 for sample in samples for call in sample.executions if call.failed),
    }
    completion = sum(sample.completion_tokens for sample in samples)
    result["tokens"] = {
        "prompt": sum(record.prompt_tokens for record in records),
        "completion": completion,
        "completion_mean": completion / len(samples),
    }
    result["wall_seconds"] = sum(record.seconds for record in records)
    return result


def _natural_key(text: str) -> tuple[int, float, str]:
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def per_problem_table(
    records: Sequence[ProblemRecord], metric: str, rm_scores: dict[str, list[float]] | None = None
) -> dict[str, float]:
    """Problem id -> per-problem value of ``metric`` (for paired comparisons between runs)."""
    table = {}
    for record in records:
        n = len(record.samples)
        scores = (rm_scores or {}).get(record.id) or record.rm_scores
        values = per_problem_scores(record, n, scores)
        if metric in values:
            table[record.id] = values[metric]
    return table
