"""Benchmark registry: how each evaluation set is read, shown to the model and graded.

One entry per benchmark of the Qwen2.5-Math evaluation suite. Question texts follow that
suite's ``parse_question`` (multiple-choice sets list their choices after the question) so
scores are comparable with published numbers; gold answers come from
:func:`mathforge.answers.gold_answer`, the grader's own per-dataset rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mathforge.errors import MathforgeError

QuestionRule = Callable[[dict[str, Any]], str]

# Few-shot policy of the Qwen2.5-Math protocol: zero-shot everywhere except multiple-choice
# items, which get this many worked examples.
MC_SHOTS = 5
_LETTERS = "ABCDE"


@dataclass(frozen=True)
class HubSource:
    """Where a benchmark lives on the Hugging Face hub (used only when no local file exists)."""

    path: str
    config: str | None = None
    splits: tuple[str, ...] = ("test",)


@dataclass(frozen=True)
class Benchmark:
    """How to read one benchmark.

    ``multiple_choice`` is True when every item is multiple-choice, False when none is, and
    None when it depends on the item (exam sets that mix choice and fill-in questions: an item
    whose gold answer is choice letters is multiple-choice); it agrees with the grader's
    ``MULTIPLE_CHOICE_DATASETS`` / ``MIXED_CHOICE_DATASETS``. ``few_shot`` is the reference
    protocol's policy: "always" (5-shot choice sets), "choice_items" (5-shot only for items
    whose gold is one choice letter, the reference code's ``adapt_few_shot``) or "never".
    ``gold_rule`` names the dataset rule of :func:`mathforge.answers.gold_answer`.
    """

    name: str
    question: QuestionRule
    answer_type: str
    multiple_choice: bool | None
    few_shot: str = "never"
    meta_fields: tuple[str, ...] = ()
    id_field: str | None = None
    gold_rule: str | None = None
    hub: HubSource | None = None
    language: str = "en"
    description: str = ""

    @property
    def gold_dataset(self) -> str:
        return self.gold_rule or self.name


def _field(*names: str) -> QuestionRule:
    """The first present, non-empty field among ``names``."""

    def rule(example: dict[str, Any]) -> str:
        for name in names:
            value = example.get(name)
            if value not in (None, ""):
                return str(value)
        return ""

    return rule


def _body_question(body: str, question: str, add_period: bool) -> QuestionRule:
    def rule(example: dict[str, Any]) -> str:
        head = str(example.get(body) or "").strip()
        if add_period and head and not head.endswith("."):
            head += "."
        return f"{head} {str(example.get(question) or '').strip()}".strip()

    return rule


def _mmlu_question(example: dict[str, Any]) -> str:
    choices = example.get("choices") or []
    options = " ".join(
        f"({label}) {str(option).strip()}" for label, option in zip(_LETTERS, choices, strict=False)
    )
    return f"{str(example.get('question') or '').strip()}\nAnswer Choices: {options}"


def _sat_question(example: dict[str, Any]) -> str:
    # "A) x B) y" -> "(A) x (B) y", as the reference evaluation code does.
    options = str(example.get("options") or "").strip()
    if options.startswith("A"):
        options = "(" + options
    for letter in "BCD":
        options = options.replace(f" {letter}) ", f" ({letter}) ")
    return f"{str(example.get('question') or '').strip()}\nAnswer Choices: {options}"


def _aqua_question(example: dict[str, Any]) -> str:
    # Options come as "A)text"; they are shown as "(A) text". The reference code also pads
    # every parenthesis inside the option texts with spaces, a side effect not reproduced here.
    options = []
    for option in example.get("options") or []:
        match = re.match(r"\s*([A-E])\)\s*(.*)", str(option), flags=re.S)
        options.append(f"({match.group(1)}) {match.group(2).strip()}" if match else str(option).strip())
    return f"{str(example.get('question') or '').strip()}\nAnswer Choices: {' '.join(options)}"


def _gaokao_qa_question(example: dict[str, Any]) -> str:
    options = example.get("options") or {}
    listed = " ".join(f"({key}) {value}" for key, value in options.items())
    return f"{str(example.get('question') or '').strip()}\n选项: {listed}"


_MATH_HUB = HubSource("DigitalLearningGmbH/MATH-lighteval", None, ("train", "test"))

_ENTRIES = [
    Benchmark(
        "gsm8k",
        _field("question"),
        "number",
        False,
        id_field="idx",
        hub=HubSource("openai/gsm8k", "main", ("train", "test")),
        description="Grade-school word problems (1319 test, 7473 train)",
    ),
    Benchmark(
        "math",
        _field("problem"),
        "expression",
        False,
        meta_fields=("level", "type"),
        hub=_MATH_HUB,
        description="Full MATH competition set (hub only: 5000 test, 7500 train)",
    ),
    Benchmark(
        "math500",
        _field("problem"),
        "expression",
        False,
        meta_fields=("level", "subject"),
        id_field="unique_id",
        hub=HubSource("HuggingFaceH4/MATH-500"),
        description="500-problem MATH test subset",
    ),
    Benchmark(
        "minerva_math",
        _field("problem"),
        "expression",
        False,
        meta_fields=("type",),
        id_field="idx",
        description="Minerva Math (MIT OCW science problems)",
    ),
    Benchmark("gaokao2023en", _field("question"), "mixed", None, description="GaoKao 2023, English"),
    Benchmark(
        "olympiadbench",
        _field("question"),
        "expression",
        False,
        meta_fields=("subfield", "answer_type"),
        id_field="id",
        description="OlympiadBench (English, text-only math)",
    ),
    Benchmark(
        "college_math",
        _field("question"),
        "expression",
        False,
        meta_fields=("data_topic",),
        description="CollegeMath",
    ),
    Benchmark(
        "mmlu_stem",
        _mmlu_question,
        "choice",
        True,
        few_shot="always",
        meta_fields=("type",),
        description="MMLU STEM subjects (4 choices)",
    ),
    Benchmark(
        "aime24",
        _field("problem", "question"),
        "number",
        False,
        id_field="id",
        hub=HubSource("HuggingFaceH4/aime_2024", None, ("train",)),
        description="AIME 2024",
    ),
    Benchmark("amc23", _field("question", "problem"), "number", False, id_field="id", description="AMC 2023"),
    Benchmark(
        "cmath",
        _field("question"),
        "number",
        False,
        meta_fields=("grade",),
        language="zh",
        description="CMATH (Chinese elementary school)",
    ),
    Benchmark(
        "gaokao2024_I",
        _field("question"),
        "mixed",
        None,
        few_shot="choice_items",
        meta_fields=("type",),
        language="zh",
        description="GaoKao 2024 paper I",
    ),
    Benchmark(
        "gaokao2024_II",
        _field("question"),
        "mixed",
        None,
        few_shot="choice_items",
        meta_fields=("type",),
        language="zh",
        description="GaoKao 2024 paper II",
    ),
    Benchmark(
        "gaokao2024_mix",
        _field("question"),
        "mixed",
        None,
        few_shot="choice_items",
        id_field="idx",
        language="zh",
        description="GaoKao 2024 mixed",
    ),
    Benchmark(
        "cn_middle_school",
        _field("question"),
        "mixed",
        None,
        few_shot="choice_items",
        id_field="idx",
        language="zh",
        description="Chinese middle-school exam 2024",
    ),
    Benchmark(
        "gaokao_math_cloze",
        _field("question"),
        "expression",
        False,
        language="zh",
        description="GaoKao math fill-in-the-blank",
    ),
    Benchmark(
        "gaokao_math_qa",
        _gaokao_qa_question,
        "choice",
        True,
        few_shot="choice_items",
        language="zh",
        description="GaoKao math multiple-choice",
    ),
    Benchmark(
        "svamp",
        _body_question("Body", "Question", add_period=True),
        "number",
        False,
        meta_fields=("Type",),
        id_field="idx",
        description="SVAMP word problems",
    ),
    Benchmark(
        "asdiv",
        _body_question("body", "question", add_period=False),
        "number",
        False,
        meta_fields=("solution_type",),
        id_field="idx",
        description="ASDiv word problems",
    ),
    Benchmark(
        "mawps",
        _field("input"),
        "number",
        False,
        meta_fields=("type",),
        id_field="idx",
        description="MAWPS word problems",
    ),
    Benchmark("aqua", _aqua_question, "choice", True, few_shot="always", description="AQuA-RAT (5 choices)"),
    Benchmark(
        "sat_math",
        _sat_question,
        "choice",
        True,
        few_shot="always",
        id_field="id",
        description="SAT math (4 choices)",
    ),
    Benchmark("carp_en", _field("content"), "expression", False, description="CARP (English)"),
]

BENCHMARKS: dict[str, Benchmark] = {entry.name: entry for entry in _ENTRIES}


def get_benchmark(name: str) -> Benchmark:
    """The registry entry for ``name``; an unknown name lists the known ones."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        known = ", ".join(sorted(BENCHMARKS))
        raise MathforgeError(
            f"unknown benchmark '{name}' (known: {known}, generated, or a path to a .jsonl file)"
        ) from None


def is_choice_letter(gold: str) -> bool:
    """A gold answer made only of choice letters ("C", "ABD") marks a multiple-choice item."""
    return bool(gold) and all(char in _LETTERS for char in gold)


def question_text(bench: Benchmark, example: dict[str, Any], gold: str) -> str:
    """The text shown to the model; yes/no and true/false items say so, as in the reference code."""
    question = bench.question(example).strip()
    if gold.lower() in ("true", "false"):
        question += " (True or False)"
    elif gold.lower() in ("yes", "no"):
        question += " (Yes or No)"
    return question


def item_multiple_choice(bench: Benchmark, gold: str) -> tuple[bool, int]:
    """``(multiple_choice, shots)`` for one item under the Qwen2.5-Math few-shot policy."""
    choice = bool(bench.multiple_choice) or (bench.multiple_choice is None and is_choice_letter(gold))
    if bench.few_shot == "always":
        return choice, MC_SHOTS
    if bench.few_shot == "choice_items" and len(gold) == 1 and is_choice_letter(gold):
        return choice, MC_SHOTS
    return choice, 0
