"""The shape of an answer: a value, or a list, set, tuple, interval, union, matrix or relation of them.

Parsing the shape in plain Python keeps the rules that decide equality explicit: sets and
comma lists compare in any order, tuples and intervals in order with their bracket types,
unions in any order, equations up to a non-zero factor, inequalities up to a positive factor
(a single-variable inequality becomes its interval, so ``5\\le x`` is ``[5,\\infty)``), and an
assignment ``x=5`` compares by its value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from mathforge.answers.text import matching_close, split_top

MAX_ITEMS = 64


@dataclass(frozen=True, slots=True)
class Value:
    """A single expression (canonical text); ``percent`` when it ended in ``\\%``."""

    text: str
    percent: bool = False


@dataclass(frozen=True, slots=True)
class Items:
    """Several answers. ``kind``: "list" (comma, any order), "blanks" (semicolon, in order),
    "set" (braces, any order, duplicates ignored), "tuple" (brackets, in order), "union"."""

    kind: str
    items: tuple[Node, ...]
    brackets: str = ""


@dataclass(frozen=True, slots=True)
class Matrix:
    rows: tuple[tuple[Node, ...], ...]


@dataclass(frozen=True, slots=True)
class Relation:
    """``parts[0] ops[0] parts[1] ...`` with ops among ``= \\ne < \\le \\in``; ``>``/``\\ge``
    chains are stored reversed so every inequality reads upwards."""

    parts: tuple[Node, ...]
    ops: tuple[str, ...]


Node = Value | Items | Matrix | Relation

_RELATION_OPS = ("\\le", "\\ge", "\\ne", "\\in", "\\approx", "=", "<", ">")
_FLIP = {">": "<", "\\ge": "\\le"}
_NAME = re.compile(r"^(?:[A-Za-z]|\\[a-zA-Z]+)(?:_\{?[A-Za-z0-9]+\}?)?(?:\([a-z]\))?$")
_CONSTANT_CMDS = re.compile(
    r"\\(?:pi|infty|sqrt|frac|cdot|times|ln|log|sin|cos|tan|sec|csc|cot|e)(?![a-zA-Z])"
)
_MATRIX = re.compile(r"^\\begin\{(pmatrix|vmatrix|array)\}(?:\{[^{}]*\})?(.*)\\end\{\1\}$", re.S)
_SET_BUILDER = re.compile(r"^(.+?)(?:\\mid|\||:)(.+)$")


@lru_cache(maxsize=65536)
def parse_answer(s: str) -> Node:
    """Parse a normalised answer into its shape (never raises; unknown shapes are values)."""
    s = s.strip()
    if not s:
        return Value("")
    if s.startswith("(") and s.endswith(")") and "\\begin{" in s:
        inner = s[1:-1].strip()
        if matching_close(s, 0) == len(s) - 1 and _MATRIX.match(inner):
            s = inner
    parts = _split(s, ("\\cup",))
    if len(parts) > 1:
        return Items("union", tuple(parse_answer(part) for part in parts))
    parts = _split(s, (";",))
    if len(parts) > 1:
        return Items("blanks", tuple(parse_answer(part) for part in parts))
    parts = _split(s, (",",))
    if len(parts) > 1:
        return Items("list", tuple(parse_answer(part) for part in parts))
    pieces = split_top(s, _RELATION_OPS)
    if len(pieces) > 1:
        return _relation(s, pieces)
    return _bracketed(s) or _matrix(s) or _value(s)


def _split(s: str, separators: tuple[str, ...]) -> list[str]:
    parts = [part.strip() for part in split_top(s, separators)]
    if len(parts) > MAX_ITEMS:
        return [s]
    return [part for part in parts if part] if len(parts) > 1 else parts


def _value(s: str) -> Node:
    if s.endswith("\\%"):
        return Value(s[:-2].strip(), percent=True)
    pm = _split_plus_minus(s)
    if pm is not None:
        return Items("list", tuple(_value(option) for option in pm))
    return Value(s)


def _split_plus_minus(s: str) -> list[str] | None:
    r"""``a \pm b`` stands for both ``a + b`` and ``a - b`` (two \pm give four values)."""
    count = s.count("\\pm") + s.count("\\mp")
    if count == 0 or count > 2:
        return None
    first = re.search(r"\\pm(?![a-zA-Z])|\\mp(?![a-zA-Z])", s)
    if first is None:
        return None
    signs = ("+", "-") if first.group() == "\\pm" else ("-", "+")
    options = []
    for sign in signs:
        option = s[: first.start()] + sign + s[first.end() :]
        options.extend(_split_plus_minus(option) or [option])
    return options


def _bracketed(s: str) -> Node | None:
    if s.startswith("\\{"):
        close = matching_close(s, 0)
        if close == len(s) - 1 and s.endswith("\\}"):
            return _set(s[2:-2].strip())
        return None
    if s[0] not in "([{" and not s.startswith("\\langle"):
        return None
    if matching_close(s, 0) != len(s) - 1:
        return None
    if s.startswith("\\langle"):
        if not s.endswith("\\rangle"):
            return None
        open_, close_, inner = "(", ")", s[len("\\langle") : -len("\\rangle")]
    else:
        open_, close_, inner = s[0], s[-1], s[1:-1]
    if open_ == "{":
        if close_ != "}":
            return None
        # A bare brace group is a TeX group, unless it holds several items: {1,2,3} is a set.
        items = _split(inner, (",",))
        return _set(inner) if len(items) > 1 else parse_answer(inner)
    items = _split(inner, (",",))
    if len(items) == 1:
        if open_ == "(" and close_ == ")":
            return parse_answer(inner)
        return None
    return Items("tuple", tuple(parse_answer(item) for item in items), open_ + close_)


def _set(inner: str) -> Node:
    if not inner:
        return Items("set", ())
    builder = _SET_BUILDER.match(inner)
    if builder and "," not in builder.group(1) and _NAME.match(builder.group(1).strip()):
        # {x | -2 <= x < 1}: the set is described by its condition.
        condition = parse_answer(builder.group(2).strip())
        if isinstance(condition, Relation | Items):
            return condition
    items = _split(inner, (",", ";"))
    return Items("set", tuple(parse_answer(item) for item in items))


def _matrix(s: str) -> Node | None:
    match = _MATRIX.match(s)
    if match is None or match.group(1) == "vmatrix":  # a vmatrix is a determinant, a value
        return None
    rows = [row for row in (r.strip() for r in split_top(match.group(2), ("\\\\",))) if row]
    if not rows or len(rows) > MAX_ITEMS:
        return None
    return Matrix(tuple(tuple(parse_answer(cell.strip()) for cell in split_top(row, ("&",))) for row in rows))


def _relation(s: str, pieces: list[str]) -> Node:
    ops = []
    i = len(pieces[0])
    for piece in pieces[1:]:
        op = next(candidate for candidate in _RELATION_OPS if s.startswith(candidate, i))
        ops.append(op)
        i += len(op) + len(piece)
    parts = [piece.strip() for piece in pieces]
    if any(not part for part in parts) or len(parts) > MAX_ITEMS:
        return Value(s)
    ops = ["=" if op == "\\approx" else op for op in ops]
    if all(op in _FLIP or op in ("<", "\\le") for op in ops) and any(op in _FLIP for op in ops):
        if not all(op in _FLIP for op in ops):
            return Relation(tuple(parse_answer(part) for part in parts), tuple(ops))  # a < b > c
        parts, ops = parts[::-1], [_FLIP[op] for op in ops[::-1]]
    interval = _single_variable_interval(parts, ops)
    if interval is not None:
        return interval
    return Relation(tuple(parse_answer(part) for part in parts), tuple(ops))


def is_name(s: str) -> bool:
    """A variable or function name (``x``, ``a_{n}``, ``\\theta``, ``f(x)``): an assignment target."""
    return bool(_NAME.match(s)) and s not in ("\\infty", "\\pi", "e", "i")


def is_constant(s: str) -> bool:
    """No variable letters, so the text is a number (``\\frac{\\pi}{2}``, ``-\\infty``)."""
    stripped = _CONSTANT_CMDS.sub("", s)
    return not re.search(r"[A-Za-df-hj-z]|\\[a-zA-Z]", stripped)


def _single_variable_interval(parts: list[str], ops: list[str]) -> Node | None:
    """``x < 5`` -> (-oo, 5); ``-2 \\le x < 1`` -> [-2, 1); None for other relations."""
    if not all(op in ("<", "\\le") for op in ops):
        return None
    bracket_open = {"<": "(", "\\le": "["}
    bracket_close = {"<": ")", "\\le": "]"}
    if len(parts) == 2:
        left, right = parts
        if is_name(left) and is_constant(right):
            return Items("tuple", (Value("-\\infty"), Value(right)), "(" + bracket_close[ops[0]])
        if is_name(right) and is_constant(left):
            return Items("tuple", (Value(left), Value("\\infty")), bracket_open[ops[0]] + ")")
        return None
    if len(parts) == 3 and is_name(parts[1]) and is_constant(parts[0]) and is_constant(parts[2]):
        return Items(
            "tuple", (Value(parts[0]), Value(parts[2])), bracket_open[ops[0]] + bracket_close[ops[1]]
        )
    return None
