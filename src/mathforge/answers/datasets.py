"""Per-dataset gold answers, and which datasets are multiple choice.

The rules follow the benchmark files shipped with Qwen2.5-Math's evaluation code (the folder
names of the shared data directory), so a gold answer here is the same string that evaluation
compares against there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from mathforge.answers.text import last_boxed
from mathforge.errors import MathforgeError

# Every row is a choice question: the response is graded by the option letter(s) it picks.
MULTIPLE_CHOICE_DATASETS: frozenset[str] = frozenset({"mmlu_stem", "sat_math", "aqua", "gaokao_math_qa"})
# Choice and fill-in questions mixed (the 2024 gaokao sets have single, multi-select and blank
# questions): a row whose gold is option letters is graded as a choice, the others as math.
MIXED_CHOICE_DATASETS: frozenset[str] = frozenset(
    {"gaokao2024_I", "gaokao2024_II", "gaokao2024_mix", "cn_middle_school", "gaokao2023en"}
)


def gold_answer(example: dict[str, Any], dataset: str) -> str:
    """The gold answer string of one benchmark row.

    Raises :class:`MathforgeError` for an unknown dataset or a row without its answer field.
    """
    rule = _RULES.get(dataset)
    if rule is None:
        known = ", ".join(sorted(_RULES))
        raise MathforgeError(f"unknown dataset '{dataset}' for gold answers (known: {known})")
    answer = rule(example, dataset).strip()
    if not answer:
        raise MathforgeError(f"dataset '{dataset}': empty gold answer in row {_row_name(example)}")
    return answer


def _field(example: dict[str, Any], dataset: str, *names: str) -> Any:
    for name in names:
        if name in example and example[name] is not None:
            return example[name]
    raise MathforgeError(
        f"dataset '{dataset}': row {_row_name(example)} has no '{names[0]}' field (its gold answer)"
    )


def _row_name(example: dict[str, Any]) -> str:
    for key in ("id", "idx", "unique_id", "ID"):
        if key in example:
            return f"{key}={example[key]}"
    return "(no id)"


def format_number(value: Any) -> str:
    """A JSON number as answer text: 27.0 -> "27", 0.5 -> "0.5"; strings pass through."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _plain(*names: str) -> Callable[[dict[str, Any], str], str]:
    return lambda example, dataset: format_number(_field(example, dataset, *names))


def _dollars_stripped(example: dict[str, Any], dataset: str) -> str:
    return str(_field(example, dataset, "answer")).replace("$", "")


def _gaokao2023en(example: dict[str, Any], dataset: str) -> str:
    answer = _dollars_stripped(example, dataset).strip()
    if answer:
        return answer
    # Two rows carry their answer at the end of the question ("...point.answers: $\\frac{3}{10}$").
    question = str(example.get("question", ""))
    match = re.search(r"answers?\s*:\s*([^\n]+?)\s*$", question, re.IGNORECASE)
    return match.group(1).replace("$", "") if match else ""


def _gsm8k(example: dict[str, Any], dataset: str) -> str:
    return str(_field(example, dataset, "answer")).split("####")[-1].strip().replace(",", "")


def _last_box(example: dict[str, Any], dataset: str) -> str:
    solution = str(_field(example, dataset, "solution"))
    boxed = last_boxed(solution)
    if boxed is None:
        raise MathforgeError(
            f"dataset '{dataset}': row {_row_name(example)} has no \\boxed answer in 'solution'"
        )
    return boxed


def _math(example: dict[str, Any], dataset: str) -> str:
    if example.get("answer") not in (None, ""):
        return format_number(example["answer"])
    return _last_box(example, dataset)


def _mmlu(example: dict[str, Any], dataset: str) -> str:
    index = _field(example, dataset, "answer")
    if isinstance(index, str) and index.strip() in ("A", "B", "C", "D"):
        return index.strip()
    if not isinstance(index, int) or not 0 <= index <= 3:
        raise MathforgeError(f"dataset '{dataset}': row {_row_name(example)} has answer {index!r}, not 0-3")
    return "ABCD"[index]


def _olympiad(example: dict[str, Any], dataset: str) -> str:
    answers = _field(example, dataset, "final_answer")
    if isinstance(answers, str):
        answers = [answers]
    return ", ".join(str(answer).replace("$", "").strip() for answer in answers)


def _choice_or_answer(example: dict[str, Any], dataset: str) -> str:
    choice = str(example.get("choice_answer") or "").strip()
    return choice if choice else format_number(_field(example, dataset, "answer"))


def _asdiv(example: dict[str, Any], dataset: str) -> str:
    # "9 (apples)": the parenthesised unit is not part of the answer.
    return re.sub(r"\s*\([^()]*\)", "", str(_field(example, dataset, "answer")))


_RULES: dict[str, Callable[[dict[str, Any], str], str]] = {
    "gsm8k": _gsm8k,
    "math": _math,
    "math500": _plain("answer"),
    "minerva_math": _last_box,
    "gaokao2023en": _gaokao2023en,
    "college_math": _dollars_stripped,
    "gaokao_math_cloze": _dollars_stripped,
    "olympiadbench": _olympiad,
    "mmlu_stem": _mmlu,
    "sat_math": _plain("Answer"),
    "aqua": _plain("correct"),
    "gaokao_math_qa": _plain("label"),
    "gaokao2024_I": _plain("answer"),
    "gaokao2024_II": _plain("answer"),
    "gaokao2024_mix": _choice_or_answer,
    "cn_middle_school": _choice_or_answer,
    "aime24": _plain("answer"),
    "amc23": _plain("answer"),
    "cmath": _plain("answer"),
    "svamp": _plain("Answer"),
    "mawps": _plain("target"),
    "asdiv": _asdiv,
    "carp_en": _plain("answer"),
}
KNOWN_DATASETS: frozenset[str] = frozenset(_RULES)
