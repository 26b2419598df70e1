"""`mathforge rm data`: sampling through the sampling layer, labelling, pair filtering, resume."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

pytest.importorskip("torch")

from typer.testing import CliRunner

import mathforge.cli.rm  # noqa: F401  (registers `rm` on the app)
from mathforge.cli.app import app
from mathforge.engines import Completion, SamplingParams
from mathforge.reward.collect import build_rm_data, default_run_dir
from mathforge.reward.records import read_groups
from mathforge.sampling import Sampler, SamplingRunConfig
from test_reward_model import build_base_model

PROBLEMS = [
    {"question": "What is 2 + 3?", "answer": "5"},
    {"question": "What is 7 - 7?", "answer": "0"},
    {"question": "What is 4 * 2?", "answer": "8"},
]


class AlternatingEngine:
    """Boxes the gold answer in even samples and 0 in odd ones; counts the prompts it was asked."""

    tokenizer = None

    def __init__(self) -> None:
        self.prompts_seen = 0

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        self.prompts_seen += len(prompts)
        golds = {problem["question"]: problem["answer"] for problem in PROBLEMS}
        groups = []
        for prompt in prompts:
            gold = next(answer for question, answer in golds.items() if question in prompt)
            texts = [f"The answer is \\boxed{{{gold if i % 2 == 0 else 0}}}." for i in range(params.n)]
            groups.append([Completion(text, [], "eos") for text in texts])
        return groups


def test_rm_data_keeps_problems_with_a_pair_and_resumes(tmp_path: Path) -> None:
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps(problem) + "\n" for problem in PROBLEMS))
    config = SamplingRunConfig(model="scripted", benches=[str(problems)], n=4, chunk_size=2)
    engine = AlternatingEngine()
    out = tmp_path / "rm_data.jsonl"
    summary = build_rm_data(config, out, sampler=lambda cfg: Sampler(cfg, engine))
    # 7 - 7 = 0: every sample is right, so that problem has no pair
    assert (summary.problems, summary.pairable, summary.all_correct, summary.all_wrong) == (3, 2, 1, 0)
    groups = read_groups(out)
    assert [group.id for group in groups] == ["problems/0", "problems/2"]
    assert groups[0].correct == [True, False, True, False]
    assert "What is 2 + 3?" in groups[0].prompt
    assert groups[0].responses[1] == "The answer is \\boxed{0}."
    assert (default_run_dir(out) / "samples.jsonl").is_file()

    engine.prompts_seen = 0
    again = build_rm_data(config, out, sampler=lambda cfg: Sampler(cfg, engine))
    assert engine.prompts_seen == 0 and again == summary


def test_rm_data_cli_samples_with_a_real_engine(tmp_path: Path) -> None:
    """A tiny random model through the hf engine: every problem is sampled, labelled and counted once."""
    base = build_base_model(tmp_path / "base")
    out = tmp_path / "rm_data.jsonl"
    args = ["rm", "data", "--model", str(base), "--bench", "generated", "--gen-n", "3", "--n", "2"]
    args += ["--max-new-tokens", "6", "--dtype", "float32", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "rm_data.summary.json").read_text())
    assert (summary["problems"], summary["responses"]) == (3, 6)
    assert summary["pairable"] + summary["all_correct"] + summary["all_wrong"] == 3
    groups = read_groups(out)
    assert len(groups) == summary["pairable"] and all(group.has_pair for group in groups)
    assert "skipped: all wrong" in result.output
