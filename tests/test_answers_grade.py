"""grade(): verdicts and reasons; the grader in threads and worker processes; timeouts; import weight."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from mathforge.answers import REASONS, Verdict, compare, grade, grade_answer, is_equiv

SYMBOLIC_PAIRS = [
    ("\\frac{\\sqrt3}{3}", "\\frac{1}{\\sqrt3}", True),
    ("\\sec^2 y", "\\tan^2 y + 1", True),
    ("\\sqrt{2}+\\sqrt{3}", "\\sqrt{5+2\\sqrt{6}}", True),
    ("x^2-1", "(x-1)(x+1)", True),
    ("\\sqrt{2}+\\sqrt{3}", "\\sqrt{5}", False),
    ("|x|", "x", False),
    ("123456", "123457", False),
    ("\\frac{1}{2}", "0.5", True),
]


def test_verdict_fields_and_truth() -> None:
    verdict = grade("So the total is \\boxed{18}.", "18")
    assert verdict == Verdict(pred="18", correct=True, reason="exact")
    assert verdict
    assert not grade("So the total is \\boxed{17}.", "18")
    assert verdict.reason in REASONS


def test_grade_reasons() -> None:
    assert grade("\\boxed{0.5}", "\\frac{1}{2}").reason == "numeric"
    assert grade("\\boxed{\\frac{1}{\\sqrt{3}}}", "\\frac{\\sqrt3}{3}").reason == "symbolic"
    assert grade("\\boxed{7}", "8").reason == "mismatch"
    assert grade("I give up.", "8") == Verdict(None, False, "no_answer")
    assert grade("\\boxed{x<5}", "x>5").reason == "mismatch"
    # without gold nothing is correct, but the answer is extracted for majority voting
    assert grade("So \\boxed{7}.", "") == Verdict("7", False, "no_gold")
    assert grade("I give up.", " ") == Verdict(None, False, "no_answer")


def test_last_box_wins() -> None:
    response = "So \\boxed{3}. Hmm, I dropped a term: the answer is \\boxed{5}."
    assert grade(response, "5").correct
    assert not grade(response, "3").correct


def test_multiple_choice_and_mixed_datasets() -> None:
    assert grade("The answer is (B).", "B", "mmlu_stem").correct
    assert not grade("The answer is (B).", "C", "mmlu_stem").correct
    assert grade("答案：ACD", "ACD", "gaokao2024_I").correct
    assert not grade("答案：AC", "ACD", "gaokao2024_I").correct
    # a fill-in row of a mixed set is graded as math, not as letters
    assert grade("所以 $\\boxed{\\frac{3}{2}}$", "3/2", "gaokao2024_I").correct
    assert grade("The answer is D", "D", "cn_middle_school").correct


def test_grade_answer_takes_an_extracted_answer() -> None:
    assert grade_answer("\\frac{1}{2}", "0.5").correct
    assert grade_answer("(B)", "B", "aqua").correct
    assert grade_answer(None, "5") == Verdict(None, False, "no_answer")
    assert grade_answer("  ", "5").reason == "no_answer"


def test_threads_share_the_grader() -> None:
    pairs = SYMBOLIC_PAIRS * 4
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda pair: is_equiv(pair[0], pair[1]), pairs))
    assert results == [expected for _, _, expected in pairs]


def _equiv_pair(pair: tuple[str, str, bool]) -> bool:
    return is_equiv(pair[0], pair[1])


def test_daemonic_worker_processes_after_fork() -> None:
    assert is_equiv("\\frac{\\sqrt3}{3}", "\\frac{1}{\\sqrt3}")  # this process now has a sympy worker
    with multiprocessing.get_context("fork").Pool(2) as pool:  # daemonic workers, forked
        results = pool.map(_equiv_pair, SYMBOLIC_PAIRS)
    assert results == [expected for _, _, expected in SYMBOLIC_PAIRS]
    assert is_equiv("\\sec^2 y", "\\tan^2 y + 1")  # the parent's worker still serves


def test_timeout_kills_a_runaway_comparison_and_recovers() -> None:
    assert is_equiv("\\sqrt{8}", "2\\sqrt{2}")  # a warm worker, so only the comparison is timed
    start = time.monotonic()
    equal, reason = compare("\\sum_{k=1}^{99999} k^{k}", "1", timeout=1.0)
    elapsed = time.monotonic() - start
    assert (equal, reason) == (False, "timeout")
    assert elapsed < 1.8
    assert compare("\\frac{\\sqrt3}{3}", "\\frac{1}{\\sqrt3}") == (True, "symbolic")


def test_timeout_from_a_thread() -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(compare, "\\prod_{k=1}^{99999} (k^{2}+1)", "1", 1.0)
        assert future.result(timeout=30) == (False, "timeout")


@pytest.mark.parametrize("text", ["\\gcd(9^{9^{9}}, 6)", "\\sum_{k=1}^{9^{9^{9}}} k", "(10^{9})!"])
def test_guard_refuses_huge_powers_without_sympy(text: str) -> None:
    start = time.monotonic()
    assert compare(text, "1") == (False, "timeout")
    assert time.monotonic() - start < 0.5


def test_import_is_light() -> None:
    code = (
        "import sys, mathforge.answers as a; a.gold_answer({'answer': '1'}, 'math500'); "
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'transformers', 'sympy', 'latex2sympy2_extended', 'numpy')]; print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
