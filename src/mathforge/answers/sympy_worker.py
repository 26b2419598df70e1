"""The sympy side of the grader, run as a child process (see :mod:`mathforge.answers.symbolic`).

Reads one JSON request per line on stdin and answers ``{"equal": true|false|null}`` on stdout
(null: too expensive to decide). Requests:

- ``{"op": "expr", "a": A, "b": B}``: are two expressions equal?
- ``{"op": "eq", "a": [L, R], "b": [L, R]}``: are two equations the same up to a non-zero factor?
- ``{"op": "ineq", "a": [LOW, HIGH], "b": [LOW, HIGH]}``: the same inequality up to a positive factor?

Equality is decided numerically at 40-50 significant digits (exactly for rationals), at fixed
pseudo-random points when variables are present (polynomial identity testing, extended to
analytic functions), with ``equals(0)`` to confirm constants that agree to 40 digits. A float
literal in a constant value switches to :data:`mathforge.answers.equiv.REL_TOL`; in an
expression with variables a decimal counts at its exact value.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import sys
from typing import Any

import sympy

from mathforge.answers.equiv import REL_TOL
from mathforge.answers.latex import (
    MAX_EXPONENT,
    MAX_FACTORIAL,
    MAX_RESULT_BITS,
    LatexParseError,
    is_exact,
    parse_latex,
)

MEMORY_LIMIT_BYTES = 2 * 1024**3
DIGITS = 40
EXACT_TOL = 1e-25  # exact expressions compared at test points, in 40-digit arithmetic
CONSTANT_TOL = 1e-40  # exact constants at 50 digits; closer ones are confirmed by equals(0)


def main() -> None:
    with contextlib.suppress(ValueError, OSError):  # a lower hard limit may already be in force
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)  # sympy/antlr warnings must not fill a pipe nobody reads
    for line in sys.stdin:
        try:
            equal = handle(json.loads(line))
        except (MemoryError, RecursionError, _TooExpensive):
            equal = None
        except Exception:
            equal = False  # neither parser understands it: not provably equal
        sys.stdout.write(json.dumps({"equal": equal}) + "\n")
        sys.stdout.flush()


class _TooExpensive(Exception):
    pass


def handle(request: dict[str, Any]) -> bool | None:
    op = request["op"]
    if op == "expr":
        return expressions_equal(request["a"], request["b"])
    if op in ("eq", "ineq"):
        return relations_equal(request["a"], request["b"], positive=op == "ineq")
    raise ValueError(f"unknown op {op!r}")


def expressions_equal(a_text: str, b_text: str) -> bool:
    a, a_exact = to_sympy(a_text)
    b, b_exact = to_sympy(b_text)
    if not (isinstance(a, sympy.Expr) and isinstance(b, sympy.Expr)):
        return _structures_equal(a, b)
    exact = a_exact and b_exact
    difference = a - b
    if difference == 0:
        return True
    symbols = sorted(a.free_symbols | b.free_symbols, key=str)
    if not symbols:
        va, vb = a.evalf(DIGITS + 10), b.evalf(DIGITS + 10)
        if not (_finite(va) and _finite(vb)):
            return bool(a == b)
        if not exact:
            return _close(va, vb, REL_TOL)
        if not _close(va, vb, CONSTANT_TOL):
            return False
        verdict = difference.equals(0)
        return True if verdict is None else bool(verdict)
    checked = 0
    for point in _points(symbols, signed=_non_analytic(a) or _non_analytic(b)):
        va, vb = a.evalf(DIGITS, subs=point), b.evalf(DIGITS, subs=point)
        if not (_finite(va) and _finite(vb)):
            continue
        if not _close(va, vb, EXACT_TOL):
            return False
        checked += 1
    if checked >= 2:
        return True
    return bool(sympy.simplify(difference) == 0)


def relations_equal(a_sides: list[str], b_sides: list[str], positive: bool) -> bool:
    """Same relation up to a constant factor (positive for inequalities, which must keep direction)."""
    a_low, a_high, b_low, b_high = (to_sympy(side)[0] for side in (*a_sides, *b_sides))
    da, db = a_high - a_low, b_high - b_low
    symbols = sorted(da.free_symbols | db.free_symbols, key=str)
    if not symbols:
        return False  # a relation between constants is not an answer we can compare
    ratios = []
    for point in _points(symbols):
        va, vb = da.evalf(DIGITS, subs=point), db.evalf(DIGITS, subs=point)
        if not (_finite(va) and _finite(vb)) or vb == 0:
            continue
        ratios.append(va / vb)
    if len(ratios) < 2 or ratios[0] == 0:
        return False
    first = ratios[0]
    if positive and not (first.is_real and first > 0):
        return False
    return all(_close(ratio, first, EXACT_TOL) for ratio in ratios[1:])


def to_sympy(text: str) -> tuple[Any, bool]:
    """Parse with the grader's own parser, falling back to latex2sympy; also report exactness."""
    try:
        node = parse_latex(text)
    except LatexParseError:
        return _latex2sympy(text)
    return _build(node), is_exact(node)


def _latex2sympy(text: str) -> tuple[Any, bool]:
    from latex2sympy2_extended import latex2sympy
    from latex2sympy2_extended.latex2sympy2 import ConversionConfig

    expr = latex2sympy(text, conversion_config=ConversionConfig(lowercase_symbols=False))
    if not isinstance(expr, sympy.Basic):
        return expr, True
    exact = not expr.has(sympy.Float)
    # Decimals at their exact decimal value (0.1 is 1/10, not the nearest binary float).
    expr = expr.xreplace({value: sympy.Rational(str(value)) for value in expr.atoms(sympy.Float)})
    return expr.subs({sympy.Symbol("i"): sympy.I, sympy.Symbol("e"): sympy.E}), exact


def _build(node: tuple[Any, ...]) -> Any:
    tag = node[0]
    if tag == "num":
        return sympy.Rational(node[1].numerator, node[1].denominator)
    if tag == "const":
        return {"pi": sympy.pi, "e": sympy.E, "i": sympy.I, "oo": sympy.oo}[node[1]]
    if tag == "sym":
        return sympy.Symbol(node[1])
    if tag == "add":
        return sympy.Add(*(_build(term) for term in node[1]))
    if tag == "mul":
        return sympy.Mul(*(_build(factor) for factor in node[1]))
    if tag == "neg":
        return -_build(node[1])
    if tag == "div":
        return _build(node[1]) / _build(node[2])
    if tag == "pow":
        base, exponent = _build(node[1]), _build(node[2])
        if base.is_Number and exponent.is_Number and abs(base) not in (0, 1):
            size = max(abs(sympy.Rational(base).p).bit_length(), abs(sympy.Rational(base).q).bit_length())
            if abs(exponent) > MAX_EXPONENT or size * abs(exponent) > MAX_RESULT_BITS:
                raise _TooExpensive("power")
        return sympy.Pow(base, exponent)
    if tag == "fact":
        value = _build(node[1])
        if value.is_Number and value > MAX_FACTORIAL:
            raise _TooExpensive("factorial")
        return sympy.factorial(value)
    if tag == "func":
        name, args = node[1], [_build(arg) for arg in node[2]]
        if name == "log":
            return sympy.log(args[0]) if args[1] == sympy.E else sympy.log(args[0], args[1])
        return _FUNCTIONS[name](args[0])
    if tag == "root":
        value = _build(node[1])
        index = 2 if node[2] is None else _build(node[2])
        if value.is_negative and index.is_integer and index.is_odd:
            return -sympy.root(-value, index)  # the real odd root, as in school mathematics
        return sympy.root(value, index)
    if tag == "abs":
        return sympy.Abs(_build(node[1]))
    if tag == "floor":
        return sympy.floor(_build(node[1]))
    if tag == "ceil":
        return sympy.ceiling(_build(node[1]))
    if tag == "binom":
        n = _build(node[1])
        if n.is_Number and n > MAX_FACTORIAL:
            raise _TooExpensive("binomial")
        return sympy.binomial(n, _build(node[2]))
    raise ValueError(tag)


_FUNCTIONS = {
    "sin": sympy.sin,
    "cos": sympy.cos,
    "tan": sympy.tan,
    "sec": sympy.sec,
    "csc": sympy.csc,
    "cot": sympy.cot,
    "arcsin": sympy.asin,
    "arccos": sympy.acos,
    "arctan": sympy.atan,
    "sinh": sympy.sinh,
    "cosh": sympy.cosh,
    "tanh": sympy.tanh,
    "exp": sympy.exp,
}


def _structures_equal(a: Any, b: Any) -> bool:
    """Sets, intervals, matrices from latex2sympy: sympy's own structural equality."""
    if isinstance(a, sympy.MatrixBase) and isinstance(b, sympy.MatrixBase):
        return a.shape == b.shape and all(sympy.simplify(x - y) == 0 for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _points(symbols: list[Any], signed: bool = False) -> list[dict[Any, Any]]:
    """Five fixed points; each coordinate is its own rational in [1/2, 2), unrelated to the others.

    Positive points suit answers that assume positive variables (``\\sqrt{x^2y^2} = xy``).
    ``signed`` adds six points in [-100, 100), needed to tell ``|x|`` from ``x`` and
    ``\\lfloor m/3 \\rfloor`` from ``\\lfloor m/2 \\rfloor``.
    """
    points = [
        {
            symbol: sympy.Rational(random.Random(7919 * k + j).randrange(500, 2000), 1000)
            for j, symbol in enumerate(symbols)
        }
        for k in range(5)
    ]
    if signed:
        points += [
            {
                symbol: sympy.Rational(random.Random(104729 * k + j).randrange(-100_000, 100_000), 1000)
                for j, symbol in enumerate(symbols)
            }
            for k in range(6)
        ]
    return points


def _non_analytic(expr: Any) -> bool:
    return bool(expr.has(sympy.Abs, sympy.floor, sympy.ceiling, sympy.sign))


def _finite(value: Any) -> bool:
    return bool(value.is_number) and value.is_finite is not False and not value.has(sympy.nan, sympy.zoo)


def _close(x: Any, y: Any, tol: float) -> bool:
    scale = max(abs(x), abs(y))
    if scale == 0:
        return True
    return bool(abs(x - y) <= tol * scale)


if __name__ == "__main__":
    main()
