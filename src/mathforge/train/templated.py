"""Worked solutions for the generated problem families: templated reasoning and a program.

The generated families are templated questions (``mathforge.data.generated``), so each question
template is matched here and its numbers read back; every template gets a short chain of
named steps. The same steps give the CoT reasoning (one sentence per step, values computed
here) and the TIR program (one assignment per step, printing the last), so both formats teach
the same solution. Equations and roots are solved with sympy, as a TIR model would.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from mathforge.data.generated import _number


@dataclass(frozen=True)
class Step:
    """One named quantity: its Python expression, its value and the sentence that explains it."""

    name: str
    expression: str
    value: object
    sentence: str


@dataclass(frozen=True)
class Worked:
    """A templated solution: imports for the program, the steps, the answer as text."""

    steps: list[Step]
    answer: str
    imports: tuple[str, ...] = ()

    def program(self) -> str:
        lines = [*self.imports, *(f"{step.name} = {step.expression}" for step in self.steps)]
        return "\n".join([*lines, f"print({self.steps[-1].name})"])

    def reasoning(self) -> str:
        return "\n".join(step.sentence for step in self.steps)


def _show(value: object) -> str:
    return _number(value) if isinstance(value, (int, Fraction)) else str(value)


def _step(name: str, expression: str, value: object, sentence: str) -> Step:
    return Step(name, expression, value, f"{sentence} = {_show(value)}.")


def _final(*steps: Step, imports: tuple[str, ...] = ()) -> Worked:
    return Worked(list(steps), _show(steps[-1].value), imports)


# --- arithmetic, equations, roots -------------------------------------------------------------


_SUBTRACTION = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


def _arithmetic(m: re.Match[str]) -> Worked:
    import sympy

    expression = m.group(1)
    value = int(sympy.sympify(expression))
    smaller_minus_larger = _SUBTRACTION.match(expression)
    if smaller_minus_larger and int(smaller_minus_larger.group(1)) < int(smaller_minus_larger.group(2)):
        # A small model gets a - b with b > a wrong far more often than b - a: say it that way.
        first, second = smaller_minus_larger.groups()
        sentence = f"{second} is larger than {first}, so {expression} = -({second} - {first})"
    else:
        sentence = f"Brackets first, then products: {expression}"
    return _final(_step("result", expression, value, sentence))


def _linear(m: re.Match[str]) -> Worked:
    import sympy

    var = m.group("var") or m.group("var2") or m.group("var3")
    left, right = m.group("eq").split("=")
    symbol = sympy.Symbol(var)
    difference = sympy.expand(sympy.sympify(left) - sympy.sympify(right))
    a, b = difference.coeff(symbol, 1), difference.coeff(symbol, 0)
    value = Fraction(int(-b), int(a))
    sentence = f"Moving every term to one side gives {sympy.sstr(difference)} = 0, so {var} = {-b}/{a}"
    solve = f"solve(Eq({left.strip()}, {right.strip()}), {var})[0]"
    imports = ("from sympy import Eq, solve, symbols", f'{var} = symbols("{var}")')
    return _final(_step("solution", solve, value, sentence), imports=imports)


def _roots(m: re.Match[str]) -> Worked:
    import sympy

    expression, var = m.group(1), m.group(2)
    symbol = sympy.Symbol(var)
    roots = sorted(float(r) for r in sympy.solve(sympy.sympify(expression), symbol) if r.is_real)
    shown = ", ".join(str(round(r, 4)) for r in roots)
    imports = ("from sympy import solve, symbols", f'{var} = symbols("{var}")')
    solutions = Step(
        "roots",
        f"sorted(float(r) for r in solve({expression}, {var}) if r.is_real)",
        roots,
        _roots_reasoning(expression, sympy.Poly(sympy.sympify(expression), symbol), var),
    )
    rounded = Step(
        "answer",
        '", ".join(str(round(r, 4)) for r in roots)',
        shown,
        f"Rounded to 4 decimal places they are {shown}.",
    )
    return Worked([solutions, rounded], shown, imports)


def _roots_reasoning(expression: str, poly: Any, var: str) -> str:
    """The steps a person writes: isolate the variable (degree 1) or use the discriminant (degree 2)."""
    import sympy

    coefficients = [sympy.nsimplify(c) for c in poly.all_coeffs()]
    if poly.degree() == 1:
        a, b = coefficients
        divisor = f"({a})" if a < 0 else str(a)
        lines = [f"{expression} = 0, so {a}*{var} = {-b}."] if b else []
        lines.append(f"Divide both sides by {a}: {var} = {-b}/{divisor} = {_decimal(-b / a)}.")
        return "\n".join(lines)
    if poly.degree() == 2:
        a, b, c = coefficients
        discriminant = b * b - 4 * a * c
        lines = [f"With a = {a}, b = {b}, c = {c}, the discriminant is b^2 - 4ac = {discriminant}."]
        if discriminant < 0:
            lines.append("It is negative, so there is no real solution.")
        else:
            lines.append(f"{var} = (-b ± sqrt({discriminant})) / (2*{a}).")
        return "\n".join(lines)
    return f"Solve {expression} = 0 for {var}."


def _decimal(value: Any) -> str:
    number = float(value)
    return str(int(number)) if number == int(number) else str(round(number, 4))


# --- number theory --------------------------------------------------------------------------


def _numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", text)]


def _gcd_lcm(m: re.Match[str]) -> Worked:
    kind, numbers = m.group(1).lower(), _numbers(m.group(2))
    value = math.gcd(*numbers) if kind == "gcd" else math.lcm(*numbers)
    listed = ", ".join(map(str, numbers))
    return _final(_step(kind, f"math.{kind}({listed})", value, f"{kind}({listed})"), imports=("import math",))


def _remainder(m: re.Match[str]) -> Worked:
    modulus = int(m.group("mod"))
    if m.group("base"):
        base, exponent = int(m.group("base")), int(m.group("exp"))
        expression, value = f"pow({base}, {exponent}, {modulus})", pow(base, exponent, modulus)
        sentence = f"Reducing modulo {modulus} at each multiplication, {base}^{exponent} mod {modulus}"
    elif m.group("a"):
        a, b = int(m.group("a")), int(m.group("b"))
        expression, value = f"{a} * {b} % {modulus}", a * b % modulus
        sentence = f"{a} × {b} = {a * b}, and {a * b} mod {modulus}"
    else:
        n = int(m.group("n"))
        expression, value = f"{n} % {modulus}", n % modulus
        sentence = f"{n} = {modulus} × {n // modulus} + {n % modulus}, so the remainder is {n} mod {modulus}"
    return _final(_step("remainder", expression, value, sentence))


# --- fractions and percent ------------------------------------------------------------------


def _latex_to_python(latex: str) -> str:
    text = re.sub(r"\\frac\{(-?\d+)\}\{(\d+)\}", r"Fraction(\1, \2)", latex)
    text = re.sub(r"(?<![\w(])(\d+)/(\d+)", r"Fraction(\1, \2)", text)
    text = text.replace("\\left(", "(").replace("\\right)", ")").replace("\\times", "*").replace("\\div", "/")
    return re.sub(r"\s+", " ", text).strip()


def _fraction(m: re.Match[str]) -> Worked:
    import sympy

    expression = _latex_to_python(m.group(1))
    exact = sympy.sympify(re.sub(r"Fraction\((-?\d+), (\d+)\)", r"(\1/\2)", expression), rational=True)
    value = Fraction(int(exact.p), int(exact.q))
    sentence = f"Over a common denominator, ${m.group(1)}$ = ${_fraction_latex(value)}$."
    return Worked(
        [Step("result", expression, value, sentence)],
        _fraction_latex(value),
        ("from fractions import Fraction",),
    )


def _fraction_latex(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    sign = "-" if value < 0 else ""
    return f"{sign}\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"


def _percent_of(m: re.Match[str]) -> Worked:
    pct, whole = int(m.group(1)), int(m.group(2))
    return _final(
        _step(
            "part",
            f"{pct} / 100 * {whole}",
            Fraction(pct * whole, 100),
            f"{pct}% of {whole} is {pct}/100 × {whole}",
        )
    )


def _what_percent(m: re.Match[str]) -> Worked:
    part, whole = int(m.group(1)), int(m.group(2))
    value = Fraction(part * 100, whole)
    return _final(_step("percent", f"{part} / {whole} * 100", value, f"As a percent, {part}/{whole} × 100"))


def _price(m: re.Match[str]) -> Worked:
    price, up, down = (int(g) for g in m.groups())
    raised = Fraction(price * (100 + up), 100)
    final = raised * (100 - down) / 100
    return _final(
        _step(
            "raised",
            f"{price} * (100 + {up}) / 100",
            raised,
            f"After the {up}% rise the price is {price} × {100 + up}/100",
        ),
        _step(
            "final_price",
            f"raised * (100 - {down}) / 100",
            final,
            f"After the {down}% cut it is {_show(raised)} × {100 - down}/100",
        ),
    )


# --- counting -------------------------------------------------------------------------------


def _multiples(m: re.Match[str]) -> Worked:
    top, step = int(m.group(1)), int(m.group(2))
    return _final(
        _step(
            "count",
            f"{top} // {step}",
            top // step,
            f"The multiples of {step} up to {top} number {top} // {step}",
        )
    )


def _handshakes(m: re.Match[str]) -> Worked:
    n = int(m.group(1))
    return _final(
        _step("handshakes", f"math.comb({n}, 2)", math.comb(n, 2), f"Each pair shakes once: C({n}, 2)"),
        imports=("import math",),
    )


def _choose(m: re.Match[str]) -> Worked:
    k, n = int(m.group(1)), int(m.group(2))
    return _final(
        _step("ways", f"math.comb({n}, {k})", math.comb(n, k), f"Choosing {k} of {n}: C({n}, {k})"),
        imports=("import math",),
    )


def _orders(m: re.Match[str]) -> Worked:
    n = int(m.group(1))
    return _final(
        _step("orders", f"math.factorial({n})", math.factorial(n), f"{n} people can be ordered in {n}!"),
        imports=("import math",),
    )


def _divisible(m: re.Match[str]) -> Worked:
    top, a, b = (int(g) for g in m.groups())
    both = top // math.lcm(a, b)
    return _final(
        _step("by_a", f"{top} // {a}", top // a, f"Multiples of {a}: {top} // {a}"),
        _step("by_b", f"{top} // {b}", top // b, f"Multiples of {b}: {top} // {b}"),
        _step(
            "by_both",
            f"{top} // math.lcm({a}, {b})",
            both,
            f"Multiples of both (of lcm({a}, {b})): {top} // {math.lcm(a, b)}",
        ),
        _step(
            "count",
            "by_a + by_b - by_both",
            top // a + top // b - both,
            f"By inclusion-exclusion, {top // a} + {top // b} - {both}",
        ),
        imports=("import math",),
    )


def _arrangements(m: re.Match[str]) -> Worked:
    word = m.group(1)
    repeats = {letter: word.count(letter) for letter in sorted(set(word)) if word.count(letter) > 1}
    value = math.factorial(len(word))
    for count in repeats.values():
        value //= math.factorial(count)
    divisor = " * ".join(f"math.factorial({count})" for count in repeats.values()) or "1"
    shown = " × ".join(f"{count}!" for count in repeats.values()) or "1"
    sentence = f"{len(word)} letters with repeats {repeats or 'none'}: {len(word)}! / ({shown})"
    step = _step("arrangements", f"math.factorial({len(word)}) // ({divisor})", value, sentence)
    return _final(step, imports=("import math",))


# --- word problems --------------------------------------------------------------------------


def _has_gets(m: re.Match[str]) -> Worked:
    a, items, b = int(m.group(2)), m.group(3), int(m.group(4))
    return _final(
        _step(
            f"{items}_now", f"{a} + {b}", a + b, f"{m.group(1)} has {a} {items} and gets {b} more: {a} + {b}"
        )
    )


def _has_gives(m: re.Match[str]) -> Worked:
    a, items, b = int(m.group(2)), m.group(3), int(m.group(4))
    return _final(
        _step(f"{items}_left", f"{a} - {b}", a - b, f"{m.group(1)} gives away {b} of {a} {items}: {a} - {b}")
    )


def _boxes(m: re.Match[str]) -> Worked:
    a, b, items = int(m.group(1)), int(m.group(2)), m.group(3)
    return _final(_step(f"total_{items}", f"{a} * {b}", a * b, f"{a} boxes of {b} {items}: {a} × {b}"))


def _shares(m: re.Match[str]) -> Worked:
    total, items, friends = int(m.group(2)), m.group(3), int(m.group(4))
    return _final(
        _step(
            "each_friend",
            f"{total} // {friends}",
            total // friends,
            f"{total} {items} shared among {friends}: {total} / {friends}",
        )
    )


def _change(m: re.Match[str]) -> Worked:
    count, price, bag, paid = (
        int(m.group("count")),
        int(m.group("price")),
        int(m.group("bag") or 0),
        int(m.group("paid")),
    )
    steps = [
        _step(
            "cost", f"{count} * {price}", count * price, f"{count} items at ${price} cost {count} × {price}"
        )
    ]
    if m.group("bag"):
        steps.append(
            _step(
                "total_cost",
                f"cost + {bag}",
                count * price + bag,
                f"With the ${bag} bag: {count * price} + {bag}",
            )
        )
    spent = count * price + bag
    steps.append(
        _step(
            "change",
            f"{paid} - {steps[-1].name}",
            paid - spent,
            f"The change from ${paid} is {paid} - {spent}",
        )
    )
    return _final(*steps)


def _savings(m: re.Match[str]) -> Worked:
    start, weekly, weeks = int(m.group(2)), int(m.group(3)), int(m.group(4))
    saved = start + weekly * weeks
    steps = [
        _step(
            "savings",
            f"{start} + {weekly} * {weeks}",
            saved,
            f"After {weeks} weeks: {start} + {weekly} × {weeks}",
        )
    ]
    if m.group(5):
        spent = int(m.group(5))
        steps.append(
            _step("left", f"savings - {spent}", saved - spent, f"After spending ${spent}: {saved} - {spent}")
        )
    return _final(*steps)


def _rest_shared(m: re.Match[str]) -> Worked:
    total, items, gave, children = int(m.group(2)), m.group(3), int(m.group(4)), int(m.group(5))
    rest = total - gave
    return _final(
        _step(f"{items}_rest", f"{total} - {gave}", rest, f"After giving {gave} away: {total} - {gave}"),
        _step(
            "each_child",
            f"{items}_rest // {children}",
            rest // children,
            f"Shared among {children} children: {rest} / {children}",
        ),
    )


def _chairs(m: re.Match[str]) -> Worked:
    rows, per_row, removed = int(m.group(1)), int(m.group(2)), int(m.group(3))
    chairs = rows * per_row
    steps = [
        _step(
            "chairs", f"{rows} * {per_row}", chairs, f"{rows} rows of {per_row} chairs: {rows} × {per_row}"
        ),
        _step(
            "chairs_left",
            f"chairs - {removed}",
            chairs - removed,
            f"After {removed} are taken away: {chairs} - {removed}",
        ),
    ]
    if m.group(4):
        added = int(m.group(4))
        steps.append(
            _step(
                "chairs_now",
                f"chairs_left + {added}",
                chairs - removed + added,
                f"With {added} brought in: {chairs - removed} + {added}",
            )
        )
    return _final(*steps)


def _ages(m: re.Match[str]) -> Worked:
    age, gap, years = int(m.group(2)), int(m.group(3)), int(m.group(4))
    steps = [
        _step("brother_now", f"{age} + {gap}", age + gap, f"The brother is now {age} + {gap}"),
        _step(
            "brother_then",
            f"brother_now + {years}",
            age + gap + years,
            f"In {years} years he will be {age + gap} + {years}",
        ),
    ]
    if m.group(5):
        steps.append(
            _step("own_then", f"{age} + {years}", age + years, f"{m.group(1)} will be {age} + {years}")
        )
        total = 2 * (age + years) + gap
        steps.append(
            _step(
                "sum_then",
                "brother_then + own_then",
                total,
                f"The sum of their ages then is {age + gap + years} + {age + years}",
            )
        )
    return _final(*steps)


_RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], Worked]]] = [
    (re.compile(r"^Calculate (.+)\.$"), _arithmetic),
    (
        re.compile(
            r"^(?:Determine the value of (?P<var>\w) that satisfies|Find the value of (?P<var2>\w) in the "
            r"equation|Solve for (?P<var3>\w)): (?P<eq>.+=.+)$"
        ),
        _linear,
    ),
    (re.compile(r"^Find all real solutions of (.+) = 0 for (\w)\."), _roots),
    (re.compile(r"\((GCD|LCM)\) of these numbers: ([\d, ]+)"), _gcd_lcm),
    (
        re.compile(
            r"^What is the remainder when (?:\$(?P<base>\d+)\^\{(?P<exp>\d+)\}\$|\$(?P<a>\d+) \\times "
            r"(?P<b>\d+)\$|(?P<n>\d+)) is divided by (?P<mod>\d+)\?$"
        ),
        _remainder,
    ),
    (re.compile(r"^What is \$(.+)\$\? Give the answer as a fraction in lowest terms\.$"), _fraction),
    (re.compile(r"^What is (\d+)% of (\d+)\?$"), _percent_of),
    (re.compile(r"^(\d+) is what percent of (\d+)\?$"), _what_percent),
    (
        re.compile(r"^A price of \$(\d+) is raised by (\d+)% and the new price is then lowered by (\d+)%\."),
        _price,
    ),
    (re.compile(r"^How many whole numbers from 1 to (\d+) are multiples of (\d+)\?$"), _multiples),
    (re.compile(r"^(\d+) friends each shake hands"), _handshakes),
    (re.compile(r"^In how many ways can (\d+) books be chosen from (\d+)"), _choose),
    (re.compile(r"^In how many different orders can (\d+) people"), _orders),
    (re.compile(r"^How many integers from 1 to (\d+) are divisible by (\d+) or by (\d+)\?$"), _divisible),
    (re.compile(r"arrangements of the letters of the word ([A-Z]+)"), _arrangements),
    (re.compile(r"^(\w+) has (\d+) (\w+) and gets (\d+) more\."), _has_gets),
    (re.compile(r"^(\w+) has (\d+) (\w+) and gives (\d+) away\."), _has_gives),
    (re.compile(r"^There are (\d+) boxes with (\d+) (\w+) in each box\."), _boxes),
    (re.compile(r"^(\w+) shares (\d+) (\w+) equally among (\d+) friends\."), _shares),
    (
        re.compile(
            r"buys (?P<count>\d+) \w+ (?:that cost|at) \$(?P<price>\d+) each(?: and a bag for "
            r"\$(?P<bag>\d+),)? and pays with \$(?P<paid>\d+)\."
        ),
        _change,
    ),
    (
        re.compile(
            r"^(\w+) has \$(\d+) and saves \$(\d+) every week\. How many dollars does \w+ have after "
            r"(\d+) weeks(?: if \w+ then spends \$(\d+))?\?$"
        ),
        _savings,
    ),
    (
        re.compile(
            r"^(\w+) has (\d+) (\w+), gives (\d+) to a friend and shares the rest equally among (\d+) "
            r"children\."
        ),
        _rest_shared,
    ),
    (
        re.compile(
            r"^A hall has (\d+) rows of chairs with (\d+) chairs in each row\. (\d+) chairs are taken "
            r"away(?: and (\d+) are brought in)?\."
        ),
        _chairs,
    ),
    (
        re.compile(
            r"^(\w+) is (\d+) years old\. \w+'s brother is (\d+) years older\. How old will the brother "
            r"be in (\d+) years(, and what is the sum)?"
        ),
        _ages,
    ),
]


def worked_solution(question: str) -> Worked | None:
    """The templated solution of a generated question; None for a template not known here."""
    for pattern, build in _RULES:
        match = pattern.search(question)
        if match is not None:
            return build(match)
    return None
