"""How well reward scores rank a problem's responses: pairwise accuracy and top-1 choice."""

from __future__ import annotations

from collections.abc import Sequence


def pairwise_accuracy(scores: Sequence[float], correct: Sequence[bool]) -> float | None:
    """Share of one problem's (correct, wrong) pairs scored in the right order (a tie counts half);
    None when the problem has no such pair."""
    positives = [s for s, c in zip(scores, correct, strict=True) if c]
    negatives = [s for s, c in zip(scores, correct, strict=True) if not c]
    if not positives or not negatives:
        return None
    won = sum(1.0 if pos > neg else 0.5 if pos == neg else 0.0 for pos in positives for neg in negatives)
    return won / (len(positives) * len(negatives))


def top1_is_correct(scores: Sequence[float], correct: Sequence[bool]) -> bool:
    """Whether the highest-scored response is correct (ties go to the first, as in RM@k)."""
    best = max(range(len(scores)), key=lambda index: (scores[index], -index))
    return bool(correct[best])


def ranking_metrics(scores: Sequence[Sequence[float]], correct: Sequence[Sequence[bool]]) -> dict[str, float]:
    """Pairwise accuracy, top-1-correct share and its random-choice expectation, as means over problems.

    Pairwise accuracy averages over the problems that have a pair, each weighted equally, as in
    the listwise loss; the top-1 shares average over all problems.
    """
    pairwise = []
    top1 = random_top1 = 0.0
    for group_scores, group_correct in zip(scores, correct, strict=True):
        accuracy = pairwise_accuracy(group_scores, group_correct)
        if accuracy is not None:
            pairwise.append(accuracy)
        top1 += top1_is_correct(group_scores, group_correct)
        random_top1 += sum(group_correct) / len(group_correct)
    n = len(scores)
    return {
        "problems": float(n),
        "problems_with_pairs": float(len(pairwise)),
        "pairwise_accuracy": sum(pairwise) / len(pairwise) if pairwise else float("nan"),
        "top1_correct": top1 / n if n else float("nan"),
        "top1_random": random_top1 / n if n else float("nan"),
    }
