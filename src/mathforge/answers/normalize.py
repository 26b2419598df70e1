"""Canonical text for an answer: strip presentation (delimiters, spacing, units, text wrappers).

Normalisation only removes what never changes the mathematical value: math delimiters, sizing
commands, ``\\dfrac``/``\\tfrac`` spellings, degree marks, currency signs, thousands separators,
``\\text{}`` wrappers and trailing units. Units are removed when they follow a value and are
either inside ``\\text{}``/``\\mbox{}``/``\\mathrm{}`` or a word from :data:`UNIT_WORDS`; single
letters are never deleted, so ``a+b`` stays ``a+b``. Percent signs are kept (as ``\\%``): the
comparison decides what a percentage matches.
"""

from __future__ import annotations

import re
from functools import lru_cache

from mathforge.answers.text import unwrap_command

# Units removed after a value. Whole words only; plural forms are listed explicitly.
# fmt: off
UNIT_WORDS = frozenset({
    "dollar", "dollars", "cent", "cents", "euro", "euros", "yuan", "rupee", "rupees", "usd",
    "pound", "pounds", "lb", "lbs", "ounce", "ounces", "oz", "unit", "units", "degree", "degrees",
    "radian", "radians", "meter", "meters", "metre", "metres", "centimeter", "centimeters",
    "centimetre", "centimetres", "millimeter", "millimeters", "kilometer", "kilometers",
    "kilometre", "kilometres", "cm", "mm", "km", "inch", "inches", "foot", "feet", "ft", "yard",
    "yards", "yd", "mile", "miles", "gram", "grams", "kilogram", "kilograms", "kg", "mg", "ton",
    "tons", "tonne", "tonnes", "liter", "liters", "litre", "litres", "ml", "gallon", "gallons",
    "quart", "quarts", "pint", "pints", "cup", "cups", "second", "seconds", "sec", "secs",
    "minute", "minutes", "min", "mins", "hour", "hours", "hr", "hrs", "day", "days", "week",
    "weeks", "month", "months", "year", "years", "mph", "kph", "kmh",
})
# fmt: on
# Chinese measure words that follow a number in CMATH-style answers ("9页", "12元").
# fmt: off
CJK_UNITS = (
    "平方厘米", "平方分米", "平方千米", "平方米", "立方厘米", "立方分米", "立方米", "厘米", "分米", "毫米",
    "千米", "公里", "米", "千克", "公斤", "克", "吨", "毫升", "升", "小时",
    "分钟", "秒", "元", "角", "天", "岁", "个", "只", "本", "页",
    "人", "名", "件", "条", "次", "台", "辆", "棵", "块", "张",
    "朵", "支", "瓶", "盒", "袋", "箱", "度", "倍", "周", "年",
    "月", "日", "分",
)
# fmt: on

_UNICODE = {
    "\u2212": "-",
    "\u2013": "-",
    "\u00d7": "\\times ",
    "\u00f7": "\\div ",
    "\u2264": "\\le ",
    "\u2265": "\\ge ",
    "\u2260": "\\ne ",
    "\u03c0": "\\pi ",
    "\u221a": "\\sqrt",
    "\u221e": "\\infty ",
    "\u00b0": "^\\circ",
    "\u222a": "\\cup ",
    "\u2229": "\\cap ",
    "\u00b1": "\\pm ",
    "\u2213": "\\mp ",
    "\u00b7": "\\cdot ",
    "\u22c5": "\\cdot ",
    "\uff0c": ",",
    "\uff1a": ":",
    "\uff08": "(",
    "\uff09": ")",
    "\uff1b": ";",
    "\u3001": ",",
    "\u2009": " ",
    "\u00a0": " ",
    "\u2208": "\\in ",
    "\u2205": "\\emptyset ",
    "\u00bd": "\\frac{1}{2}",
    "\u00bc": "\\frac{1}{4}",
    "\u00be": "\\frac{3}{4}",
    "\u00b2": "^2",
    "\u00b3": "^3",
}
_UNICODE_RE = re.compile("|".join(map(re.escape, _UNICODE)))

_REPLACEMENTS = [
    (re.compile(r"\\(?:left|right)\s*\."), ""),
    (re.compile(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|bigg|Bigg|big|Big)(?![a-zA-Z])"), ""),
    (re.compile(r"\\(?:displaystyle|textstyle|scriptstyle|limits|nolimits)(?![a-zA-Z])"), ""),
    (re.compile(r"(?<=\d),\\!(?=\d)"), ","),  # 10,\!080: a thousands separator, not a space
    (re.compile(r"\\(?:quad|qquad)(?![a-zA-Z])|\\[!,;: ]|~"), " "),
    (re.compile(r"\\[dtc]frac(?![a-zA-Z])"), r"\\frac"),
    (re.compile(r"\\[dt]binom(?![a-zA-Z])"), r"\\binom"),
    (re.compile(r"\\(?:leqslant|leqq|leq)(?![a-zA-Z])"), r"\\le "),
    (re.compile(r"\\(?:geqslant|geqq|geq)(?![a-zA-Z])"), r"\\ge "),
    (re.compile(r"\\(?:neq)(?![a-zA-Z])"), r"\\ne "),
    (re.compile(r"\\lt(?![a-zA-Z])"), "<"),
    (re.compile(r"\\gt(?![a-zA-Z])"), ">"),
    (re.compile(r"<="), r"\\le "),
    (re.compile(r">="), r"\\ge "),
    (re.compile(r"(?<=\{)(?:b|B|small)?matrix(?=\})"), "pmatrix"),
    (re.compile(r"\\(?:varnothing)(?![a-zA-Z])"), r"\\emptyset "),
    (re.compile(r"\\(?:lbrace)(?![a-zA-Z])"), r"\\{"),
    (re.compile(r"\\(?:rbrace)(?![a-zA-Z])"), r"\\}"),
    (re.compile(r"\\(?:dots|ldots|cdots)(?![a-zA-Z])"), r"\\dots "),
    (re.compile(r"\\(?:mathbb\s*\{\s*R\s*\}|mathbb\s*R|R)(?![a-zA-Z])"), r"(-\\infty,\\infty)"),
    # Degree marks (90^\circ, 90^{\circ}, \degree): the number is the answer.
    (re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ(?![a-zA-Z])|\\(?:circ|degree)(?![a-zA-Z])"), ""),
    (re.compile(r"\\\$|\$"), ""),
    (re.compile(r"\\\(|\\\)|\\\[|\\\]"), ""),
    (re.compile(r"\\%|%|\s*\\text\{\s*percent\s*\}|\s+percent\b"), r"\\%"),
]

_TEXT_WRAPPERS = (
    "text", "textbf", "textit", "textrm", "textnormal", "mbox",
    "mathrm", "mathbf", "boldsymbol", "mathit", "bm", "mathsf", "rm",
)  # fmt: skip
_TRAILING_TEXT = re.compile(
    r"\\(?:text|textnormal|textrm|mbox|mathrm)\s*\{([^{}]*)\}(?:\s*\^\s*\{?\s*[23]\s*\}?)?\s*$"
)
_UNIT_PATTERN = "|".join(sorted((re.escape(word) for word in UNIT_WORDS), key=len, reverse=True))
_UNIT_EXPR = rf"(?:(?:square|sq\.?|cubic|cu\.?)\s+)?(?:{_UNIT_PATTERN})(?:\s*\^\s*\{{?[23]\}}?)?"
_TRAILING_UNIT = re.compile(
    rf"(?<=[\d}})\]%])\s*(?:{_UNIT_EXPR})(?:\s*(?:/|per)\s*(?:{_UNIT_EXPR}))?\.?\s*$", re.IGNORECASE
)
_TRAILING_CJK_UNIT = re.compile(rf"(?<=[\d}}])\s*(?:{'|'.join(CJK_UNITS)})\s*$")
# 7,425,000 (no spaces, no leading 0): "0,100" and "1, 000" are lists.
_THOUSANDS = re.compile(r"^[-+]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?(?:\\%)?$")
_PLAIN_NUMBER = re.compile(r"-?[1-9]\d*(?:\.\d*[1-9])?|-?0\.\d*[1-9]|0")
_SCIENTIFIC = re.compile(r"(?<![\w\\.])(\d+(?:\.\d+)?)[eE]([+-]?\d+)(?![\w.])")
_BRACED_COMMA = re.compile(r"(?<=\d)\{,\}(?=\d)")
_SQRT_PAREN = re.compile(r"\\sqrt\s*\(([^()]*)\)")
_SQRT_BARE = re.compile(r"\\sqrt\s*([0-9]+|[a-zA-Z])(?![a-zA-Z])")
_FRAC_DIGITS = re.compile(r"\\frac\s*(\d)\s*(\d)")
_FRAC_DIGIT_BRACE = re.compile(r"\\frac\s*(\d)\s*\{")
_FRAC_BRACE_DIGIT = re.compile(r"\\frac\s*(\{[^{}]*\})\s*(\d)")
_BARE_FUNCTION = re.compile(
    r"(?<![\\A-Za-z])(sqrt|arcsin|arccos|arctan|sin|cos|tan|sec|csc|cot|ln|log|exp|pi)(?![A-Za-z])"
)
_INFINITY_WORD = re.compile(r"\b(?:infinity|inf)\b")
_PLUS_INFTY = re.compile(r"(^|[(\[,])\s*\+\s*\\infty")
_WORD_AND_OR = re.compile(r"\s*\\text\{\s*(?:and|or)\s*\}\s*|\s+(?:and|or)\s+")
_SPACES = re.compile(r"\s+")
_EMPTY_SET = re.compile(r"^\\\{\s*\\\}$|^\{\s*\}$")


@lru_cache(maxsize=65536)
def normalize(answer: str) -> str:
    """Canonical text of an answer; two answers with equal canonical text are equal."""
    s = answer.strip()
    if _PLAIN_NUMBER.fullmatch(s):  # the common case in GSM8K-style grading: nothing to strip
        return s
    s = _UNICODE_RE.sub(lambda m: _UNICODE[m.group()], s)
    s = unwrap_command(s, "boxed")
    s = unwrap_command(s, "fbox")
    for pattern, replacement in _REPLACEMENTS:
        s = pattern.sub(replacement, s)
    s = _strip_trailing_units(s)
    if "\\" in s:
        for name in _TEXT_WRAPPERS:
            s = unwrap_command(s, name)
        s = _strip_trailing_units(s)
    s = _WORD_AND_OR.sub(",", s) if not _is_words(s) else s
    s = _BARE_FUNCTION.sub(r"\\\1", s)
    s = _SQRT_PAREN.sub(r"\\sqrt{\1}", s)
    s = _SQRT_BARE.sub(r"\\sqrt{\1}", s)
    s = _FRAC_DIGITS.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_DIGIT_BRACE.sub(r"\\frac{\1}{", s)
    s = _FRAC_BRACE_DIGIT.sub(r"\\frac\1{\2}", s)
    s = _INFINITY_WORD.sub(r"\\infty", s)
    s = _PLUS_INFTY.sub(r"\1\\infty", s)
    s = _BRACED_COMMA.sub("", s)
    s = _SCIENTIFIC.sub(r"\1\\times10^{\2}", s)
    s = s.strip().rstrip(".,;:。").lstrip(":").strip()
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    s = _collapse_spaces(s)
    if _EMPTY_SET.match(s):
        s = "\\emptyset"
    return s


def _strip_trailing_units(s: str) -> str:
    for _ in range(4):
        before = s
        s = s.strip().rstrip(".").strip()
        match = _TRAILING_TEXT.search(s)
        if match and match.group(1).strip(" ~") not in ("e", "i"):
            rest = s[: match.start()].strip()
            if rest and not rest.endswith(("=", "+", "-", "*", "/", "^", "_", "{", "(", "[", ",")):
                s = rest
        s = _TRAILING_UNIT.sub("", s)
        s = _TRAILING_CJK_UNIT.sub("", s)
        if s == before:
            break
    return s


def _is_words(s: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z ]*", s))


def _collapse_spaces(s: str) -> str:
    """Drop spaces, except one between two letters (``\\pi r``, ``no solution``)."""

    def keep(match: re.Match[str]) -> str:
        start, end = match.start(), match.end()
        before = s[start - 1] if start > 0 else ""
        after = s[end] if end < len(s) else ""
        return " " if before.isalpha() and after.isalpha() else ""

    return _SPACES.sub(keep, s)


def strip_percent(s: str) -> tuple[str, bool]:
    """Split a trailing percent sign off a normalised answer."""
    if s.endswith("\\%"):
        return s[:-2].strip(), True
    return s, False
