"""The zygote's side of its children (``child.py`` is the code that runs inside them).

A :class:`Child` is one forked process as the zygote tracks it: the pipes it talks through
(cells in, results out, stdout out), the task it runs, its deadline and CPU budget, and the
:class:`Session` it holds, if any. This module forks a child, captures its stdout within
bounds, kills it (its whole process group) and names how it ended from its wait status; what
runs where and when is the zygote's event loop's business.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from mathforge.sandbox.child import ChildSetup, child_main
from mathforge.sandbox.protocol import READ_CHUNK, FrameDecoder

MAX_RESULT_FRAME = 1 << 20


class OutputCapture:
    """Bounded stdout capture: the first and the last ``limit`` bytes, however much is written."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self.limit - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > self.limit:
                del self.tail[: len(self.tail) - self.limit]

    def text(self) -> str:
        """Everything when it fits, else head and tail around "..." (the observation format)."""
        if self.total <= self.limit:
            return self.head.decode("utf-8", "replace")
        half = self.limit // 2
        if self.total <= 2 * self.limit:  # head and tail are contiguous
            whole = bytes(self.head + self.tail)
            return whole[:half].decode("utf-8", "replace") + "..." + whole[-half:].decode("utf-8", "replace")
        return (
            self.head[:half].decode("utf-8", "replace") + "..." + self.tail[-half:].decode("utf-8", "replace")
        )


@dataclass
class Task:
    """One unit of work sent to a child: a one-shot run, a session cell, or a replayed cell."""

    kind: str  # "run" | "cell" | "replay"
    code: str
    request: dict[str, Any] | None
    history_index: int = -1
    started: float = 0.0


@dataclass(eq=False)
class Child:
    """A forked child as the zygote sees it: its pipes, its current task and its deadline."""

    pid: int
    cell_fd: int
    result_fd: int
    stdout_fd: int
    scratch: str
    results: FrameDecoder
    capture: OutputCapture
    send_buffer: bytearray = field(default_factory=bytearray)
    task: Task | None = None
    deadline: float | None = None
    cpu_limit: float | None = None
    timed_out: bool = False
    exited: bool = False
    session: Session | None = None
    writing: bool = False
    uses: int = 0
    closed: bool = False  # its pipes are closed; their numbers may already belong to another child

    def drain_stdout(self) -> None:
        """Feed whatever the child has printed so far into its capture (never blocks)."""
        while not self.closed:
            try:
                data = os.read(self.stdout_fd, READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not data:
                return
            self.capture.feed(data)

    def kill(self) -> None:
        """SIGKILL the child's process group, unless the child was reaped (its pid may be reused)."""
        if self.exited:
            return
        try:
            os.killpg(self.pid, signal.SIGKILL)  # the child's own group (it called setsid)
        except OSError:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)

    def close_pipes(self) -> None:
        self.closed = True
        for fd in (self.cell_fd, self.result_fd, self.stdout_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass(eq=False)
class Session:
    """A notebook: the cells that finished (its replayable history) and its process, if live."""

    sid: int
    history: list[str] = field(default_factory=list)
    child: Child | None = None
    busy: bool = False
    replay: deque[int] = field(default_factory=deque)
    request: dict[str, Any] | None = None
    reset: bool = False
    dropped: list[int] = field(default_factory=list)


def fork_child(setup: ChildSetup, scratch: str, max_output: int) -> Child:
    """Fork a child that confines itself in ``scratch`` and then serves cells from its pipe."""
    cell_r, cell_w = os.pipe()
    result_r, result_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            child_main(setup, scratch, cell_r, result_w, stdout_w)
        finally:
            os._exit(70)
    for fd in (cell_r, result_w, stdout_w):
        os.close(fd)
    for fd in (cell_w, result_r, stdout_r):
        os.set_blocking(fd, False)
    return Child(
        pid,
        cell_w,
        result_r,
        stdout_r,
        scratch,
        FrameDecoder(MAX_RESULT_FRAME),
        OutputCapture(max_output),
    )


def classify_exit(child: Child, status: int, cpu: float, timeout: float) -> tuple[str, str]:
    """The status and error of a task whose process ended before sending a result."""
    if child.timed_out:
        return "timeout", f"TimeoutError: execution exceeded {timeout:g} s"
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        cpu_exhausted = child.cpu_limit is not None and cpu >= child.cpu_limit - 0.05
        if signum == signal.SIGXCPU or (signum == signal.SIGKILL and cpu_exhausted):
            return "timeout", "TimeoutError: CPU time limit exceeded"
        if signum == signal.SIGKILL:
            return "memory", "MemoryError: killed (out of memory)"
        try:
            name = signal.Signals(signum).name
        except ValueError:  # a real-time signal has no name
            name = f"signal {signum}"
        return "crash", f"Crash: killed by {name}"
    return "crash", f"Crash: exited with code {os.WEXITSTATUS(status)} before finishing"
