"""Procedurally generated math problems with exact answers, for machines with no benchmark data.

Seeded and stable: problem ``i`` of a set depends only on (seed, level, family, its index
within the family), so a larger set extends a smaller one and ids never move. Families
follow the curriculum of the Qwen2.5-Math recipe's easy end: multi-step arithmetic and word
problems, linear equations, polynomial roots to a stated precision, fractions and percent,
gcd/lcm/modular arithmetic, counting.

Where reasoning-gym has a generator for a family it is used (its answers are converted to the
grader's format); the rest are written here because reasoning-gym has no task for them:
word problems (its only one with the numbers in the text, ``gsm_symbolic``, is built from
GSM8K test templates and would contaminate GSM8K), percent, modular arithmetic and
combinatorial counting (its counting tasks count letters, bits or grid rectangles).
"""

from __future__ import annotations

import ast
import math
import random
import zlib
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from mathforge.errors import MathforgeError
from mathforge.records import Problem

GENERATED = "generated"
LEVELS = (1, 2, 3)

Item = tuple[str, str, dict[str, Any]]  # question, gold answer, extra metadata


def _rng(seed: int, *parts: object) -> random.Random:
    """An independent, reproducible stream per (seed, family, level, index)."""
    key = "/".join(str(part) for part in (seed, *parts))
    return random.Random(zlib.crc32(key.encode()) + seed * 2**32)


def _number(value: Fraction | int) -> str:
    """Exact decimal text of a terminating rational ("12", "-0.35"); else "\\frac{p}{q}"."""
    value = Fraction(value)
    if value.denominator == 1:
        return str(value.numerator)
    den = value.denominator
    while den % 2 == 0:
        den //= 2
    while den % 5 == 0:
        den //= 5
    if den != 1:
        sign = "-" if value < 0 else ""
        return f"{sign}\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"
    text = f"{float(value):.12f}".rstrip("0").rstrip(".")
    return text


# --- reasoning-gym backed families -------------------------------------------------------------

# Per-level settings of the reasoning-gym generators (level 1 is sized for a ~100M-parameter model).
RG_CONFIGS: dict[str, dict[int, dict[str, Any]]] = {
    "basic_arithmetic": {
        # One operation on one-digit numbers: reasoning-gym's no-parentheses mode, whose
        # left-to-right answer is right when there is a single operator.
        1: {
            "min_terms": 2,
            "max_terms": 2,
            "min_digits": 1,
            "max_digits": 1,
            "operators": ("+", "-", "*"),
            "allow_parentheses": False,
            "allow_negation": False,
        },
        2: {
            "min_terms": 3,
            "max_terms": 4,
            "min_digits": 1,
            "max_digits": 2,
            "operators": ("+", "-", "*"),
            "allow_parentheses": True,
            "allow_negation": False,
        },
        3: {
            "min_terms": 4,
            "max_terms": 6,
            "min_digits": 2,
            "max_digits": 3,
            "operators": ("+", "-", "*"),
            "allow_parentheses": True,
            "allow_negation": True,
        },
    },
    "simple_equations": {
        # Without "*" the unknown has coefficient 1: one-step equations such as x + 5 = 12.
        1: {
            "min_terms": 2,
            "max_terms": 2,
            "min_value": 1,
            "max_value": 20,
            "operators": ("+", "-"),
            "operators_weights": [0.5, 0.5],
        },
        2: {"min_terms": 2, "max_terms": 3, "min_value": 1, "max_value": 30},
        3: {"min_terms": 3, "max_terms": 4, "min_value": 1, "max_value": 100},
    },
    "polynomial_equations": {
        1: {
            "min_terms": 2,
            "max_terms": 2,
            "min_degree": 1,
            "max_degree": 1,
            "min_value": 1,
            "max_value": 10,
        },
        2: {
            "min_terms": 2,
            "max_terms": 3,
            "min_degree": 1,
            "max_degree": 2,
            "min_value": 1,
            "max_value": 20,
        },
        3: {
            "min_terms": 2,
            "max_terms": 4,
            "min_degree": 2,
            "max_degree": 3,
            "min_value": 1,
            "max_value": 50,
        },
    },
    "gcd": {
        1: {"min_numbers": 2, "max_numbers": 2, "min_value": 2, "max_value": 20},
        2: {"min_numbers": 2, "max_numbers": 2, "min_value": 2, "max_value": 200},
        3: {"min_numbers": 2, "max_numbers": 3, "min_value": 2, "max_value": 1000},
    },
    "lcm": {
        1: {"min_numbers": 2, "max_numbers": 2, "min_value": 2, "max_value": 10},
        2: {"min_numbers": 2, "max_numbers": 2, "min_value": 2, "max_value": 40},
        3: {"min_numbers": 2, "max_numbers": 3, "min_value": 2, "max_value": 100},
    },
}

# reasoning-gym draws item ``i`` from Random(seed + i); spacing the per-task seeds keeps the
# streams of different seeds from overlapping.
_RG_SEED_STRIDE = 1_000_003


def rg_dataset(task: str, level: int, seed: int, size: int) -> Any:
    """The reasoning-gym dataset behind one (task, level, seed)."""
    import reasoning_gym

    base = seed * _RG_SEED_STRIDE + zlib.crc32(f"{task}/{level}".encode()) % _RG_SEED_STRIDE
    return reasoning_gym.create_dataset(task, seed=base, size=max(size, 1), **RG_CONFIGS[task][level])


def _exact_value(expression: str) -> Fraction:
    """Exact value of an integer expression with + - * and parentheses."""

    def value(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return Fraction(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = value(node.operand)
            return -inner if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult)):
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Add):
                return left + right
            return left - right if isinstance(node.op, ast.Sub) else left * right
        raise ValueError(f"unexpected term in generated expression: {ast.dump(node)}")

    return value(ast.parse(expression, mode="eval").body)


def rg_to_gold(task: str, entry: dict[str, Any]) -> str:
    """reasoning-gym's answer converted to the grader's format (LaTeX fractions, decimal lists).

    Arithmetic answers are recomputed from the expression: reasoning-gym's own answer for
    expressions without parentheses is evaluated left to right, ignoring operator precedence.
    """
    if task == "basic_arithmetic":
        return _number(_exact_value(entry["metadata"]["expression"]))
    if task == "polynomial_equations":
        return ", ".join(_number(Fraction(str(root))) for root in entry["metadata"]["real_solutions"])
    return str(entry["answer"]).strip()


def _rg_question(task: str, entry: dict[str, Any]) -> str:
    if task == "polynomial_equations":
        meta = entry["metadata"]
        return (
            f"Find all real solutions of {meta['polynomial_expr']} = 0 for {meta['variable']}. "
            "Give each solution as a decimal rounded to 4 decimal places; "
            "separate several solutions with commas."
        )
    return str(entry["question"]).strip()


def _rg_item(task: str, seed: int, level: int, index: int) -> Item:
    dataset = rg_dataset(task, level, seed, index + 1)
    entry = dataset[index]
    meta = {"source": f"reasoning_gym/{task}", "source_index": index}
    return _rg_question(task, entry), rg_to_gold(task, entry), meta


# --- hand-written families ------------------------------------------------------------------------

_NAMES = ("Ava", "Ben", "Carla", "Dev", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kemi", "Liam")
_ITEMS = (
    ("pencil", "pencils"),
    ("apple", "apples"),
    ("notebook", "notebooks"),
    ("sticker", "stickers"),
    ("cookie", "cookies"),
    ("marble", "marbles"),
    ("card", "cards"),
    ("balloon", "balloons"),
)


def _one_step_word_problem(rng: random.Random, name: str, items: str) -> tuple[str, int]:
    kind = rng.randrange(4)
    a, b = rng.randint(2, 20), rng.randint(2, 9)
    if kind == 0:
        return f"{name} has {a} {items} and gets {b} more. How many {items} does {name} have now?", a + b
    if kind == 1:
        a += b
        return f"{name} has {a} {items} and gives {b} away. How many {items} does {name} have left?", a - b
    if kind == 2:
        a = rng.randint(2, 9)
        return f"There are {a} boxes with {b} {items} in each box. How many {items} are there?", a * b
    a = rng.randint(2, 9)
    question = (
        f"{name} shares {a * b} {items} equally among {b} friends. How many {items} does each friend get?"
    )
    return question, a


def _word_problem(rng: random.Random, level: int) -> tuple[str, int]:
    name = rng.choice(_NAMES)
    _, items = rng.choice(_ITEMS)
    if level == 1:
        return _one_step_word_problem(rng, name, items)
    big = (9, 30, 200)[level - 1]
    kind = rng.randrange(5)
    if kind == 0:
        count, price = rng.randint(2, 9), rng.randint(2, big // 3 + 2)
        paid = count * price + rng.randint(1, big)
        question = (
            f"{name} buys {count} {items} that cost ${price} each and pays with ${paid}. "
            f"How many dollars of change does {name} get?"
        )
        answer = paid - count * price
        if level >= 2:
            extra = rng.randint(2, 9)
            question = (
                f"{name} buys {count} {items} at ${price} each and a bag for ${extra}, "
                f"and pays with ${paid + extra}. How many dollars of change does {name} get?"
            )
    elif kind == 1:
        start, weekly, weeks = rng.randint(1, big), rng.randint(2, big // 2 + 2), rng.randint(2, 6)
        question = (
            f"{name} has ${start} and saves ${weekly} every week. "
            f"How many dollars does {name} have after {weeks} weeks?"
        )
        answer = start + weekly * weeks
        if level >= 2:
            spent = rng.randint(1, start + weekly * weeks - 1)
            question = question[:-1] + f" if {name} then spends ${spent}?"
            answer -= spent
    elif kind == 2:
        children, each = rng.randint(2, 6), rng.randint(2, big // 2 + 2)
        gave = rng.randint(1, big)
        total = children * each + gave
        question = (
            f"{name} has {total} {items}, gives {gave} to a friend and shares the rest "
            f"equally among {children} children. How many {items} does each child get?"
        )
        answer = each
    elif kind == 3:
        rows, per_row = rng.randint(2, 9), rng.randint(2, big // 2 + 2)
        removed = rng.randint(1, rows * per_row - 1)
        question = (
            f"A hall has {rows} rows of chairs with {per_row} chairs in each row. "
            f"{removed} chairs are taken away. How many chairs are left?"
        )
        answer = rows * per_row - removed
        if level >= 3:
            added = rng.randint(1, big)
            question = question.replace("are taken away.", f"are taken away and {added} are brought in.")
            answer += added
    else:
        age, gap, years = rng.randint(3, 15), rng.randint(1, 9), rng.randint(1, 10 * level)
        question = (
            f"{name} is {age} years old. {name}'s brother is {gap} years older. "
            f"How old will the brother be in {years} years?"
        )
        answer = age + gap + years
        if level >= 2:
            question = question[:-1] + ", and what is the sum of their ages then? Give the sum."
            answer = 2 * (age + years) + gap
    return question, answer


def _fraction_text(value: Fraction) -> str:
    """LaTeX for a fraction; a whole number stays a whole number."""
    if value.denominator == 1:
        return str(value.numerator)
    sign = "-" if value < 0 else ""
    return f"{sign}\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"


def _fraction(rng: random.Random, level: int) -> tuple[str, Fraction]:
    top = (6, 12, 20)[level - 1]
    ask = " Give the answer as a fraction in lowest terms."
    if level == 1:
        den = rng.randint(3, top)
        a, b = rng.randint(1, den - 1), rng.randint(1, den - 1)
        return f"What is ${a}/{den} + {b}/{den}$?" + ask, Fraction(a + b, den)
    first = Fraction(rng.randint(1, top - 1), rng.randint(2, top))
    second = Fraction(rng.randint(1, top - 1), rng.randint(2, top))
    op = rng.choice("+-*")
    value = first + second if op == "+" else first - second if op == "-" else first * second
    shown = {"+": "+", "-": "-", "*": "\\times"}[op]
    question = f"What is ${_fraction_text(first)} {shown} {_fraction_text(second)}$"
    if level == 3:
        third = Fraction(rng.randint(1, top - 1), rng.randint(2, top))
        value /= third
        inner = f"{_fraction_text(first)} {shown} {_fraction_text(second)}"
        question = f"What is $\\left({inner}\\right) \\div {_fraction_text(third)}$"
    return question + "?" + ask, value


def _percent(rng: random.Random, level: int) -> tuple[str, Fraction]:
    if level == 1:
        pct = rng.choice((10, 50, 100))
        whole = rng.randint(1, 10) * (100 // math.gcd(pct, 100))
        return f"What is {pct}% of {whole}?", Fraction(pct * whole, 100)
    if level == 2 and rng.random() < 0.5:
        whole = rng.choice((20, 25, 40, 50, 80, 200))
        unit = whole // math.gcd(whole, 100)  # smallest part that is a whole percent of `whole`
        part = rng.randint(1, whole // unit) * unit
        return f"{part} is what percent of {whole}?", Fraction(part * 100, whole)
    if level == 2:
        pct, whole = rng.randint(1, 99), rng.randint(2, 400)
        return f"What is {pct}% of {whole}?", Fraction(pct * whole, 100)
    price, up, down = rng.randint(20, 500), rng.choice((10, 20, 25, 50)), rng.choice((10, 20, 25, 40))
    question = (
        f"A price of ${price} is raised by {up}% and the new price is then lowered by {down}%. "
        "What is the final price in dollars?"
    )
    return question, Fraction(price) * (100 + up) / 100 * (100 - down) / 100


def _modular(rng: random.Random, level: int) -> tuple[str, int]:
    if level == 1:
        value, modulus = rng.randint(5, 30), rng.randint(2, 5)
        return f"What is the remainder when {value} is divided by {modulus}?", value % modulus
    if level == 2:
        a, b, modulus = rng.randint(10, 99), rng.randint(10, 99), rng.randint(3, 13)
        return f"What is the remainder when ${a} \\times {b}$ is divided by {modulus}?", a * b % modulus
    base, exponent, modulus = rng.randint(2, 20), rng.randint(5, 60), rng.randint(3, 23)
    question = f"What is the remainder when ${base}^{{{exponent}}}$ is divided by {modulus}?"
    return question, pow(base, exponent, modulus)


_WORDS = ("LEVEL", "APPLE", "BANANA", "LETTER", "PEPPER", "COOKIE", "BALLOON", "MAMMAL", "ALPACA")


def _counting(rng: random.Random, level: int) -> tuple[str, int]:
    kind = rng.randrange(2)
    if level == 1:
        if kind == 0:
            top, step = rng.randint(10, 30), rng.randint(2, 5)
            return f"How many whole numbers from 1 to {top} are multiples of {step}?", top // step
        people = rng.randint(2, 5)
        question = (
            f"{people} friends each shake hands once with every other friend. How many handshakes are there?"
        )
        return question, math.comb(people, 2)
    if level == 2:
        if kind == 0:
            n = rng.randint(5, 12)
            k = rng.randint(2, min(5, n - 1))
            return f"In how many ways can {k} books be chosen from {n} different books?", math.comb(n, k)
        n = rng.randint(3, 7)
        return f"In how many different orders can {n} people stand in a line?", math.factorial(n)
    if kind == 0:
        top, a, b = rng.randint(100, 1000), rng.randint(2, 9), rng.randint(2, 9)
        while b == a:
            b = rng.randint(2, 9)
        both = top // math.lcm(a, b)
        question = f"How many integers from 1 to {top} are divisible by {a} or by {b}?"
        return question, top // a + top // b - both
    word = rng.choice(_WORDS)
    arrangements = math.factorial(len(word))
    for letter in set(word):
        arrangements //= math.factorial(word.count(letter))
    return f"How many distinct arrangements of the letters of the word {word} are there?", arrangements


def _hand_item(
    make: Callable[[random.Random, int], tuple[str, Any]],
    family: str,
    show: Callable[[Any], str] = _number,
) -> Callable[..., Item]:
    def item(seed: int, level: int, index: int) -> Item:
        question, answer = make(_rng(seed, family, level, index), level)
        return question, show(answer), {"source": "mathforge"}

    return item


# Each family cycles through its sources by index, so every source is equally represented.
FAMILIES: dict[str, tuple[Callable[[int, int, int], Item], ...]] = {
    "arithmetic": (lambda s, lv, i: _rg_item("basic_arithmetic", s, lv, i),),
    "word_problem": (_hand_item(_word_problem, "word_problem"),),
    "linear_equation": (lambda s, lv, i: _rg_item("simple_equations", s, lv, i),),
    "polynomial_roots": (lambda s, lv, i: _rg_item("polynomial_equations", s, lv, i),),
    "fraction_percent": (
        _hand_item(_fraction, "fraction", _fraction_text),
        _hand_item(_percent, "percent"),
    ),
    "number_theory": (
        lambda s, lv, i: _rg_item("gcd", s, lv, i),
        lambda s, lv, i: _rg_item("lcm", s, lv, i),
        _hand_item(_modular, "modular"),
    ),
    "counting": (_hand_item(_counting, "counting"),),
}


def generate_problems(
    n: int, seed: int = 0, level: int = 1, families: list[str] | tuple[str, ...] | None = None
) -> list[Problem]:
    """``n`` problems cycling through ``families`` (all by default) at difficulty ``level`` (1-3).

    Ids look like ``generated/arithmetic-L1-s0-3`` (family, level, seed, index in the family).
    Metadata ``subject`` is the family and ``level`` the level, so reports break down by both.
    """
    chosen = list(families) if families else list(FAMILIES)
    unknown = [name for name in chosen if name not in FAMILIES]
    if unknown:
        raise MathforgeError(f"unknown problem families {unknown}; known: {', '.join(FAMILIES)}")
    if level not in LEVELS:
        raise MathforgeError(f"generated problems: level must be one of {LEVELS}, got {level}")
    if n < 0:
        raise MathforgeError(f"generated problems: n must be >= 0, got {n}")
    problems = []
    for position in range(n):
        family = chosen[position % len(chosen)]
        index = position // len(chosen)
        sources = FAMILIES[family]
        make = sources[index % len(sources)]
        question, gold, extra = make(seed, level, index // len(sources))
        problems.append(
            Problem(
                id=f"{GENERATED}/{family}-L{level}-s{seed}-{index}",
                benchmark=GENERATED,
                question=question,
                gold=gold,
                meta={"subject": family, "level": level, **extra},
            )
        )
    return problems
