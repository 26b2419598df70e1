"""Benchmark: mathforge's grader against math-verify on the same fixed corpus, in one run.

Corpus (built from the shared benchmark data, deterministic):
- MATH500 gold answers against themselves (label: equal);
- MATH500 gold answers against an equivalent rewrite (``\\dfrac``, spacing, ``\\left(``, an
  integer as a fraction or with thousands separators; label: equal);
- MATH500 gold answers against a perturbed version (its first integer plus one; label:
  different);
- GSM8K-style responses: each GSM8K test solution ending in "#### X" or "The answer is X.",
  graded against its gold, and the same with X+1 (labels: correct / wrong).

Prints one JSON line: verdicts/second for each grader per part and overall, their agreement,
and each grader's accuracy against the labels. math-verify is called as its README shows
(``verify(parse(gold), parse(pred))``), in the main thread where its signal timeouts work.
Our grader's caches are cleared before each timed pass (math-verify's caches hold 20 entries).

    .venv/bin/python bench/grader.py [--data DIR] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

DEFAULT_DATA = Path(
    os.environ.get("MATHFORGE_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def _rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _rewrite(answer: str, index: int) -> str:
    """An equivalent spelling of a MATH answer (which kind rotates with the index)."""
    kind = index % 4
    if re.fullmatch(r"\d+", answer):
        value = int(answer)
        return f"\\frac{{{2 * value}}}{{2}}" if kind % 2 == 0 else f"{value:,}".replace(",", "{,}")
    if kind == 0 and "\\frac" in answer:
        return answer.replace("\\frac", "\\dfrac")
    if kind == 1 and answer.startswith("(") and answer.endswith(")"):
        return "\\left(" + answer[1:-1] + "\\right)"
    if kind == 2:
        return re.sub(r"\s*([+=])\s*", r" \1 ", answer).strip()
    return " " + answer.replace("\\frac", "\\tfrac") + " "


def _perturb(answer: str) -> str | None:
    """A different answer: its first integer plus one (None when there is no integer)."""
    first = re.search(r"\d+", answer)
    if first is None:
        return None
    return answer[: first.start()] + str(int(first.group()) + 1) + answer[first.end() :]


def build_corpus(data: Path) -> dict[str, list[tuple[str, str, bool, bool]]]:
    """Parts of ``(pred_or_response, gold, is_response, label)``."""
    math500 = [row["answer"] for row in _rows(data / "math500" / "test.jsonl")]
    parts: dict[str, list[tuple[str, str, bool, bool]]] = {
        "math500_self": [(answer, answer, False, True) for answer in math500],
        "math500_rewrite": [(_rewrite(answer, i), answer, False, True) for i, answer in enumerate(math500)],
        "math500_perturbed": [
            (wrong, answer, False, False) for answer in math500 if (wrong := _perturb(answer)) is not None
        ],
    }
    gsm8k = []
    for i, row in enumerate(_rows(data / "gsm8k" / "test.jsonl")):
        solution, gold = row["answer"].split("####")
        gold = gold.strip().replace(",", "")
        body = re.sub(r"<<[^>]*>>", "", solution).strip()
        for value, label in ((gold, True), (str(int(gold) + 1), False)):
            ending = f"#### {value}" if i % 2 == 0 else f"The answer is {value}."
            gsm8k.append((f"{body}\n{ending}", gold, True, label))
    parts["gsm8k_responses"] = gsm8k
    return parts


def run_ours(items: list[tuple[str, str, bool, bool]]) -> list[bool]:
    from mathforge.answers import clear_caches, grade, is_equiv

    clear_caches()  # every pass starts cold: no memoised normalisation, parse or sympy verdict
    return [
        grade(text, gold).correct if is_response else is_equiv(text, gold)
        for text, gold, is_response, _ in items
    ]


def run_math_verify(items: list[tuple[str, str, bool, bool]]) -> list[bool]:
    from math_verify import parse, verify

    verdicts = []
    for text, gold, is_response, _ in items:
        pred_text = text if is_response else f"${text}$"
        verdicts.append(bool(verify(parse(f"${gold}$"), parse(pred_text))))
    return verdicts


# The failures the issue names for math-verify: (case, response or pred, gold, is_response, label).
NAMED_CASES = [
    ("last box wins", "First \\boxed{3}. I dropped a term, so \\boxed{5}.", "5", True, True),
    ("tiny values stay exact", "\\frac{1}{2^{99}}", "\\frac{1}{2^{98}}", False, False),
    ("factorials stay exact", "\\frac{1}{2004!}", "\\frac{1}{2006!}", False, False),
    ("4\\sqrt(2) is not 4", "4\\sqrt(2)", "4", False, False),
]


def named_cases() -> dict[str, dict[str, bool]]:
    """Each grader on the named cases, plus one comparison made from a worker thread."""
    from concurrent.futures import ThreadPoolExecutor

    results = {}
    for name, text, gold, is_response, label in NAMED_CASES:
        item = [(text, gold, is_response, label)]
        results[name] = {
            "ours": run_ours(item)[0] == label,
            "math_verify": run_math_verify(item)[0] == label,
        }
    item = [("\\frac{1}{2}", "0.5", False, True)]
    with ThreadPoolExecutor(max_workers=1) as pool:
        ours = pool.submit(run_ours, item).result()[0]
        try:
            theirs = pool.submit(run_math_verify, item).result()[0]
        except ValueError:  # its signal-based timeout refuses to run outside the main thread
            theirs = False
    results["works in a thread"] = {"ours": ours, "math_verify": theirs}
    return results


def _timed(fn, items: list, repeat: int) -> tuple[list[bool], float]:
    best = float("inf")
    verdicts: list[bool] = []
    for _ in range(repeat):
        start = time.perf_counter()
        verdicts = fn(items)
        best = min(best, time.perf_counter() - start)
    return verdicts, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=1, help="timed passes per part (best is kept)")
    args = parser.parse_args()
    if not (args.data / "math500" / "test.jsonl").is_file():
        sys.exit(f"benchmark data not found under {args.data} (set --data or MATHFORGE_DATA_DIR)")

    corpus = build_corpus(args.data)
    start = time.perf_counter()
    from mathforge.answers import is_equiv

    is_equiv("\\sqrt{2}", "\\frac{2}{\\sqrt{2}}")  # imports and the sympy worker start, reported apart
    ours_startup = time.perf_counter() - start
    start = time.perf_counter()
    run_math_verify([("1", "1", False, True)])
    mv_startup = time.perf_counter() - start

    result: dict[str, object] = {
        "benchmark": "grader",
        "baseline": "math-verify",
        "startup_s": {"ours": round(ours_startup, 3), "math_verify": round(mv_startup, 3)},
        "named_cases_right": named_cases(),
    }
    total = {"n": 0, "ours_s": 0.0, "mv_s": 0.0, "agree": 0, "ours_right": 0, "mv_right": 0}
    for name, items in corpus.items():
        ours, ours_s = _timed(run_ours, items, args.repeat)
        theirs, mv_s = _timed(run_math_verify, items, args.repeat)
        labels = [item[3] for item in items]
        agree = sum(a == b for a, b in zip(ours, theirs, strict=True))
        ours_right = sum(a == label for a, label in zip(ours, labels, strict=True))
        mv_right = sum(b == label for b, label in zip(theirs, labels, strict=True))
        n = len(items)
        result[name] = {
            "n": n,
            "ours_per_s": round(n / ours_s, 1),
            "math_verify_per_s": round(n / mv_s, 1),
            "speedup": round(mv_s / ours_s, 2),
            "agreement": round(agree / n, 4),
            "ours_label_accuracy": round(ours_right / n, 4),
            "math_verify_label_accuracy": round(mv_right / n, 4),
        }
        for key, value in (("n", n), ("ours_s", ours_s), ("mv_s", mv_s), ("agree", agree)):
            total[key] += value
        total["ours_right"] += ours_right
        total["mv_right"] += mv_right
    n = total["n"]
    result["overall"] = {
        "n": n,
        "ours_per_s": round(n / total["ours_s"], 1),
        "math_verify_per_s": round(n / total["mv_s"], 1),
        "speedup": round(total["mv_s"] / total["ours_s"], 2),
        "agreement": round(total["agree"] / n, 4),
        "ours_label_accuracy": round(total["ours_right"] / n, 4),
        "math_verify_label_accuracy": round(total["mv_right"] / n, 4),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
