"""The forked child: confine itself, then run the cells the zygote sends, like a notebook kernel.

A child is a copy of the warm zygote. Before it reads any model code it leaves the zygote's
process group and files behind and locks itself down (see :func:`confine`); from then on it
only talks through three pipes: cells in (fd 3), results out (fd 4), stdout (fd 1). It never
returns into zygote code: every path ends in ``os._exit``.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import fcntl
import io
import os
import resource
import signal
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, NoReturn

from mathforge.sandbox import isolation
from mathforge.sandbox.protocol import encode, read_frame, write_all

CELL_FD = 3
RESULT_FD = 4
_MAX_CELL_BYTES = 64 << 20


@dataclass
class ChildSetup:
    """Everything a child needs to confine itself; built once by the zygote, inherited by fork."""

    zygote_pid: int
    address_space: int
    file_size: int
    open_files: int
    max_error_chars: int
    landlock: isolation.LandlockPolicy | None = None
    seccomp: isolation.SeccompProgram | None = None
    linux_extras: bool = False  # parent-death signal, no_new_privs, dropped capabilities
    applied: dict[str, bool] = field(default_factory=dict)


def move_fds(cell_fd: int, result_fd: int, stdout_fd: int) -> None:
    """Put the pipes at fixed numbers: stdin /dev/null, stdout and stderr as given, cells 3, results 4."""
    devnull = os.open(os.devnull, os.O_RDWR)
    # Copies above the target numbers first, so that no dup2 overwrites a pipe still to be moved.
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, RESULT_FD + 1) for fd in (devnull, stdout_fd, cell_fd, result_fd)]
    for target, fd in zip((0, 1, CELL_FD, RESULT_FD), moved, strict=True):
        os.dup2(fd, target)
    os.dup2(0, 2)
    for fd in (devnull, *moved):
        if fd > RESULT_FD:
            os.close(fd)


def confine(setup: ChildSetup, scratch: str, strict: bool) -> None:
    """Apply every protection to the calling (just forked) process.

    ``strict`` re-raises the first failure (a real child fails closed); otherwise failures are
    recorded in ``setup.applied`` (the zygote's start-up probe of what this machine supports).
    """

    def step(name: str, action: Any, *args: Any) -> None:
        try:
            action(*args)
        except Exception:
            if strict:
                raise
            setup.applied[name] = False
        else:
            setup.applied.setdefault(name, True)

    os.setsid()  # own session and process group: the zygote kills the whole group
    if setup.linux_extras:
        step("parent_death_signal", isolation.set_parent_death_signal, signal.SIGKILL)
        if os.getppid() != setup.zygote_pid:  # the zygote died before the signal was armed
            os._exit(0)
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails with EFBIG instead
    if setup.linux_extras:
        step("no_new_privs", isolation.set_no_new_privs)
    if setup.landlock is not None:
        step("landlock", setup.landlock.apply, scratch)
    # Close everything else the zygote had open: its control socket, other children's pipes.
    # (Linux does it in one close_range call; elsewhere the bound keeps the loop short.)
    open_max = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    os.closerange(RESULT_FD + 1, open_max if 0 < open_max < 1 << 20 else 1 << 20)
    os.chdir(scratch)
    # The zygote's environment already is the allow-list its client started it with.
    os.environ.update(HOME=scratch, TMPDIR=scratch, MPLCONFIGDIR=scratch)
    step("rlimits", isolation.set_rlimits, setup.address_space, setup.file_size, setup.open_files)
    if setup.linux_extras:
        step("capabilities_dropped", isolation.drop_capabilities)
    if setup.seccomp is not None:
        step("seccomp", setup.seccomp.load)


def _install_streams() -> tuple[io.TextIOWrapper, io.TextIOWrapper, io.TextIOWrapper]:
    stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
    stdout = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(1, "w", closefd=False), 1 << 16),
        encoding="utf-8",
        errors="backslashreplace",
    )
    stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace")
    sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = stdin, stdout, stderr
    return stdin, stdout, stderr


def _error_line(exc: BaseException, max_chars: int) -> str:
    """The last line of the traceback, as the Qwen2.5-Math executor reports it."""
    try:
        lines = traceback.format_exception_only(type(exc), exc)
        line = lines[-1].strip() if lines else type(exc).__name__
    except BaseException:
        line = type(exc).__name__
    return line[:max_chars]


def run_cell(
    code: str, namespace: dict[str, Any], stdout: io.TextIOWrapper, max_error_chars: int
) -> dict[str, Any]:
    """Execute one cell; like a notebook, a final bare expression's value is printed (str())."""
    status, error = "ok", None
    try:
        tree = ast.parse(code, "<cell>")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        exec(compile(tree, "<cell>", "exec", dont_inherit=True), namespace)
        if last is not None:
            value = eval(compile(last, "<cell>", "eval", dont_inherit=True), namespace)
            if value is not None:
                stdout.write(f"{value}\n")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            status, error = "error", f"SystemExit: {exc.code}"
    except MemoryError as exc:
        status, error = "memory", _error_line(exc, max_error_chars)
    except BaseException as exc:
        status, error = "error", _error_line(exc, max_error_chars)
    with contextlib.suppress(BaseException):  # a cell that broke its own stdout keeps what was flushed
        stdout.flush()
    return {"status": status, "error": error}


# Modules whose top-level attributes a reused process checks after each execution: a cell that
# rebinds one of them (``math.pi = 3``) retires the process instead of leaking the change.
_WATCHED_MODULES = ("builtins", "math", "cmath", "fractions", "decimal", "random", "numpy", "sympy")


class FreshState:
    """What a reused process restores before each execution, and how it notices it cannot.

    Restored: working directory and its contents, environment, alarms and signal handlers,
    recursion and integer-digit limits, the decimal context, mpmath precision, numpy's print
    options, error handling and global random state, and a reseeded ``random``. Checked: the
    attributes of builtins and the core math modules. Anything else a cell mutates in place
    (a class attribute, a module's inner object) can outlive it: use one process per execution
    (the default) where that matters.
    """

    def __init__(self) -> None:
        import decimal

        import mpmath
        import numpy

        self.home = os.getcwd()
        self.environ = dict(os.environ)
        self.limits = (sys.getrecursionlimit(), sys.get_int_max_str_digits())
        loaded = [name for name in _WATCHED_MODULES if name in sys.modules]
        self.modules = {name: dict(vars(sys.modules[name])) for name in loaded}
        self.numpy_print = numpy.get_printoptions()
        self.numpy_errors = numpy.geterr()
        self.numpy_random = numpy.random.get_state()
        self.decimal, self.mpmath, self.numpy = decimal, mpmath, numpy

    def restore(self) -> None:
        import random
        import shutil

        signal.setitimer(signal.ITIMER_REAL, 0)
        for signum in (signal.SIGALRM, signal.SIGTERM, signal.SIGHUP, signal.SIGXCPU):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(self.home)
        for entry in os.scandir(self.home):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
        os.environ.clear()
        os.environ.update(self.environ)
        sys.setrecursionlimit(self.limits[0])
        sys.set_int_max_str_digits(self.limits[1])
        self.decimal.setcontext(self.decimal.Context())
        self.mpmath.mp.dps = 15
        self.numpy.set_printoptions(**self.numpy_print)
        self.numpy.seterr(**self.numpy_errors)
        self.numpy.random.set_state(self.numpy_random)
        random.seed()

    def intact(self) -> bool:
        """True when no watched module had an attribute rebound, added or removed."""
        for name, snapshot in self.modules.items():
            current = vars(sys.modules[name])
            if len(current) != len(snapshot) or any(current.get(k) is not v for k, v in snapshot.items()):
                return False
        return True


def serve(setup: ChildSetup) -> NoReturn:
    """Run cells until the zygote closes the cell pipe or marks a cell as the last one.

    A cell marked ``fresh`` (a one-shot execution in a reused process) gets new globals and a
    restored process state; other cells share the session's namespace.
    """
    # Keep the functions this loop needs: model code may replace them in modules.
    exit_, read, write, dumps = os._exit, read_frame, write_all, encode
    stdin, stdout, stderr = _install_streams()
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    fresh_state: FreshState | None = None
    while True:
        try:
            message = read(CELL_FD, _MAX_CELL_BYTES)
            if message is None:
                exit_(0)
            sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
            if message.get("fresh"):
                if fresh_state is None:
                    fresh_state = FreshState()
                else:
                    fresh_state.restore()
                namespace = {"__name__": "__main__", "__builtins__": builtins}
            result = run_cell(message["code"], namespace, stdout, setup.max_error_chars)
            if fresh_state is not None and not fresh_state.intact():
                result["dirty"] = True
            write(RESULT_FD, dumps(result))
            if message.get("last"):
                exit_(0)
        except BaseException:
            exit_(70)  # the cell broke the kernel loop itself; the zygote reports a crash


def child_main(setup: ChildSetup, scratch: str, cell_fd: int, result_fd: int, stdout_fd: int) -> NoReturn:
    """Entry point right after fork in the zygote."""
    exit_ = os._exit
    try:
        move_fds(cell_fd, result_fd, stdout_fd)
        confine(setup, scratch, strict=True)
    except BaseException as exc:
        try:
            write_all(RESULT_FD, encode({"status": "crash", "error": f"sandbox setup failed: {exc!r}"}))
        finally:
            exit_(71)
    try:
        serve(setup)
    finally:
        exit_(70)
