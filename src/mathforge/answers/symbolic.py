"""Run sympy comparisons in reusable child processes that are killed when they overrun.

Why not SIGALRM (math-verify) or a thread: an alarm only works in the main thread of the main
interpreter, and a thread cannot be stopped, so a runaway ``simplify`` would hang an RL reward
function or an evaluation worker. A child process can be killed at any moment from any thread,
and its memory is capped (``RLIMIT_AS``), so one pathological answer costs at most the timeout.

Workers are plain ``python -m mathforge.answers.sympy_worker`` subprocesses speaking JSON lines
over pipes, so they also work inside daemonic multiprocessing workers (which may not fork
multiprocessing children). Each calling thread borrows an idle worker; a killed worker is
replaced at once so the next comparison does not wait for sympy to import. Worker start-up is
not charged to a comparison's timeout.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from mathforge.errors import MathforgeError

STARTUP_TIMEOUT = 120.0
CACHE_SIZE = 100_000
_SRC_DIR = str(Path(__file__).resolve().parents[2])


class _WorkerDied(RuntimeError):
    pass


class _Worker:
    """One sympy child process and its pipes."""

    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_SRC_DIR, env.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mathforge.answers.sympy_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        self.ready = False
        self._buffer = b""

    def wait_ready(self) -> None:
        try:
            line = self._readline(STARTUP_TIMEOUT)
        except _WorkerDied:
            line = None
        if line != b"ready":
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            output = self.proc.stderr.read() if self.proc.stderr else b""
            lines = output.decode(errors="replace").strip().splitlines()
            self.close_pipes()
            detail = f": {lines[-1]}" if lines else ""
            raise MathforgeError(f"the sympy worker process failed to start{detail}")
        self.ready = True
        if self.proc.stderr is not None:  # the worker now writes its stderr to /dev/null
            self.proc.stderr.close()

    def call(self, payload: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """Send one request; the reply, or None when it did not come within ``timeout``."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(payload).encode() + b"\n")
        self.proc.stdin.flush()
        line = self._readline(timeout)
        return None if line is None else json.loads(line)

    def _readline(self, timeout: float) -> bytes | None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise _WorkerDied("worker closed its output")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.close_pipes()

    def close_pipes(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None and not pipe.closed:
                pipe.close()

    def stop(self) -> None:
        """Ask the worker to exit (end of input), then make sure it has."""
        if not self.ready:  # still importing sympy: nothing to finish
            self.kill()
            return
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


class SymbolicPool:
    """Idle sympy workers shared by the threads of one process, plus a cache of decided results."""

    def __init__(self, max_workers: int | None = None) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._slots = threading.BoundedSemaphore(max_workers or max(2, os.cpu_count() or 2))
        self._cache: OrderedDict[str, bool] = OrderedDict()

    def decide(self, payload: dict[str, Any], timeout: float) -> bool | None:
        """The worker's verdict on ``payload``; None when it ran out of time or memory."""
        key = json.dumps(payload, sort_keys=True)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        if timeout <= 0 or not self._slots.acquire(timeout=timeout):
            return None
        try:
            worker = self._take()
            try:
                reply = worker.call(payload, timeout)
            except (OSError, ValueError, _WorkerDied):
                reply = None
            if reply is None:
                worker.kill()
                self.prestart()
                return None
            with self._lock:
                self._idle.append(worker)
        finally:
            self._slots.release()
        equal = reply.get("equal")
        if equal is not None:
            with self._lock:
                self._cache[key] = bool(equal)
                if len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        return equal

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def prestart(self) -> None:
        """Start a spare worker now, so its sympy import overlaps other work."""
        with self._lock:
            if not self._idle:
                self._idle.append(_Worker())

    def _take(self) -> _Worker:
        with self._lock:
            worker = self._idle.pop() if self._idle else None
        if worker is None or worker.proc.poll() is not None:
            worker = _Worker()
        if not worker.ready:
            worker.wait_ready()
        return worker

    def shutdown(self) -> None:
        with self._lock:
            workers, self._idle = self._idle, []
        for worker in workers:
            worker.stop()

    def forget(self) -> None:
        """In a forked child: drop the parent's workers without touching the processes."""
        for worker in self._idle:
            worker.close_pipes()
        self._idle = []
        self._lock = threading.Lock()


_pool: SymbolicPool | None = None
_pool_lock = threading.Lock()


def get_pool() -> SymbolicPool:
    """The process-wide worker pool (created on first use)."""
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = SymbolicPool()
    return _pool


def _after_fork_in_child() -> None:
    global _pool, _pool_lock
    _pool_lock = threading.Lock()
    if _pool is not None:
        _pool.forget()
        _pool = None


def _shutdown() -> None:
    if _pool is not None:
        _pool.shutdown()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_shutdown)
