"""Benchmark: mathforge's sandbox against the Qwen2.5-Math executor, on a TIR corpus.

    .venv/bin/python bench/sandbox.py [--snippets 600] [--rounds 5] [--timeout 2] [--workers N]

The corpus: ``--snippets`` seeded snippets written the way a TIR model writes them (a function
that sets up sympy symbols and returns the answer, then ``print``), mostly sympy (solve,
simplify, factor, integrate, limits, sums, matrices, number theory, rationals), some plain
Python (brute-force counting, fractions) and numpy, a few that raise (a typo, an empty
solution list, a division by zero) and a few ending in a bare expression. It is cut into
``--rounds`` rounds, as a TIR evaluation does (round k executes the k-th code block of every
open problem), and each round ends with a few snippets that change process state (the
``LEAKS``: ``math.pi = 3``, a patched builtin, ``sympy.sqrt``, a planted or newly imported and
patched module, recursion limit, environment, random state, decimal and mpmath precision,
``sympy.Rational.__str__``, ``fractions.Fraction.__str__``) followed by probes that print
which of those changes they can see. A probe seeing anything is a leak.

Executors, each timed as a whole process, start-up included (what a user pays):

* ``ours``: ``Sandbox(timeout=...)``, a fresh confined process per execution; its zygote's
  start-up (a new interpreter that imports and exercises sympy and numpy) counts;
* ``ours_reuse100``: ``Sandbox(timeout=..., reuse=100)``;
* ``qwen_style``: the executor of Qwen2.5-Math's ``evaluation/python_executor.py``, behaving as
  its ``batch_apply`` does: all codes of a round in one batch; a new pebble ``ProcessPool`` with
  one worker per batch (forked from this process, which has sympy and numpy imported, as the
  evaluation process that grades answers has); the runtime pickled with each task;
  ``timeout_decorator``'s SIGALRM inside the worker and pebble's per-task timeout; stdout
  captured only when the last line prints, and dropped when the code raises; the last line
  evaluated otherwise; results and errors truncated to 400 characters. Left out, which only
  spares the baseline their cost: the ``multiprocess.Pool`` of one process per core that its
  constructor starts and ``batch_apply`` never uses, and its progress bar.

The executors take turns round by round (the order rotates), so load from other work on the
machine hits them alike. Reported per executor: executions per second over the whole process,
CPU per execution, the start-up, the leaks its probes saw, and how many corpus snippets give
the same (output, error line) as the Qwen executor; then the ratios to the Qwen executor, as
measured and as projected from CPU times for idle cores. Prints one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import random
import re
import resource
import sys
import time
import traceback
from contextlib import redirect_stdout
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from timeout_decorator import timeout  # imported where the pool forks from, as there

# --- the corpus ------------------------------------------------------------------------------


def _solve_linear(r: random.Random) -> str:
    a, b, c = r.randint(2, 12), r.randint(-30, 30), r.randint(-40, 60)
    return f"""from sympy import symbols, Eq, solve

def solve_equation():
    x = symbols('x')
    equation = Eq({a}*x + ({b}), {c})
    solution = solve(equation, x)
    return solution[0]

result = solve_equation()
print(result)"""


def _solve_system(r: random.Random) -> str:
    a, b, c, d = (r.randint(1, 9) for _ in range(4))
    e, f = r.randint(-20, 20), r.randint(-20, 20)
    return f"""from sympy import symbols, Eq, solve

x, y = symbols('x y')
eq1 = Eq({a}*x + {b}*y, {e})
eq2 = Eq({c}*x - {d}*y, {f})
solution = solve((eq1, eq2), (x, y))
print(solution[x] + solution[y])"""


def _quadratic(r: random.Random) -> str:
    p, q = r.randint(-12, 12), r.randint(-12, 12)
    k = r.randint(1, 5)
    return f"""import sympy as sp

x = sp.symbols('x')
polynomial = {k}*(x - ({p}))*(x - ({q}))
expanded = sp.expand(polynomial)
roots = sp.solve(expanded, x)
sum_of_roots = sum(roots)
product_of_roots = sp.prod(roots)
print(f"Roots: {{roots}}, sum: {{sum_of_roots}}, product: {{product_of_roots}}")"""


def _simplify(r: random.Random) -> str:
    a, b, c = r.randint(1, 9), r.randint(1, 9), r.randint(2, 7)
    return f"""from sympy import symbols, simplify, factor

x = symbols('x')
expr = (x**2 + {a + b}*x + {a * b}) / (x + {a}) + {c}*x/(x**2 - 1) - {c}/(x - 1)
simplified_expr = simplify(expr)
print(factor(simplified_expr))"""


def _factor(r: random.Random) -> str:
    a, b, c = r.randint(-9, 9), r.randint(1, 9), r.randint(-9, 9)
    return f"""import sympy as sp

x, y = sp.symbols('x y')
expression = sp.expand((x + {a}*y) * (x - {b}) * (x + {c}*y - 1))
factored = sp.factor(expression)
print(factored)"""


def _integral(r: random.Random) -> str:
    a, b, n, u = r.randint(1, 9), r.randint(1, 9), r.randint(1, 4), r.randint(1, 5)
    kind = r.choice(("poly", "exp", "trig"))
    body = {
        "poly": f"{a}*x**{n} - {b}*x + 1",
        "exp": f"x**{n}*sp.exp(-{b}*x)",
        "trig": f"sp.sin({a}*x)*sp.cos({b}*x)",
    }[kind]
    upper = "sp.oo" if kind == "exp" else ("sp.pi" if kind == "trig" else str(u))
    return f"""import sympy as sp

def compute_integral():
    x = sp.symbols('x')
    integrand = {body}
    result = sp.integrate(integrand, (x, 0, {upper}))
    return sp.simplify(result)

area = compute_integral()
print(area)"""


def _derivative(r: random.Random) -> str:
    a, b, c = r.randint(1, 6), r.randint(-12, 12), r.randint(-20, 20)
    return f"""import sympy as sp

x = sp.symbols('x')
f = {a}*x**3 + ({b})*x**2 + ({c})*x + 7
f_prime = sp.diff(f, x)
critical_points = sp.solve(f_prime, x)
values = [sp.nsimplify(f.subs(x, point)) for point in critical_points]
print(critical_points, values)"""


def _limit(r: random.Random) -> str:
    a, b = r.randint(1, 9), r.randint(1, 9)
    expr = r.choice((f"sp.sin({a}*x)/({b}*x)", f"(1 + {a}/x)**({b}*x)", f"(sp.sqrt(x**2 + {a}*x) - x)"))
    point = "0" if "sin" in expr else "sp.oo"
    return f"""import sympy as sp

x = sp.symbols('x')
limit_value = sp.limit({expr}, x, {point})
print(limit_value)"""


def _series_sum(r: random.Random) -> str:
    a, b, n = r.randint(1, 5), r.randint(1, 9), r.randint(10, 60)
    return f"""from sympy import symbols, summation, Rational, simplify

k = symbols('k', integer=True, positive=True)
total = summation({a}*k**2 + {b}*k, (k, 1, {n}))
telescoping = summation(Rational(1, 1) / (k * (k + {a})), (k, 1, {n}))
print(total, simplify(telescoping))"""


def _rational(r: random.Random) -> str:
    p, q, s, t = r.randint(1, 20), r.randint(2, 30), r.randint(1, 20), r.randint(2, 30)
    return f"""from sympy import Rational

probability_first = Rational({p}, {q + p})
probability_second = Rational({s}, {t + s})
both = probability_first * probability_second
either = probability_first + probability_second - both
print(both, either, either.p + either.q)"""


def _matrix(r: random.Random) -> str:
    rows = [[r.randint(-5, 9) for _ in range(3)] for _ in range(3)]
    rows[0][0] += 10
    return f"""from sympy import Matrix

A = Matrix({rows})
determinant = A.det()
inverse = A.inv() if determinant != 0 else None
print(determinant, inverse[0, 0] if inverse is not None else None, A.rank())"""


def _number_theory(r: random.Random) -> str:
    n, m = r.randint(100, 5000), r.randint(100, 5000)
    return f"""from sympy import divisors, factorint, isprime, gcd, lcm, totient

n = {n}
m = {m}
divisor_sum = sum(divisors(n))
print(factorint(n), divisor_sum, isprime(n + m), gcd(n, m), lcm(n, m), totient(n))"""


def _combinatorics(r: random.Random) -> str:
    n, k = r.randint(6, 20), r.randint(2, 5)
    return f"""from sympy import binomial, factorial, Rational

ways = binomial({n}, {k})
arrangements = factorial({k}) * ways
probability = Rational(ways, 2**{n})
print(ways, arrangements, probability)"""


def _radicals(r: random.Random) -> str:
    a, b, c = r.randint(2, 50), r.randint(2, 50), r.randint(2, 9)
    return f"""import sympy as sp

expr = sp.sqrt({a}) * sp.sqrt({b}) + sp.sqrt({c * c * a})
simplified = sp.nsimplify(sp.simplify(expr))
print(simplified, sp.N(simplified, 10))"""


def _trig(r: random.Random) -> str:
    k = r.choice((3, 4, 6, 12))
    a = r.randint(1, 5)
    return f"""import sympy as sp

x = sp.symbols('x')
value = sp.sin(sp.pi/{k})**2 + sp.cos({a}*sp.pi/{k})
identity = sp.trigsimp(sp.sin(x)**4 - sp.cos(x)**4)
print(sp.simplify(value), identity)"""


def _inequality(r: random.Random) -> str:
    p, q = sorted(r.sample(range(-15, 16), 2))
    return f"""from sympy import symbols, solve_univariate_inequality, Interval

x = symbols('x', real=True)
solution = solve_univariate_inequality((x - ({p}))*(x - ({q})) < 0, x, relational=False)
print(solution, solution.measure)"""


def _poly_vieta(r: random.Random) -> str:
    a, b, c = r.randint(1, 5), r.randint(-10, 10), r.randint(-10, 10)
    return f"""import sympy as sp

x = sp.symbols('x')
p = sp.Poly({a}*x**3 + ({b})*x**2 + ({c})*x - 6, x)
coefficients = p.all_coeffs()
sum_roots = -sp.Rational(coefficients[1], coefficients[0])
sum_pairwise = sp.Rational(coefficients[2], coefficients[0])
print(coefficients, sum_roots, sum_roots**2 - 2*sum_pairwise)"""


def _sequence(r: random.Random) -> str:
    a, d, n = r.randint(1, 20), r.randint(1, 9), r.randint(10, 40)
    return f"""from sympy import symbols, solve, Eq

a1, d = symbols('a1 d')
eqs = [Eq(a1 + 2*d, {a + 2 * d}), Eq(a1 + 6*d, {a + 6 * d})]
sol = solve(eqs, (a1, d))
n = {n}
nth_term = sol[a1] + (n - 1)*sol[d]
total = n*(2*sol[a1] + (n - 1)*sol[d])/2
print(nth_term, total)"""


def _geometry(r: random.Random) -> str:
    pts = [(r.randint(-9, 9), r.randint(-9, 9)) for _ in range(3)]
    return f"""from sympy import Matrix, Rational, sqrt

A, B, C = {pts}
area = abs(Matrix([[A[0], A[1], 1], [B[0], B[1], 1], [C[0], C[1], 1]]).det()) * Rational(1, 2)
side = sqrt((A[0] - B[0])**2 + (A[1] - B[1])**2)
print(area, side)"""


def _brute_force(r: random.Random) -> str:
    n, m, t = r.randint(8, 14), r.randint(2, 4), r.randint(10, 40)
    return f"""from itertools import combinations

count = 0
for combo in combinations(range(1, {n + 8}), {m}):
    if sum(combo) % {r.randint(3, 7)} == 0 and max(combo) - min(combo) < {t}:
        count += 1
print(count)"""


def _digits_loop(r: random.Random) -> str:
    limit, d = r.randint(1000, 20000), r.randint(3, 9)
    return f"""def digit_sum(n):
    return sum(int(c) for c in str(n))

count = 0
for number in range(1, {limit}):
    if digit_sum(number) % {d} == 0:
        count += 1
print(count)"""


def _fractions(r: random.Random) -> str:
    n = r.randint(5, 30)
    return f"""from fractions import Fraction
import math

total = sum(Fraction(1, k * (k + 1)) for k in range(1, {n + 1}))
print(total, total.numerator + total.denominator, math.comb({n}, 3))"""


def _numpy(r: random.Random) -> str:
    a, b, c = r.randint(2, 9), r.randint(2, 9), r.randint(2, 9)
    return f"""import numpy as np

A = np.array([[{a}, 1, 2], [1, {b}, 3], [2, 3, {c + 5}]], dtype=float)
rhs = np.array([1.0, 2.0, 3.0])
x = np.linalg.solve(A, rhs)
print(np.round(x, 6), round(float(np.linalg.det(A)), 4))"""


def _error_name(r: random.Random) -> str:
    a = r.randint(2, 20)
    return f"""from sympy import symbols, solve

x = symbols('x')
solutions = solve(x**2 - {a}, x)
print(solution[0])"""


def _error_empty(r: random.Random) -> str:
    a = r.randint(1, 20)
    return f"""from sympy import symbols, solve

x = symbols('x', positive=True)
roots = solve(x + {a}, x)
print("Roots:", roots)
print(roots[0])"""


def _error_zero(r: random.Random) -> str:
    a = r.randint(1, 20)
    return f"""values = [k - {a} for k in range({a}, {a + 5})]
ratios = [10 / v for v in values]
print(ratios)"""


def _bare_expression(r: random.Random) -> str:
    a, b = r.randint(2, 40), r.randint(2, 40)
    return f"""from sympy import Rational, gcd

value = Rational({a}, {b}) + Rational({b}, {a})
value.p + value.q + gcd({a}, {b})"""


# (template, weight): ~75% sympy, ~17% plain Python and numpy, ~5% raising, ~3% bare expression.
TEMPLATES = (
    (_solve_linear, 8), (_solve_system, 6), (_quadratic, 6), (_simplify, 5), (_factor, 5),
    (_integral, 6), (_derivative, 5), (_limit, 4), (_series_sum, 4), (_rational, 5), (_matrix, 4),
    (_number_theory, 5), (_combinatorics, 4), (_radicals, 4), (_trig, 3), (_inequality, 3),
    (_poly_vieta, 3), (_sequence, 3), (_geometry, 3),
    (_brute_force, 5), (_digits_loop, 4), (_fractions, 4), (_numpy, 4),
    (_error_name, 2), (_error_empty, 2), (_error_zero, 1), (_bare_expression, 3),
)  # fmt: skip


def corpus(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct snippets drawn from the weighted templates."""
    rng = random.Random(seed)
    templates, weights = zip(*TEMPLATES, strict=True)
    snippets: list[str] = []
    seen: set[str] = set()
    while len(snippets) < n:
        code = rng.choices(templates, weights)[0](rng)
        if code not in seen:
            seen.add(code)
            snippets.append(code)
    return snippets


@dataclass(frozen=True)
class Leak:
    """A change to process state that no later snippet may see: the code, and how to see it."""

    name: str
    patch: str
    seen: str  # an expression, true in a process where the patch happened


_SEEDED = random.Random(12345).random()
LEAKS = (
    Leak("math.pi", "import math\nmath.pi = 3\nprint(math.pi)", "math.pi != 3.141592653589793"),
    Leak("builtins.abs", "import builtins\nbuiltins.abs = lambda value: 0\nprint(abs(-2))", "abs(-2) != 2"),
    Leak(
        "sympy.sqrt",
        "import sympy\nsympy.sqrt = lambda arg, evaluate=None: arg\nprint(sympy.sqrt(4))",
        "sympy.sqrt(4) != 2",
    ),
    Leak(
        "planted module",
        "import sys, types\nsys.modules['tir_helpers'] = types.ModuleType('tir_helpers')\nprint('planted')",
        "'tir_helpers' in sys.modules",
    ),
    Leak(
        "new module patched",
        "import calendar\ncalendar.MONDAY = 5\nprint(calendar.MONDAY)",
        "'calendar' in sys.modules and sys.modules['calendar'].MONDAY != 0",
    ),
    Leak(
        "recursion limit",
        "import sys\nsys.setrecursionlimit(100000)\nprint(sys.getrecursionlimit())",
        "sys.getrecursionlimit() != 1000",
    ),
    Leak("environment", "import os\nos.environ['TIR_FLAG'] = '1'\nprint('set')", "'TIR_FLAG' in os.environ"),
    Leak("random state", "import random\nrandom.seed(12345)\nprint(1)", f"random.random() == {_SEEDED!r}"),
    Leak(
        "decimal precision",
        "import decimal\ndecimal.getcontext().prec = 50\nprint(decimal.Decimal(1) / 7)",
        "decimal.getcontext().prec != 28",
    ),
    Leak("mpmath precision", "import mpmath\nmpmath.mp.dps = 50\nprint(mpmath.pi)", "mpmath.mp.dps != 15"),
    Leak(
        "sympy.Rational.__str__",
        "import sympy\nsympy.Rational.__str__ = lambda self: 'patched'\nprint(sympy.Rational(1, 3))",
        "str(sympy.Rational(1, 3)) != '1/3'",
    ),
    Leak(
        "fractions.Fraction.__str__",
        "from fractions import Fraction\nFraction.__str__ = lambda self: 'patched'\nprint(Fraction(1, 3))",
        "str(fractions.Fraction(1, 3)) != '1/3'",
    ),
)
PROBE = (
    "import builtins, decimal, fractions, math, os, random, sys\nimport mpmath, sympy\n"
    "seen = []\n"
    + "".join(f"if {leak.seen}:\n    seen.append({leak.name!r})\n" for leak in LEAKS)
    + "print(sorted(seen))"
)
PROBES_PER_ROUND = 4


def rounds(snippets: list[str], count: int) -> list[list[str]]:
    """The corpus cut into ``count`` rounds; each ends with its share of LEAKS, then probes."""
    out = []
    for index in range(count):
        patches = [leak.patch for leak in LEAKS[index::count]]
        out.append(snippets[index::count] + patches + [PROBE] * PROBES_PER_ROUND)
    return out


# --- the Qwen2.5-Math executor (evaluation/python_executor.py), same behaviour ------------------


class QwenRuntime:
    """Its GenericRuntime: globals copied from a class-level dict; ``input(`` refused."""

    GLOBALS: ClassVar[dict[str, Any]] = {}

    def __init__(self) -> None:
        self.globals = dict(self.GLOBALS)

    def exec_code(self, code: str) -> None:
        if re.search(r"(\s|^)?input\(", code):
            raise RuntimeError()
        exec(code, self.globals)

    def eval_code(self, expression: str) -> Any:
        return eval(expression, self.globals)


def qwen_execute(lines: list[str], runtime: QwenRuntime, timeout_length: float) -> tuple[Any, str]:
    """Its ``execute`` in auto mode, run in the pool worker for one snippet."""
    try:
        if "print(" in lines[-1]:
            captured = io.StringIO()
            with redirect_stdout(captured):
                timeout(timeout_length)(runtime.exec_code)("\n".join(lines))
            result: Any = captured.getvalue()
        else:
            print(lines)  # the executor echoes such code to the worker's own stdout
            timeout(timeout_length)(runtime.exec_code)("\n".join(lines[:-1]))
            result = timeout(timeout_length)(runtime.eval_code)(lines[-1])
        report = "Done"
        str(result)
        pickle.dumps(result)
    except BaseException:
        result, report = "", traceback.format_exc().split("\n")[-2]
    return result, report


def qwen_truncate(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[: limit // 2] + "..." + text[-(limit // 2) :]


class QwenExecutor:
    """Its PythonExecutor(get_answer_from_stdout=True), as far as ``batch_apply`` goes."""

    def __init__(self, timeout_length: float) -> None:
        self.runtime = QwenRuntime()
        self.timeout_length = timeout_length

    def batch_apply(self, codes: list[str]) -> list[tuple[str, str]]:
        from concurrent.futures import TimeoutError as FutureTimeout

        from pebble import ProcessPool

        snippets = [code.strip().split("\n") for code in codes]
        results: list[tuple[Any, str]] = []
        with ProcessPool(max_workers=min(len(snippets), 1)) as pool:
            task = partial(qwen_execute, runtime=self.runtime, timeout_length=self.timeout_length)
            iterator = pool.map(task, snippets, timeout=self.timeout_length).result()
            while True:
                try:
                    results.append(next(iterator))
                except StopIteration:
                    break
                except FutureTimeout:
                    results.append(("", "Timeout Error"))
        return [(qwen_truncate(str(out).strip()), qwen_truncate(str(why).strip())) for out, why in results]


# --- measurements ----------------------------------------------------------------------------


def tree_cpu_ms(pid: int) -> float:
    """CPU time of a process, its reaped children and its live children (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid:
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        elif int(fields[1]) == pid:
            total += sum(int(x) for x in fields[11:13])
    return total / tick * 1000


def own_cpu_ms(who: int) -> float:
    usage = resource.getrusage(who)
    return (usage.ru_utime + usage.ru_stime) * 1000


def as_qwen_reports(results: list[Any]) -> list[tuple[str, str]]:
    """Our results in the Qwen executor's (output, report) form: output dropped on an error."""
    return [
        (qwen_truncate(r.stdout.strip()), "Done")
        if r.status == "ok"
        else ("", qwen_truncate(r.observation() if r.status == "timeout" else (r.error or r.status)))
        for r in results
    ]


def leaks_seen(outputs: list[tuple[str, str]], codes: list[str]) -> list[str]:
    """What the probes of a round saw (a probe whose output is not a clean list counts too)."""
    seen = []
    for (output, report), code in zip(outputs, codes, strict=True):
        if code == PROBE and output != "[]":
            try:
                seen.extend(json.loads(output.replace("'", '"')))
            except json.JSONDecodeError:
                seen.append(f"probe broken: {(output or report)[:80]}")
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snippets", type=int, default=600, help="corpus size, leak snippets included")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=None, help="sandbox workers (default: CPU cores)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    # The Qwen executor prints some code to its worker's stdout: keep it out of the JSON line.
    report_out = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one execution per core for every executor
    import numpy  # noqa: F401  (the Qwen evaluation process has both imported when it forks its pool)
    import sympy  # noqa: F401

    from mathforge.sandbox import Sandbox

    extra = len(LEAKS) + PROBES_PER_ROUND * args.rounds
    batches = rounds(corpus(args.snippets - extra, args.seed), args.rounds)
    total = sum(map(len, batches))
    load_before = os.getloadavg()[0]
    names = ("ours", "ours_reuse100", "qwen_style")
    seconds = dict.fromkeys(names, 0.0)
    cpu_ms = dict.fromkeys(names, 0.0)  # all processes of each executor, including this one's share
    outputs: dict[str, list[list[tuple[str, str]]]] = {name: [] for name in names}
    qwen_worker_cpu_ms = 0.0  # its pools' workers alone: what bounds it on idle cores

    def timed(name: str, action: Any, pid: int | None = None) -> Any:
        """Run ``action`` for executor ``name``, adding its wall time and CPU time.

        CPU: this process, plus the sandbox's process tree for ours (``pid``), plus reaped child
        processes for the Qwen executor (its pools' workers, each reaped as its pool closes).
        """
        nonlocal qwen_worker_cpu_ms
        self_before, children_before = own_cpu_ms(resource.RUSAGE_SELF), own_cpu_ms(resource.RUSAGE_CHILDREN)
        tree_before = tree_cpu_ms(pid) if pid else 0.0
        started = time.perf_counter()
        value = action()
        seconds[name] += time.perf_counter() - started
        cpu_ms[name] += own_cpu_ms(resource.RUSAGE_SELF) - self_before
        if pid:
            cpu_ms[name] += tree_cpu_ms(pid) - tree_before
        if name == "qwen_style":
            workers_spent = own_cpu_ms(resource.RUSAGE_CHILDREN) - children_before
            cpu_ms[name] += workers_spent
            qwen_worker_cpu_ms += workers_spent
        return value

    fresh = timed("ours", lambda: Sandbox(workers=args.workers, timeout=args.timeout))
    reused = timed("ours_reuse100", lambda: Sandbox(workers=args.workers, timeout=args.timeout, reuse=100))
    qwen = timed("qwen_style", lambda: QwenExecutor(args.timeout))
    startup = {name: round(seconds[name], 2) for name in names}
    zygote_cpu = {"ours": tree_cpu_ms(fresh.pid), "ours_reuse100": tree_cpu_ms(reused.pid)}
    for name, spent in zygote_cpu.items():
        cpu_ms[name] += spent  # the zygote's start-up: its imports and warm-up
    startup_cpu_ms = dict(cpu_ms)
    run = {
        "ours": lambda codes: as_qwen_reports(fresh.run_batch(codes)),
        "ours_reuse100": lambda codes: as_qwen_reports(reused.run_batch(codes)),
        "qwen_style": qwen.batch_apply,
    }
    pids = {"ours": fresh.pid, "ours_reuse100": reused.pid, "qwen_style": None}
    for index, batch in enumerate(batches):
        for name in names[index % 3 :] + names[: index % 3]:
            outputs[name].append(timed(name, partial(run[name], batch), pids[name]))
    protections, workers = fresh.protections, fresh.workers
    timed("ours", fresh.close)
    timed("ours_reuse100", reused.close)

    leak_codes = {PROBE, *(leak.patch for leak in LEAKS)}

    def summary(name: str) -> dict[str, Any]:
        rounds_seen = map(leaks_seen, outputs[name], batches)
        leaks = [seen for round_seen in rounds_seen for seen in round_seen]
        out: dict[str, Any] = {
            "exec_per_s": round(total / seconds[name], 1),
            "seconds": round(seconds[name], 2),
            "startup_s": startup[name],
            "cpu_ms_per_exec": round(cpu_ms[name] / total, 1),
            "leaks": len(leaks),
            "leaked": sorted(set(leaks)),
        }
        if name != "qwen_style":
            pairs = zip(outputs[name], outputs["qwen_style"], batches, strict=True)
            out["same_as_qwen"] = sum(
                ours == theirs
                for ours_round, theirs_round, codes in pairs
                for ours, theirs, code in zip(ours_round, theirs_round, codes, strict=True)
                if code not in leak_codes
            )
        return out

    report: dict[str, Any] = {
        "bench": "sandbox",
        "snippets": total,
        "corpus_snippets": total - extra,
        "leak_snippets": extra,
        "rounds": args.rounds,
        "timeout_s": args.timeout,
        "workers": workers,
        "isolation_off": sorted(name for name, on in protections.items() if not on),
        **{name: summary(name) for name in names},
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    qwen_rate = report["qwen_style"]["exec_per_s"]
    report["ratio_vs_qwen"] = round(report["ours"]["exec_per_s"] / qwen_rate, 2)
    report["ratio_vs_qwen_reuse100"] = round(report["ours_reuse100"]["exec_per_s"] / qwen_rate, 2)
    # On idle cores the Qwen executor is bound by its one worker at a time, ours by its start-up
    # (one process) plus the rest spread over ``workers``: a projection from CPU times, for what
    # a busy shared machine cannot show in wall time.
    for name in ("ours", "ours_reuse100"):
        serial = startup_cpu_ms[name]
        projected = serial + (cpu_ms[name] - serial) / workers
        report[f"projected_ratio_idle_cores_{name}"] = round(qwen_worker_cpu_ms / projected, 2)
    report["targets_met"] = {
        "default>=0.9x_no_leaks": report["ratio_vs_qwen"] >= 0.9 and not report["ours"]["leaks"],
        "reuse100>=1.5x_no_leaks": (
            report["ratio_vs_qwen_reuse100"] >= 1.5 and not report["ours_reuse100"]["leaks"]
        ),
    }
    print(json.dumps(report), file=report_out, flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
