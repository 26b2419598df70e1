"""Metric functions against hand-computed values."""

from __future__ import annotations

import math

import pytest

from mathforge.metrics import (
    bootstrap_ci,
    group_answers,
    k_values,
    maj_at_k,
    majority_index,
    paired_difference,
    pass_at_k,
    rm_at_k,
    summarize,
)
from mathforge.records import Execution, ProblemRecord, SampleRecord


def test_pass_at_k_matches_the_binomial_formula():
    # n=5 samples, c=2 correct: pass@1 = 2/5; pass@2 = 1 - C(3,2)/C(5,2) = 1 - 3/10.
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    # pass@3 = 1 - C(3,3)/C(5,3) = 1 - 1/10; pass@4: fewer than 4 wrong samples -> 1.
    assert pass_at_k(5, 2, 3) == pytest.approx(0.9)
    assert pass_at_k(5, 2, 4) == 1.0
    assert pass_at_k(8, 0, 8) == 0.0
    assert pass_at_k(8, 8, 1) == 1.0
    # Large n stays exact: 1 - C(900,10)/C(1000,10).
    expected = 1 - math.comb(900, 10) / math.comb(1000, 10)
    assert pass_at_k(1000, 100, 10) == pytest.approx(expected, rel=1e-12)


def test_pass_at_k_rejects_impossible_arguments():
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


def test_group_answers_merges_equivalent_but_different_strings():
    def equiv(a: str, b: str) -> bool:  # numeric equality stands in for the grader here
        return float(a) == float(b)

    assert group_answers(["0.5", "0.50", "2", "", "2.0"], equiv) == [0, 0, 1, -1, 1]


def test_group_answers_uses_the_grader_by_default():
    pytest.importorskip("mathforge.answers")
    groups = group_answers(["\\frac{1}{2}", "0.5", "3", "\\dfrac12"])
    assert groups[0] == groups[1] == groups[3] != groups[2]


def test_majority_vote_ties_go_to_the_group_seen_first():
    # Groups 1 and 0 both have two votes; group 1 appeared first.
    assert majority_index([1, 0, 0, 1]) == 0
    assert majority_index([0, 1, 1, 0, 2], k=5) == 0
    # Among the first three, group 1 has two votes and wins.
    assert majority_index([0, 1, 1, 0, 2], k=3) == 1
    # Empty answers never vote; all empty -> no answer.
    assert majority_index([-1, 2, -1]) == 1
    assert majority_index([-1, -1]) is None


def test_maj_at_k_is_correct_iff_the_winning_group_is():
    groups = [0, 1, 1, 2]
    correct = [True, False, False, False]
    assert maj_at_k(groups, correct, 1) is True
    assert maj_at_k(groups, correct, 2) is True  # tie 0 vs 1 -> first seen (0)
    assert maj_at_k(groups, correct, 3) is False  # group 1 has two votes
    assert maj_at_k([-1, -1], [False, False], 2) is False


def test_rm_at_k_takes_the_argmax_with_ties_to_the_first():
    correct = [False, True, False, True]
    assert rm_at_k([0.1, 0.9, 0.3, 0.2], correct, 4) is True
    assert rm_at_k([0.5, 0.5, 0.1, 0.2], correct, 4) is False  # tie -> first (wrong)
    assert rm_at_k([0.1, 0.2, 0.7, 0.7], correct, 4) is False  # tie at 0.7 -> index 2
    assert rm_at_k([0.1, 0.2, 0.7, 0.9], correct, 2) is True  # only the first two count


def test_bootstrap_ci_brackets_the_mean_and_is_deterministic():
    values = [1.0] * 30 + [0.0] * 70
    low, high = bootstrap_ci(values)
    assert low < 0.3 < high
    # Binomial standard error sqrt(.3*.7/100) ~ 0.046: the 95% interval is about +-0.09.
    assert 0.14 < high - low < 0.22
    assert bootstrap_ci(values) == (low, high)
    assert bootstrap_ci([1.0, 1.0]) == (1.0, 1.0)


def test_paired_difference_of_identical_runs_is_zero():
    a = [0.0, 1.0, 1.0, 0.0]
    assert paired_difference(a, a) == {"diff": 0.0, "ci": [0.0, 0.0]}
    result = paired_difference([0.0] * 10, [1.0] * 5 + [0.0] * 5)
    assert result["diff"] == pytest.approx(0.5)
    assert result["ci"][0] < 0.5 < result["ci"][1]


def test_k_values():
    assert k_values(1) == [1]
    assert k_values(8) == [1, 2, 4, 8]
    assert k_values(6) == [1, 2, 4, 6]


def _record(pid: str, correct: list[bool], groups: list[int], level: str, **extra) -> ProblemRecord:
    samples = [
        SampleRecord(
            response=f"r{i}",
            answer="" if group < 0 else str(group),
            correct=ok,
            group=group,
            finish_reason="length" if i == 0 and extra.get("truncate") else "stop",
            completion_tokens=10,
            executions=[
                Execution(code="print(1)", output="1", status="timeout" if extra.get("timeout") else "ok")
            ],
            rm_score=extra.get("rm", [None] * len(correct))[i],
        )
        for i, (ok, group) in enumerate(zip(correct, groups, strict=True))
    ]
    return ProblemRecord(
        id=pid,
        benchmark="b",
        question="q",
        gold="1",
        meta={"level": level},
        prompt_tokens=5,
        samples=samples,
        seconds=1.5,
    )


def test_summarize_by_hand():
    records = [
        # maj@4: groups 0,0 vs 1 -> group 0 (correct). rm picks index 3 (wrong).
        _record("p1", [True, True, False, False], [0, 0, 1, 2], "1", rm=[0.1, 0.2, 0.3, 0.9], truncate=True),
        # maj@4: group 1 (two votes) wrong; rm picks index 0 (correct).
        _record("p2", [True, False, False, False], [0, 1, 1, -1], "2", rm=[0.9, 0.2, 0.3, 0.1], timeout=True),
    ]
    result = summarize(records)
    metrics = result["metrics"]
    assert result["problems"] == 2 and result["samples_per_problem"] == 4
    assert metrics["pass@1"]["value"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert metrics["pass@2"]["value"] == pytest.approx((pass_at_k(4, 2, 2) + pass_at_k(4, 1, 2)) / 2)
    assert metrics["maj@4"]["value"] == pytest.approx(0.5)
    assert metrics["rm@4"]["value"] == pytest.approx(0.5)
    # maj@2: p1 groups [0,0] -> correct; p2 groups [0,1] tie -> first (correct).
    assert metrics["maj@2"]["value"] == pytest.approx(1.0)
    assert result["curves"]["maj"]["2"] == pytest.approx(1.0)
    assert result["curves"]["rm"]["1"] == pytest.approx(1.0)
    assert result["breakdown"]["level"]["1"]["pass@1"] == pytest.approx(0.5)
    assert result["breakdown"]["level"]["2"]["pass@1"] == pytest.approx(0.25)
    assert result["counts"] == {
        "responses": 8,
        "empty_answers": 1,
        "truncated": 1,
        "tool_calls": 8,
        "sandbox_timeouts": 4,
        "sandbox_errors": 0,
    }
    assert result["tokens"] == {"prompt": 10, "completion": 80, "completion_mean": 10.0}
    assert result["wall_seconds"] == pytest.approx(3.0)


def test_summarize_takes_reward_scores_from_a_mapping():
    records = [_record("p1", [False, True], [0, 1], "1")]
    assert "rm@2" not in summarize(records)["metrics"]
    scored = summarize(records, rm_scores={"p1": [0.0, 1.0]})
    assert scored["metrics"]["rm@2"]["value"] == 1.0
