"""The answer grader: extract a response's final answer, find a dataset's gold answer, decide equivalence.

Evaluation, rejection sampling, reward-model labels and RL rewards all call :func:`grade`, so
its mistakes become training signal: integers and rationals compare exactly, floats with a
relative tolerance, structures (sets, intervals, tuples, equations, matrices) by their rules,
and the sympy work runs in killable worker processes so a pathological answer can neither hang
nor exhaust memory. This package imports no torch/transformers and no sympy until needed.
"""

from mathforge.answers.datasets import (
    KNOWN_DATASETS,
    MIXED_CHOICE_DATASETS,
    MULTIPLE_CHOICE_DATASETS,
    gold_answer,
)
from mathforge.answers.equiv import clear_caches, compare, is_equiv
from mathforge.answers.extract import extract_answer, extract_choice
from mathforge.answers.files import default_graded_path, grade_file
from mathforge.answers.grade import REASONS, Verdict, grade, grade_answer

__all__ = [
    "KNOWN_DATASETS",
    "MIXED_CHOICE_DATASETS",
    "MULTIPLE_CHOICE_DATASETS",
    "REASONS",
    "Verdict",
    "clear_caches",
    "compare",
    "default_graded_path",
    "extract_answer",
    "extract_choice",
    "gold_answer",
    "grade",
    "grade_answer",
    "grade_file",
    "is_equiv",
]
