"""The warm-up: what the zygote imports and exercises once, so that no execution pays for it.

Every child is forked from the zygote after this ran, so the modules below are already
imported and the code paths a typical math snippet takes (sympy's solvers, simplifier,
integrator, numpy's linear algebra) are already loaded and cached: a child starts warm and
shares those pages copy-on-write. Add here what model code commonly reaches for; never torch.
"""

from __future__ import annotations

# Imported (and exercised) before forking so that every execution starts warm.
_WARM_UP = """
import math, cmath, fractions, decimal, itertools, functools, collections, random, statistics
import re, string, json
import numpy as np
import sympy as sp
x, y, n, k = sp.symbols('x y n k')
t = sp.Symbol('t', positive=True)
sp.solve([x + 2*y - 3, 3*x - y + 1], [x, y]); sp.solve(x**2 - 5*x + 6, x); sp.solve(sp.Eq(2*x + 3, 7), x)
sp.solve(x**2 - 2, x); sp.solve(x**3 - 3*x, x); sp.solveset(x**2 - 3, x); sp.roots(x**2 - 2*x - 1, x)
sp.simplify((x**2 - 4)/(x - 2) + 3*x/7); sp.simplify(sp.sin(x)**2 + sp.cos(x)**2)
sp.trigsimp(sp.sin(x)*sp.cos(x)); sp.factor(sp.expand((x + 1)*(x - 2)*(x + 3))); sp.expand((x + 2)**4)
sp.apart(1/(x**2 - 1))
sp.integrate(3*x**3 - sp.Rational(1, 2)*x + 1, (x, 0, 2)); sp.integrate(x**2*sp.exp(x), x)
sp.integrate(sp.sin(2*x)*x, x); sp.integrate(sp.exp(-2*t), (t, 0, sp.oo)); sp.diff(x**3*sp.sin(x), x)
sp.limit(sp.sin(x)/x, x, 0); sp.limit((1 + 2/n)**n, n, sp.oo); sp.summation(k**2, (k, 1, n))
sp.series(sp.exp(x), x, 0, 4); sp.nsimplify(0.75); sp.sqrt(8); sp.N(sp.pi, 30); sp.latex(x**2)
M = sp.Matrix([[2, 1], [1, 3]]); M.det(); M.inv(); M.eigenvals(); sp.Rational(3, 4) + sp.Rational(1, 6)
sp.gcd(12, 18); sp.lcm(4, 6); sp.divisors(60); sp.factorint(360); sp.isprime(97); sp.binomial(10, 3)
sp.Poly(x**2 + 3*x + 1, x).all_coeffs(); sp.simplify(sp.sqrt(t**2)); sp.log(t**2).expand(force=True)
rng = np.random.default_rng(0); A = rng.random((6, 6)) + 6*np.eye(6)
np.linalg.solve(A, np.arange(6)); np.linalg.det(A); np.linalg.eig(A); np.linalg.inv(A); np.linalg.svd(A)
np.linalg.norm(A); np.polyfit(np.arange(6), np.arange(6)**2, 2); np.roots([1, -3, 2]); str(np.round(A, 3))
np.mean(A), np.std(A), np.cumsum(np.arange(6)), np.array([1/3, 2/3]).tolist()
"""


def warm_up() -> None:
    """Run the warm-up script in a throwaway namespace (its imports stay in ``sys.modules``)."""
    exec(compile(_WARM_UP, "<warm-up>", "exec"), {})
