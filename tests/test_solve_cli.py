"""`mathforge solve`: JSON output, the readable rendering, one-line errors; the embedded model end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from mathforge.cli.app import app
from mathforge.cli.solve import _render
from mathforge.solve import Trajectory

MATHFORGE = [sys.executable, "-c", "from mathforge.cli import main; main()"]


def test_solve_json_with_a_model_directory(tiny_model_dir: Path) -> None:
    args = ["solve", "What is 2 + 2?", "--model", str(tiny_model_dir), "--max-new-tokens", "6"]
    result = CliRunner().invoke(app, [*args, "--dtype", "float32", "--json", "-n", "2", "--temperature", "1"])
    assert result.exit_code == 0, result.output
    trajectories = [Trajectory.from_dict(item) for item in json.loads(result.stdout)]
    assert len(trajectories) == 2
    assert all(t.completion_tokens == 6 and t.finish_reason == "length" for t in trajectories)
    assert "What is 2 + 2?" in trajectories[0].prompt


def test_rendering_highlights_code_and_outputs() -> None:
    trajectory = Trajectory(prompt="p", answer="42", finish_reason="eos")
    trajectory.add("model", "Compute it.\n```python\nprint(6 * 7)\n```\n", [1, 2])
    trajectory.add("tool", "```output\n42\n```\n", [3])
    trajectory.add("model", "So $\\boxed{42}$.", [4])
    trajectory.executions.append({"code": "print(6 * 7)\n", "output": "42"})
    trajectory.completion_tokens = 3
    console = Console(record=True, width=80)
    console.print(_render(trajectory, 1, 1))
    text = console.export_text()
    assert "Compute it." in text and "print(6 * 7)" in text and "```" not in text
    assert "─ output" in text and "│ 42" in text
    assert "answer: 42 · finish: eos · 3 tokens · 1 execution " in text


def test_bad_mode_is_one_line_before_loading_anything() -> None:
    done = subprocess.run(
        [*MATHFORGE, "solve", "q", "--mode", "pal"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "error: unknown solve mode 'pal': use one of cot, tir"


@pytest.mark.slow
def test_embedded_model_end_to_end(embedded_dir: Path) -> None:
    # The done-criterion of the solving stage: TIR on the embedded model from the command line.
    question = "What is the sum of the roots of x^2 - 5x + 6 = 0?"
    done = subprocess.run(
        [*MATHFORGE, "solve", question, "--mode", "tir", "--max-new-tokens", "256", "--json"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [trajectory] = [Trajectory.from_dict(item) for item in json.loads(done.stdout)]
    assert trajectory.response.strip()
    assert 0 < trajectory.completion_tokens <= 256
    assert trajectory.finish_reason in ("eos", "length", "stop", "max_calls")
    assert "Please integrate natural language reasoning with programs" in trajectory.prompt
    readable = subprocess.run(
        [*MATHFORGE, "solve", "What is 15 + 27?", "--max-new-tokens", "64"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert readable.returncode == 0, readable.stderr
    assert "answer:" in readable.stdout and "finish:" in readable.stdout
