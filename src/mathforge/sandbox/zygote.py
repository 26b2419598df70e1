"""The zygote: a warm interpreter that forks one confined child per execution or per session.

It runs as its own process (``python -s -c``, clean environment, own session), started and
fed by :class:`mathforge.sandbox.Sandbox` over a socket. At start it enters private mount and
network namespaces where it can, imports and exercises math/numpy/sympy once, compiles the
seccomp filter, probes which protections this machine enforces, freezes its heap for the
garbage collector (so children share its pages copy-on-write), moves the heap to huge pages
(cheaper forks) and pre-forks spare children.

One single-threaded event loop then schedules requests on at most ``workers`` busy children,
streams each child's stdout into a bounded head/tail capture, enforces wall-clock deadlines
with SIGKILL to the child's process group, reaps every child (it is also the subreaper of
anything they could orphan), and wipes their scratch directories.

This module is that orchestration; the jobs it hands out live beside it: ``warmup`` (what is
imported before forking), ``probe`` (the child set-up and which protections hold),
``children`` (a child as the zygote tracks it: fork, kill, stdout capture, how it ended),
``control`` (the client's socket and the messages on it) and ``scratch`` (the per-process
scratch directories).
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import resource
import selectors
import signal
import socket
import sys
import time
from collections import OrderedDict, deque
from typing import Any

from mathforge.sandbox import isolation
from mathforge.sandbox.child import WATCHED_MODULES, ClassVersions
from mathforge.sandbox.children import Child, OutputCapture, Session, Task, classify_exit, fork_child
from mathforge.sandbox.control import MAX_REQUEST_FRAME, ControlChannel, result_message
from mathforge.sandbox.probe import PROTECTION_NAMES, probe_setup
from mathforge.sandbox.protocol import READ_CHUNK, FrameError, encode, read_frame
from mathforge.sandbox.scratch import QUOTA_MB_PER_WORKER, ScratchDirs, wipe
from mathforge.sandbox.warmup import warm_up


class Zygote:
    """The zygote process's state and event loop (one instance per process)."""

    def __init__(self, control: socket.socket, config: dict[str, Any]) -> None:
        self.workers = int(config["workers"])
        self.timeout = float(config["timeout"])
        self.memory_bytes = int(config["memory_mb"]) << 20
        self.max_output = int(config["max_output_chars"])
        self.max_live_sessions = int(config["max_live_sessions"])
        self.reuse = int(config.get("reuse", 1))
        self.scratch = ScratchDirs(config["scratch_base"])
        self.cpu_seconds = math.ceil(self.timeout) + 1
        self.protections: dict[str, bool] = dict.fromkeys(PROTECTION_NAMES, False)
        if isolation.IS_LINUX:
            quota = QUOTA_MB_PER_WORKER * self.workers
            for name in isolation.enter_namespaces(self.scratch.base, quota):
                self.protections[name] = True
            with contextlib.suppress(OSError):
                isolation.become_subreaper()
        warm_up()
        self.setup = probe_setup(self.protections, self.scratch, self.memory_bytes, self.max_output)
        if self.reuse > 1:  # before the heap is frozen: every child shares the tags' readers
            self.setup.class_versions = ClassVersions.of_modules(WATCHED_MODULES)
        self.protections["cpu_limit"] = isolation.limit_cpu(os.getpid(), *_current_cpu_limit())
        gc.collect()
        gc.freeze()  # the collector never touches the zygote's objects again: fewer pages copied
        if isolation.IS_LINUX:
            with contextlib.suppress(OSError):  # no /proc, or no transparent huge pages
                isolation.collapse_to_huge_pages()

        self.selector = selectors.DefaultSelector()
        self.pending: deque[dict[str, Any]] = deque()
        self.control = ControlChannel(control, self.selector, self.pending.extend)
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self.selector.register(wake_r, selectors.EVENT_READ, self._on_wakeup)
        self.wake_r = wake_r
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)

        self.children: dict[int, Child] = {}
        self.spares: deque[Child] = deque()
        self.reusable: deque[Child] = deque()  # idle (stopped) processes with executions left
        self.prefork = True
        self.sessions: dict[int, Session] = {}
        self.live: OrderedDict[int, Session] = OrderedDict()
        self.active = 0

    # --- loop ----------------------------------------------------------------------------

    def serve(self) -> None:
        self.control.send({"op": "ready", "pid": os.getpid(), "protections": self.protections})
        while not self.control.closed:
            self._dispatch()
            wait = self._enforce_deadlines()
            if self.prefork and len(self.spares) < self.workers:
                self.spares.append(self._fork_child())
                wait = 0.0
            for key, events in self.selector.select(wait):
                key.data(events)
            self._reap()

    def shutdown(self) -> None:
        """Kill every child, reap them and wipe their scratch directories."""
        for child in list(self.children.values()):
            child.kill()
        deadline = time.monotonic() + 5.0
        while self.children and time.monotonic() < deadline:
            try:
                pid, _, _ = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.01)
                continue
            child = self.children.pop(pid, None)
            if child is not None:
                wipe(child.scratch)

    # --- requests ------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Start pending requests in arrival order; a session's cells wait for its previous one."""
        index = 0
        while index < len(self.pending):
            request = self.pending[index]
            op = request["op"]
            if op == "close":
                session = self.sessions.get(int(request["sid"]))
                if session is not None and session.busy:
                    index += 1
                    continue
                del self.pending[index]
                if session is not None:
                    self._discard_process(session)
                    del self.sessions[session.sid]
                continue
            if self.active >= self.workers:
                index += 1  # only close requests can still go
                continue
            if op == "run":
                del self.pending[index]
                self.active += 1
                child = self._take_reusable() if self.reuse > 1 else self._take_child()
                task = Task("run", request["code"], request)
                self._send_task(child, task, last=child.uses + 1 >= self.reuse)
                continue
            session = self.sessions.get(int(request["sid"]))
            if session is None:
                session = Session(int(request["sid"]), list(request.get("history") or ()))
                self.sessions[session.sid] = session
            if session.busy:
                index += 1
                continue
            del self.pending[index]
            self.active += 1
            self._start_cell(session, request)

    def _start_cell(self, session: Session, request: dict[str, Any]) -> None:
        session.busy = True
        session.request = request
        if session.child is None:
            self._rebuild(session)
        else:
            self.live.move_to_end(session.sid)
            self._session_step(session)

    def _rebuild(self, session: Session) -> None:
        """Give the session a fresh process and queue its history for replay."""
        self._evict_idle_sessions()
        child = self._take_child()
        child.session = session
        session.child = child
        self.live[session.sid] = session
        session.replay = deque(range(len(session.history)))
        self._session_step(session)

    def _session_step(self, session: Session) -> None:
        child = session.child
        assert child is not None and session.request is not None
        if session.replay:
            index = session.replay.popleft()
            self._send_task(child, Task("replay", session.history[index], None, index), last=False)
        else:
            self._send_task(child, Task("cell", session.request["code"], session.request), last=False)

    def _evict_idle_sessions(self) -> None:
        """Keep at most ``max_live_sessions`` session processes; evicted ones replay on next use."""
        for sid in list(self.live):
            if len(self.live) < self.max_live_sessions:
                return
            session = self.live[sid]
            if not session.busy:
                self._discard_process(session)

    def _discard_process(self, session: Session) -> None:
        child = session.child
        session.child = None
        self.live.pop(session.sid, None)
        if child is not None:
            child.kill()

    def _finish(self, child: Child, status: str, error: str | None, reusable: bool = False) -> None:
        """A task ended (result, death or deadline): answer, roll back, or continue a replay."""
        task = child.task
        assert task is not None
        child.task = None
        child.deadline = None
        self._unwatch(child)
        wall_ms = round((time.monotonic() - task.started) * 1000, 3)
        session = child.session
        if task.kind == "run":
            if reusable and status in ("ok", "error") and child.uses < self.reuse and not child.exited:
                with contextlib.suppress(OSError):
                    os.kill(child.pid, signal.SIGSTOP)
                self.reusable.append(child)
            else:
                child.kill()
            self.active -= 1
            self.control.send(
                result_message(task.request, status, child.capture.text(), error, wall_ms, False, [])
            )
            return
        assert session is not None
        survived = status in ("ok", "error")
        if task.kind == "replay":
            if survived:
                self._session_step(session)
                return
            # The replay did not reproduce (e.g. it depended on time or randomness): drop that
            # cell from the history and rebuild from scratch without it.
            del session.history[task.history_index]
            session.dropped.append(task.history_index)
            session.reset = True
            self._discard_process(session)
            self._rebuild(session)
            return
        reset = session.reset
        if survived:
            session.history.append(task.code)
            with contextlib.suppress(OSError):
                os.kill(child.pid, signal.SIGSTOP)  # idle sessions use no CPU, even with threads
        else:
            child.kill()
            self._discard_process(session)
            reset = True
        self.active -= 1
        self.control.send(
            result_message(task.request, status, child.capture.text(), error, wall_ms, reset, session.dropped)
        )
        session.busy = False
        session.reset = False
        session.dropped = []
        session.request = None

    def _enforce_deadlines(self) -> float | None:
        """Kill children past their deadline; return seconds until the next deadline."""
        now = time.monotonic()
        soonest = None
        for child in list(self.children.values()):
            if child.deadline is None:
                continue
            if child.deadline <= now:
                child.timed_out = True
                child.deadline = None
                child.kill()
            elif soonest is None or child.deadline < soonest:
                soonest = child.deadline
        return None if soonest is None else max(soonest - now, 0.0)

    # --- children ------------------------------------------------------------------------

    def _fork_child(self) -> Child:
        child = fork_child(self.setup, self.scratch.new(), self.max_output)
        self.children[child.pid] = child
        return child

    def _take_child(self) -> Child:
        while self.spares:
            child = self.spares.popleft()
            if not child.exited:
                return child
        return self._fork_child()

    def _take_reusable(self) -> Child:
        while self.reusable:
            child = self.reusable.popleft()
            if not child.exited:
                return child
        return self._take_child()

    def _send_task(self, child: Child, task: Task, last: bool) -> None:
        child.drain_stdout()  # whatever a session's threads printed while idle is not this cell's
        child.capture = OutputCapture(self.max_output)
        child.task = task
        child.timed_out = False
        child.uses += 1
        task.started = time.monotonic()
        child.deadline = task.started + self.timeout
        if child.session is None and self.reuse == 1:
            child.cpu_limit = self.cpu_seconds
            isolation.limit_cpu(child.pid, self.cpu_seconds, self.cpu_seconds + 1)
        else:
            used = isolation.process_cpu_seconds(child.pid) or 0.0
            child.cpu_limit = math.ceil(used) + self.cpu_seconds
            isolation.limit_cpu(child.pid, child.cpu_limit, _current_cpu_limit()[1])
            with contextlib.suppress(OSError):
                os.kill(child.pid, signal.SIGCONT)
        self.selector.register(child.result_fd, selectors.EVENT_READ, lambda _: self._on_result(child))
        self.selector.register(child.stdout_fd, selectors.EVENT_READ, lambda _: child.drain_stdout())
        message: dict[str, Any] = {"code": task.code}
        if last:
            message["last"] = True
        if task.kind == "run" and self.reuse > 1:
            message["fresh"] = True
        child.send_buffer += encode(message)
        self._flush_child(child)

    def _flush_child(self, child: Child) -> None:
        if child.closed:
            return
        try:
            while child.send_buffer:
                written = os.write(child.cell_fd, child.send_buffer)
                del child.send_buffer[:written]
        except BlockingIOError:
            pass
        except OSError:
            child.send_buffer.clear()  # the child is gone; its exit is handled when reaped
        want = bool(child.send_buffer)
        if want and not child.writing:
            self.selector.register(child.cell_fd, selectors.EVENT_WRITE, lambda _: self._flush_child(child))
        elif not want and child.writing:
            self.selector.unregister(child.cell_fd)
        child.writing = want

    def _on_result(self, child: Child) -> None:
        while child.task is not None and not child.closed:
            try:
                data = os.read(child.result_fd, READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            if not data:  # the child closed its result pipe: its exit decides the outcome
                self._unwatch(child)
                return
            try:
                frames = child.results.feed(data)
            except FrameError:
                child.kill()
                self._finish(child, "crash", "Crash: the process sent a malformed result")
                return
            if frames:
                frame = frames[0]
                status = frame.get("status")
                if status not in ("ok", "error", "memory", "crash"):
                    status, error = "crash", "Crash: the process sent a malformed result"
                else:
                    error = frame.get("error")
                    error = str(error)[: self.max_output] if error is not None else None
                child.drain_stdout()
                self._finish(child, status, error, reusable=not frame.get("dirty"))

    def _unwatch(self, child: Child) -> None:
        for fd in (child.result_fd, child.stdout_fd):
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(fd)
        if child.writing:
            self.selector.unregister(child.cell_fd)
            child.writing = False

    def _on_wakeup(self, _: int) -> None:
        with contextlib.suppress(OSError):
            while os.read(self.wake_r, 512):
                pass
        self._reap()

    def _reap(self) -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is not None:  # anything else is an adopted orphan, now reaped
                self._on_exit(child, status, usage.ru_utime + usage.ru_stime)

    def _on_exit(self, child: Child, status: int, cpu: float) -> None:
        child.exited = True
        child.drain_stdout()
        if child.task is not None:
            self._on_result(child)  # a result written just before exiting still counts
        if child.task is not None:
            self._finish(child, *classify_exit(child, status, cpu, self.timeout))
        self._unwatch(child)
        child.close_pipes()
        if child in self.spares:
            self.spares.remove(child)
            self.prefork = False  # a spare died before any work: fork on demand from now on
        session = child.session
        if session is not None and session.child is child:
            session.child = None
            self.live.pop(session.sid, None)
        wipe(child.scratch)


def _current_cpu_limit() -> tuple[int, int]:
    return resource.getrlimit(resource.RLIMIT_CPU)


def main() -> None:
    """Entry point of the zygote process: ``python -c ... <control-fd>``."""
    fd = int(sys.argv[1])
    config = read_frame(fd, MAX_REQUEST_FRAME)
    if config is None:
        return
    control = socket.socket(fileno=fd)
    zygote = Zygote(control, config)
    try:
        zygote.serve()
    finally:
        zygote.shutdown()
