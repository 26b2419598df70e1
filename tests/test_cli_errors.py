"""User mistakes on the command line end in one red line and exit code 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BINARY = bytes(range(128, 256)) * 3 + b"\n" + bytes(range(200, 256))


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from mathforge.cli import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=120, check=False)


def _assert_one_line_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    "command",
    [["grade"], ["exec"], ["eval", "--out", "run", "--bench"]],
    ids=["grade", "exec", "eval"],
)
def test_a_binary_input_file_is_a_located_error(command: list[str], tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_bytes(BINARY)
    done = _run(*command, "in.jsonl", cwd=tmp_path)
    _assert_one_line_error(done, "in.jsonl:1", "not UTF-8")
    assert not (tmp_path / "run").exists()


def test_binary_lines_are_skipped_and_counted_with_skip_bad(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_bytes(BINARY + b'\n{"response": "\\\\boxed{2}", "gold": "2"}\n')
    done = _run("grade", "in.jsonl", "--skip-bad", "-o", "out.jsonl", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert '"bad_lines": 2' in done.stdout
    graded = (tmp_path / "out.jsonl").read_text().splitlines()
    assert len(graded) == 1 and '"correct": true' in graded[0]


@pytest.mark.parametrize(
    ("option", "value"), [("--n", "0"), ("--n", "-2"), ("--limit", "0"), ("--max-new-tokens", "0")]
)
def test_out_of_range_settings_are_one_line_errors(option: str, value: str, tmp_path: Path) -> None:
    done = _run("eval", "--bench", "generated", option, value, "--out", "run", cwd=tmp_path)
    _assert_one_line_error(done, option, "greater than")
    assert not (tmp_path / "run").exists()


def test_an_output_path_that_is_a_directory_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"response": "\\\\boxed{2}", "gold": "2"}\n')
    (tmp_path / "out").mkdir()
    done = _run("grade", "in.jsonl", "-o", "out", cwd=tmp_path)
    _assert_one_line_error(done, "out", "directory")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full (writes to it fail: disk full)")
def test_a_full_disk_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"response": "\\\\boxed{2}", "gold": "2"}\n')
    done = _run("grade", "in.jsonl", "-o", "/dev/full", cwd=tmp_path)
    _assert_one_line_error(done, "the disk is full", "rerun the same command")
