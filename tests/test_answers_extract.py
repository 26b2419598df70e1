"""Final-answer extraction from model responses, free-form and multiple choice."""

from __future__ import annotations

import pytest

from mathforge.answers import extract_answer, extract_choice
from mathforge.answers.extract import choice_letters, is_choice_label, last_number
from mathforge.answers.text import last_boxed

FREE_FORM = [
    # the LAST complete box wins
    ("First \\boxed{3}. Wait, that is wrong; the answer is \\boxed{5}.", "5"),
    ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}"),
    ("so $\\boxed{\\{1, 2\\}}$ is the set", "\\{1, 2\\}"),
    ("\\fbox{7}", "7"),
    ("thus $\\boxed 5$.", "5"),
    ("The area is \\boxed{12} square units, not \\boxed{13", "12"),
    ("\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"),
    # Minerva's format
    ("Final Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.", "\\frac{3}{4}"),
    # "answer is" / "answer:" (the last one)
    ("She makes 9 * 2 = $18 every day.\nThe answer is 18.", "18"),
    ("The answer is 4. No wait, the answer is 6.", "6"),
    ("The answer is $\\frac{1}{2}$.", "\\frac{1}{2}"),
    ("The answer is \\(\\frac{3}{4}\\).", "\\frac{3}{4}"),
    ("Answer: 12", "12"),
    ("Final Answer: x = 5", "x = 5"),
    ("The answer is 18 because 9 times 2 is 18.", "18"),
    ("The answer is 5 apples.", "5"),
    ("The answer is: 1,250 dollars.", "1250"),
    ("The answer is 3.5.", "3.5"),
    ("The answer is Evelyn.", "Evelyn"),
    # a phrase that comments on the answer is none: the clear number wins
    ("12*7 = 84, so each box holds 84. The answer is within the specified range.", "84"),
    ("So 3 + 4 = 7. The answer is shown below.", "7"),
    ("The answer is all real numbers.", "all real numbers"),
    ("The answer is no solution.", "no solution"),
    # Chinese, full-width punctuation
    ("所以答案是 12。", "12"),
    ("因此答案为：$\\frac{1}{2}$", "\\frac{1}{2}"),
    # GSM8K "####"
    ("Janet sells 16 - 3 - 4 = 9 eggs.\n#### 18", "18"),
    ("It costs 1,000 + 234.\n#### 1,234", "1234"),
    # few-shot "A:" lines
    ("Q: what is 6*7?\nA: 42", "42"),
    # a bold final answer
    ("We get 5 then 6.\n**Answer: 42**", "42"),
    ("Putting it together:\n**42**", "42"),
    # the last number as a fallback (thousands separators removed)
    ("the total is 7,425,000 people", "7425000"),
    ("we get 3 and then -4.5 apples", "-4.5"),
    ("the ratio is 3/4 of the whole", "3/4"),
    # a bare answer is its own answer
    ("\\frac{1}{2}", "\\frac{1}{2}"),
    ("(1,2)", "(1,2)"),
    ("x^2+1", "x^2+1"),
    ("-3", "-3"),
    ("It is 7.", "7"),
]

NOTHING = ["", "no numbers here at all", "I do not know.", "\\boxed{"]

CHOICE = [
    ("The answer is (B).", "B"),
    ("the answer is \\boxed{(C)}", "C"),
    ("\\boxed{\\text{D}}", "D"),
    ("\\boxed{AC}", "AC"),
    ("Therefore the correct options are A and C.", "AC"),
    ("The answer is A, C, D", "ACD"),
    ("答案是 B", "B"),
    ("答案：ACD", "ACD"),
    ("The choice is E.", "E"),
    ("Option (C) is larger, and (D) is the correct one.", "D"),
    ("A car travels... so we pick D", "D"),
    ("The answer is C. A quick check confirms it.", "C"),
    ("I think it's B", "B"),
]


@pytest.mark.parametrize(("response", "expected"), FREE_FORM)
def test_extract_free_form(response: str, expected: str) -> None:
    assert extract_answer(response) == expected


@pytest.mark.parametrize("response", NOTHING)
def test_extract_nothing(response: str) -> None:
    assert extract_answer(response) is None


@pytest.mark.parametrize(("response", "expected"), CHOICE)
def test_extract_choice(response: str, expected: str) -> None:
    assert extract_choice(response) == expected
    assert extract_answer(response, "mmlu_stem") == expected


def test_choice_extraction_only_for_choice_datasets() -> None:
    response = "There are 3 apples, so the answer is B"
    assert extract_answer(response, "aqua") == "B"
    assert extract_answer(response, "sat_math") == "B"
    assert extract_answer(response, "gsm8k") == "B"  # the phrase rule still applies
    assert extract_answer("There are 3 apples, so B", "gsm8k") == "3"


def test_article_a_is_not_a_choice() -> None:
    assert extract_choice("A train leaves at noon and arrives late.") is None


@pytest.mark.parametrize(
    ("text", "letters"),
    [
        ("(B)", "B"),
        ("A, C", "AC"),
        ("CA", "AC"),
        ("\\text{C}", "C"),
        ("B. 12", "B"),
        ("12", None),
        ("Apple", None),
    ],
)
def test_choice_letters(text: str, letters: str | None) -> None:
    assert choice_letters(text) == letters


@pytest.mark.parametrize(
    ("gold", "expected"), [("C", True), ("BC", True), ("ACD", True), ("3/2", False), ("F", False)]
)
def test_is_choice_label(gold: str, expected: bool) -> None:
    assert is_choice_label(gold) is expected


def test_last_boxed_balances_braces() -> None:
    assert last_boxed("\\boxed{a{b{c}}d} and \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert last_boxed("no box") is None
    assert last_boxed("\\framebox{204} minutes") == "204"


def test_last_number() -> None:
    assert last_number("1,234,567 and 8") == "8"
    assert last_number("1,234,567") == "1234567"
    assert last_number("none") is None


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "text",
    [
        "final answer is $x " * 20000,
        "\\boxed{" * 20000,
        "\\boxed{1} " * 20000,
        "1,234,567 " * 50000,
        "the answer is 5 " * 20000,
        "\\boxed{" + "{" * 5000 + "}" * 5000 + "}",
    ],
)
def test_adversarial_responses_do_not_hang(text: str) -> None:
    extract_answer(text)
    extract_choice(text)
