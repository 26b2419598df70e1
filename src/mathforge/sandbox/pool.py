"""The client side: :class:`Sandbox` (a pool of warm, confined workers) and :class:`Session`.

The Sandbox starts the zygote as a separate process with a clean environment, sends it
requests over a socket and resolves one future per request from a reader thread, so it can be
used from several threads and never blocks on a slow execution it is not waiting for.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import warnings
import weakref
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import mathforge
from mathforge.errors import MathforgeError
from mathforge.sandbox.probe import PROTECTION_NAMES
from mathforge.sandbox.protocol import FrameDecoder, encode
from mathforge.sandbox.result import ExecResult

_BOOT = "import sys; sys.path.insert(0, {path!r}); from mathforge.sandbox.zygote import main; main()"
_START_TIMEOUT_S = 120.0
# An idle session process holds about 9 MiB of private memory after a sympy cell (measured), so
# 128 of them stay near 1.2 GiB; the rest are rebuilt by replay when used again.
_DEFAULT_LIVE_SESSIONS = 128
# Only these variables reach model code; tokens and credentials in the caller's environment
# never enter the zygote's memory, so no child can find them.
_PASSED_ENV = ("LANG", "LC_ALL", "LC_CTYPE", "TZ")
_FIXED_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "PYTHONSAFEPATH": "1",  # no working directory on sys.path
    "PYTHONHASHSEED": "0",  # set and dict orders replay identically in a rebuilt session
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONNOUSERSITE": "1",
    "OPENBLAS_NUM_THREADS": "1",  # one execution per core; BLAS threads would fight the workers
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
}
_warned: set[str] = set()


class SandboxWarning(RuntimeWarning):
    """A protection is unavailable on this machine; the sandbox runs without it."""


def _crash(error: str) -> ExecResult:
    return ExecResult(status="crash", error=error)


class _Zygote:
    """One zygote process and its socket; ``close`` is safe to call more than once."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.scratch = tempfile.mkdtemp(prefix="mathforge-sandbox-")
        ours, theirs = socket.socketpair()
        env = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ} | _FIXED_ENV
        boot = _BOOT.format(path=str(Path(mathforge.__file__).resolve().parent.parent))
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-s", "-c", boot, str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                env=env,
                cwd=self.scratch,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,  # the terminal's Ctrl-C goes to the caller, not the pool
            )
        finally:
            theirs.close()
        self.socket = ours
        self.socket.sendall(encode(config | {"scratch_base": self.scratch}))

    def close(self) -> None:
        # shutdown() rather than only close(): it also wakes the reader thread blocked in recv,
        # and the zygote sees end-of-stream, kills its children and exits.
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)
        self.socket.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.scratch, ignore_errors=True)


class Sandbox:
    """A pool of warm, isolated Python workers for model-written code.

    ``workers`` executions run at once (default: one per CPU core); each gets ``timeout``
    seconds of wall-clock time, ``memory_mb`` MiB of address space on top of the warm
    interpreter, and has its output capped at ``max_output_chars`` (head and tail kept).
    ``max_live_sessions`` caps how many idle session processes stay alive; the least recently
    used are stopped and transparently rebuilt by replay when used again.

    ``reuse`` is how many one-shot executions one process may serve. The default, 1, gives every
    execution a fresh process: nothing one execution does can reach the next. Above 1 a process
    is reused with new globals and a restored state (see ``child.FreshState`` for what is
    restored and checked) and retired early after a timeout, memory error or crash, or when a
    cell rebinds an attribute of builtins or a core math module, patches a class they define,
    changes ``sys.modules`` or leaves a thread, timer, signal handler or hook behind. That skips
    the fork and its copy-on-write page faults, which dominate short executions, at the price of
    the isolation between successive executions that the Qwen2.5-Math executor also lacks; the
    isolation from the machine is the same.
    """

    def __init__(
        self,
        workers: int | None = None,
        timeout: float = 5.0,
        memory_mb: int = 1024,
        max_output_chars: int = 4000,
        *,
        max_live_sessions: int | None = None,
        reuse: int = 1,
    ) -> None:
        if not hasattr(os, "fork"):
            raise MathforgeError("the sandbox needs fork(): run it on Linux or macOS")
        workers = (os.cpu_count() or 1) if workers is None else workers
        live = max(_DEFAULT_LIVE_SESSIONS, workers) if max_live_sessions is None else max_live_sessions
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if memory_mb < 32:
            raise ValueError(f"memory_mb must be at least 32, got {memory_mb}")
        if max_output_chars < 16:
            raise ValueError(f"max_output_chars must be at least 16, got {max_output_chars}")
        if live < workers:
            raise ValueError(f"max_live_sessions ({live}) must be at least workers ({workers})")
        if reuse < 1:
            raise ValueError(f"reuse must be at least 1, got {reuse}")
        self.workers = workers
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.max_output_chars = max_output_chars
        self.max_live_sessions = live
        self.reuse = reuse
        self._config = {
            "workers": workers,
            "timeout": timeout,
            "memory_mb": memory_mb,
            "max_output_chars": max_output_chars,
            "max_live_sessions": live,
            "reuse": reuse,
        }
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._session_ids = itertools.count(1)
        self._pending: dict[int, tuple[Future[ExecResult], Session | None, str]] = {}
        self._to_close: deque[int] = deque()
        self._generation = 0
        self._zygote: _Zygote | None = None
        # Shared with the finalizer, which must not reference the Sandbox itself.
        self._running: list[_Zygote] = []
        self._closed = False
        self.protections: dict[str, bool] = {}
        self.pid = 0
        with self._lock:
            self._start()
        weakref.finalize(self, _close_all, self._running)

    # --- lifecycle -----------------------------------------------------------------------

    def _start(self) -> None:
        """Start a zygote and wait until it is warm (called with the lock held)."""
        self._generation += 1
        zygote = _Zygote(self._config)
        ready = threading.Event()
        hello: dict[str, Any] = {}
        reader = threading.Thread(
            target=self._read_loop, args=(zygote, self._generation, ready, hello), daemon=True
        )
        reader.start()
        if not ready.wait(_START_TIMEOUT_S) or "protections" not in hello:
            zygote.close()
            raise MathforgeError("the sandbox's worker process failed to start (see the messages above)")
        self._zygote = zygote
        self._running[:] = [zygote]
        self.pid = int(hello["pid"])
        self.protections = dict(hello["protections"])
        _warn_missing(self.protections)

    def close(self) -> None:
        """Stop every worker and remove all scratch directories."""
        with self._lock:
            self._closed = True
            zygote, self._zygote = self._zygote, None
        if zygote is not None:
            zygote.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport -----------------------------------------------------------------------

    def _read_loop(
        self, zygote: _Zygote, generation: int, ready: threading.Event, hello: dict[str, Any]
    ) -> None:
        decoder = FrameDecoder(1 << 30)
        try:
            while data := zygote.socket.recv(1 << 20):
                for frame in decoder.feed(data):
                    if frame.get("op") == "ready":
                        hello.update(frame)
                        ready.set()
                    else:
                        self._on_result(frame)
        except OSError:
            pass
        finally:
            ready.set()
            self._on_lost(generation)

    def _on_result(self, frame: dict[str, Any]) -> None:
        result = ExecResult.from_dict(frame)
        with self._lock:
            entry = self._pending.pop(int(frame["id"]), None)
            if entry is None:
                return
            future, session, code = entry
            if session is not None:
                for index in frame.get("dropped", ()):
                    del session._history[index]
                if result.status in ("ok", "error"):
                    session._history.append(code)
        future.set_result(result)

    def _on_lost(self, generation: int) -> None:
        """The zygote is gone: fail what it held; the next request starts a new one."""
        with self._lock:
            if generation != self._generation:
                return
            lost, self._pending = self._pending, {}
            zygote, self._zygote = self._zygote, None
        if zygote is not None:
            zygote.close()
        for future, _, _ in lost.values():
            future.set_result(_crash("Crash: the sandbox's worker process died; it restarts on the next run"))

    def _submit(self, message: dict[str, Any], session: Session | None) -> Future[ExecResult]:
        future: Future[ExecResult] = Future()
        with self._lock:
            if self._closed:
                raise MathforgeError("the sandbox is closed")
            if self._zygote is None:
                warnings.warn("sandbox: the worker process died; restarting it", SandboxWarning, stacklevel=3)
                self._start()
            assert self._zygote is not None
            data = bytearray()
            while self._to_close:
                data += encode({"op": "close", "sid": self._to_close.popleft()})
            request_id = next(self._ids)
            message["id"] = request_id
            if session is not None:
                message["sid"] = session.sid
                if session._generation != self._generation:
                    message["history"] = list(session._history)
                    session._generation = self._generation
            data += encode(message)
            self._pending[request_id] = (future, session, message["code"])
            with contextlib.suppress(OSError):  # the reader thread sees it too and fails the future
                self._zygote.socket.sendall(data)
        return future

    # --- public API ----------------------------------------------------------------------

    def submit(self, code: str) -> Future[ExecResult]:
        """Queue one execution in a fresh process; the future resolves to its result."""
        return self._submit({"op": "run", "code": code}, None)

    def run(self, code: str) -> ExecResult:
        """Execute ``code`` in a fresh confined process and wait for the result."""
        return self.submit(code).result()

    def run_batch(self, codes: Iterable[str]) -> list[ExecResult]:
        """Execute independent snippets in parallel over the workers; results in input order."""
        futures = [self.submit(code) for code in codes]
        return [future.result() for future in futures]

    def session(self) -> Session:
        """A notebook-like session: variables persist from one cell to the next."""
        return Session(self, next(self._session_ids))

    def run_sessions(self, cells: Sequence[tuple[Session, str]]) -> list[ExecResult]:
        """Run one cell in each of many sessions in parallel; results in input order.

        A session listed twice runs its cells in the given order.
        """
        futures = [session.submit(code) for session, code in cells]
        return [future.result() for future in futures]

    def _forget_session(self, sid: int) -> None:
        self._to_close.append(sid)  # sent with the next request; safe from any thread or finalizer


def _close_all(running: list[_Zygote]) -> None:
    while running:
        running.pop().close()


def _warn_missing(protections: dict[str, bool]) -> None:
    missing = [description for name, description in PROTECTION_NAMES.items() if not protections.get(name)]
    if not missing:
        return
    message = f"sandbox on {sys.platform}: running without " + "; ".join(missing)
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, SandboxWarning, stacklevel=4)


class Session:
    """Cells run in order in one persistent process, like a notebook.

    After a cell times out, runs out of memory or crashes, its process is discarded and the
    session continues from the state before that cell: the next cell runs in a new process
    rebuilt by replaying the cells that finished (ok or error). Use as a context manager or
    call :meth:`close`; a session that is garbage-collected is closed too.
    """

    def __init__(self, sandbox: Sandbox, sid: int) -> None:
        self.sid = sid
        self._sandbox = sandbox
        self._history: list[str] = []
        self._generation = sandbox._generation
        self._closed = False
        self._finalizer = weakref.finalize(self, sandbox._forget_session, sid)

    def submit(self, code: str) -> Future[ExecResult]:
        if self._closed:
            raise MathforgeError("the session is closed")
        return self._sandbox._submit({"op": "cell", "code": code}, self)

    def run(self, code: str) -> ExecResult:
        """Run one cell in this session's namespace and wait for the result."""
        return self.submit(code).result()

    def close(self) -> None:
        """Free the session's process and history."""
        if not self._closed:
            self._closed = True
            self._finalizer()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
