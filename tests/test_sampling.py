"""The sampling layer: one config for every sampling command, chunk seeds, resume, progress in logs."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console

import mathforge.cli.eval
import mathforge.cli.rm  # noqa: F401  (registers the commands)
from mathforge.cli import main
from mathforge.cli.app import app
from mathforge.cli.options import cli_fields, flag
from mathforge.engines import Completion, SamplingParams
from mathforge.sampling import Sampler, SamplingRunConfig, chunk_seed, open_run, sample_run
from mathforge.sampling import run as sampling_run


class RecordingEngine:
    """Boxes the question's first number; records the seed of every call; optionally slow."""

    tokenizer = None

    def __init__(self, delay: float = 0.0) -> None:
        self.seeds: list[int | None] = []
        self.delay = delay

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        self.seeds.append(params.seed)
        time.sleep(self.delay)
        return [[Completion("\\boxed{1}", [], "eos")] * params.n for _ in prompts]


def _problems(path: Path, count: int) -> Path:
    path.write_text("".join(json.dumps({"question": f"q{i}", "answer": "1"}) + "\n" for i in range(count)))
    return path


def _options(command: Any) -> set[str]:
    return {name for param in command.params for name in getattr(param, "opts", [])}


def test_every_sampling_command_takes_the_same_sampling_options():
    group: Any = typer.main.get_command(app)
    eval_command = group.commands["eval"]
    rm_group = group.commands["rm"]
    expected = {flag(name, info) for name, info in cli_fields(SamplingRunConfig).items()}
    assert "--shots" in expected and "--dtype" in expected
    for command in (eval_command, rm_group.commands["data"]):
        missing = expected - _options(command)
        assert not missing, f"{command.name} lacks {sorted(missing)}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n", "0"], "--n: Input should be greater than or equal to 1"),
        (["--limit", "0"], "--limit: Input should be greater than or equal to 1"),
        (["--max-new-tokens", "-2"], "--max-new-tokens: Input should be greater than or equal to 1"),
        (["--mode", "pot"], "--mode: Input should be 'cot' or 'tir'"),
    ],
)
def test_bad_sampling_values_are_one_line_errors(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    for command in (["eval"], ["rm", "data"]):
        out = tmp_path / "out"
        monkeypatch.setattr(
            "sys.argv", ["mathforge", *command, "--bench", "generated", *args, "--out", str(out)]
        )
        with pytest.raises(SystemExit) as caught:
            main()
        assert caught.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines
        assert not out.exists()


def test_chunk_seeds_depend_only_on_the_run_seed_and_position(tmp_path: Path):
    config = SamplingRunConfig(
        model="scripted", benches=[str(_problems(tmp_path / "p.jsonl", 6))], chunk_size=2
    )
    whole = RecordingEngine()
    run, problems = open_run(config, tmp_path / "whole", check_model=False)
    sample_run(
        config, run, problems, sampler=lambda cfg: Sampler(cfg, whole), console=Console(file=io.StringIO())
    )
    assert whole.seeds == [chunk_seed(0, "p", index) for index in range(3)]

    # A run whose first two problems (chunk 0) are done samples chunks 1 and 2 with the same seeds.
    partial = tmp_path / "partial"
    first = config.model_copy(update={"limit": 2})
    run, problems = open_run(first, partial, check_model=False)
    sample_run(
        first,
        run,
        problems,
        sampler=lambda cfg: Sampler(cfg, RecordingEngine()),
        console=Console(file=io.StringIO()),
    )
    resumed = RecordingEngine()
    run, problems = open_run(config, partial, check_model=False)
    records = sample_run(
        config, run, problems, sampler=lambda cfg: Sampler(cfg, resumed), console=Console(file=io.StringIO())
    )
    assert resumed.seeds == whole.seeds[1:] and len(records) == 6


def test_a_log_gets_a_line_every_few_seconds_of_work_and_says_what_is_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(sampling_run, "HEARTBEAT_SECONDS", 0.05)
    config = SamplingRunConfig(
        model="scripted", benches=[str(_problems(tmp_path / "p.jsonl", 4))], chunk_size=2
    )
    log = io.StringIO()
    first = config.model_copy(update={"limit": 2})
    run, problems = open_run(first, tmp_path / "run", check_model=False)
    sample_run(
        first,
        run,
        problems,
        sampler=lambda cfg: Sampler(cfg, RecordingEngine(0.4)),
        console=Console(file=log),
    )
    lines = log.getvalue().splitlines()
    beats = [line for line in lines if "sampling 1-2" in line and "elapsed" in line]
    assert len(beats) >= 3, lines  # while the 0.4 s chunk ran, not only after it
    assert lines[-1].startswith("p (cot): 2/2 problems")

    log = io.StringIO()
    run, problems = open_run(config, tmp_path / "run", check_model=False)
    sample_run(
        config, run, problems, sampler=lambda cfg: Sampler(cfg, RecordingEngine()), console=Console(file=log)
    )
    assert f"resuming {tmp_path / 'run'}: 2 of 4 problems done" in log.getvalue()
