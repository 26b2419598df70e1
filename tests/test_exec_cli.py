"""`mathforge exec` end to end: code and cells lines, summary, bad input, resume, Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMAND = [sys.executable, "-c", "from mathforge.cli import main; main()", "exec"]


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *map(str, args)], capture_output=True, text=True, cwd=REPO, timeout=300)


def _write(path: Path, lines: list[dict | str]) -> Path:
    path.write_text(
        "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8"
    )
    return path


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_code_and_cells_lines(tmp_path: Path) -> None:
    source = _write(
        tmp_path / "in.jsonl",
        [
            {"id": "a", "code": "print(6 * 7)"},
            {"code": "1 / 0", "meta": "kept"},
            {"id": "s", "cells": ["x = 41", "print(x + 1)", "while True:\n    pass", "print(x)"]},
        ],
    )
    result = _run(source, "--timeout", "1", "--workers", "2")
    assert result.returncode == 0, result.stderr
    rows = {row["id"]: row for row in _read(tmp_path / "in.exec.jsonl")}
    assert rows["a"]["status"] == "ok" and rows["a"]["stdout"] == "42\n" and rows["a"]["error"] is None
    assert rows["2"]["status"] == "error" and rows["2"]["error"] == "ZeroDivisionError: division by zero"
    assert rows["2"]["meta"] == "kept" and rows["2"]["wall_ms"] > 0
    session = rows["s"]
    assert session["status"] == ["ok", "ok", "timeout", "ok"]
    assert session["stdout"] == ["", "42\n", "", "41\n"]
    assert session["reset"] == [False, False, True, False]
    assert len(session["wall_ms"]) == len(session["error"]) == 4
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["lines"], summary["executions"], summary["ok"], summary["error"], summary["timeout"]) == (
        3,
        6,
        4,
        1,
        1,
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": 1}', "needs exactly one of 'code'"),
        ('{"code": "1", "cells": ["2"]}', "needs exactly one of 'code'"),
        ('{"code": 5}', "field 'code': must be a string"),
        ('{"cells": []}', "field 'cells': must be a non-empty list of strings"),
        ('{"cells": ["x", 3]}', "field 'cells': must be a non-empty list of strings"),
        ('{"code": "1"', "not valid JSON"),
    ],
)
def test_bad_lines_stop_with_one_line_naming_file_line_and_field(
    tmp_path: Path, line: str, message: str
) -> None:
    source = _write(tmp_path / "in.jsonl", [{"code": "print(1)"}, line])
    result = _run(source)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"{source}:2:" in result.stderr and message in result.stderr
    assert not (tmp_path / "in.exec.jsonl").exists()  # nothing ran


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    source = _write(tmp_path / "in.jsonl", [{"id": "x", "code": "1"}, {"id": "x", "code": "2"}])
    result = _run(source)
    assert result.returncode == 2 and "duplicate id 'x'" in result.stderr


def test_resume_after_a_torn_last_line(tmp_path: Path) -> None:
    source = _write(tmp_path / "in.jsonl", [{"id": i, "code": f"print({i} ** 2)"} for i in range(6)])
    out = tmp_path / "out.jsonl"
    assert _run(source, "-o", out).returncode == 0
    complete = {row["id"]: row["stdout"] for row in _read(out)}
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text("".join(lines[:2]) + lines[2][:10], encoding="utf-8")
    result = _run(source, "-o", out)
    assert result.returncode == 0, result.stderr
    assert "resuming: 2 of 6" in result.stderr
    assert {row["id"]: row["stdout"] for row in _read(out)} == complete


def test_ctrl_c_keeps_finished_lines_and_a_rerun_completes(tmp_path: Path) -> None:
    rows = [{"id": i, "code": f"import time\ntime.sleep(0.3)\nprint({i})"} for i in range(12)]
    source = _write(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    command = [*COMMAND, str(source), "-o", str(out), "--workers", "1"]
    process = subprocess.Popen(
        command,
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # As from a terminal: a suite run as a background job would pass SIGINT on ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 2):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "rerun the same command to resume" in stderr
    partial = _read(out)
    assert 2 <= len(partial) < 12 and all(row["status"] == "ok" for row in partial)
    assert _run(source, "-o", out, "--workers", "2").returncode == 0
    rows = _read(out)
    assert sorted(row["id"] for row in rows) == list(range(12))
    assert all(row["stdout"] == f"{row['id']}\n" for row in rows)


def test_output_keeps_input_order_however_lines_finish(tmp_path: Path) -> None:
    """A slow first line finishes last, yet the output (and a resumed run's) follows the input."""
    from mathforge.sandbox import run_file

    lines = [{"id": "slow", "code": "import time\ntime.sleep(0.6)\nprint('slow')"}]
    lines += [{"id": f"fast{i}", "code": f"print({i})"} for i in range(5)]
    source = _write(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    summary = run_file(source, out, workers=3, timeout=5)
    assert [row["id"] for row in _read(out)] == [line["id"] for line in lines]
    assert (summary["lines"], summary["ok"], summary["resumed"]) == (6, 6, 0)
    assert _read(out)[0]["stdout"] == "slow\n"

    out.write_text("".join(json.dumps(row) + "\n" for row in _read(out)[:2]), encoding="utf-8")
    again = run_file(source, out, workers=3, timeout=5)
    assert (again["lines"], again["resumed"]) == (4, 2)
    assert [row["id"] for row in _read(out)] == [line["id"] for line in lines]


def test_an_empty_input_is_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("\n", encoding="utf-8")
    result = _run(source)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {source}: no lines to run (the file is empty)"
    assert not (tmp_path / "in.exec.jsonl").exists() and str(tmp_path / "in.exec.jsonl") not in result.stdout
