"""Bootstrap data: gold reasoning for CoT, derived programs run in the sandbox for TIR, laid out
exactly as the TIR solve loop writes a trajectory; programs that miss the gold answer dropped."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from mathforge.engines.base import Completion, SamplingParams
from mathforge.errors import InputError
from mathforge.prompts import prompt_messages, render_messages, render_prompt
from mathforge.sandbox import Sandbox
from mathforge.solve import solve_prompts, trailing_python_block
from mathforge.train.bootstrap import (
    bootstrap,
    bootstrap_records,
    clean_reasoning,
    gsm8k_program,
    gsm8k_solutions,
)
from mathforge.train.records import SFTRecord

NATALIA = {
    "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
    "in May. How many clips did Natalia sell altogether in April and May?",
    "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
}
# The last annotated step is not the answer: its program prints 10, the gold is 12.
WRONG_LAST_STEP = {
    "question": "Tom has 5 apples and buys 7 more. How many apples does he have?",
    "answer": "He has 5+7 = <<5+7=12>>12 apples.\nHe eats 2, 12-2 = <<12-2=10>>10 left.\n#### 12",
}
NO_STEPS = {"question": "What is 3 plus 4?", "answer": "Three plus four is seven.\n#### 7"}


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox() as box:
        yield box


def test_cot_reasoning_drops_annotations_and_ends_with_the_boxed_gold(tmp_path: Path) -> None:
    assert clean_reasoning(NATALIA["answer"]) == (
        "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in April and May."
    )
    records, summary = bootstrap_records(
        gsm8k_solutions(_write(tmp_path / "g.jsonl", [NATALIA]), "g", "train", None), "cot"
    )
    assert summary.written == 1
    record = records[0]
    assert "<<" not in record["response"] and "####" not in record["response"]
    assert record["response"].endswith("The answer is $\\boxed{72}$.")
    assert record["segments"] == [{"kind": "model", "start": 0, "end": len(record["response"])}]
    assert record["prompt"] == prompt_messages(NATALIA["question"], "cot")


def test_program_has_one_named_assignment_per_step_and_reuses_results() -> None:
    code = gsm8k_program(NATALIA["question"], NATALIA["answer"])
    assert code == "clips_may = 48/2\nclips_altogether_april = 48+clips_may\nprint(clips_altogether_april)"


def test_tir_records_are_the_solve_loop_transcript_and_wrong_programs_are_dropped(
    tmp_path: Path, sandbox: Sandbox, embedded_tokenizer: Any
) -> None:
    path = _write(tmp_path / "g.jsonl", [NATALIA, WRONG_LAST_STEP, NO_STEPS])
    items = gsm8k_solutions(path, "g", "train", None)
    records, summary = bootstrap_records(items, "tir", sandbox)
    assert summary.read == 3 and summary.written == 1
    assert summary.dropped == {"output is not the gold answer": 1, "no program (no calculation steps)": 1}
    record = records[0]
    SFTRecord.from_dict(record)  # valid for the trainer
    assert [s["kind"] for s in record["segments"]] == ["model", "tool", "model"]
    tool = record["segments"][1]
    assert record["response"][tool["start"] : tool["end"]] == "```output\n72.0\n```\n"  # the real output
    assert record["provenance"]["output"] == "72.0"

    # Replay the model's parts through the real TIR loop: the loop's trajectory is the record.
    class Scripted:
        tokenizer = None

        def __init__(self, parts: list[str]) -> None:
            self.parts = parts

        def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
            text = self.parts.pop(0)
            reason = "stop" if self.parts else "eos"
            return [[Completion(text, [], reason, "```output" if self.parts else None)] for _ in prompts]

    model_parts = [
        record["response"][s["start"] : s["end"]] for s in record["segments"] if s["kind"] == "model"
    ]
    assert trailing_python_block(model_parts[0]).strip() == record["provenance"]["program"]
    prompt = render_messages(record["prompt"], embedded_tokenizer)
    assert prompt == render_prompt(NATALIA["question"], embedded_tokenizer, "tir")
    [[trajectory]] = solve_prompts([prompt], Scripted(model_parts), "tir", sandbox=sandbox)
    assert trajectory.response == record["response"]
    assert [(s.kind, s.start, s.end) for s in trajectory.segments] == [
        (s["kind"], s["start"], s["end"]) for s in record["segments"]
    ]
    assert trajectory.answer == "72"


def test_bad_source_file_names_line_and_field(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.jsonl", [NATALIA, {"question": "q", "answer": "no marker"}])
    with pytest.raises(InputError, match=r"bad.jsonl:2: field 'answer'"):
        gsm8k_solutions(path, "bad", "train", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mathforge.cli",
            "data",
            "bootstrap",
            "--source",
            str(path),
            "-o",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "bad.jsonl:2: field 'answer'" in result.stderr


def test_gsm8k_train_tir_reproduces_most_gold_answers(
    data_dir: Path, tmp_path: Path, sandbox: Sandbox
) -> None:
    if not (data_dir / "gsm8k" / "train.jsonl").is_file():
        pytest.skip(f"no GSM8K train split under {data_dir}")
    out = tmp_path / "tir.jsonl"
    summary = bootstrap("gsm8k", "tir", out, data_dir=data_dir, limit=200, sandbox=sandbox)
    assert summary.read == 200
    assert summary.written == sum(1 for _ in out.open()) >= 0.85 * 200
    assert summary.written + sum(summary.dropped.values()) == 200


@pytest.mark.parametrize("level", [1, 2, 3])
def test_generated_families_get_reasoning_and_programs_that_reproduce_gold(
    tmp_path: Path, sandbox: Sandbox, level: int
) -> None:
    from mathforge.data import FAMILIES

    n = 3 * len(FAMILIES)  # three problems of every family
    tir = bootstrap("generated", "tir", tmp_path / "tir.jsonl", limit=n, sandbox=sandbox, gen_level=level)
    cot = bootstrap("generated", "cot", tmp_path / "cot.jsonl", limit=n, gen_level=level)
    assert tir.read == cot.read == n
    assert tir.written == cot.written == n, (tir.dropped, cot.dropped)
    records = [json.loads(line) for line in (tmp_path / "tir.jsonl").open()]
    assert {r["id"].split("/")[1].split("-")[0] for r in records} == set(FAMILIES)
    for record in records:
        tool = record["segments"][1]
        output = record["response"][tool["start"] : tool["end"]]
        assert output == f"```output\n{record['provenance']['output']}\n```\n"
        assert record["response"].endswith(f"$\\boxed{{{record['answer']}}}$.")
    cot_records = [json.loads(line) for line in (tmp_path / "cot.jsonl").open()]
    assert all(" = " in r["response"].split("\n")[0] or "solutions" in r["response"] for r in cot_records)


def test_math_style_solutions_give_cot_records_and_no_program(tmp_path: Path, sandbox: Sandbox) -> None:
    row = {"problem": "What is $1/2 + 1/4$?", "solution": "Adding, $1/2 + 1/4 = \\boxed{\\frac{3}{4}}$."}
    items = gsm8k_solutions(_write(tmp_path / "math.jsonl", [row]), "math", "train", None)
    assert items[0].problem.gold == "\\frac{3}{4}" and items[0].program is None
    [record], _ = bootstrap_records(items, "cot")
    assert record["response"] == row["solution"]
    records, summary = bootstrap_records(items, "tir", sandbox)
    assert records == [] and summary.dropped == {"no program (no calculation steps)": 1}


def test_every_generated_template_has_a_worked_solution_equal_to_gold() -> None:
    from mathforge.answers import grade_answer
    from mathforge.data import generate_problems
    from mathforge.train.templated import worked_solution

    for level in (1, 2, 3):
        for problem in generate_problems(140, seed=11, level=level):
            worked = worked_solution(problem.question)
            assert worked is not None, problem.question
            assert grade_answer(worked.answer, problem.gold).correct, (problem.question, worked.answer)
            assert worked.program().endswith(f"print({worked.steps[-1].name})")
