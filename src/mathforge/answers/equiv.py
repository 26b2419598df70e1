"""Mathematical equivalence of two answers, with the reason it was decided.

Order of work, cheapest first: canonical text equality; the answer's shape (sets, tuples,
intervals, relations, matrices; see :mod:`structure`); then each pair of values: text words
case-insensitively, rationals exactly with ``Fraction``, clearly different numbers and
expressions rejected with complex floats at fixed points, and only what is left (equal-looking
irrational or symbolic values, unparsed LaTeX) sent to a sympy worker process with the time
that remains.

Exactness: when both sides are exact (integers, fractions, radicals, ...), values must be
equal exactly; the relative tolerance :data:`REL_TOL` applies only when a side is a value
holding a float literal (a decimal such as ``0.333``). In expressions with variables a decimal
is taken at its exact value (``0.5x`` is ``x/2``, ``0.333x`` is not ``x/3``): a tolerance on
values at test points cannot tell a rounded coefficient from a term that is merely small.
A percentage ``p\\%`` matches ``p`` or ``p/100`` and nothing else: there is no x100 guessing
between plain numbers.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field
from fractions import Fraction

from mathforge.answers.latex import (
    MAX_EXPONENT,
    MAX_FACTORIAL,
    LatexParseError,
    Node,
    NotRational,
    TooExpensive,
    approx_value,
    exact_value,
    free_symbols,
    is_exact,
    literal_ulp,
    parse_latex,
)
from mathforge.answers.normalize import normalize
from mathforge.answers.structure import Items, Matrix, Relation, Value, is_constant, is_name, parse_answer
from mathforge.answers.structure import Node as Shape
from mathforge.answers.symbolic import get_pool
from mathforge.answers.text import find_balanced

# A float literal in a value: relative tolerance (and agreement to the literal's last digit).
REL_TOL = 1e-4
# Two exact values whose floats differ by more than this are different (float error is ~1e-13).
FLOAT_REJECT = 1e-6
MAX_ANSWER_CHARS = 2000
_STRENGTH = {"exact": 0, "numeric": 1, "symbolic": 2}
_WORDS = re.compile(r"[A-Za-z][A-Za-z ]{2,}")
_EXPONENT = re.compile(r"\^\s*(\d*)")
_FACTORIAL = re.compile(r"(\d+)\s*\)?\s*!")
_BASE_NUMERAL = re.compile(r"([0-9A-Z]+)_\{?(\d+)\}?")
_UNORDERED = ("list", "set")
# Test points: for each point, every variable gets its own value in [0.5, 2), fixed across runs
# and unrelated to the other variables' (shared offsets would make x - y constant).
_POINT_VALUES = tuple(
    tuple(random.Random(1000 * k + j).uniform(0.5, 2.0) for j in range(64)) for k in range(3)
)
# Prose inside an answer ("... for 0<y<1 and 0 otherwise"): a run of 4+ letters outside a
# command, or a common short word. Juxtaposed letters would otherwise parse as a product.
_ENVIRONMENT = re.compile(r"\\(?:begin|end)\{[A-Za-z*]+\}")
_PROSE = re.compile(
    r"(?<![\\A-Za-z])(?:[A-Za-z]{4,}|(?:for|and|the|are|not|all|any|its|has|was|but)(?![A-Za-z]))"
)


@dataclass
class _Budget:
    deadline: float
    timed_out: bool = field(default=False)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


def is_equiv(pred: str, gold: str, timeout: float = 5.0) -> bool:
    """True when ``pred`` and ``gold`` denote the same mathematical answer.

    ``timeout`` bounds the whole comparison (seconds); a comparison that cannot be decided in
    time is False. Safe to call from any thread or process.
    """
    return compare(pred, gold, timeout)[0]


def clear_caches() -> None:
    """Forget memoised normalisations, parses and sympy verdicts (for cold-start benchmarks)."""
    normalize.cache_clear()
    parse_answer.cache_clear()
    parse_latex.cache_clear()
    get_pool().clear_cache()


def compare(pred: str, gold: str, timeout: float = 5.0) -> tuple[bool, str]:
    """``(equal, reason)``. Equal answers: "exact" (same canonical text), "numeric" (same value,
    decided without sympy) or "symbolic" (decided by sympy). Different ones: "mismatch",
    "timeout" (undecidable within ``timeout``) or "no_answer" (``pred`` normalises to nothing)."""
    a, b = normalize(pred), normalize(gold)
    if not a:
        return False, "no_answer"
    if not b:
        return False, "mismatch"
    if a == b:
        return True, "exact"
    if len(a) > MAX_ANSWER_CHARS or len(b) > MAX_ANSWER_CHARS:
        return False, "mismatch"
    budget = _Budget(time.monotonic() + timeout)
    try:
        equal, reason = _nodes(parse_answer(a), parse_answer(b), budget)
    except RecursionError:  # nesting no real answer has
        return False, "mismatch"
    if not equal:
        return False, "timeout" if budget.timed_out else "mismatch"
    return equal, reason


def _nodes(x: Shape, y: Shape, budget: _Budget) -> tuple[bool, str]:
    if isinstance(x, Value) and isinstance(y, Value):
        return _values(x, y, budget)
    if isinstance(x, Relation) and isinstance(y, Relation):
        return _relations(x, y, budget)
    if isinstance(x, Relation) or isinstance(y, Relation):
        relation, other = (x, y) if isinstance(x, Relation) else (y, x)
        value = _relation_value(relation)
        return _nodes(value, other, budget) if value is not None else (False, "mismatch")
    if isinstance(x, Items) and isinstance(y, Items):
        return _items(x, y, budget)
    if isinstance(x, Matrix) and isinstance(y, Matrix):
        if len(x.rows) != len(y.rows) or any(len(r) != len(s) for r, s in zip(x.rows, y.rows, strict=True)):
            return False, "mismatch"
        return _in_order([c for r in x.rows for c in r], [c for r in y.rows for c in r], budget)
    if isinstance(x, Matrix) or isinstance(y, Matrix):
        matrix, other = (x, y) if isinstance(x, Matrix) else (y, x)
        # A column (or row) vector is the ordered tuple of its entries.
        if (
            isinstance(other, Items)
            and other.brackets == "()"
            and (all(len(row) == 1 for row in matrix.rows) or len(matrix.rows) == 1)
        ):
            return _in_order([c for r in matrix.rows for c in r], list(other.items), budget)
        return False, "mismatch"
    # One side is a single value: a one-element list or set holding it is the same answer.
    items, other = (x, y) if isinstance(x, Items) else (y, x)
    if isinstance(items, Items) and items.kind in _UNORDERED and len(set(items.items)) == 1:
        return _nodes(items.items[0], other, budget)
    return False, "mismatch"


def _items(x: Items, y: Items, budget: _Budget) -> tuple[bool, str]:
    if x.kind == "union" or y.kind == "union":
        # "x<-4 or x>4" lists the intervals of a union
        if {x.kind, y.kind} not in ({"union"}, {"union", "list"}):
            return False, "mismatch"
        return _any_order(list(x.items), list(y.items), budget)
    if x.kind in _UNORDERED and y.kind in _UNORDERED:
        xs, ys = list(x.items), list(y.items)
        if "set" in (x.kind, y.kind):  # duplicates do not count in a set
            xs, ys = list(dict.fromkeys(xs)), list(dict.fromkeys(ys))
        return _any_order(xs, ys, budget)
    if x.kind == "tuple" and y.kind == "tuple":
        if x.brackets != y.brackets:
            return False, "mismatch"
        return _in_order(list(x.items), list(y.items), budget)
    # "(1,2)" written as "1, 2", or blanks "24; 112" as "24, 112": the order is the answer.
    kinds = {x.kind, y.kind}
    if kinds in ({"blanks", "list"}, {"blanks"}) or (
        kinds == {"tuple", "list"} and (x.brackets or y.brackets) == "()"
    ):
        return _in_order(list(x.items), list(y.items), budget)
    return False, "mismatch"


def _in_order(xs: list[Shape], ys: list[Shape], budget: _Budget) -> tuple[bool, str]:
    if len(xs) != len(ys):
        return False, "mismatch"
    reason = "exact"
    for x, y in zip(xs, ys, strict=True):
        equal, why = _nodes(x, y, budget)
        if not equal:
            return False, why
        reason = _stronger(reason, why)
    return True, reason


def _any_order(xs: list[Shape], ys: list[Shape], budget: _Budget) -> tuple[bool, str]:
    if len(xs) != len(ys):
        return False, "mismatch"
    unused = list(ys)
    reason = "exact"
    for x in xs:
        for i, y in enumerate(unused):
            equal, why = _nodes(x, y, budget)
            if equal:
                reason = _stronger(reason, why)
                del unused[i]
                break
        else:
            return False, "mismatch"
    return True, reason


def _stronger(a: str, b: str) -> str:
    return a if _STRENGTH.get(a, 0) >= _STRENGTH.get(b, 0) else b


def _relation_value(relation: Relation) -> Shape | None:
    """What an assignment or membership says: ``x=5`` -> 5, ``x\\in[1,2]`` -> [1,2], ``2+3=5`` -> 5."""
    parts, ops = relation.parts, relation.ops
    if ops in (("=",), ("\\in",)):
        left, right = parts
        if isinstance(left, Value) and is_name(left.text):
            return right
        if ops == ("=",) and isinstance(right, Value) and is_name(right.text):
            return left
    if all(op == "=" for op in ops) and all(isinstance(p, Value) and is_constant(p.text) for p in parts):
        return parts[-1]
    return None


def _relations(x: Relation, y: Relation, budget: _Budget) -> tuple[bool, str]:
    if x.ops != y.ops:
        return False, "mismatch"
    if x.ops in (("=",), ("\\in",)):
        x_value, y_value = _relation_value(x), _relation_value(y)
        x_name, y_name = _target(x), _target(y)
        if x_value is not None and y_value is not None and x_name is not None and x_name == y_name:
            return _nodes(x_value, y_value, budget)
    if x.ops in (("=",), ("<",), ("\\le",)) and all(isinstance(p, Value) for p in x.parts + y.parts):
        sides_x = [p.text for p in x.parts if isinstance(p, Value)]
        sides_y = [p.text for p in y.parts if isinstance(p, Value)]
        return _proportional(sides_x, sides_y, positive=x.ops != ("=",), budget=budget)
    return _in_order(list(x.parts), list(y.parts), budget)


def _target(relation: Relation) -> str | None:
    for part in relation.parts:
        if isinstance(part, Value) and is_name(part.text):
            return part.text
    return None


def _values(x: Value, y: Value, budget: _Budget) -> tuple[bool, str]:
    if x.percent == y.percent:
        return _expressions(x.text, y.text, budget)
    percent, other = (x, y) if x.percent else (y, x)
    # 28\% is 28 (the number before the sign) or 0.28 (its value); nothing else.
    equal, reason = _expressions(percent.text, other.text, budget)
    if equal:
        return equal, reason
    return _expressions(f"\\frac{{{percent.text}}}{{100}}", other.text, budget)


def _expressions(a: str, b: str, budget: _Budget) -> tuple[bool, str]:
    if a == b:
        return True, "exact"
    if _WORDS.fullmatch(a) and _WORDS.fullmatch(b):  # text answers: "Evelyn", "east", "no solution"
        return (True, "exact") if a.casefold() == b.casefold() else (False, "mismatch")
    if _is_prose(a) or _is_prose(b):  # a sentence only matches the same text
        return False, "mismatch"
    base_a, base_b = _BASE_NUMERAL.fullmatch(a), _BASE_NUMERAL.fullmatch(b)
    if base_a or base_b:
        return _base_numerals(base_a, base_b, a, b)
    try:
        node_a, node_b = parse_latex(a), parse_latex(b)
    except LatexParseError:
        return _symbolic({"op": "expr", "a": a, "b": b}, budget)
    try:
        fast = _fast_equal(node_a, node_b)
    except TooExpensive:
        budget.timed_out = True
        return False, "timeout"
    if fast is not None:
        return fast, "numeric"
    return _symbolic({"op": "expr", "a": a, "b": b}, budget)


def _is_prose(text: str) -> bool:
    return bool(_PROSE.search(_ENVIRONMENT.sub("", text)))


def _base_numerals(
    base_a: re.Match[str] | None, base_b: re.Match[str] | None, a: str, b: str
) -> tuple[bool, str]:
    """``4210_6``: the digits in the asked base are the answer. Equal to ``4210_{6}`` or to the
    bare digits ``4210``, never to the decimal value ``942`` nor to ``4210_7``."""
    digits_a, radix_a = base_a.groups() if base_a else (a, None)
    digits_b, radix_b = base_b.groups() if base_b else (b, None)
    if radix_a is not None and radix_b is not None and int(radix_a) != int(radix_b):
        return False, "mismatch"
    return (True, "exact") if digits_a == digits_b else (False, "mismatch")


def _fast_equal(a: Node, b: Node) -> bool | None:
    """Decide without sympy when possible: exact rationals, or clearly different values."""
    exact = is_exact(a) and is_exact(b)
    try:
        va, vb = exact_value(a), exact_value(b)
    except NotRational:
        pass
    else:
        return va == vb if exact else _close(va, vb) and _within_last_place(a, b, va - vb)
    symbols = sorted(free_symbols(a) | free_symbols(b))
    for env in _environments(symbols):
        try:
            za, zb = approx_value(a, env), approx_value(b, env)
        except (ValueError, ArithmeticError):  # undefined here, overflow, or cancellation
            continue
        if not (_finite(za) and _finite(zb)):
            continue
        difference, scale = abs(za - zb), max(abs(za), abs(zb))
        if not exact and not symbols:
            return difference <= REL_TOL * scale and _within_last_place(a, b, difference)
        if difference > FLOAT_REJECT * scale:
            return False
    return None


def _proportional(x: list[str], y: list[str], positive: bool, budget: _Budget) -> tuple[bool, str]:
    """Relations ``L = R`` (or ``L < R``) compared through ``R - L`` up to a constant factor."""
    if any(_is_prose(side) for side in (*x, *y)):
        return False, "mismatch"
    try:
        dx = ("add", (parse_latex(x[1]), ("neg", parse_latex(x[0]))))
        dy = ("add", (parse_latex(y[1]), ("neg", parse_latex(y[0]))))
    except LatexParseError:
        dx = dy = None
    if dx is not None and dy is not None:
        ratios = []
        for env in _environments(sorted(free_symbols(dx) | free_symbols(dy))):
            try:
                ratios.append(approx_value(dx, env) / approx_value(dy, env))
            except (ValueError, ArithmeticError):
                continue
        ratios = [r for r in ratios if _finite(r)]
        if len(ratios) >= 2 and any(abs(r - ratios[0]) > FLOAT_REJECT * abs(ratios[0]) for r in ratios):
            return False, "numeric"
        if ratios and positive and ratios[0].real < -FLOAT_REJECT * abs(ratios[0]):
            return False, "numeric"
    op = "ineq" if positive else "eq"
    first, second = sorted([x, y])
    return _symbolic({"op": op, "a": first, "b": second}, budget)


def _explosive(text: str) -> bool:
    """Pre-parse guard for text sent to latex2sympy, which evaluates powers while parsing:
    an exponent or factorial too large to compute exactly (``9^{9^{9}}``, ``(10^9)!``)."""
    for match in _EXPONENT.finditer(text):
        if text.startswith("{", match.end()):
            close = find_balanced(text, match.end())
            exponent = text[match.end() + 1 : close] if close > 0 else ""
        else:
            exponent = match.group(1)
        try:
            value = exact_value(parse_latex(exponent))
        except TooExpensive:
            return True
        except (LatexParseError, NotRational, ValueError):
            continue
        if abs(value) > MAX_EXPONENT:
            return True
    return any(int(digits) > MAX_FACTORIAL for digits in _FACTORIAL.findall(text))


def _symbolic(payload: dict, budget: _Budget) -> tuple[bool, str]:
    texts = [payload["a"], payload["b"]] if payload["op"] == "expr" else [*payload["a"], *payload["b"]]
    if any(_explosive(text) for text in texts):
        budget.timed_out = True
        return False, "timeout"
    if payload["op"] == "expr":
        first, second = sorted([payload["a"], payload["b"]])
        payload = {"op": "expr", "a": first, "b": second}
    verdict = get_pool().decide(payload, budget.remaining())
    if verdict is None:
        budget.timed_out = True
        return False, "timeout"
    return verdict, "symbolic" if verdict else "mismatch"


def _environments(symbols: list[str]) -> list[dict[str, complex]]:
    """Fixed test points for the variables (one empty point when there are none)."""
    if not symbols:
        return [{}]
    return [
        {name: complex(values[j % len(values)]) for j, name in enumerate(symbols)} for values in _POINT_VALUES
    ]


def _within_last_place(a: Node, b: Node, difference: Fraction | complex) -> bool:
    """A decimal literal stands for the values that agree with it to its last digit: ``.35625``
    and ``.35626`` differ although they are relatively close; ``0.3333`` fits ``1/3``."""
    ulps = [ulp for ulp in (literal_ulp(a), literal_ulp(b)) if ulp is not None]
    return not ulps or abs(difference) < max(ulps)


def _close(a: Fraction, b: Fraction) -> bool:
    return abs(a - b) <= REL_TOL * max(abs(a), abs(b))


def _finite(z: complex) -> bool:
    return z == z and abs(z) != float("inf")
