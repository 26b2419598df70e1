"""Find the final answer a model response commits to.

Priority (the first rule that matches wins): the last complete ``\\boxed{}``/``\\fbox{}``
(``\\boxed 5`` too); Minerva's "final answer is $X$. I hope"; the last "answer is X" /
"answer: X"; "答案是 X"; GSM8K's "#### X"; a final "A: X" line; a bold ``**X**`` on the last
line; the last number. Multiple-choice datasets use :func:`extract_choice` instead.
"""

from __future__ import annotations

import re

from mathforge.answers.datasets import MULTIPLE_CHOICE_DATASETS
from mathforge.answers.text import last_boxed

_MINERVA = re.compile(r"final answer is\s*\$([^$]+)\$\.?\s*I hope")
_ANSWER_PHRASE = re.compile(
    r"(?:answer|choice)(?:\s+(?:is|would be|will be|should be)|\s*[:：])", re.IGNORECASE
)
_CJK_ANSWER = re.compile(r"答案(?:是|为|應為|应为)?\s*[:：]?")
_HASHES = re.compile(r"####\s*([^\n]+)")
_A_LINE = re.compile(r"(?m)^\s*A\s*[:：]\s*(.+)$")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_NUMBER = re.compile(r"-?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_LEADING_NUMBER = re.compile(
    r"^(\\?\$?\s*-?\$?\s*(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?\s*(?:\\?%)?)\s+[A-Za-z]"
)
_PROSE_WORD = re.compile(r"\b[A-Za-z]{3,}\b")
# Words that open a comment about the answer, not an answer ("the answer is within the range",
# "... is shown below", "... is correct"): such a phrase yields nothing, so a clear number wins.
_NOT_AN_ANSWER = re.compile(
    r"(?i)^(?:within|in|on|at|as|from|to|for|by|above|below|shown|given|found|provided|stated|"
    r"correct|incorrect|right|wrong|clear|obvious|simple|straightforward|that|this|these|those|"
    r"because|since|based|determined|calculated|computed|therefore|thus|then|here|there|not)\b"
)
_THOUSANDS = re.compile(r"-?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?")
_COMMAND = re.compile(r"\\[a-zA-Z]+")
_WORD = re.compile(r"[A-Za-z]{2,}")
_LATEX_SPAN = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))
_CHOICE_LETTERS = "ABCDE"


def extract_answer(text: str, dataset: str | None = None) -> str | None:
    """The final answer in a model response, or None when it commits to nothing."""
    if dataset in MULTIPLE_CHOICE_DATASETS:
        return extract_choice(text)
    return extract_math(text)


def extract_math(text: str) -> str | None:
    """The final answer of a free-form (non multiple-choice) response."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed.strip() or None
    match = _last(_MINERVA, text)
    if match is not None:
        return _clean(match.group(1))
    match = _last(_ANSWER_PHRASE, text)
    if match is not None and (answer := _phrase(text[match.end() :])):
        return answer
    match = _last(_CJK_ANSWER, text)
    if match is not None and (answer := _phrase(re.split(r"[。\n]", text[match.end() :])[0])):
        return answer
    match = _last(_HASHES, text)
    if match is not None and (answer := _phrase(match.group(1))):
        return answer
    match = _last(_A_LINE, text)
    if match is not None and (answer := _phrase(match.group(1))):
        return answer
    lines = [line for line in text.strip().splitlines() if line.strip()]
    bare = len(lines) == 1 and len(text) <= 200 and "\\boxed" not in text
    if bare and len(_WORD.findall(_COMMAND.sub("", text))) <= 1:
        # A bare answer ("(1,2)", "\\frac{1}{2}", "x^2+1") is its own answer, not its last number.
        return _phrase(text)
    if lines:
        bold = _last(_BOLD, lines[-1])
        if bold is not None and (answer := _phrase(re.sub(r"(?i)^.*answer\s*[:：]?\s*", "", bold.group(1)))):
            return answer
    return last_number(text)


def last_number(text: str) -> str | None:
    """The last number in the text, thousands separators removed (``7,425`` -> ``7425``)."""
    numbers = _NUMBER.findall(text)
    if not numbers:
        return None
    return numbers[-1].replace(",", "")


def _last(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    last = None
    for last in pattern.finditer(text):  # noqa: B007
        pass
    return last


def _phrase(rest: str) -> str | None:
    """The answer at the start of ``rest`` (the text after "answer is")."""
    rest = rest.lstrip(" \t:：*")
    for open_, close in _LATEX_SPAN:
        if rest.startswith(open_):
            end = rest.find(close, len(open_))
            if end > 0:
                return _clean(rest[len(open_) : end])
    rest = rest.split("\n", 1)[0]
    rest = re.split(r"(?<!\d)\.(?!\d)|\.(?=\s|$)|。", rest, maxsplit=1)[0]
    rest = _clean(rest)
    if not rest:
        return None
    if _THOUSANDS.fullmatch(rest):
        return rest.replace(",", "")
    leading = _LEADING_NUMBER.match(rest)
    if leading:  # "18 dollars per day", "5 apples"
        return _clean(leading.group(1)).replace(",", "")
    if "\\" not in rest and len(_PROSE_WORD.findall(rest)) >= 2:
        # A sentence ("that she has 5 apples left"): its first number is the answer; without a
        # number it is the answer ("all real numbers") unless it comments on one.
        numbers = _NUMBER.findall(rest)
        if numbers:
            return numbers[0].replace(",", "")
        return None if _NOT_AN_ANSWER.match(rest) else rest
    return rest


def _clean(answer: str) -> str:
    answer = answer.strip().strip("*").strip()
    answer = answer.rstrip(".。,;!").strip()
    if answer.startswith("$") and answer.endswith("$") and len(answer) > 1:
        answer = answer.strip("$").strip()
    return answer


# -- multiple choice -------------------------------------------------------------------

_LETTER_RUN = re.compile(
    r"^[\s(（\[{]*([A-E](?:[\s,，、&/]*(?:and\s+|和|或)?[\s(（]*[A-E])*)(?![A-Za-z])", re.UNICODE
)
_PAREN_LETTER = re.compile(r"[(（]([A-E])[)）]")
_LONE_LETTER = re.compile(r"(?<![A-Za-z\\])([A-E])(?![A-Za-z])")
_CHOICE_PHRASE = re.compile(
    r"(?:answers?|choices?|options?)\s*(?:is|are|would be|will be|should be|[:：])"
    r"|答案(?:是|为|应为)?\s*[:：]?|选\s*",
    re.IGNORECASE,
)


def extract_choice(text: str) -> str | None:
    """The option letter(s) a multiple-choice response picks, sorted: "B", or "AC" for multi-select."""
    boxed = last_boxed(text)
    if boxed is not None and (letters := choice_letters(boxed)):
        return letters
    match = _last(_CHOICE_PHRASE, text)
    if match is not None and (letters := choice_letters(text[match.end() : match.end() + 80])):
        return letters
    match = _last(_PAREN_LETTER, text)
    if match is not None:
        return match.group(1)
    for match in reversed(list(_LONE_LETTER.finditer(text))):
        # "A" opening a sentence ("A car ...") is an article, not a choice.
        if match.group(1) == "A" and re.match(r"\s+[a-z]", text[match.end() :]):
            continue
        return match.group(1)
    return None


def choice_letters(text: str) -> str | None:
    """Letters at the start of ``text`` ("(B)", "A, C", "ACD", "\\text{C}"), sorted; None if none."""
    text = re.sub(r"\\(?:text|mathrm|textbf|mathbf)\s*\{([^{}]*)\}", r"\1", text)
    text = text.replace("$", "").replace("*", "").strip()
    match = _LETTER_RUN.match(text)
    if match is None:
        return None
    letters = sorted(set(re.findall(r"[A-E]", match.group(1))))
    return "".join(letters)


def is_choice_label(gold: str) -> bool:
    """True for a gold answer that is option letters ("C", "BC", "ACD")."""
    stripped = gold.strip()
    return 0 < len(stripped) <= 5 and all(ch in _CHOICE_LETTERS for ch in stripped)
