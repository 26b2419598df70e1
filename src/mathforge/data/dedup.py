"""Near-duplicate removal: exact copies after normalisation, then MinHash LSH near-copies.

Texts are compared as sets of word bigrams of :func:`normalize_words` (numbers and operators
kept): "3 - 5" and "5 - 3" are different problems, and a one-word change costs a short question
more than a long one. datasketch's MinHash LSH proposes candidates among the texts kept so
far; a candidate counts only when the exact Jaccard similarity of the bigram sets reaches the
threshold, so reported scores are exact (LSH may still miss a rare pair near the threshold).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from itertools import pairwise

from datasketch import MinHash, MinHashLSH

from mathforge.data.decontam import normalize_words

NUM_PERM = 128


def shingles(words: list[str]) -> frozenset[str]:
    """Word bigrams (a one-word text is its word)."""
    if len(words) < 2:
        return frozenset(words)
    return frozenset(f"{first} {second}" for first, second in pairwise(words))


@dataclass(frozen=True)
class Duplicate:
    """A text's verdict: a copy of the kept text ``of``, ``exact`` or ``near`` (``score`` = Jaccard)."""

    of: Hashable
    rule: str
    score: float


class Deduplicator:
    """Keeps the first text of each cluster: :meth:`add` returns None for a new text (and keeps it),
    else the kept text it duplicates. Streaming, so later stages can check new problems against
    what they kept before."""

    def __init__(self, threshold: float = 0.8, num_perm: int = NUM_PERM, seed: int = 1) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self._num_perm = num_perm
        self._seed = seed
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._exact: dict[str, Hashable] = {}
        self._sets: dict[Hashable, frozenset[str]] = {}
        self._order: dict[Hashable, int] = {}  # ties go to the earliest kept text

    def add(self, key: Hashable, text: str) -> Duplicate | None:
        words = normalize_words(text)
        exact = " ".join(words)
        if exact in self._exact:
            return Duplicate(self._exact[exact], "exact", 1.0)
        grams = shingles(words)
        minhash = MinHash(num_perm=self._num_perm, seed=self._seed)
        minhash.update_batch([gram.encode("utf-8") for gram in sorted(grams)])
        best: Duplicate | None = None
        if grams:
            for other in sorted(self._lsh.query(minhash), key=self._order.__getitem__):
                other_grams = self._sets[other]
                score = len(grams & other_grams) / len(grams | other_grams)
                if score >= self.threshold and (best is None or score > best.score):
                    best = Duplicate(other, "near", round(score, 4))
        if best is not None:
            return best
        self._exact[exact] = key
        if grams:
            self._sets[key] = grams
            self._order[key] = len(self._order)
            self._lsh.insert(key, minhash)
        return None
