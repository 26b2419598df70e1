"""How well reward scores rank a problem's responses: pairwise accuracy and top-1 choice."""

from __future__ import annotations

from collections.abc import Sequence


def pair_counts(scores: Sequence[float], correct: Sequence[bool]) -> tuple[float, int]:
    """(pairs ordered right, pairs) over the (correct, wrong) pairs of one problem; a tie counts half."""
    positives = [s for s, c in zip(scores, correct, strict=True) if c]
    negatives = [s for s, c in zip(scores, correct, strict=True) if not c]
    won = 0.0
    for pos in positives:
        for neg in negatives:
            won += 1.0 if pos > neg else 0.5 if pos == neg else 0.0
    return won, len(positives) * len(negatives)


def top1_is_correct(scores: Sequence[float], correct: Sequence[bool]) -> bool:
    """Whether the highest-scored response is correct (ties go to the first, as in RM@k)."""
    best = max(range(len(scores)), key=lambda index: (scores[index], -index))
    return bool(correct[best])


def ranking_metrics(scores: Sequence[Sequence[float]], correct: Sequence[Sequence[bool]]) -> dict[str, float]:
    """Pairwise accuracy (pooled over all pairs), top-1-correct share and its random-choice expectation.

    Problems without a pair count for the top-1 shares but not for pairwise accuracy.
    """
    won = pairs = 0.0
    top1 = random_top1 = 0.0
    for group_scores, group_correct in zip(scores, correct, strict=True):
        group_won, group_pairs = pair_counts(group_scores, group_correct)
        won += group_won
        pairs += group_pairs
        top1 += top1_is_correct(group_scores, group_correct)
        random_top1 += sum(group_correct) / len(group_correct)
    n = len(scores)
    return {
        "problems": float(n),
        "pairs": pairs,
        "pairwise_accuracy": won / pairs if pairs else float("nan"),
        "top1_correct": top1 / n if n else float("nan"),
        "top1_random": random_top1 / n if n else float("nan"),
    }
