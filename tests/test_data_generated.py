"""Generated problems: seeded, stable, exact, and graded the way reasoning-gym scores them."""

from __future__ import annotations

import math
import re
from fractions import Fraction

import pytest

from mathforge.data import FAMILIES, generate_problems
from mathforge.data.generated import LEVELS, RG_CONFIGS, rg_dataset, rg_to_gold
from mathforge.errors import MathforgeError

answers = pytest.importorskip("mathforge.answers")


def test_generation_is_seeded_and_ids_are_stable():
    first = generate_problems(21, seed=5, level=1)
    assert [p.to_dict() for p in first] == [p.to_dict() for p in generate_problems(21, seed=5, level=1)]
    # A longer set extends a shorter one: the first problems and their ids do not move.
    assert [p.id for p in generate_problems(42, seed=5, level=1)[:21]] == [p.id for p in first]
    assert [p.question for p in generate_problems(21, seed=6, level=1)] != [p.question for p in first]
    assert len({p.id for p in generate_problems(70, seed=0, level=2)}) == 70
    assert {p.meta["subject"] for p in first} == set(FAMILIES)
    assert first[0].id == "generated/arithmetic-L1-s5-0" and first[0].meta["level"] == 1


@pytest.mark.parametrize("level", LEVELS)
def test_every_family_gives_non_empty_gold_that_grades_as_correct(level: int):
    for problem in generate_problems(3 * len(FAMILIES), seed=1, level=level):
        assert problem.question and problem.gold, problem
        assert answers.is_equiv(problem.gold, problem.gold), problem


def test_bad_requests_are_one_line_errors():
    with pytest.raises(MathforgeError, match="unknown problem families"):
        generate_problems(3, families=["calculus"])
    with pytest.raises(MathforgeError, match="level must be one of"):
        generate_problems(3, level=4)


@pytest.mark.parametrize("task", sorted(RG_CONFIGS))
@pytest.mark.parametrize("level", LEVELS)
def test_grader_agrees_with_reasoning_gym_scoring(task: str, level: int):
    dataset = rg_dataset(task, level, seed=0, size=12)
    for index in range(12):
        entry = dataset[index]
        gold = rg_to_gold(task, entry)
        # reasoning-gym scores our converted gold as fully correct ...
        assert dataset.score_answer(gold, entry) == pytest.approx(1.0), (entry, gold)
        # ... and our grader accepts reasoning-gym's own answer against it.
        if entry["answer"]:
            assert answers.is_equiv(entry["answer"], gold), (entry, gold)
        # Both reject a wrong answer.
        wrong = _perturb(gold)
        assert dataset.score_answer(wrong, entry) < 1.0, (entry, wrong)
        assert not answers.is_equiv(wrong, gold), (entry, wrong)


def _perturb(gold: str) -> str:
    """Shift the first number of an answer by one."""
    match = re.search(r"-?\d+(\.\d+)?", gold)
    assert match is not None
    shifted = Fraction(match.group()) + 1
    return (
        gold[: match.start()]
        + (str(shifted) if "." not in match.group() else f"{float(shifted):.4f}")
        + gold[match.end() :]
    )


def _numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", text)]


def test_hand_written_answers_check_out_by_brute_force():
    checked = 0
    for level in LEVELS:
        for problem in generate_problems(
            140, seed=2, level=level, families=["counting", "number_theory", "fraction_percent"]
        ):
            q, gold = problem.question, Fraction(_value(problem.gold))
            if m := re.fullmatch(r"How many whole numbers from 1 to (\d+) are multiples of (\d+)\?", q):
                top, step = map(int, m.groups())
                assert gold == sum(1 for x in range(1, top + 1) if x % step == 0)
            elif m := re.fullmatch(
                r"How many integers from 1 to (\d+) are divisible by (\d+) or by (\d+)\?", q
            ):
                top, a, b = map(int, m.groups())
                assert gold == sum(1 for x in range(1, top + 1) if x % a == 0 or x % b == 0)
            elif m := re.fullmatch(r"(\d+) friends each shake hands once.*", q):
                people = int(m.group(1))
                assert gold == len([(i, j) for i in range(people) for j in range(i + 1, people)])
            elif q.startswith("What is the remainder when"):
                nums = _numbers(q)
                value = nums[0] ** nums[1] if "^" in q else math.prod(nums[:-1])
                assert gold == value % nums[-1]
            elif m := re.fullmatch(r"What is (\d+)% of (\d+)\?", q):
                pct, whole = map(int, m.groups())
                assert gold == Fraction(pct * whole, 100)
            elif m := re.fullmatch(r"(\d+) is what percent of (\d+)\?", q):
                part, whole = map(int, m.groups())
                assert gold * whole == part * 100
            elif m := re.fullmatch(r"What is \$(\d+)/(\d+) \+ (\d+)/(\d+)\$\?.*", q):
                a, b, c, d = map(int, m.groups())
                assert gold == Fraction(a, b) + Fraction(c, d)
            else:
                continue
            checked += 1
    assert checked > 100


def _value(gold: str) -> Fraction:
    if m := re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}", gold):
        sign = -1 if m.group(1) else 1
        return sign * Fraction(int(m.group(2)), int(m.group(3)))
    return Fraction(gold)
