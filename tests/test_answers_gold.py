"""Gold answers per dataset, and the grader on real benchmark answers (skipped without the data)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mathforge.answers import KNOWN_DATASETS, compare, gold_answer, grade, is_equiv
from mathforge.answers.text import last_boxed
from mathforge.errors import MathforgeError

ROWS = [
    ("gsm8k", {"question": "q", "answer": "She sells 1000+234 = <<1000+234=1234>>1234.\n#### 1,234"}, "1234"),
    ("math", {"problem": "p", "solution": "so $\\boxed{\\frac{1}{2}}$."}, "\\frac{1}{2}"),
    ("math", {"problem": "p", "solution": "\\boxed{3}", "answer": "4"}, "4"),
    (
        "math500",
        {"problem": "p", "answer": "\\left( 3, \\frac{\\pi}{2} \\right)"},
        "\\left( 3, \\frac{\\pi}{2} \\right)",
    ),
    (
        "minerva_math",
        {"problem": "p", "solution": "first \\boxed{1}, then $s=\\boxed{1.6} \\mathrm{~cm}$"},
        "1.6",
    ),
    ("gaokao2023en", {"question": "q", "answer": "$189$"}, "189"),
    ("gaokao2023en", {"question": "Compute it.answers: $\\frac{3}{10}$", "answer": ""}, "\\frac{3}{10}"),
    ("college_math", {"question": "q", "answer": "$10-4 n$"}, "10-4 n"),
    ("gaokao_math_cloze", {"question": "q", "answer": "$3x-y=0$"}, "3x-y=0"),
    ("olympiadbench", {"question": "q", "final_answer": ["$\\frac{1}{2}$"]}, "\\frac{1}{2}"),
    ("olympiadbench", {"question": "q", "final_answer": ["$69$,$84$"]}, "69,84"),
    ("olympiadbench", {"question": "q", "final_answer": ["$1$", "$2$"]}, "1, 2"),
    ("mmlu_stem", {"question": "q", "choices": ["a", "b", "c", "d"], "answer": 2}, "C"),
    ("sat_math", {"question": "q", "Answer": "A"}, "A"),
    ("aqua", {"question": "q", "correct": "E"}, "E"),
    ("gaokao_math_qa", {"question": "q", "label": "D", "answer": None}, "D"),
    ("gaokao2024_I", {"question": "q", "answer": "ACD", "type": "multi"}, "ACD"),
    ("gaokao2024_II", {"question": "q", "answer": "24;112", "type": "blank"}, "24;112"),
    ("gaokao2024_mix", {"question": "q", "answer": "C. {x \\mid-3<x<4}", "choice_answer": "C"}, "C"),
    ("gaokao2024_mix", {"question": "q", "answer": "(4,0)", "choice_answer": ""}, "(4,0)"),
    ("cn_middle_school", {"question": "q", "answer": "-2", "choice_answer": "A"}, "A"),
    ("cn_middle_school", {"question": "q", "answer": "1/9", "choice_answer": ""}, "1/9"),
    ("aime24", {"problem": "p", "answer": "025"}, "025"),
    ("amc23", {"problem": "p", "answer": 27.0}, "27"),
    ("cmath", {"question": "q", "answer": "4.404"}, "4.404"),
    ("svamp", {"Body": "b", "Question": "q", "Answer": 145.0}, "145"),
    ("svamp", {"Body": "b", "Question": "q", "Answer": 0.5}, "0.5"),
    ("mawps", {"input": "q", "target": 43.0}, "43"),
    ("mawps", {"input": "q", "target": 39}, "39"),
    ("asdiv", {"body": "b", "question": "q", "answer": "9 (apples)"}, "9"),
    ("asdiv", {"body": "b", "question": "q", "answer": "3:30 p.m."}, "3:30 p.m."),
    ("carp_en", {"content": "q", "answer": "b ^ { 2 } - 9 a ^ { 2 }"}, "b ^ { 2 } - 9 a ^ { 2 }"),
]


@pytest.mark.parametrize(("dataset", "row", "expected"), ROWS)
def test_gold_answer_rules(dataset: str, row: dict, expected: str) -> None:
    assert gold_answer(row, dataset) == expected


def test_every_rule_is_exercised() -> None:
    assert {dataset for dataset, _, _ in ROWS} == set(KNOWN_DATASETS)


def test_unknown_dataset_is_a_clear_error() -> None:
    with pytest.raises(MathforgeError, match="unknown dataset 'mathh'"):
        gold_answer({"answer": "1"}, "mathh")


@pytest.mark.parametrize(
    ("dataset", "row", "message"),
    [
        ("math500", {"problem": "p", "unique_id": "test/1.json"}, "unique_id=test/1.json has no 'answer'"),
        ("mmlu_stem", {"question": "q", "answer": 7}, "not 0-3"),
        ("minerva_math", {"solution": "no box here"}, "no \\\\boxed answer"),
        ("gsm8k", {"answer": "####   "}, "empty gold answer"),
    ],
)
def test_bad_rows_are_clear_errors(dataset: str, row: dict, message: str) -> None:
    with pytest.raises(MathforgeError, match=message):
        gold_answer(row, dataset)


# -- the shared benchmark data ---------------------------------------------------------


def _rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_gold_answer_for_every_row_of_every_file(data_dir: Path) -> None:
    files = sorted(data_dir.glob("*/*.jsonl"))
    assert files
    for path in files:
        dataset = path.parent.name
        for row in _rows(path):
            gold = gold_answer(row, dataset)
            assert gold.strip(), (path, row)
            assert is_equiv(gold, gold), (path, gold)


def test_math500_answer_equals_last_box_of_its_solution(data_dir: Path) -> None:
    rows = _rows(data_dir / "math500" / "test.jsonl")
    assert len(rows) == 500
    for row in rows:
        boxed = last_boxed(row["solution"])
        assert is_equiv(boxed, gold_answer(row, "math500")), (
            boxed,
            row["answer"],
            compare(boxed, row["answer"]),
        )


def test_gsm8k_solutions_grade_correct_and_off_by_one_grades_wrong(data_dir: Path) -> None:
    for row in _rows(data_dir / "gsm8k" / "test.jsonl"):
        gold = gold_answer(row, "gsm8k")
        assert grade(row["answer"], gold, "gsm8k").correct, row["answer"]
        solution, final = row["answer"].rsplit("####", 1)
        wrong = f"{solution}#### {int(final.strip().replace(',', '')) + 1}"
        assert not grade(wrong, gold, "gsm8k").correct


def test_integer_golds_compare_like_integers(data_dir: Path) -> None:
    """Across datasets, pairs of integer gold answers are equal exactly when the integers are."""
    golds = []
    for name in ("aime24", "amc23", "cmath", "gsm8k", "math500", "svamp"):
        for row in _rows(data_dir / name / "test.jsonl"):
            gold = gold_answer(row, name)
            if re.fullmatch(r"-?\d+", gold):
                golds.append(gold)
    assert len(golds) > 1000
    for a, b in zip(golds, golds[1:] + golds[:1], strict=True):
        assert is_equiv(a, b) == (int(a) == int(b)), (a, b)


def test_mmlu_letters(data_dir: Path) -> None:
    for row in _rows(data_dir / "mmlu_stem" / "test.jsonl")[:300]:
        gold = gold_answer(row, "mmlu_stem")
        for letter in "ABCD":
            verdict = grade(f"Let me think. The answer is ({letter}).", gold, "mmlu_stem")
            assert verdict.correct == (letter == gold)


def test_mixed_choice_sets_grade_letters_and_values(data_dir: Path) -> None:
    for name in ("gaokao2024_I", "gaokao2024_II", "gaokao2024_mix", "cn_middle_school"):
        for row in _rows(data_dir / name / "test.jsonl"):
            gold = gold_answer(row, name)
            assert grade(f"所以答案是 \\boxed{{{gold}}}", gold, name).correct, (name, gold)
