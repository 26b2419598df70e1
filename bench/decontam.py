"""Benchmark: decontamination and deduplication on GSM8K train against every local registry benchmark.

In one run (CPU only, one process):
- the index over all registry benchmarks with a local test file (questions and solutions);
- GSM8K train (7,473 questions) through :func:`decontaminate_records`: wall time, flagged counts
  per benchmark and rule (what the training loop removes in practice; GSM8K train is mostly clean,
  so its flagged share bounds the false-positive rate);
- planted near-copies of English benchmark questions, 200 per edit (case and spacing changed, one
  number changed, a sentence added, names changed, three words dropped): the share flagged;
- all pairs on a sample (random GSM8K-train lines, every flagged one up to 60, and 100 planted
  copies): every item compared with the same rules and no index; verdicts must agree, and the
  time per line gives the index's speed-up;
- ``Deduplicator`` over GSM8K train: time and clusters.

Prints one JSON line.

    .venv/bin/python bench/decontam.py [--data DIR] [--seed S] [--sample N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import time
from collections import Counter
from pathlib import Path

from rapidfuzz.distance import LCSseq

from mathforge.data.decontam import Decontaminator, Match, decontaminate_records
from mathforge.data.dedup import Deduplicator
from mathforge.data.registry import BENCHMARKS

DEFAULT_DATA = Path(
    os.environ.get("MATHFORGE_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")
)
PER_EDIT = 200
NAMES = ["Priya", "Tomasz", "Akira", "Lucia", "Oluwaseun", "Mateo", "Ingrid", "Farhan", "Chloe", "Dmitri"]
SENTENCES = [
    "Show every step of your work and explain the reasoning behind each of them clearly.",
    "This problem appeared on a practice sheet that the teacher handed out last week.",
    "Assume that all quantities are exact and give the final answer in simplest form.",
]
_NAME = re.compile(r"(?<=[a-z,;] )[A-Z][a-z]{2,}\b")  # a capitalised word after a lowercase one


def _case_spacing(text: str, rng: random.Random) -> str:
    words = text.split()
    changed = [word.upper() if rng.random() < 0.3 else word.lower() for word in words]
    return "".join(word + rng.choice([" ", "  ", "\n", "\t "]) for word in changed).strip()


def _one_number(text: str, rng: random.Random) -> str | None:
    numbers = list(re.finditer(r"\d+", text))
    if not numbers:
        return None
    chosen = rng.choice(numbers)
    value = str(int(chosen.group()) + rng.randint(1, 9))
    return text[: chosen.start()] + value + text[chosen.end() :]


def _sentence(text: str, rng: random.Random) -> str:
    extra = rng.choice(SENTENCES)
    return f"{extra} {text}" if rng.random() < 0.5 else f"{text} {extra}"


def _names(text: str, rng: random.Random) -> str | None:
    found = sorted({match.group() for match in _NAME.finditer(text)})
    if not found:
        return None
    mapping = {name: rng.choice([other for other in NAMES if other != name]) for name in found}
    return re.sub(r"\b(" + "|".join(map(re.escape, found)) + r")\b", lambda m: mapping[m.group()], text)


def _drop_three(text: str, rng: random.Random) -> str | None:
    words = text.split()
    if len(words) < 6:
        return None
    gone = set(rng.sample(range(len(words)), 3))
    return " ".join(word for index, word in enumerate(words) if index not in gone)


EDITS = {
    "case_spacing": _case_spacing,
    "one_number": _one_number,
    "sentence_added": _sentence,
    "names": _names,
    "three_words_dropped": _drop_three,
}


def planted(checker: Decontaminator, rng: random.Random) -> dict[str, list[tuple[str, str]]]:
    """PER_EDIT edited copies per edit of English benchmark questions the edit applies to."""
    questions = [
        item for item in checker.items if not item.solution and BENCHMARKS[item.benchmark].language == "en"
    ]
    copies: dict[str, list[tuple[str, str]]] = {}
    for name, edit in EDITS.items():
        chosen: list[tuple[str, str]] = []
        for item in rng.sample(questions, len(questions)):
            edited = edit(item.text, rng)
            if edited is not None and edited != item.text:
                chosen.append((item.id, edited))
            if len(chosen) == PER_EDIT:
                break
        copies[name] = chosen
    return copies


def item_grams(checker: Decontaminator) -> list[set[str]]:
    """Every item's 13-grams (question items only; solutions get an empty set)."""
    n = checker.n
    return [
        set() if item.solution else {code[i : i + n] for i in range(len(code) - n + 1)}
        for item, code in zip(checker.items, checker.codes, strict=True)
    ]


def all_pairs(checker: Decontaminator, grams_of: list[set[str]], text: str) -> Match | None:
    """Both rules against every question item, no index (the reference the index must equal)."""
    code = checker.encode(text)
    grams = {code[i : i + checker.n] for i in range(len(code) - checker.n + 1)}
    best_gram, best_lcs = (0, -1), (checker.threshold, -1)
    for index, item in enumerate(checker.items):
        if item.solution:
            continue
        shared = len(grams & grams_of[index])
        if shared > best_gram[0]:
            best_gram = (shared, index)
        other = checker.codes[index]
        if code and other:
            ratio = LCSseq.similarity(code, other) / max(len(code), len(other))
            if ratio > best_lcs[0]:
                best_lcs = (ratio, index)
    if best_gram[1] >= 0:
        item = checker.items[best_gram[1]]
        return Match(item.benchmark, item.id, "ngram", round(best_gram[0] / len(grams), 4))
    if best_lcs[1] >= 0:
        item = checker.items[best_lcs[1]]
        return Match(item.benchmark, item.id, "lcs", round(best_lcs[0], 4))
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample", type=int, default=150, help="random GSM8K-train lines for all pairs")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    train = [json.loads(line) for line in (args.data / "gsm8k" / "train.jsonl").open(encoding="utf-8")]

    start = time.perf_counter()
    checker = Decontaminator.from_benchmarks("all", args.data)
    index_s = time.perf_counter() - start
    start = time.perf_counter()
    _, flagged, summary = decontaminate_records(train, "question", decontaminator=checker)
    check_s = time.perf_counter() - start

    copies = planted(checker, rng)
    planted_result = {}
    for name, pairs in copies.items():
        matches = [checker.check(text) for _, text in pairs]
        planted_result[name] = {
            "n": len(pairs),
            "flagged": round(sum(m is not None for m in matches) / len(pairs), 4),
            "same_item": round(
                sum(m is not None and m.match_id == i for m, (i, _) in zip(matches, pairs, strict=True))
                / len(pairs),
                4,
            ),
            "rules": dict(Counter(m.rule for m in matches if m is not None)),
        }
    every = [m for pairs in copies.values() for m in pairs]
    flagged_share = sum(checker.check(text) is not None for _, text in every) / len(every)

    flagged_lines = [train[report["index"]]["question"] for report in flagged]
    sample = rng.sample([row["question"] for row in train], args.sample)
    sample += flagged_lines[:60] + [text for _, text in rng.sample(every, 100)]
    grams_of = item_grams(checker)  # built once, outside the timing, as an all-pairs job would
    start = time.perf_counter()
    reference = [all_pairs(checker, grams_of, text) for text in sample]
    brute_s = time.perf_counter() - start
    start = time.perf_counter()
    indexed = [checker.check(text) for text in sample]
    indexed_s = time.perf_counter() - start
    disagreements = sum(a != b for a, b in zip(reference, indexed, strict=True))

    start = time.perf_counter()
    deduplicator = Deduplicator(0.8)
    duplicates = [deduplicator.add(index, row["question"]) for index, row in enumerate(train)]
    dedup_s = time.perf_counter() - start

    print(
        json.dumps(
            {
                "benchmark": "decontam",
                "benchmarks": len(checker.benchmarks),
                "benchmark_questions": sum(checker.benchmarks.values()),
                "benchmark_texts": len(checker.items),
                "not_local": checker.missing,
                "gsm8k_train": {
                    "lines": summary.lines,
                    "flagged": summary.flagged,
                    "flagged_share": round(summary.flagged / summary.lines, 4),
                    "by_benchmark": summary.by_benchmark,
                    "index_s": round(index_s, 2),
                    "check_s": round(check_s, 2),
                    "total_s": round(index_s + check_s, 2),
                },
                "planted": {"n": len(every), "flagged": round(flagged_share, 4), "by_edit": planted_result},
                "all_pairs_sample": {
                    "lines": len(sample),
                    "flagged": sum(m is not None for m in reference),
                    "disagreements": disagreements,
                    "all_pairs_ms_per_line": round(1000 * brute_s / len(sample), 2),
                    "indexed_ms_per_line": round(1000 * indexed_s / len(sample), 3),
                    "speedup": round(brute_s / indexed_s, 1),
                },
                "dedup_gsm8k_train": {
                    "seconds": round(dedup_s, 2),
                    "exact": sum(d is not None and d.rule == "exact" for d in duplicates),
                    "near": sum(d is not None and d.rule == "near" for d in duplicates),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
