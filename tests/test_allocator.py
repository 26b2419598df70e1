"""jemalloc for long CPU runs: found where a package put it, preloaded into the loop's commands,
and left alone when the user says so; every branch forced with stand-in library folders."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from mathforge import allocator
from mathforge.allocator import ALLOCATOR_ENV, child_environment, find_jemalloc, long_run_hint

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD is Linux's")


def _library_in(folder: Path, name: str = "libjemalloc.so.2") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(b"")
    return folder / name


@linux_only
def test_the_first_folder_holding_jemalloc_wins(tmp_path: Path) -> None:
    empty, first, second = tmp_path / "empty", tmp_path / "first", tmp_path / "second"
    empty.mkdir()
    found = _library_in(first, "libjemalloc.so")
    _library_in(second)
    assert find_jemalloc([empty, first, second]) == found
    assert find_jemalloc([empty]) is None


@linux_only
def test_commands_get_jemalloc_first_in_ld_preload(tmp_path: Path) -> None:
    library = _library_in(tmp_path / "lib")
    env = child_environment({"LD_PRELOAD": "/opt/other.so", "PATH": "/bin"}, [tmp_path / "lib"])
    assert env["LD_PRELOAD"] == f"{library}:/opt/other.so" and env["PATH"] == "/bin"
    assert child_environment({}, [tmp_path / "lib"])["LD_PRELOAD"] == str(library)


@linux_only
def test_the_environment_is_left_alone_when_asked_preloaded_or_missing(tmp_path: Path) -> None:
    _library_in(tmp_path / "lib")
    mine = {ALLOCATOR_ENV: "system", "LD_PRELOAD": "/opt/other.so"}
    assert child_environment(mine, [tmp_path / "lib"]) == mine
    preloaded = {"LD_PRELOAD": "/elsewhere/libjemalloc.so.2"}
    assert child_environment(preloaded, [tmp_path / "lib"]) == preloaded
    (tmp_path / "none").mkdir()
    assert child_environment({"PATH": "/bin"}, [tmp_path / "none"]) == {"PATH": "/bin"}


@linux_only
def test_a_cpu_training_run_on_glibc_says_how_to_preload_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ALLOCATOR_ENV, raising=False)
    monkeypatch.setattr(allocator, "jemalloc_loaded", lambda: False)  # as in a process started on glibc
    library = _library_in(tmp_path / "lib")
    assert f"LD_PRELOAD={library}" in (long_run_hint([tmp_path / "lib"]) or "")
    (tmp_path / "none").mkdir()
    assert "apt install libjemalloc2" in (long_run_hint([tmp_path / "none"]) or "")
    monkeypatch.setenv(ALLOCATOR_ENV, "system")
    assert long_run_hint([tmp_path / "lib"]) is None


@linux_only
def test_a_process_knows_whether_it_runs_on_jemalloc() -> None:
    code = "from mathforge.allocator import jemalloc_loaded; print(jemalloc_loaded())"
    plain = child_environment(None, [])  # this environment, nothing added
    plain.pop("LD_PRELOAD", None)
    out = subprocess.run([sys.executable, "-c", code], env=plain, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    library = find_jemalloc()
    if library is None:
        pytest.skip("no jemalloc installed here (Debian/Ubuntu: libjemalloc2)")
    env = child_environment(plain)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


@linux_only
def test_the_loop_runs_its_commands_on_jemalloc_where_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from mathforge.loop import runner

    if torch.cuda.is_available():
        pytest.skip("the loop preloads jemalloc on CPU machines only")
    library = _library_in(tmp_path / "lib")
    monkeypatch.setattr(allocator, "library_dirs", lambda: [tmp_path / "lib"])
    monkeypatch.delenv(ALLOCATOR_ENV, raising=False)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    shown = io.StringIO()
    env = runner._child_environment(Console(file=shown, width=200))
    assert env is not None and env["LD_PRELOAD"] == str(library)
    assert "commands run on jemalloc" in shown.getvalue()
    monkeypatch.setenv(ALLOCATOR_ENV, "system")
    assert "LD_PRELOAD" not in (runner._child_environment(Console(file=io.StringIO())) or {})
