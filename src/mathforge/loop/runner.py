"""Run a loop's stages in order into a run directory, resuming where a previous run stopped.

Each command runs as its own process (``python -m mathforge ...``, or under the configured
launcher for training), so memory is returned between stages, a training stage can run
data-parallel, and what the loop ran can be rerun by hand from ``stage.json``. The loop itself
only decides what to run: a finished stage whose fingerprint is unchanged is skipped, an
unfinished one resumes, a changed one reruns and the reason is printed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from mathforge.console import stderr_console
from mathforge.errors import MathforgeError
from mathforge.loop.config import LoopConfig
from mathforge.loop.stages import PROBLEMS_FILE, Command, Stage, build_stages
from mathforge.loop.state import StageState, changed_settings, digest, file_digest, log_event
from mathforge.runs import prune_checkpoints

CONFIG_FILE = "loop.yaml"
TIME_RECORD_SECONDS = 60.0


@dataclass
class StageStatus:
    """Where a stage stands before running: ``done``, ``changed`` (with why), ``partial`` or ``pending``."""

    stage: Stage
    fingerprint: str
    state: StageState | None
    status: str
    why: str = ""


class Loop:
    """The stages of ``config`` bound to ``run_dir``."""

    def __init__(self, config: LoopConfig, run_dir: str | Path, console: Console | None = None) -> None:
        self.config = config
        self.run_dir = Path(run_dir).resolve()
        self.console = console or stderr_console()
        self.stages = build_stages(config, self.run_dir)
        self.by_name = {stage.name: stage for stage in self.stages}
        self.fingerprints: dict[str, str] = {}
        self._child_env: dict[str, str] | None = None  # the commands' environment (None: this one's)
        for stage in self.stages:
            inputs = {name: self.fingerprints[name] for name in stage.inputs}
            self.fingerprints[stage.name] = digest(
                {"kind": stage.kind, "settings": stage.settings, "inputs": inputs}
            )

    def statuses(self) -> list[StageStatus]:
        rows = []
        for stage in self.stages:
            fingerprint = self.fingerprints[stage.name]
            state = StageState.load(stage.folder(self.run_dir), stage.name)
            if state is None:
                rows.append(StageStatus(stage, fingerprint, None, "pending"))
            elif state.fingerprint != fingerprint:
                rows.append(StageStatus(stage, fingerprint, state, "changed", self._why(stage, state)))
            elif state.done:
                rows.append(StageStatus(stage, fingerprint, state, "done"))
            else:
                rows.append(StageStatus(stage, fingerprint, state, "partial"))
        return rows

    def _why(self, stage: Stage, state: StageState) -> str:
        reasons = changed_settings(state.settings, stage.settings)
        reasons += [
            f"input {name} changed"
            for name in stage.inputs
            if state.inputs.get(name) != self.fingerprints[name]
        ]
        return ", ".join(dict.fromkeys(reasons)) or "stage definition changed"

    def run(self, only: list[str] | None = None) -> list[StageStatus]:
        """Run every stage that is not finished (or only the named ones); return the final statuses."""
        unknown = [name for name in only or [] if name not in self.by_name]
        if unknown:
            names = ", ".join(self.by_name)
            raise MathforgeError(f"unknown stage(s) {', '.join(unknown)}; this loop's stages: {names}")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / CONFIG_FILE).write_text(
            yaml.safe_dump(self.config.model_dump(mode="json"), sort_keys=False), encoding="utf-8"
        )
        statuses = self.statuses()
        chosen = [row for row in statuses if only is None or row.stage.name in only]
        if only is not None:
            self._check_inputs_done(chosen, statuses)
        todo = [row for row in chosen if row.status != "done"]
        for row in chosen:
            if row.status == "changed":
                self.console.print(f"[yellow]{row.stage.name}[/]: reruns ({row.why})")
        self._child_env = _child_environment(self.console) if todo else None
        with _sigterm_as_interrupt():
            self._run_all(todo)
        return self.statuses()

    def _run_all(self, todo: list[StageStatus]) -> None:
        from mathforge.loop.plan import pace, seconds_left

        started = time.monotonic()
        for position, row in enumerate(todo, start=1):
            # The ETA at this run's own pace so far (its finished stages, earlier sittings included).
            now = {current.stage.name: current for current in self.statuses()}
            factors = pace(self.config, now.values())
            left = sum(
                seconds_left(self.config, now[other.stage.name], factors) for other in todo[position - 1 :]
            )
            self.console.rule(
                f"[bold]stage {position}/{len(todo)}: {row.stage.name}[/] · elapsed "
                f"{_clock(time.monotonic() - started)} · loop ETA ~{_clock(left)}"
            )
            self._run_stage(row)

    def _check_inputs_done(self, chosen: list[StageStatus], statuses: list[StageStatus]) -> None:
        state = {row.stage.name: row.status for row in statuses}
        names = {row.stage.name for row in chosen}
        for row in chosen:
            for name in row.stage.inputs:
                if name not in names and state[name] != "done":
                    raise MathforgeError(
                        f"{row.stage.name} needs {name}, which is {state[name]}: run it first "
                        f"(--stage {name}) or run the whole loop"
                    )

    def _run_stage(self, row: StageStatus) -> None:
        stage, folder = row.stage, row.stage.folder(self.run_dir)
        previous = row.state if row.state is not None else StageState(stage.name)
        state = StageState(
            stage=stage.name,
            fingerprint=row.fingerprint,
            settings=stage.settings,
            inputs={name: self.fingerprints[name] for name in stage.inputs},
            commands=dict(previous.commands),
            seconds=previous.seconds if row.status == "partial" else 0.0,
        )
        folder.mkdir(parents=True, exist_ok=True)
        state.save(folder)
        log_event(self.run_dir, event="stage_start", stage=stage.name, status=row.status, why=row.why)
        began, spent_before = time.monotonic(), state.seconds

        def record_time() -> None:
            state.seconds = round(spent_before + time.monotonic() - began, 1)
            state.save(folder)

        try:
            self._run_commands(stage, folder, state, record_time)
        finally:
            record_time()  # a failed, interrupted or killed stage keeps the time it spent
        state.done = True
        state.finished_at = time.strftime("%Y-%m-%dT%H:%M:%S")
        state.save(folder)
        if not self.config.keep_checkpoints:
            freed = prune_checkpoints(folder)
            if freed:
                self.console.print(
                    f"[dim]{stage.name}: removed its resume checkpoints ({freed / 1e9:.1f} GB; "
                    "keep_checkpoints: true keeps them)[/]"
                )
        log_event(self.run_dir, event="stage_done", stage=stage.name, seconds=state.seconds)
        self.console.print(f"[green]{stage.name}[/]: done in {_clock(state.seconds)}")

    def _run_commands(
        self, stage: Stage, folder: Path, state: StageState, record_time: Callable[[], None]
    ) -> None:
        """The stage's commands not yet done (each recorded as it starts and ends), then its finish."""
        if stage.prepare is not None:
            stage.prepare(folder)
        commands = stage.build(folder)
        problems = file_digest(folder / PROBLEMS_FILE)
        for command in commands:
            identity = digest({"argv": command.argv, "inputs": state.inputs, "problems": problems})
            known = state.commands.get(command.key)
            if known and known.get("identity") == identity and known.get("done"):
                continue
            fresh = known is not None and known.get("identity") != identity
            state.commands[command.key] = {
                "identity": identity,
                "argv": command.argv,
                "output": command.output,
                "done": False,
            }
            state.save(folder)
            seconds = self._execute(stage, command, fresh, record_time)
            state.commands[command.key] |= {"done": True, "seconds": round(seconds, 1)}
            state.save(folder)
        state.commands = {command.key: state.commands[command.key] for command in commands}
        state.result = stage.finish(folder) if stage.finish is not None else {}

    def _execute(self, stage: Stage, command: Command, fresh: bool, record_time: Callable[[], None]) -> float:
        """Run one command to completion; a failure or an interrupt stops the loop with its status.

        The stage's time is saved every ``TIME_RECORD_SECONDS`` while the command runs, so a run
        killed outright (a closed laptop, a session's end) still reports the time its stages took.
        """
        argv = command.full_argv(sys.executable)
        if fresh:
            if command.overwrite_flag:
                argv.append(command.overwrite_flag)
            else:
                _remove(Path(command.output))
        self.console.print(f"[dim]$ {' '.join(argv)}[/]")
        log_event(self.run_dir, event="command_start", stage=stage.name, command=command.key, argv=argv)
        began = time.monotonic()
        process = subprocess.Popen(argv, env=self._child_env)
        try:
            while True:
                try:
                    code = process.wait(timeout=TIME_RECORD_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    record_time()
        except KeyboardInterrupt as stop:
            # Ctrl-C: the terminal sent SIGINT to the whole group and the command saves its work and
            # exits. A SIGTERM reached the loop alone: pass it on (a training command saves a
            # checkpoint on it; a sampling command stops, its finished problems already written).
            # Not as SIGINT: a loop started with `&` from a script passes SIGINT on ignored.
            if isinstance(stop, Terminated):
                process.send_signal(signal.SIGTERM)
            code = _wait_after_interrupt(process, 60 if isinstance(stop, Terminated) else 120)
            log_event(self.run_dir, event="interrupted", stage=stage.name, command=command.key)
            raise
        seconds = time.monotonic() - began
        log_event(self.run_dir, event="command_end", stage=stage.name, command=command.key, code=code)
        if code != 0:
            raise MathforgeError(
                f"{stage.name}: `{command.key}` exited with status {code} (its output is above); "
                f"fix the cause and rerun `mathforge loop run` to resume"
            )
        return seconds


def _child_environment(console: Console) -> dict[str, str] | None:
    """The commands' environment: on a CPU machine with jemalloc installed, jemalloc preloaded
    (long training and sampling commands slow down under glibc's malloc; see mathforge.allocator)."""
    from mathforge.allocator import ALLOCATOR_ENV, child_environment

    env = child_environment()
    if env.get("LD_PRELOAD") == os.environ.get("LD_PRELOAD"):
        return env
    if not _commands_run_on_cpu():
        return None
    library = env["LD_PRELOAD"].split(":")[0]
    console.print(f"[dim]commands run on jemalloc ({library}; {ALLOCATOR_ENV}=system to keep glibc's)[/]")
    return env


def _commands_run_on_cpu() -> bool:
    """Whether the commands will find no accelerator, asked of a child Python: the loop process
    lives as long as the run and would otherwise hold torch (~300 MB) all that time."""
    code = "from mathforge.runtime import default_device; print(default_device())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    return done.returncode != 0 or done.stdout.strip() == "cpu"


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a shutdown, a job scheduler) stops the loop as Ctrl-C does: the command in
    flight gets it too and saves its work, and the loop exits, instead of dying and leaving the
    command running on its own."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _wait_after_interrupt(process: subprocess.Popen[Any], timeout: float) -> int:
    try:
        return process.wait(timeout=timeout)
    except (KeyboardInterrupt, subprocess.TimeoutExpired):
        process.send_signal(signal.SIGTERM)
        return process.wait()


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
