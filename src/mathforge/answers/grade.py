"""Grade one model response against a gold answer: extraction plus equivalence, with a reason."""

from __future__ import annotations

from dataclasses import dataclass

from mathforge.answers.datasets import MIXED_CHOICE_DATASETS, MULTIPLE_CHOICE_DATASETS
from mathforge.answers.equiv import compare
from mathforge.answers.extract import choice_letters, extract_choice, extract_math, is_choice_label

REASONS = frozenset({"exact", "numeric", "symbolic", "no_answer", "mismatch", "timeout", "no_gold"})


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of grading one response.

    ``pred``: the extracted answer (None when the response commits to none); ``correct``;
    ``reason``, one of :data:`REASONS`: for a correct answer how it was decided ("exact" text,
    "numeric" value, "symbolic" sympy check); for a wrong one "mismatch", "no_answer" (nothing
    extracted), "timeout" (undecidable in time) or "no_gold" (the problem has no gold answer to
    compare with; the answer is still extracted, for majority voting).
    """

    pred: str | None
    correct: bool
    reason: str

    def __bool__(self) -> bool:
        """A verdict is truthy when the answer is correct (``if grade(...):``)."""
        return self.correct


def grade(response: str, gold: str, dataset: str | None = None, timeout: float = 5.0) -> Verdict:
    """Extract the final answer of ``response`` and compare it with ``gold``."""
    if _is_choice(gold, dataset):
        return _grade_choice(extract_choice(response), gold)
    return grade_answer(extract_math(response), gold, dataset, timeout)


def grade_answer(pred: str | None, gold: str, dataset: str | None = None, timeout: float = 5.0) -> Verdict:
    """Compare an already extracted answer with ``gold`` (for callers that extract themselves)."""
    if _is_choice(gold, dataset):
        return _grade_choice(choice_letters(pred) if pred else None, gold)
    if pred is None or not pred.strip():
        return Verdict(None, False, "no_answer")
    if not gold.strip():  # a problem without gold: the answer still votes
        return Verdict(pred, False, "no_gold")
    equal, reason = compare(pred, gold, timeout)
    return Verdict(pred, equal, reason)


def _is_choice(gold: str, dataset: str | None) -> bool:
    return dataset in MULTIPLE_CHOICE_DATASETS or (dataset in MIXED_CHOICE_DATASETS and is_choice_label(gold))


def _grade_choice(letters: str | None, gold: str) -> Verdict:
    if letters is None:
        return Verdict(None, False, "no_answer")
    expected = choice_letters(gold)
    correct = letters == expected
    return Verdict(letters, correct, "exact" if correct else "mismatch")
