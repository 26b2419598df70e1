"""Equivalence rules of the grader: true positives, false-positive guards (as many), properties."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mathforge.answers import compare, is_equiv
from mathforge.answers.normalize import normalize

# (pred, gold): must be judged equal, in both orders.
EQUIVALENT = [
    # integers, leading zeros, signs
    ("42", "42"),
    ("004", "4"),
    ("025", "25"),
    ("+7", "7"),
    ("-0", "0"),
    # decimals
    (".4", "0.4"),
    ("2.0", "2"),
    ("2.50", "2.5"),
    ("-.5", "-0.5"),
    ("1.6", "1.60"),
    # fractions in every spelling
    ("\\frac{1}{2}", "0.5"),
    ("\\dfrac{3}{4}", "\\frac{3}{4}"),
    ("\\tfrac{3}{4}", "3/4"),
    ("\\frac12", "\\frac{1}{2}"),
    ("\\frac{-1}{2}", "-\\frac{1}{2}"),
    ("\\frac{6}{8}", "\\frac{3}{4}"),
    ("0.75", "\\frac{3}{4}"),
    ("\\frac{1}{2^{99}}", "2^{-99}"),
    ("\\frac{1}{2004!}", "\\frac{1}{2004 \\cdot 2003!}"),
    # mixed numbers
    ("7\\frac{3}{4}", "\\frac{31}{4}"),
    ("7\\frac34", "7.75"),
    ("-2\\frac{1}{2}", "-2.5"),
    # thousands separators
    ("7,425,000", "7425000"),
    ("14{,}916", "14916"),
    ("1,000.5", "1000.5"),
    ("10,\\!080", "10080"),
    # currency
    ("\\$18.00", "18"),
    ("\\$1,250", "1250"),
    ("18 dollars", "18"),
    # degrees
    ("90^\\circ", "90"),
    ("90^{\\circ}", "90"),
    ("45°", "45"),
    ("30 degrees", "30"),
    # percent: p% is p or p/100
    ("28\\%", "0.28"),
    ("28\\%", "28"),
    ("28 percent", "28\\%"),
    ("10\\%", "10"),
    ("12.5\\%", "\\frac{1}{8}"),
    # units
    ("5 \\text{ cm}", "5"),
    ("5\\mbox{ inches}", "5"),
    ("12 \\text{ square feet}", "12"),
    ("3 \\text{ cm}^2", "3"),
    ("60 miles per hour", "60"),
    ("1.6 \\mathrm{~cm}", "1.6"),
    ("9页", "9"),
    ("12元", "12"),
    # text answers
    ("\\text{Evelyn}", "Evelyn"),
    ("\\text{east}", "East"),
    ("\\textbf{no solution}", "no solution"),
    ("\\text{(C)}", "(C)"),
    # left/right and spacing
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
    ("( 1 , 2 )", "(1,2)"),
    ("\\displaystyle\\frac{1}{2}", "\\frac{1}{2}"),
    # radicals
    ("\\frac{\\sqrt3}{3}", "\\frac{1}{\\sqrt3}"),
    ("2\\sqrt{2}", "\\sqrt{8}"),
    ("4\\sqrt(2)", "4\\sqrt{2}"),
    ("\\sqrt{2}+\\sqrt{3}", "\\sqrt{5+2\\sqrt{6}}"),
    ("\\sqrt[3]{8}", "2"),
    ("\\sqrt{\\frac{9}{4}}", "\\frac{3}{2}"),
    ("3\\sqrt{13}", "\\sqrt{117}"),
    # pi and e
    ("12\\pi", "12 \\pi"),
    ("\\pi r^2", "r^2\\pi"),
    ("\\frac{\\pi}{2}", "\\frac{1}{2}\\pi"),
    ("e^{2}", "e^2"),
    ("\\ln(e^3)", "3"),
    ("\\log_2 8", "3"),
    ("3.14159", "\\pi"),
    # complex numbers
    ("6-5i", "-5i+6"),
    ("\\frac{1+i}{2}", "\\frac12+\\frac{i}{2}"),
    ("i^2", "-1"),
    ("(1+i)^2", "2i"),
    # infinity
    ("\\infty", "\\infty"),
    ("+\\infty", "\\infty"),
    ("infinity", "\\infty"),
    # symbolic expressions
    ("\\sec^2 y", "\\tan^2 y + 1"),
    ("x^2-1", "(x-1)(x+1)"),
    ("\\frac{x^2-1}{x-1}", "x+1"),
    ("2(a+b)", "2a+2b"),
    ("\\sin^2 x + \\cos^2 x", "1"),
    ("b^{2}-9a^{2}", "(3a-b)(-3a-b)"),
    ("\\frac{a}{a+1}", "a/(a+1)"),
    ("\\frac{1}{x}+\\frac{1}{y}", "\\frac{x+y}{xy}"),
    ("2\\sin x\\cos x", "\\sin 2x"),
    # equations up to scaling, assignments
    ("2x+4y-3=0", "y=-\\frac12x+\\frac34"),
    ("y=2x+3", "2x-y+3=0"),
    ("3x-y=0", "y=3x"),
    ("x=5", "5"),
    ("k = \\frac{1}{2}", "0.5"),
    ("x = 5", "5 = x"),
    ("f(x)=x^2", "x^2"),
    ("a_{n}=2n+1", "2n+1"),
    ("2+3=5", "5"),
    # inequalities, flipped; single-variable ones as intervals
    ("5\\le x", "x\\ge5"),
    ("x>3", "3<x"),
    ("x > 3", "(3,\\infty)"),
    ("x \\geq -3", "[-3, \\infty)"),
    ("-2 \\le x < 1", "[-2,1)"),
    ("\\{x | -2\\leq x < 1\\}", "[-2,1)"),
    ("x+y>3", "3<x+y"),
    ("2x+2y>6", "x+y>3"),
    ("x \\in [1,2]", "[1,2]"),
    # intervals, unions (any order)
    ("(1,2]", "(1,2]"),
    ("\\left[1, 2\\right)", "[1,2)"),
    ("(-\\infty,1)\\cup(2,\\infty)", "(2,\\infty)\\cup(-\\infty,1)"),
    ("(-\\infty, \\infty)", "\\mathbb{R}"),
    ("x<-4 \\text{ or } x>4", "(-\\infty,-4)\\cup(4,\\infty)"),
    ("[0,\\frac{1}{2}]", "[0,0.5]"),
    # sets in any order
    ("\\{1,2,3\\}", "\\{3,2,1\\}"),
    ("\\{1,2\\}", "\\{2,1,1\\}"),
    ("{1,2,3,4}", "\\{4,3,2,1\\}"),
    ("\\emptyset", "\\{\\}"),
    ("\\varnothing", "\\emptyset"),
    # tuples in order
    ("(1,2)", "(1, 2)"),
    ("(\\frac12, -0.5)", "(0.5, -\\frac{1}{2})"),
    ("\\langle 1, 2\\rangle", "(1,2)"),
    # comma-separated solutions in any order
    ("1, 3", "3, 1"),
    ("x=1, x=-1", "-1, 1"),
    ("-2,0,2", "2, -2, 0"),
    ("\\frac{1}{2}, -\\frac{1}{2}", "-0.5, 0.5"),
    ("x=1 \\text{ or } x=2", "2,1"),
    ("24;112", "24; 112"),
    # plus-minus: both roots
    ("\\pm 2021", "2021, -2021"),
    ("3\\pm\\sqrt2", "3+\\sqrt2,3-\\sqrt2"),
    ("x=\\pm 2", "-2, 2"),
    # matrices and vectors
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}"),
    ("\\begin{pmatrix}\\frac12\\\\-1\\end{pmatrix}", "\\begin{pmatrix}0.5\\\\-1\\end{pmatrix}"),
    ("\\begin{pmatrix}1\\\\2\\\\3\\end{pmatrix}", "(1,2,3)"),
    ("\\left(\\begin{array}{cc}1&0\\\\0&1\\end{array}\\right)", "\\begin{pmatrix}1&0\\\\0&1\\end{pmatrix}"),
    # base-n numerals
    ("4210_{6}", "4210_6"),
    ("4210", "4210_6"),
    # boxed wrapper left in a prediction
    ("\\boxed{\\frac{1}{2}}", "0.5"),
    # floats against exact values, within the last digit
    ("0.3333", "\\frac{1}{3}"),
    ("1.4142", "\\sqrt{2}"),
    # factorials and binomials
    ("5!", "120"),
    ("\\binom{5}{2}", "10"),
    ("\\dbinom{6}{3}", "20"),
    # bare function names
    ("sqrt(2)", "\\sqrt{2}"),
    ("2pi", "2\\pi"),
    ("\\lfloor \\frac{n}{2} \\rfloor", "\\lfloor n/2 \\rfloor"),
    ("|x-1|", "|1-x|"),
    # scientific notation
    ("1e-5", "0.00001"),
    ("1.2e5", "120000"),
    ("2.7\\times10^{9}", "2700000000"),
    ("e^{i\\pi}", "-1"),
    # big exact numbers
    ("2^{100}", "1267650600228229401496703205376"),
    ("10^{20}+1", "100000000000000000001"),
]

# (pred, gold): must be judged different, in both orders.
DIFFERENT = [
    # exactness of integers and rationals
    ("123456", "123457"),
    ("\\frac{1}{2^{99}}", "\\frac{1}{2^{98}}"),
    ("\\frac{1}{2004!}", "\\frac{1}{2006!}"),
    ("100000000000000000001", "100000000000000000000"),
    ("\\frac{1}{3}", "\\frac{1}{3}+10^{-30}"),
    ("2^{100}", "2^{100}+1"),
    # no percentage guessing between plain numbers
    ("3", "300"),
    ("2", "0.02"),
    ("0.28", "28"),
    ("10\\%", "1000"),
    ("10\\%", "0.01"),
    # float literals keep their last digit
    (".35626", ".35625"),
    ("0.333", "\\frac{1}{3}"),
    ("3.14", "\\pi"),
    ("3.1", "3.14"),
    ("2.5", "2.6"),
    ("1.0", "1.04"),
    # signs, fractions
    ("-5", "5"),
    ("\\frac{3}{4}", "\\frac{4}{3}"),
    ("\\frac{1}{2}", "1/3"),
    ("7\\frac{3}{4}", "\\frac{21}{4}"),
    ("1,000", "100"),
    ("0, 100", "100"),
    ("0,100", "100"),
    ("1, 000", "1000"),
    # units never by deleting single letters
    ("a+b", "a"),
    ("a+b", "b"),
    ("5m", "5"),
    ("2h", "2"),
    ("2\\mathrm{i}", "2"),
    # text answers
    ("\\text{Evelyn}", "Emily"),
    ("east", "west"),
    ("\\text{yes}", "no"),
    # radicals
    ("4\\sqrt(2)", "4"),
    ("\\sqrt{2}", "2"),
    ("\\frac{\\sqrt3}{3}", "\\frac{\\sqrt2}{2}"),
    ("2\\sqrt{3}", "3\\sqrt{2}"),
    ("\\sqrt{2}+\\sqrt{3}", "\\sqrt{5}"),
    ("10^{20}+\\sqrt{2}", "10^{20}+\\sqrt{3}"),
    # pi, e, complex
    ("12\\pi", "12"),
    ("\\pi", "\\pi^2"),
    ("e^2", "e^3"),
    ("6-5i", "6+5i"),
    ("6-5i", "6"),
    ("i", "1"),
    # infinity
    ("\\infty", "-\\infty"),
    ("\\infty", "10^{100}"),
    # symbolic expressions
    ("\\sec^2 y", "\\tan^2 y"),
    ("x^2-1", "(x-1)^2"),
    ("x+1", "x-1"),
    ("2x", "x^2"),
    ("\\sin x", "\\cos x"),
    ("\\frac{a}{a+1}", "\\frac{a+1}{a}"),
    ("x", "y"),
    ("xy", "x+y"),
    # equations and assignments
    ("2x+4y-3=0", "y=-\\frac12x+\\frac54"),
    ("y=2x+3", "y=3x+2"),
    ("x=5", "y=5"),
    ("x^2=4", "x=2"),
    ("x=5", "6"),
    ("x=5", "x=6"),
    # inequalities: direction and strictness matter
    ("x<5", "x>5"),
    ("x<5", "x\\le5"),
    ("5\\le x", "x\\le5"),
    ("x+y>3", "x+y<3"),
    ("x>3", "(-\\infty,3)"),
    ("x \\ge -3", "(-3,\\infty)"),
    # intervals: bracket types, endpoints, unions
    ("(1,2]", "[1,2]"),
    ("(1,2)", "[1,2]"),
    ("[1,2)", "(1,2]"),
    ("(1,3)", "(1,2)"),
    ("(-\\infty,1)\\cup(2,\\infty)", "(-\\infty,1)\\cup(3,\\infty)"),
    ("(-\\infty,1)\\cup(2,\\infty)", "(-\\infty,1)"),
    ("(-\\infty, \\infty)", "[0,\\infty)"),
    ("x<-4 \\text{ or } x>5", "(-\\infty,-4)\\cup(4,\\infty)"),
    # sets
    ("\\{1,2,3\\}", "\\{1,2\\}"),
    ("\\{1,2,3\\}", "\\{1,2,4\\}"),
    ("\\emptyset", "\\{0\\}"),
    # tuples in order
    ("(1,2)", "(2,1)"),
    ("(1,2,3)", "(1,2)"),
    ("(3, \\frac{\\pi}{2})", "(3, \\frac{\\pi}{3})"),
    ("(1,2)", "2, 1"),
    # solution lists: same multiset
    ("1, 3", "1, 3, 5"),
    ("1, 3", "1"),
    ("-2,0,2", "-2,0,3"),
    ("24;112", "112;24"),
    # plus-minus
    ("\\pm 2021", "2021"),
    ("\\pm 2021", "-2021"),
    ("3\\pm\\sqrt2", "3+\\sqrt2"),
    # matrices and vectors
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&5\\end{pmatrix}"),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&3\\\\2&4\\end{pmatrix}"),
    ("\\begin{pmatrix}1\\\\2\\\\3\\end{pmatrix}", "(3,2,1)"),
    ("\\begin{pmatrix}1&2\\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\\\3\\end{pmatrix}"),
    # base-n numerals
    ("52_9", "52_8"),
    ("942", "4210_6"),
    ("4210_7", "4210_6"),
    # factorials
    ("5!", "24"),
    ("\\binom{5}{2}", "20"),
    # structure mismatches
    ("5", "(5,6)"),
    ("5", "x"),
    ("(1,2)", "\\{1,2\\}"),
    ("[1,2]", "\\{1,2\\}"),
    # more false-positive guards: near misses of every kind
    ("\\frac{1}{2}", "\\frac{1}{2}x"),
    ("x^2", "x^{2}+0.001"),
    ("0", "0.0001"),
    ("1", "0.9999"),
    ("100", "99.99"),
    ("3.0", "3.01"),
    ("2", "2.0001"),
    ("\\frac{22}{7}", "\\pi"),
    ("\\sqrt{2}", "1.41"),
    ("|x|", "x"),
    ("|x-1|", "x-1"),
    ("x=1,y=2", "x=2,y=1"),
    ("(1,2)", "(1,2,3)"),
    ("\\{1\\}", "1, 1, 2"),
    ("[1,2]", "(1,2)"),
    ("(0,1)", "[0,1]"),
    ("(-\\infty,0)", "(-\\infty,0]"),
    ("(-\\infty,0)\\cup(0,\\infty)", "(-\\infty,\\infty)"),
    ("50\\%", "5"),
    ("25\\%", "0.025"),
    ("0.25", "25"),
    ("x+1", "x+1.0001"),
    ("\\log_2 8", "\\log_3 8"),
    ("\\sin 30", "\\frac12"),
    ("\\cos^{-1} x", "\\frac{1}{\\cos x}"),
    ("e^{i\\pi}", "1"),
    ("\\text{A}", "\\text{B}"),
    ("2x+4y-3=0", "2x+4y+3=0"),
    ("y = x", "y = -x"),
    ("x^2+y^2=1", "x^2+y^2=2"),
    ("x \\le 3", "x < 3"),
    ("x\\ne 0", "x = 0"),
    ("a_{n}=2n+1", "2n-1"),
    ("f(x)=x^2", "x^3"),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}1&2\\end{pmatrix}"),
    ("\\pm 1", "1, 1"),
    ("1\\pm i", "1+i"),
    ("7", "7\\sqrt{7}"),
    ("2^{10}", "1023"),
    ("10!", "3628801"),
    ("0", "\\emptyset"),
    ("\\{0\\}", "\\emptyset"),
    ("\\frac{-1}{-2}", "-\\frac{1}{2}"),
    ("1/2", "2/1"),
    ("\\$18", "\\$19"),
    ("5 \\text{ cm}", "6 \\text{ cm}"),
    ("7,425,000", "7,425,001"),
    ("14{,}916", "14916.5"),
    ("004", "40"),
    ("(1,2]", "(1,2)"),
    ("x^3", "x^{2}\\cdot x^{2}"),
    ("\\sqrt{x}", "x^{1/3}"),
    ("2\\pi r", "\\pi r^2"),
    ("\\frac{1}{2}\\pi", "\\frac{1}{2\\pi}"),
    ("1e-5", "1e-6"),
    # distinct variables are independent; floor/ceil need more than small positive test points
    ("y_{3}=x", "y_{2}=x"),
    ("b_{1}=a+1", "b_{0}=a+1"),
    ("x-y", "y-z"),
    ("m n-\\lfloor m / 3\\rfloor", "m n-\\lfloor m / 2\\rfloor"),
    ("\\lceil n / 3\\rceil+1", "\\lceil n / 2\\rceil+1"),
    # prose is not a product of letters
    ("f(y)=y^{-1/2}/4 for 0<y<1 and 0 otherwise", "f(y)=y^{-1/3}/4 for 0<y<1 and 0 otherwise"),
    ("4 for all n", "0"),
]


def test_tables_are_balanced() -> None:
    assert len(DIFFERENT) >= len(EQUIVALENT)


@pytest.mark.parametrize(("pred", "gold"), EQUIVALENT)
def test_equivalent(pred: str, gold: str) -> None:
    assert is_equiv(pred, gold), compare(pred, gold)
    assert is_equiv(gold, pred), compare(gold, pred)


@pytest.mark.parametrize(("pred", "gold"), DIFFERENT)
def test_different(pred: str, gold: str) -> None:
    assert not is_equiv(pred, gold), compare(pred, gold)
    assert not is_equiv(gold, pred), compare(gold, pred)


@pytest.mark.parametrize(
    ("pred", "gold", "reason"),
    [
        ("\\dfrac{1}{2}", "\\frac{1}{2}", "exact"),
        ("0.5", "\\frac12", "numeric"),
        ("\\frac{\\sqrt3}{3}", "\\frac{1}{\\sqrt3}", "symbolic"),
        ("3", "4", "mismatch"),
        ("x<5", "x>5", "mismatch"),
        ("", "5", "no_answer"),
    ],
)
def test_reasons(pred: str, gold: str, reason: str) -> None:
    assert compare(pred, gold)[1] == reason


@pytest.mark.parametrize(
    "pred", ["10^{10^{10}}", "(10^{9})!", "2^{2^{40}}", "x^{10^{10}}+1", "\\binom{10^{9}}{5}"]
)
def test_pathological_inputs_return_false_fast(pred: str) -> None:
    import time

    start = time.monotonic()
    equal, reason = compare(pred, "1", timeout=2.0)
    assert not equal
    assert reason in ("timeout", "mismatch")
    assert time.monotonic() - start < 2.5


def test_pathological_input_equal_to_itself() -> None:
    assert is_equiv("10^{10^{10}}", "10^{10^{10}}")


def test_empty_answers_are_never_equal() -> None:
    assert not is_equiv("", "")
    assert not is_equiv("  $ $ ", "5")
    assert not is_equiv("5", "")


# -- properties ----------------------------------------------------------------------

_integers = st.integers(min_value=-(10**30), max_value=10**30)
_fractions = st.fractions(max_denominator=10**6).filter(lambda f: f.denominator > 1)


@given(st.text(max_size=40))
@settings(max_examples=300, deadline=None)
def test_every_text_equals_itself(text: str) -> None:
    assert is_equiv(text, text) == bool(normalize(text))


@given(_integers)
@settings(max_examples=200, deadline=None)
def test_integer_spellings(n: int) -> None:
    assert is_equiv(str(n), f"{n:,}")
    assert is_equiv(f"{n}.0", str(n))
    assert is_equiv(f"\\frac{{{2 * n}}}{{2}}", str(n))
    assert not is_equiv(str(n), str(n + 1))
    if n != 0:
        assert not is_equiv(str(n), str(-n))


@given(_fractions)
@settings(max_examples=100, deadline=None)
def test_fraction_spellings(f: Fraction) -> None:
    latex = f"\\frac{{{f.numerator}}}{{{f.denominator}}}"
    assert is_equiv(latex, f"{f.numerator}/{f.denominator}")
    assert is_equiv(f"\\dfrac{{{2 * f.numerator}}}{{{2 * f.denominator}}}", latex)
    assert not is_equiv(latex, f"\\frac{{{f.numerator + 1}}}{{{f.denominator}}}")
    assert not is_equiv(latex, f"\\frac{{{f.denominator}}}{{{f.numerator}}}") or abs(f) == 1


@given(_integers, _integers)
@settings(max_examples=100, deadline=None)
def test_symmetry_of_number_pairs(a: int, b: int) -> None:
    pairs = [
        (str(a), str(b)),
        (f"{a}\\%", str(b)),
        (f"\\frac{{{a}}}{{7}}", f"{b}.5"),
        (f"({a},{b})", f"({b},{a})"),
    ]
    for x, y in pairs:
        assert is_equiv(x, y) == is_equiv(y, x)


@given(st.lists(st.integers(-50, 50), min_size=1, max_size=6, unique=True), st.randoms())
@settings(max_examples=100, deadline=None)
def test_sets_and_lists_ignore_order(values: list[int], rng: random.Random) -> None:
    shuffled = list(values)
    rng.shuffle(shuffled)
    as_set = "\\{" + ",".join(map(str, values)) + "\\}"
    assert is_equiv(as_set, "\\{" + ",".join(map(str, shuffled)) + "\\}")
    assert is_equiv(", ".join(map(str, values)), ", ".join(map(str, shuffled)))
    assert not is_equiv(as_set, "\\{" + ",".join(map(str, [*values, 51])) + "\\}")


@pytest.mark.parametrize(
    "pred",
    ["(" * 900 + "1" + ")" * 900, "-" * 900 + "1", "\\sqrt{" * 300 + "2" + "}" * 300, "1+" * 20000 + "1"],
)
def test_absurd_nesting_and_length_are_mismatches(pred: str) -> None:
    assert compare(pred, "1") == (False, "mismatch")
