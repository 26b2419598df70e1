"""Benchmark registry and loaders: gold answers, question texts, ids, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mathforge.answers import MIXED_CHOICE_DATASETS, MULTIPLE_CHOICE_DATASETS
from mathforge.data import (
    BENCHMARKS,
    load_benchmark,
    load_problems,
    load_problems_file,
    parse_field_map,
    split_bench_list,
    write_problems,
)
from mathforge.data.registry import MC_SHOTS
from mathforge.errors import InputError, MathforgeError

ISSUE_BENCHMARKS = [
    "gsm8k",
    "math500",
    "minerva_math",
    "gaokao2023en",
    "olympiadbench",
    "college_math",
    "mmlu_stem",
    "aime24",
    "amc23",
    "cmath",
    "gaokao2024_I",
    "gaokao2024_II",
    "gaokao2024_mix",
    "cn_middle_school",
    "gaokao_math_cloze",
    "gaokao_math_qa",
    "svamp",
    "asdiv",
    "mawps",
    "aqua",
    "sat_math",
    "carp_en",
    "math",
]


def test_registry_covers_every_benchmark_of_the_protocol():
    assert set(ISSUE_BENCHMARKS) <= set(BENCHMARKS)
    assert BENCHMARKS["math"].hub is not None  # full MATH comes from the hub
    # Choice sets agree with the grader's; few-shot only for multiple-choice sets.
    assert {name for name, b in BENCHMARKS.items() if b.multiple_choice} == set(MULTIPLE_CHOICE_DATASETS)
    assert {name for name, b in BENCHMARKS.items() if b.multiple_choice is None} == set(MIXED_CHOICE_DATASETS)
    assert {name for name, b in BENCHMARKS.items() if b.few_shot == "always"} == {
        "mmlu_stem",
        "aqua",
        "sat_math",
    }


@pytest.mark.parametrize("name", [n for n in ISSUE_BENCHMARKS if n != "math"])
def test_every_row_of_every_file_has_a_gold_answer_and_a_question(data_dir: Path, name: str):
    problems = load_benchmark(name, data_dir=data_dir)
    rows = sum(1 for line in (data_dir / name / "test.jsonl").open(encoding="utf-8") if line.strip())
    assert len(problems) == rows
    assert all(problem.gold.strip() for problem in problems)
    assert all(problem.question.strip() for problem in problems)
    assert len({problem.id for problem in problems}) == rows  # ids are unique and stable
    policy = BENCHMARKS[name].few_shot
    for problem in problems:
        # The reference protocol's adapt_few_shot: 5-shot when the gold is one choice letter.
        single_letter = problem.gold in ("A", "B", "C", "D", "E")
        expected = policy == "always" or (policy == "choice_items" and single_letter)
        assert problem.shots == (MC_SHOTS if expected else 0), problem


def test_gsm8k_train_split_loads(data_dir: Path):
    problems = load_benchmark("gsm8k", data_dir=data_dir, split="train", limit=3)
    assert [p.id for p in problems] == ["gsm8k/train/0", "gsm8k/train/1", "gsm8k/train/2"]
    assert problems[0].gold == "72"


def test_ids_metadata_and_gold(data_dir: Path):
    gsm = load_benchmark("gsm8k", data_dir=data_dir, limit=2)
    assert gsm[0].id == "gsm8k/test/0" and gsm[0].gold == "18" and gsm[0].shots == 0
    math500 = load_benchmark("math500", data_dir=data_dir, limit=1)[0]
    assert math500.id == "math500/test/test/precalculus/807.json"
    assert math500.meta == {"level": 2, "subject": "Precalculus"} or math500.meta == {
        "level": "2",
        "subject": "Precalculus",
    }
    svamp = load_benchmark("svamp", data_dir=data_dir, limit=1)[0]
    assert svamp.question.startswith("There are 87 oranges") and ". How big is each group" in svamp.question
    assert "type" in svamp.meta


def test_multiple_choice_questions_list_their_choices(data_dir: Path):
    mmlu = load_benchmark("mmlu_stem", data_dir=data_dir, limit=1)[0]
    assert "\nAnswer Choices: (A) maintain the population" in mmlu.question
    assert " (D) increase the mortality rate" in mmlu.question
    assert mmlu.gold == "C" and mmlu.multiple_choice and mmlu.shots == MC_SHOTS
    sat = load_benchmark("sat_math", data_dir=data_dir, limit=1)[0]
    assert sat.question.endswith("Answer Choices: (A) $f(-6)=0$ (B) $f(6)=-6$ (C) $f(-6)=6$ (D) $f(0)=-6$")
    aqua = load_benchmark("aqua", data_dir=data_dir, limit=1)[0]
    assert "\nAnswer Choices: (A) 5(√3 + 1) (B) 6(√3 + √2)" in aqua.question and aqua.gold == "A"
    qa = load_benchmark("gaokao_math_qa", data_dir=data_dir, limit=1)[0]
    assert "\n选项: (A) $\\{x \\mid x>-1\\}$ (B)" in qa.question and qa.gold == "D"


def test_mixed_sets_are_few_shot_only_for_choice_items(data_dir: Path):
    problems = load_benchmark("gaokao2024_mix", data_dir=data_dir)
    choice = [p for p in problems if p.multiple_choice]
    free = [p for p in problems if not p.multiple_choice]
    assert choice and free
    assert all(p.shots == MC_SHOTS for p in choice) and all(p.shots == 0 for p in free)


def test_missing_file_names_the_path_and_the_flag(tmp_path: Path):
    with pytest.raises(MathforgeError) as caught:
        load_benchmark("aqua", data_dir=tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "aqua" / "test.jsonl") in message and "--data-dir" in message
    assert "\n" not in message
    with pytest.raises(MathforgeError, match="unknown benchmark 'nope'"):
        load_benchmark("nope", data_dir=tmp_path)


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_any_jsonl_with_a_field_map(tmp_path: Path):
    path = _write(
        tmp_path / "mine.jsonl",
        [
            {"problem": "1+1?", "solution": "So \\boxed{2}.", "difficulty": 1},
            {"problem": "2+2?", "solution": "4", "difficulty": 2, "uid": "x7"},
        ],
    )
    mapping = parse_field_map("question=problem,answer=solution,level=difficulty,id=uid")
    problems = load_problems_file(path, field_map=mapping)
    assert [p.id for p in problems] == ["mine/0", "mine/x7"]
    assert [p.gold for p in problems] == ["2", "4"]  # a boxed solution is reduced to its answer
    assert problems[1].meta == {"level": 2}
    assert load_problems(str(path), field_map=mapping, limit=1)[0].question == "1+1?"


def test_bad_rows_name_file_line_and_field(tmp_path: Path):
    path = _write(
        tmp_path / "bad.jsonl", [{"question": "ok", "answer": "1"}, {"question": "blank", "answer": " "}]
    )
    with pytest.raises(InputError) as caught:
        load_problems_file(path)
    assert str(caught.value) == (
        f"{path}:2: field 'answer': missing or empty (set --field-map answer=FIELD; "
        "this command needs a gold answer)"
    )
    listed = _write(tmp_path / "list.jsonl", [{"question": "ok", "answer": ["1", "2"]}])
    with pytest.raises(InputError, match=r"list\.jsonl:1: field 'answer': not a scalar"):
        load_problems_file(listed, require_gold=False)
    with pytest.raises(MathforgeError, match="expected NAME=FIELD"):
        parse_field_map("question")


def test_gold_is_optional_only_when_asked(tmp_path: Path):
    rows = [{"question": "Q1?"}, {"question": "Q2?", "answer": ""}, {"question": "Q3?", "answer": 4}]
    path = _write(tmp_path / "votes.jsonl", rows)
    problems = load_problems(str(path), require_gold=False)
    assert [(p.question, p.gold) for p in problems] == [("Q1?", ""), ("Q2?", ""), ("Q3?", "4")]
    out = tmp_path / "copy.jsonl"
    write_problems(problems, out)
    assert [p.gold for p in load_problems_file(out, require_gold=False)] == ["", "", "4"]
    with pytest.raises(InputError, match=r"votes\.jsonl:1: field 'answer': missing or empty"):
        load_problems(str(path))


def test_written_problems_load_back(tmp_path: Path):
    path = _write(tmp_path / "src.jsonl", [{"question": "Q?", "answer": "C", "level": 3}])
    problems = load_problems_file(path)
    out = tmp_path / "copy.jsonl"
    assert write_problems(problems, out) == 1
    again = load_problems_file(out)
    assert [(p.question, p.gold, p.meta) for p in again] == [("Q?", "C", {"level": 3})]


def test_bench_lists():
    assert split_bench_list("gsm8k, math500,gsm8k,") == ["gsm8k", "math500"]
    with pytest.raises(MathforgeError):
        split_bench_list(" , ")


def test_an_offline_hub_fails_at_once_with_the_data_dir_advice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mathforge.data import loaders

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaders.hub_reachable.cache_clear()
    try:
        with pytest.raises(MathforgeError, match=r"hub cannot be reached.*--data-dir"):
            loaders.load_benchmark("math", tmp_path)
    finally:
        loaders.hub_reachable.cache_clear()


def test_data_list_says_when_the_data_dir_is_missing(tmp_path: Path) -> None:
    import subprocess
    import sys

    command = [sys.executable, "-c", "from mathforge.cli import main; main()", "data", "list"]
    given = subprocess.run([*command, "--data-dir", str(tmp_path / "nope")], capture_output=True, text=True)
    assert given.returncode == 2 and "no such directory" in given.stderr
    env = {**os.environ, "MATHFORGE_DATA_DIR": str(tmp_path / "absent")}
    default = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert default.returncode == 0 and "does not exist" in default.stderr
