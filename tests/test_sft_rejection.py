"""Rejection sampling: labels (gold or majority vote), selection (RM top K or shortest distinct),
dropping truncated and looping responses, tool spans recovered, resume without resampling."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from mathforge.engines import Completion, SamplingParams
from mathforge.records import Execution, ProblemRecord, SampleRecord
from mathforge.sampling import Sampler, SamplingRunConfig
from mathforge.solve.code import output_block
from mathforge.train.records import SFTRecord
from mathforge.train.rejection import (
    RejectionConfig,
    RSSummary,
    is_degenerate,
    rejection_sample,
    sample_segments,
    select,
)


def _sample(text: str, correct: bool, group: int, tokens: int, **extra: Any) -> SampleRecord:
    return SampleRecord(
        response=text, answer=str(group), correct=correct, group=group, completion_tokens=tokens, **extra
    )


def _record(samples: list[SampleRecord], gold: str = "5") -> ProblemRecord:
    return ProblemRecord(id="p/1", benchmark="p", question="What is 2 + 3?", gold=gold, samples=samples)


def test_gold_labels_keep_k_distinct_correct_preferring_shorter() -> None:
    samples = [
        _sample("A long but correct answer: \\boxed{5}.", True, 0, 30),
        _sample("Short: \\boxed{5}.", True, 0, 10),
        _sample("Short:   \\boxed{5}.", True, 0, 10),  # the same text up to spaces
        _sample("Wrong: \\boxed{4}.", False, 1, 5),
        _sample("Cut off: \\boxed{5}", True, 0, 8, finish_reason="length"),
        _sample("Medium answer: \\boxed{5}.", True, 0, 20),
    ]
    summary = RSSummary()
    kept = select(_record(samples), "cot", 2, 0.5, summary)
    assert [r["response"] for r in kept] == ["Short: \\boxed{5}.", "Medium answer: \\boxed{5}."]
    assert summary.some_correct == 1 and summary.responses_kept == 2
    assert summary.dropped == {"truncated": 1, "duplicate": 1, "beyond --keep": 1}
    for line in kept:
        record = SFTRecord.from_dict(line)
        assert record.extra["problem_id"] == "p/1" and record.answer == "5"
        assert line["provenance"]["label"] == "gold"


def test_reward_model_scores_choose_the_top_k() -> None:
    samples = [
        _sample(f"Answer {i}: \\boxed{{5}}.", True, 0, i, rm_score=score)
        for i, score in enumerate([0.1, 0.9, 0.5])
    ]
    kept = select(_record(samples), "cot", 2, 0.5, RSSummary())
    assert [line["provenance"]["rm_score"] for line in kept] == [0.9, 0.5]


def test_majority_vote_pseudo_labels_only_above_min_vote() -> None:
    samples = [
        _sample("It is \\boxed{7}.", False, 0, 5),
        _sample("So \\boxed{7}.", False, 0, 4),
        _sample("Maybe \\boxed{8}.", False, 1, 4),
        _sample("No answer.", False, -1, 3),
    ]
    summary = RSSummary()
    kept = select(_record(samples, gold=""), "cot", 4, 0.5, summary)
    assert [line["response"] for line in kept] == ["So \\boxed{7}.", "It is \\boxed{7}."]
    assert all(
        line["provenance"]["label"] == "vote" and line["provenance"]["vote_share"] == 0.5 for line in kept
    )
    assert summary.pseudo_labelled == 1
    strict = RSSummary()
    assert select(_record(samples, gold=""), "cot", 4, 0.75, strict) == [] and strict.no_majority == 1


def test_looping_responses_are_degenerate() -> None:
    assert is_degenerate("We add 2 and 3 to get 5.\n" * 6)
    assert is_degenerate("Step: " + "1 + 1 = 2, " * 200)
    assert not is_degenerate("We add 2 and 3.\nThat gives 5.\nSo the answer is \\boxed{5}.")
    summary = RSSummary()
    assert (
        select(_record([_sample("x = 5 so far\n" * 6 + "\\boxed{5}", True, 0, 50)]), "cot", 1, 0.5, summary)
        == []
    )
    assert summary.dropped == {"degenerate (repetitive)": 1}


def test_tool_spans_are_recovered_from_executions() -> None:
    first = "```python\nprint(2 + 3)\n```\n"
    tool = output_block("5", first)
    response = first + tool + "So \\boxed{5}."
    sample = _sample(response, True, 0, 9, executions=[Execution(code="print(2 + 3)\n", output="5")])
    assert sample_segments(sample) == [
        {"kind": "model", "start": 0, "end": len(first)},
        {"kind": "tool", "start": len(first), "end": len(first) + len(tool)},
        {"kind": "model", "start": len(first) + len(tool), "end": len(response)},
    ]
    wrong = _sample(response, True, 0, 9, executions=[Execution(code="print(2 + 3)\n", output="6")])
    assert sample_segments(wrong) is None


PROBLEMS = [
    {"question": "What is 2 + 3?", "answer": "5"},
    {"question": "What is 7 - 7?", "answer": "0"},
    {"question": "What is 4 * 2?", "answer": "8"},
]


class CodingEngine:
    """TIR: writes code printing the gold answer (even samples) or a wrong one, then boxes the output."""

    tokenizer = None

    def __init__(self) -> None:
        self.calls = 0

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        self.calls += 1
        golds = {problem["question"]: problem["answer"] for problem in PROBLEMS}
        groups = []
        for prompt in prompts:
            if "```output" in prompt:  # a later round: conclude from the output just shown
                shown = prompt.rsplit("```output\n", 1)[1].split("\n", 1)[0]
                groups.append([Completion(f"The answer is $\\boxed{{{shown}}}$.", [], "eos")] * params.n)
                continue
            gold = next(answer for question, answer in golds.items() if question in prompt)
            codes = [f"print({gold if i % 2 == 0 else 99})" for i in range(params.n)]
            groups.append(
                [Completion(f"```python\n{code}\n```\n", [], "stop", "```output") for code in codes]
            )
        return groups


def test_end_to_end_tir_sampling_resumes_and_reselects_without_sampling(tmp_path: Path) -> None:
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS), encoding="utf-8")
    config = RejectionConfig(model="scripted", benches=[str(problems)], mode="tir", n=4, seed=0, keep=1)
    engine = CodingEngine()

    def sampler(cfg: SamplingRunConfig) -> Sampler:
        from mathforge.sandbox import Sandbox

        return Sampler(cfg, engine, Sandbox())

    out = tmp_path / "rs.jsonl"
    summary = rejection_sample(config, out, sampler=sampler)
    assert summary.problems == 3 and summary.some_correct == 3 and summary.responses_kept == 3
    lines = [json.loads(line) for line in out.open()]
    for line in lines:
        record = SFTRecord.from_dict(line)
        assert [s.kind for s in record.segments] == ["model", "tool", "model"]
        tool = record.segments[1]
        assert record.response[tool.start : tool.end] == f"```output\n{line['answer']}\n```\n"
        assert line["prompt"][0]["role"] == "system"
    calls = engine.calls
    again = rejection_sample(config.model_copy(update={"keep": 2}), out, sampler=sampler)
    assert engine.calls == calls  # every sample was stored: reselecting samples nothing
    assert again.responses_kept == 3  # the two correct samples of each problem print the same code
    assert again.dropped["duplicate"] == 3
    assert json.loads(out.with_name("rs.summary.json").read_text())["responses_kept"] == 3


class VotingEngine:
    """CoT: the same answer in every sample of 'What is 2 + 3?', a different one in each sample
    of 'Name a number.', and 8 in even samples of 'What is 4 * 2?'."""

    tokenizer = None

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        groups = []
        for prompt in prompts:
            answers = [
                5 if "2 + 3" in prompt else 8 if i % 2 == 0 and "4 * 2" in prompt else i
                for i in range(params.n)
            ]
            groups.append(
                [Completion(f"Try {i}: $\\boxed{{{a}}}$.", [], "eos") for i, a in enumerate(answers)]
            )
        return groups


def test_a_problems_file_without_answers_is_labelled_by_vote(tmp_path: Path) -> None:
    rows = [
        {"question": "What is 2 + 3?"},
        {"question": "Name a number."},
        {"question": "What is 4 * 2?", "answer": 8},
    ]
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    config = RejectionConfig(model="scripted", benches=[str(problems)], mode="cot", n=4, keep=2)
    out = tmp_path / "rs.jsonl"
    summary = rejection_sample(config, out, sampler=lambda cfg: Sampler(cfg, VotingEngine()))
    assert (summary.problems, summary.pseudo_labelled, summary.no_majority) == (3, 1, 1)
    assert (summary.all_correct, summary.some_correct, summary.problems_kept) == (1, 1, 2)
    lines = [json.loads(line) for line in out.open()]
    assert [(line["problem_id"], line["answer"], line["provenance"]["label"]) for line in lines] == [
        ("problems/0", "5", "vote"),
        ("problems/0", "5", "vote"),
        ("problems/2", "8", "gold"),
        ("problems/2", "8", "gold"),
    ]
    assert lines[0]["provenance"]["vote_share"] == 1.0
    stored = [json.loads(line) for line in (tmp_path / "rs.samples" / "samples.jsonl").open()]
    assert {sample["reason"] for sample in stored[0]["samples"]} == {"no_gold"}


def test_cli_rs_labels_a_file_without_answers_that_eval_and_rm_data_refuse(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from mathforge.cli import app
    from mathforge.errors import InputError
    from mathforge.reward.collect import build_rm_data

    problems = tmp_path / "open.jsonl"
    questions = ["What is 2 + 3?", "What is 7 times 6?", "How many legs do 3 spiders have?"]
    problems.write_text("".join(json.dumps({"question": q}) + "\n" for q in questions), encoding="utf-8")
    common = ["--model", str(tiny_model_dir), "--mode", "cot", "--max-new-tokens", "8"]
    common += ["--data-dir", str(tmp_path / "no-benchmarks")]
    out = tmp_path / "rs.jsonl"
    result = CliRunner().invoke(
        app, ["rs", "--problems", str(problems), *common, "--n", "2", "--temperature", "0", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "rs.summary.json").read_text())
    assert summary["problems"] == 3
    assert summary["pseudo_labelled"] + summary["no_majority"] == 3
    assert (
        summary["all_correct"] + summary["some_correct"] + summary["none_correct"]
        == summary["pseudo_labelled"]
    )
    counts = f"{summary['pseudo_labelled']} / {summary['no_majority']}"
    assert re.search(rf"pseudo-labelled by vote / no majority\s*│\s*{counts}\s*│", result.output)
    stored = [json.loads(line) for line in (tmp_path / "rs.samples" / "samples.jsonl").open()]
    assert {s["reason"] for record in stored for s in record["samples"]} <= {"no_gold", "no_answer"}

    message = (
        f"{problems}:1: field 'answer': missing or empty (set --field-map answer=FIELD; "
        "this command needs a gold answer)"
    )
    result = CliRunner().invoke(
        app, ["eval", "--bench", str(problems), *common, "-o", str(tmp_path / "eval")]
    )
    assert isinstance(result.exception, InputError) and str(result.exception) == message
    assert not (tmp_path / "eval").exists()
    config = SamplingRunConfig(model=str(tiny_model_dir), benches=[str(problems)], n=2)
    with pytest.raises(InputError) as caught:
        build_rm_data(config, tmp_path / "rm.jsonl")
    assert str(caught.value) == message
