"""Prompt templates through the chat template, user template files, few-shot exemplars."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from mathforge.answers import extract_answer
from mathforge.errors import InputError, MathforgeError
from mathforge.prompts import (
    COT_SYSTEM,
    TIR_SYSTEM,
    few_shot_benchmarks,
    few_shot_examples,
    load_template,
    render_prompt,
)


def chatml(system: str, user: str) -> str:
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )


def test_builtin_templates_match_the_qwen_prompts(embedded_tokenizer: Any) -> None:
    assert COT_SYSTEM == "Please reason step by step, and put your final answer within \\boxed{}."
    assert TIR_SYSTEM == (
        "Please integrate natural language reasoning with programs to solve the problem above, "
        "and put your final answer within \\boxed{}."
    )
    q = "What is $1+1$?"
    assert render_prompt(q, embedded_tokenizer, "cot") == chatml(COT_SYSTEM, q)
    assert render_prompt(q, embedded_tokenizer, "tir") == chatml(TIR_SYSTEM, q)
    assert render_prompt(q, embedded_tokenizer, "qwen-boxed") == chatml(
        "You are a helpful assistant.",
        q + "\nPlease reason step by step, and put your final answer within \\boxed{}.",
    )


def test_few_shot_goes_into_one_user_turn(embedded_tokenizer: Any) -> None:
    shots = [("Q1?", "A1."), ("Q2?", "A2.")]
    prompt = render_prompt("Q3?", embedded_tokenizer, "cot", few_shot=shots)
    assert prompt == chatml(COT_SYSTEM, "Q1?\nA1.\n\nQ2?\nA2.\n\nQ3?")


def test_user_template_files(tmp_path: Path, embedded_tokenizer: Any) -> None:
    yaml_file = tmp_path / "t.yaml"
    yaml_file.write_text("system: Be brief.\nuser: |-\n  Problem: {question}\n  Answer in \\boxed{}.\n")
    assert render_prompt("2+2", embedded_tokenizer, yaml_file) == chatml(
        "Be brief.", "Problem: 2+2\nAnswer in \\boxed{}."
    )
    text_file = tmp_path / "t.txt"
    text_file.write_text("Solve: {question}")
    assert load_template(str(text_file)).system is None
    assert render_prompt("x", embedded_tokenizer, str(text_file)).count("Solve: x") == 1


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("no_slot.txt", "no slot here", r"no_slot.txt: field 'user': the user message has no \{question\}"),
        ("bad.yaml", "user: [unclosed", "not valid YAML"),
        ("list.yaml", "- a\n- b\n", "field 'user': expected a mapping"),
        ("system.yaml", "user: '{question}'\nsystem: [1]\n", "field 'system': must be a string"),
    ],
)
def test_bad_template_files_name_the_file_and_field(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        load_template(path)


def test_unknown_template() -> None:
    with pytest.raises(MathforgeError, match="unknown prompt template 'nope'"):
        load_template("nope")


class PlainTokenizer:
    chat_template = None


class NoSystemTokenizer:
    chat_template = "{{ messages }}"

    def apply_chat_template(self, messages: list[dict[str, str]], **kwargs: Any) -> str:
        if messages[0]["role"] == "system":
            raise ValueError("System role not supported")
        return "<user>" + messages[0]["content"] + "</user><model>"


def test_tokenizers_without_a_chat_template_or_system_role() -> None:
    assert render_prompt("Q", PlainTokenizer(), "cot") == f"{COT_SYSTEM}\n\nQ\n"
    assert render_prompt("Q", NoSystemTokenizer(), "cot") == f"<user>{COT_SYSTEM}\n\nQ</user><model>"


def test_few_shot_exemplars_are_well_formed() -> None:
    assert {"mmlu_stem", "sat_math", "aqua", "gaokao", "gaokao2024_I", "cn_middle_school"} <= set(
        few_shot_benchmarks()
    )
    for benchmark, dataset, letters in [("mmlu_stem", "mmlu_stem", "ABCD"), ("aqua", "aqua", "ABCDE")]:
        shots = few_shot_examples(benchmark, k=5)
        assert len(shots) == 5
        for question, answer in shots:
            options = re.findall(r"\(([A-E])\)", question.split("Answer Choices:")[1])
            assert "".join(options) == letters
            chosen = re.fullmatch(r"(?s).*The answer is \(([A-E])\)\.", answer).group(1)
            assert extract_answer(answer, dataset) == chosen
    for question, answer in few_shot_examples("gaokao2024_mix", k=5):
        assert re.search(r"A\..*B\..*C\..*D\.", question)
        assert re.search(r"答案是 [A-D]$", answer)
    assert few_shot_examples("sat_math", k=2) == few_shot_examples("mmlu_stem", k=2)
    assert few_shot_examples("aqua", k=0) == []


def test_few_shot_errors() -> None:
    with pytest.raises(MathforgeError, match="no few-shot exemplars for benchmark 'gsm8k'"):
        few_shot_examples("gsm8k")
    with pytest.raises(MathforgeError, match="k must be between 0 and 5"):
        few_shot_examples("aqua", k=6)
