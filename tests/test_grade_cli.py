"""`mathforge grade` end to end: outputs, summary, bad lines, resume, worker processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from mathforge.cli import app
from mathforge.errors import InputError

REPO = Path(__file__).resolve().parents[1]
ROWS = [
    {"id": "a", "response": "9 * 2 = 18 dollars.\n#### 18", "gold": "18"},
    {"id": "b", "response": "so \\boxed{3}... no: \\boxed{\\frac{1}{2}}", "gold": "0.5"},
    {"id": "c", "pred": "x<5", "gold": "x>5"},
    {"id": "d", "response": "The answer is (B).", "gold": "B", "dataset": "mmlu_stem"},
    {"id": "e", "response": "I cannot tell.", "gold": "7"},
    {"id": "f", "pred": "\\frac{1}{\\sqrt3}", "gold": "\\frac{\\sqrt{3}}{3}"},
]


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The installed entry point in a fresh process (exit codes, one-line errors, worker pools)."""
    command = [sys.executable, "-c", "from mathforge.cli import main; main()", "grade", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)


def _invoke(*args: str | Path) -> Result:
    """The command in this process (fast; errors come back as ``result.exception``)."""
    return CliRunner().invoke(app, ["grade", *map(str, args)])


def _write(path: Path, rows: list[dict], extra_lines: dict[int, str] | None = None) -> Path:
    lines = [json.dumps(row) for row in rows]
    for index, raw in sorted((extra_lines or {}).items()):
        lines.insert(index, raw)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _summary(result: subprocess.CompletedProcess[str] | Result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_grade_writes_rows_and_summary(tmp_path: Path) -> None:
    source = _write(tmp_path / "in.jsonl", ROWS)
    out = tmp_path / "out.jsonl"
    summary_file = tmp_path / "summary.json"
    result = _run(source, "-o", out, "--summary-json", summary_file)
    assert result.returncode == 0, result.stderr
    graded = _read(out)
    assert [row["id"] for row in graded] == ["a", "b", "c", "d", "e", "f"]
    assert [row["correct"] for row in graded] == [True, True, False, True, False, True]
    assert [row["pred"] for row in graded] == ["18", "\\frac{1}{2}", "x<5", "B", None, "\\frac{1}{\\sqrt3}"]
    assert graded[0]["response"] == ROWS[0]["response"]  # the input row is kept
    summary = _summary(result)
    assert summary == json.loads(summary_file.read_text())
    assert (summary["rows"], summary["correct"], summary["empty_extractions"], summary["timeouts"]) == (
        6,
        4,
        1,
        0,
    )
    assert summary["accuracy"] == pytest.approx(4 / 6, abs=1e-4)
    assert "accuracy" in result.stdout and "empty extractions" in result.stdout


def test_default_output_and_dataset_option(tmp_path: Path) -> None:
    source = _write(tmp_path / "choices.jsonl", [{"response": "I pick (C)", "gold": "C"}])
    result = _invoke(source, "--dataset", "aqua")
    assert result.exit_code == 0, result.output
    graded = _read(tmp_path / "choices.graded.jsonl")
    assert graded == [
        {"response": "I pick (C)", "gold": "C", "line": 1, "pred": "C", "correct": True, "reason": "exact"}
    ]


def test_malformed_line_stops_with_a_one_line_error(tmp_path: Path) -> None:
    source = _write(tmp_path / "in.jsonl", ROWS[:3], extra_lines={2: "{not json"})
    out = tmp_path / "out.jsonl"
    result = _run(source, "-o", out)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if line.strip()]
    assert error == [
        f"error: {source}:3: not valid JSON (Expecting property name enclosed in double quotes at column 2)"
    ]
    assert [row["id"] for row in _read(out)] == ["a", "b"]  # rows before the bad line are kept


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"id": 1, "response": "5"}, "in.jsonl:1: field 'gold': missing"),
        ({"id": 1, "gold": "5"}, "in.jsonl:1: needs a 'response' (model output) or a 'pred'"),
        (
            {"id": 1, "gold": "5", "response": ["5"]},
            "in.jsonl:1: field 'response': expected a string, got list",
        ),
        ({"id": 1, "gold": {"v": 5}, "pred": "5"}, "in.jsonl:1: field 'gold': expected a string or number"),
    ],
)
def test_invalid_rows_name_line_and_field(tmp_path: Path, row: dict, message: str) -> None:
    result = _invoke(_write(tmp_path / "in.jsonl", [row]), "-o", tmp_path / "out.jsonl")
    assert isinstance(result.exception, InputError)
    assert message in str(result.exception)


def test_skip_bad_counts_and_continues(tmp_path: Path) -> None:
    source = _write(tmp_path / "in.jsonl", [*ROWS[:2], {"id": "x", "gold": "1"}], extra_lines={1: "[1, 2]"})
    result = _invoke(source, "-o", tmp_path / "out.jsonl", "--skip-bad")
    assert result.exit_code == 0, result.output
    summary = _summary(result)
    assert (summary["rows"], summary["bad_lines"]) == (2, 2)
    assert "skipped:" in result.output and ":2: expected a JSON object" in result.output


def test_resume_after_interruption(tmp_path: Path) -> None:
    source = _write(tmp_path / "in.jsonl", ROWS)
    out = tmp_path / "out.jsonl"
    assert _invoke(source, "-o", out).exit_code == 0
    complete = _read(out)
    # keep two finished rows and half of a third, as a crash would
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text("".join(lines[:2]) + lines[2][:15], encoding="utf-8")
    result = _invoke(source, "-o", out)
    assert result.exit_code == 0, result.output
    assert _read(out) == complete
    summary = _summary(result)
    assert (summary["rows"], summary["resumed"], summary["correct"]) == (6, 2, 4)


def test_worker_processes_give_the_same_output(tmp_path: Path) -> None:
    # no row needs sympy, so the two worker processes start fast
    numeric = [row for row in ROWS if row["id"] not in ("f",)]
    rows = [{**row, "id": f"{row['id']}{i}"} for i in range(12) for row in numeric]
    source = _write(tmp_path / "in.jsonl", rows)
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    assert _invoke(source, "-o", one).exit_code == 0
    result = _run(source, "-o", two, "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert _read(one) == _read(two)


def test_demo_file(tmp_path: Path) -> None:
    demo = REPO / "examples" / "grade_demo.jsonl"
    result = _invoke(demo, "-o", tmp_path / "demo.jsonl")
    assert result.exit_code == 0, result.output
    summary = _summary(result)
    assert summary["rows"] == len(_read(demo))
    assert summary["bad_lines"] == 0 and summary["timeouts"] == 0
    assert 0 < summary["correct"] < summary["rows"]  # the demo shows right and wrong answers


def test_grade_file_from_python_matches_the_command(tmp_path: Path) -> None:
    from mathforge.answers import grade_file

    source = _write(tmp_path / "in.jsonl", ROWS)
    summary = grade_file(source, tmp_path / "py.jsonl")
    assert _invoke(source, "-o", tmp_path / "cli.jsonl").exit_code == 0
    assert _read(tmp_path / "py.jsonl") == _read(tmp_path / "cli.jsonl")
    assert (summary["rows"], summary["correct"], summary["output"]) == (6, 4, str(tmp_path / "py.jsonl"))


def test_an_empty_input_is_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("", encoding="utf-8")
    result = _run(source)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {source}: no rows to grade (the file is empty)"
    assert not (tmp_path / "in.graded.jsonl").exists()
