"""A small LaTeX math-expression parser, and exact and approximate evaluators for its trees.

Why not latex2sympy: its ANTLR parser costs ~20 ms per expression and builds sympy objects
eagerly (``10^{10^{10}}`` is evaluated during parsing). This parser covers the expression
language of final answers (numbers, fractions, radicals, powers, factorials, constants, the
usual functions, implicit multiplication, mixed numbers) in pure Python, so the grader can
decide most comparisons without sympy: exactly with ``fractions.Fraction`` when both sides are
rational, or reject clearly different values with complex floats. The same tree is turned into
sympy in the worker process (``sympy_worker``) for the comparisons that need it; anything this
parser refuses goes to latex2sympy there.

Trees are tuples ``(tag, ...)``:
``("num", Fraction, exact, decimals)``, ``("const", "pi"|"e"|"i"|"oo")``, ``("sym", name)``,
``("add", (terms...))``, ``("mul", (factors...))``, ``("neg", x)``, ``("div", a, b)``,
``("pow", base, exp)``, ``("fact", x)``, ``("func", name, (args...))`` (``log`` takes
``(x, base)``), ``("root", x, index | None)``, ``("abs", x)``, ``("floor", x)``,
``("ceil", x)``, ``("binom", n, k)``.
"""

from __future__ import annotations

import cmath
import math
import re
from fractions import Fraction
from functools import lru_cache
from typing import Any

Node = tuple[Any, ...]

# Limits that keep exact arithmetic cheap; beyond them the comparison gives up (reason "timeout").
MAX_EXPONENT = 100_000
MAX_RESULT_BITS = 1_000_000
MAX_FACTORIAL = 20_000


class LatexParseError(ValueError):
    """The text is not an expression this parser understands (the caller falls back to sympy)."""


class NotRational(ValueError):
    """The expression's value is not a plain rational (or not computable exactly here)."""


class TooExpensive(ValueError):
    """Evaluating the expression exactly would take too much time or memory."""


class IllConditioned(ValueError):
    """A floating-point evaluation cancelled too many digits to be trusted."""


_TOKEN = re.compile(
    r"(?P<num>\d+(?:\.\d*)?|\.\d+)"
    r"|(?P<cmd>\\(?:[a-zA-Z]+|.))"
    r"|(?P<letter>[a-zA-Z])"
    r"|(?P<op>[-+*/^_()\[\]{}|!])"
    r"|(?P<ws>\s+)"
)

# fmt: off
FUNCTIONS = frozenset({
    "sin", "cos", "tan", "sec", "csc", "cot", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh",
    "ln", "log", "exp",
})
# fmt: on
# fmt: off
_GREEK = frozenset({
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta",
    "iota", "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi",
    "chi", "psi", "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Sigma", "Phi", "Psi",
    "Omega",
})
# fmt: on
_MUL_CMDS = frozenset({"\\cdot", "\\times", "\\ast"})
_IGNORED_CMDS = frozenset({"\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\ ", "\\displaystyle"})


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise LatexParseError(f"unexpected character {text[pos]!r}")
        pos = match.end()
        kind = match.lastgroup or ""
        value = match.group()
        if kind == "ws" or (kind == "cmd" and value in _IGNORED_CMDS):
            continue
        tokens.append((kind, value))
    return tokens


class _Parser:
    """Recursive descent over the token list; one instance per parse."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.abs_depth = 0

    # -- token helpers -------------------------------------------------------------------
    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise LatexParseError("unexpected end of expression")
        self.pos += 1
        return token

    def expect(self, value: str) -> None:
        token = self.take()
        if token[1] != value:
            raise LatexParseError(f"expected {value!r}, got {token[1]!r}")

    def at(self, value: str) -> bool:
        token = self.peek()
        return token is not None and token[1] == value

    # -- grammar -------------------------------------------------------------------------
    def parse(self) -> Node:
        node = self.expression()
        if self.peek() is not None:
            raise LatexParseError(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return node

    def expression(self) -> Node:
        terms = [self.term()]
        while (token := self.peek()) is not None and token[1] in "+-" and token[0] == "op":
            self.take()
            right = self.term()
            terms.append(("neg", right) if token[1] == "-" else right)
        return terms[0] if len(terms) == 1 else ("add", tuple(terms))

    def term(self) -> Node:
        factors = [self.unary()]
        while (token := self.peek()) is not None:
            kind, value = token
            if (value in ("*", "/") and kind == "op") or value in _MUL_CMDS or value == "\\div":
                self.take()
                right = self.unary()
                if value in ("/", "\\div"):
                    factors = [("div", _product(factors), right)]
                else:
                    factors.append(right)
            elif self._starts_primary(token):
                if value in ("\\frac", "\\dfrac", "\\tfrac") and _is_mixed_whole(factors):
                    fraction = self.unary()
                    factors = [_mixed_number(factors[0], fraction)]
                else:
                    factors.append(self.power())
            else:
                break
        return _product(factors)

    def _starts_primary(self, token: tuple[str, str]) -> bool:
        kind, value = token
        if kind in ("num", "letter"):
            return True
        if kind == "cmd":
            name = value[1:]
            return value in ("\\frac", "\\dfrac", "\\tfrac", "\\sqrt", "\\pi", "\\infty", "\\binom") or (
                name in FUNCTIONS or name in _GREEK or value in ("\\lfloor", "\\lceil", "\\operatorname")
            )
        if value in ("(", "[", "{"):
            return True
        return value == "|" and self.abs_depth == 0

    def unary(self) -> Node:
        token = self.peek()
        if token is not None and token[0] == "op" and token[1] in "+-":
            self.take()
            operand = self.unary()
            return ("neg", operand) if token[1] == "-" else operand
        return self.power()

    def power(self) -> Node:
        base = self.postfix()
        if self.at("^"):
            self.take()
            exponent = self.exponent()
            base = ("pow", base, exponent)
            while self.at("!"):
                self.take()
                base = ("fact", base)
        return base

    def exponent(self) -> Node:
        token = self.peek()
        if token is None:
            raise LatexParseError("missing exponent")
        if token[1] == "{":
            return self.group("{", "}")
        if token[0] == "op" and token[1] in "+-":
            self.take()
            operand = self.exponent()
            return ("neg", operand) if token[1] == "-" else operand
        # Models write 2^10 for 2^{10}; taking the whole number follows their intent (TeX would
        # render 2^1 0).
        return self.postfix()

    def postfix(self) -> Node:
        node = self.primary()
        while self.at("!"):
            self.take()
            node = ("fact", node)
        return node

    def group(self, open_: str, close: str) -> Node:
        self.expect(open_)
        saved = self.abs_depth
        self.abs_depth = 0
        node = self.expression()
        self.abs_depth = saved
        self.expect(close)
        return node

    def argument(self) -> Node:
        """A TeX macro argument: a braced group or a single token (``\\frac12``)."""
        token = self.peek()
        if token is None:
            raise LatexParseError("missing argument")
        if token[1] == "{":
            return self.group("{", "}")
        kind, value = self.take()
        if kind == "num":
            if len(value) > 1:  # \frac12: the argument is one digit; the rest stays in the stream
                self.pos -= 1
                self.tokens[self.pos] = ("num", value[1:])
                value = value[0]
            return _number(value)
        if kind == "letter":
            return _letter(value)
        if kind == "cmd" and value[1:] in _GREEK:
            return ("sym", value[1:])
        if value == "\\pi":
            return ("const", "pi")
        raise LatexParseError(f"unsupported argument {value!r}")

    def primary(self) -> Node:
        kind, value = self.take()
        if kind == "num":
            return _number(value)
        if kind == "letter":
            return self.subscripted(_letter(value), value)
        if value == "(":
            self.pos -= 1
            return self.group("(", ")")
        if value == "[":
            self.pos -= 1
            return self.group("[", "]")
        if value == "{":
            self.pos -= 1
            return self.group("{", "}")
        if value == "|" and kind == "op":
            self.abs_depth += 1
            inner = self.expression()
            self.abs_depth -= 1
            self.expect("|")
            return ("abs", inner)
        if kind != "cmd":
            raise LatexParseError(f"unexpected {value!r}")
        name = value[1:]
        if name in ("frac", "dfrac", "tfrac"):
            return ("div", self.argument(), self.argument())
        if name == "binom":
            return ("binom", self.argument(), self.argument())
        if name == "sqrt":
            index = None
            if self.at("["):
                index = self.group("[", "]")
            return ("root", self.argument(), index)
        if name == "pi":
            return ("const", "pi")
        if name == "infty":
            return ("const", "oo")
        if name in _GREEK:
            return self.subscripted(("sym", name), name)
        if name == "lfloor":
            inner = self.expression()
            self.expect("\\rfloor")
            return ("floor", inner)
        if name == "lceil":
            inner = self.expression()
            self.expect("\\rceil")
            return ("ceil", inner)
        if name == "operatorname":
            # \operatorname{name}: only the function names we know.
            self.expect("{")
            letters = []
            while not self.at("}"):
                letters.append(self.take()[1])
            self.expect("}")
            name = "".join(letters)
            if name not in FUNCTIONS:
                raise LatexParseError(f"unknown function {name!r}")
        if name in FUNCTIONS:
            return self.function(name)
        raise LatexParseError(f"unsupported command {value!r}")

    def subscripted(self, node: Node, name: str) -> Node:
        if not self.at("_"):
            return node
        self.take()
        token = self.peek()
        if token is None:
            raise LatexParseError("missing subscript")
        if token[1] == "{":
            depth = 0
            parts = []
            while True:
                value = self.take()[1]
                depth += value == "{"
                depth -= value == "}"
                parts.append(value)
                if depth == 0:
                    break
            sub = "".join(parts[1:-1])
        else:
            sub = self.take()[1]
        return ("sym", f"{name}_{sub}")

    def function(self, name: str) -> Node:
        power: Node | None = None
        base: Node | None = None
        if name == "log" and self.at("_"):
            self.take()
            base = self.argument()
        if self.at("^"):  # \sin^2 x means (\sin x)^2; \sin^{-1} x means \arcsin x
            self.take()
            power = self.exponent()
            if power[0] == "neg" and power[1][:2] == ("num", 1) and name in ("sin", "cos", "tan"):
                name, power = "arc" + name, None
        if self.at("(") or self.at("{"):
            open_ = self.peek()[1]  # type: ignore[index]
            arg = self.group(open_, ")" if open_ == "(" else "}")
        else:
            # \sin 2x = sin(2x): the argument runs over juxtaposed factors, up to an operator
            # or the next function.
            factors = [self.power()]
            while (token := self.peek()) is not None and (
                token[0] in ("num", "letter") or token[1] in ("\\pi",) or token[1][1:] in _GREEK
            ):
                factors.append(self.power())
            arg = _product(factors)
        if name == "ln":
            node: Node = ("func", "log", (arg, ("const", "e")))
        elif name == "log":
            node = ("func", "log", (arg, base if base is not None else ("const", "e")))
        else:
            node = ("func", name, (arg,))
        return node if power is None else ("pow", node, power)


def _product(factors: list[Node]) -> Node:
    return factors[0] if len(factors) == 1 else ("mul", tuple(factors))


def _number(text: str) -> Node:
    value = Fraction(text if not text.startswith(".") else "0" + text)
    # A decimal literal with a non-zero fractional part is a float (it may be rounded); "2.0" is not.
    exact = "." not in text or value.denominator == 1
    decimals = len(text) - text.index(".") - 1 if "." in text else 0
    return ("num", value, exact, decimals)


def _letter(value: str) -> Node:
    if value == "e":
        return ("const", "e")
    if value == "i":
        return ("const", "i")
    return ("sym", value)


def _is_mixed_whole(factors: list[Node]) -> bool:
    if len(factors) != 1:
        return False
    node = factors[0]
    if node[0] == "neg":
        node = node[1]
    return node[0] == "num" and node[2] and node[1].denominator == 1


def _mixed_number(whole: Node, fraction: Node) -> Node:
    """``7\\frac{3}{4}`` is 7 + 3/4 when the fraction is of plain non-negative integers, else a product."""
    if (
        fraction[0] == "div"
        and fraction[1][0] == "num"
        and fraction[2][0] == "num"
        and fraction[1][2]
        and fraction[2][2]
        and fraction[1][1].denominator == 1
        and fraction[2][1].denominator == 1
    ):
        if whole[0] == "neg":
            return ("neg", ("add", (whole[1], fraction)))
        return ("add", (whole, fraction))
    return ("mul", (whole, fraction))


@lru_cache(maxsize=16384)
def parse_latex(text: str) -> Node:
    """Parse a normalised LaTeX expression; raise :class:`LatexParseError` when unsupported."""
    if len(text) > 1000:
        raise LatexParseError("expression too long")
    try:
        return _Parser(_tokenize(text)).parse()
    except RecursionError:
        raise LatexParseError("expression nested too deeply") from None


def is_exact(node: Node) -> bool:
    """True when no decimal (float) literal appears: the value is meant exactly."""
    tag = node[0]
    if tag == "num":
        return node[2]
    return all(is_exact(child) for child in _children(node))


def _children(node: Node) -> list[Node]:
    tag = node[0]
    if tag in ("num", "const", "sym"):
        return []
    if tag in ("add", "mul"):
        return list(node[1])
    if tag == "func":
        return list(node[2])
    if tag == "root":
        return [node[1]] + ([node[2]] if node[2] is not None else [])
    return [child for child in node[1:] if isinstance(child, tuple)]


def literal_ulp(node: Node) -> Fraction | None:
    """One unit in the last place of a lone decimal literal (``-0.35`` -> 1/100), else None."""
    if node[0] == "neg":
        node = node[1]
    if node[0] == "num" and not node[2]:
        return Fraction(1, 10 ** node[3])
    return None


def free_symbols(node: Node) -> frozenset[str]:
    """Names of the variables in the expression."""
    if node[0] == "sym":
        return frozenset({node[1]})
    result: frozenset[str] = frozenset()
    for child in _children(node):
        result |= free_symbols(child)
    return result


def exact_value(node: Node) -> Fraction:
    """The exact rational value; :class:`NotRational` or :class:`TooExpensive` otherwise."""
    tag = node[0]
    if tag == "num":
        return node[1]
    if tag == "add":
        return sum((exact_value(term) for term in node[1]), Fraction(0))
    if tag == "mul":
        result = Fraction(1)
        for factor in node[1]:
            result *= exact_value(factor)
        return result
    if tag == "neg":
        return -exact_value(node[1])
    if tag == "div":
        numerator, denominator = exact_value(node[1]), exact_value(node[2])
        if denominator == 0:
            raise NotRational("division by zero")
        return numerator / denominator
    if tag == "pow":
        return _exact_power(exact_value(node[1]), exact_value(node[2]))
    if tag == "fact":
        value = exact_value(node[1])
        if value.denominator != 1 or value < 0:
            raise NotRational("factorial of a non-natural number")
        if value > MAX_FACTORIAL:
            raise TooExpensive(f"factorial of {value}")
        return Fraction(math.factorial(int(value)))
    if tag == "abs":
        return abs(exact_value(node[1]))
    if tag == "binom":
        n, k = exact_value(node[1]), exact_value(node[2])
        if n.denominator != 1 or k.denominator != 1 or n < 0:
            raise NotRational("binomial of non-natural numbers")
        if n > MAX_FACTORIAL:
            raise TooExpensive(f"binomial of {n}")
        return Fraction(math.comb(int(n), int(k)) if k >= 0 else 0)
    if tag == "root":
        index = Fraction(2) if node[2] is None else exact_value(node[2])
        return _exact_root(exact_value(node[1]), index)
    if tag in ("floor", "ceil"):
        value = exact_value(node[1])
        return Fraction(math.floor(value) if tag == "floor" else math.ceil(value))
    raise NotRational(tag)


def _exact_power(base: Fraction, exponent: Fraction) -> Fraction:
    if exponent.denominator != 1:
        # A rational power is rational only for perfect powers: 8^{1/3} = 2, 4^{3/2} = 8.
        root = _exact_root(base, Fraction(exponent.denominator))
        return _exact_power(root, Fraction(exponent.numerator))
    power = exponent.numerator
    if base == 0:
        if power < 0:
            raise NotRational("zero to a negative power")
        return Fraction(1 if power == 0 else 0)
    if abs(base) == 1:
        return base**power
    if abs(power) > MAX_EXPONENT:
        raise TooExpensive(f"exponent {power}")
    bits = max(base.numerator.bit_length(), base.denominator.bit_length()) * abs(power)
    if bits > MAX_RESULT_BITS:
        raise TooExpensive(f"result of about {bits} bits")
    return base**power


def _exact_root(value: Fraction, index: Fraction) -> Fraction:
    if index.denominator != 1 or index <= 0:
        raise NotRational("non-integer root index")
    n = int(index)
    if value < 0:
        if n % 2 == 0:
            raise NotRational("even root of a negative number")
        return -_exact_root(-value, index)
    if n > 64 or value.numerator.bit_length() > 4096 or value.denominator.bit_length() > 4096:
        raise NotRational("root too large to test")
    numerator, denominator = _integer_root(value.numerator, n), _integer_root(value.denominator, n)
    if numerator is None or denominator is None:
        raise NotRational("irrational root")
    return Fraction(numerator, denominator)


def _integer_root(value: int, n: int) -> int | None:
    if value < 2:
        return value
    guess = round(value ** (1.0 / n)) if value.bit_length() < 1000 else 1 << (value.bit_length() // n)
    # Newton's method on integers, from the float guess.
    x = max(guess, 1)
    for _ in range(200):
        y = ((n - 1) * x + value // x ** (n - 1)) // n
        if y >= x:
            break
        x = y
    for candidate in (x - 1, x, x + 1):
        if candidate >= 0 and candidate**n == value:
            return candidate
    return None


# -- approximate evaluation --------------------------------------------------------------

_FLOAT_FUNCS = {
    "sin": cmath.sin,
    "cos": cmath.cos,
    "tan": cmath.tan,
    "sec": lambda z: 1 / cmath.cos(z),
    "csc": lambda z: 1 / cmath.sin(z),
    "cot": lambda z: 1 / cmath.tan(z),
    "arcsin": cmath.asin,
    "arccos": cmath.acos,
    "arctan": cmath.atan,
    "sinh": cmath.sinh,
    "cosh": cmath.cosh,
    "tanh": cmath.tanh,
    "exp": cmath.exp,
}
_CONSTANTS = {"pi": complex(math.pi), "e": complex(math.e), "i": 1j, "oo": complex(math.inf)}
CANCELLATION = 1e-8


def approx_value(node: Node, env: dict[str, complex] | None = None) -> complex:
    """The value as a complex float, with variables taken from ``env``.

    Raises :class:`IllConditioned` when a sum cancels more than ~8 digits (the float result
    could then be pure rounding noise), ``ValueError``/``ZeroDivisionError``/``OverflowError``
    when undefined or too large.
    """
    tag = node[0]
    if tag == "num":
        return complex(float(node[1]))
    if tag == "const":
        return _CONSTANTS[node[1]]
    if tag == "sym":
        if env is None or node[1] not in env:
            raise ValueError(f"free variable {node[1]}")
        return env[node[1]]
    if tag == "add":
        terms = [approx_value(term, env) for term in node[1]]
        total = sum(terms)
        scale = max(abs(term) for term in terms)
        if scale > 0 and abs(total) < CANCELLATION * scale:
            raise IllConditioned("cancellation")
        return total
    if tag == "mul":
        result = complex(1)
        for factor in node[1]:
            result *= approx_value(factor, env)
        return result
    if tag == "neg":
        return -approx_value(node[1], env)
    if tag == "div":
        return approx_value(node[1], env) / approx_value(node[2], env)
    if tag == "pow":
        base, exponent = approx_value(node[1], env), approx_value(node[2], env)
        if base == 0 and exponent.real <= 0:
            raise ZeroDivisionError("0 to a non-positive power")
        if exponent.imag == 0 and exponent.real == int(exponent.real) and abs(exponent.real) < 1e6:
            result = base ** int(exponent.real)
        elif base.imag == 0 and base.real > 0:
            result = cmath.exp(exponent * math.log(base.real))
        else:
            result = cmath.exp(exponent * cmath.log(base))
        return _finite(result)
    if tag == "fact":
        value = approx_value(node[1], env)
        if value.imag != 0 or value.real < 0 or value.real > 170:
            raise OverflowError("factorial out of float range")
        return complex(math.gamma(value.real + 1))
    if tag == "func":
        name, args = node[1], node[2]
        if name == "log":
            value, base = approx_value(args[0], env), approx_value(args[1], env)
            return _finite(cmath.log(value) / cmath.log(base))
        return _finite(_FLOAT_FUNCS[name](approx_value(args[0], env)))
    if tag == "root":
        value = approx_value(node[1], env)
        index = 2.0 if node[2] is None else approx_value(node[2], env).real
        if value.imag == 0 and value.real < 0 and index % 2 == 1:
            return complex(-((-value.real) ** (1 / index)))  # real odd root, as people mean it
        if value.imag == 0 and value.real >= 0:
            return complex(value.real ** (1 / index))
        return _finite(value ** (1 / index))
    if tag == "abs":
        return complex(abs(approx_value(node[1], env)))
    if tag in ("floor", "ceil"):
        value = approx_value(node[1], env)
        if value.imag != 0:
            raise ValueError("floor of a complex number")
        return complex(math.floor(value.real) if tag == "floor" else math.ceil(value.real))
    if tag == "binom":
        n, k = approx_value(node[1], env), approx_value(node[2], env)
        if n.imag or k.imag or n.real != int(n.real) or k.real != int(k.real) or n.real > 1000:
            raise ValueError("binomial outside integers")
        return complex(math.comb(int(n.real), int(k.real)))
    raise ValueError(tag)


def _finite(value: complex) -> complex:
    if cmath.isnan(value) or cmath.isinf(value):
        raise OverflowError("non-finite value")
    return value
