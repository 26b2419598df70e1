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
import ctypes
import fcntl
import io
import operator
import os
import resource
import signal
import sys
import traceback
from collections.abc import Iterable
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
    class_versions: ClassVersions | None = None  # only where processes are reused


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
# rebinds one of them (``math.pi = 3``) retires the process instead of leaking the change. The
# classes these modules and their submodules define are checked too (see ClassVersions).
WATCHED_MODULES = ("builtins", "math", "cmath", "fractions", "decimal", "random", "numpy", "sympy")

_IMMUTABLE_TYPE = 1 << 8  # Py_TPFLAGS_IMMUTABLETYPE: no attribute of such a class can be set
# Offsets in CPython's PyTypeObject, in pointers (unchanged since 3.8): tp_bases and
# tp_mro, checked against each class before anything is read, and the unsigned tp_version_tag.
_POINTER = ctypes.sizeof(ctypes.c_void_p)
_TP_BASES, _TP_MRO, _TP_VERSION_TAG = 42 * _POINTER, 43 * _POINTER, 48 * _POINTER
_VALUE = operator.attrgetter("value")
# Class attributes that a library itself rebinds in normal use, which would otherwise retire a
# process after a third of sympy snippets: sympy's Dummy counter. It only grows, so Dummies
# made later still sort after earlier ones, as they do in a fresh process.
_COUNTERS = {("sympy.core.symbol", "Dummy"): "_count"}


class ClassVersions:
    """Tells whether an attribute of any of ~1,100 classes was set or deleted, in 45-85 µs.

    CPython keys its method cache on a per-class version tag, and resets that tag whenever an
    attribute of the class or of one of its bases is set or deleted (``PyType_Modified``): the
    tags of the watched classes read before and after a cell differ exactly when the cell
    patched one of them (``sympy.Rational.__str__ = ...``) or a base (``numbers.Number``).
    Reading a tag is one memory read per class; comparing the classes' dicts entry by entry
    would walk ~19,000 entries (~450 µs). A class with a counter in ``_COUNTERS`` has its other
    attributes compared instead. Built in the zygote once; where the interpreter's type layout
    is not the one expected, ``snapshot`` is None and nothing compares unchanged, so a reused
    process is retired after every execution.
    """

    def __init__(self, classes: Iterable[type]) -> None:
        self._tagged: list[type] = []  # kept alive: a tag is read at the class's address
        tags: list[ctypes.c_uint] | None = []
        self._counted: list[tuple[type, str]] = []
        for cls in classes:
            counter = _COUNTERS.get((cls.__module__, cls.__qualname__))
            if counter is not None:
                self._counted.append((cls, counter))
                continue
            address = id(cls)
            bases, mro = (ctypes.c_void_p.from_address(address + at).value for at in (_TP_BASES, _TP_MRO))
            if (bases, mro) != (id(cls.__bases__), id(cls.__mro__)):
                tags = None  # not CPython's layout: never trust what would be read
                break
            self._tagged.append(cls)
            tags.append(ctypes.c_uint.from_address(address + _TP_VERSION_TAG))
        self._tags = tags
        self.snapshot()  # assigns the missing tags here, once, rather than in every child

    @classmethod
    def of_modules(cls, names: Iterable[str]) -> ClassVersions:
        """Every class that can be patched, found in the named modules and their submodules."""
        roots = set(names)
        found: dict[int, type] = {}
        for name, module in list(sys.modules.items()):
            if name.partition(".")[0] in roots:
                for value in list(getattr(module, "__dict__", {}).values()):
                    if isinstance(value, type) and not value.__flags__ & _IMMUTABLE_TYPE:
                        found[id(value)] = value
        return cls(found.values())

    def __len__(self) -> int:
        return len(self._tags or ()) + len(self._counted)

    def _counted_items(self) -> tuple[list[str], list[object]]:
        names: list[str] = []
        values: list[object] = []
        for cls, counter in self._counted:
            for name, value in vars(cls).items():
                if name != counter:
                    names.append(name)
                    values.append(value)
        return names, values

    def snapshot(self) -> tuple[list[int], list[str], list[object]] | None:
        """The tags now, each made valid first: a class whose tag is 0 (never looked up, or reset
        by a change) keeps 0 through a further change, which would then go unseen."""
        if self._tags is None:
            return None
        tags = list(map(_VALUE, self._tags))
        if 0 in tags:
            for cls, tag in zip(self._tagged, tags, strict=True):
                if tag == 0:
                    type.__getattribute__(cls, "__init__")  # a method-cache lookup assigns a tag
            tags = list(map(_VALUE, self._tags))
        return (tags, *self._counted_items())

    def unchanged(self, snapshot: tuple[list[int], list[str], list[object]] | None) -> bool:
        """True when no watched class had an attribute set or deleted since ``snapshot``."""
        if snapshot is None or self._tags is None:
            return False
        tags, names, values = snapshot
        now_names, now_values = self._counted_items()
        return (
            list(map(_VALUE, self._tags)) == tags
            and now_names == names
            and all(map(operator.is_, now_values, values))
        )


def _entries(namespace: dict[str, Any]) -> tuple[list[str], list[Any]]:
    return list(namespace), list(namespace.values())


_SIGNALS = sorted(signal.valid_signals())
_TIMERS = (signal.ITIMER_REAL, signal.ITIMER_VIRTUAL, signal.ITIMER_PROF)


def _hooks() -> list[object]:
    """Interpreter-wide state a cell can set that runs code or steers imports in later cells."""
    path, meta_path, path_hooks = sys.path, sys.meta_path, sys.path_hooks
    return [sys.gettrace(), sys.getprofile(), path, *path, meta_path, *meta_path, path_hooks, *path_hooks]


def _same_objects(now: list[object], before: list[object]) -> bool:
    return len(now) == len(before) and all(map(operator.is_, now, before))


def _same_entries(namespace: dict[str, Any], keys: list[str], values: list[Any]) -> bool:
    """The very same keys and objects, in order (rebinding in place keeps a dict's order)."""
    return (
        len(namespace) == len(keys)
        and all(map(operator.is_, keys, namespace))
        and all(map(operator.is_, values, namespace.values()))
    )


class FreshState:
    """What a reused process restores before each execution, and how it notices it cannot.

    Restored: working directory and its contents, environment, recursion and integer-digit
    limits, the decimal context, mpmath precision, numpy's print options, error handling and
    global random state, and a reseeded ``random``. Checked, and the process retired when
    changed: ``sys.modules`` (a module imported, planted, replaced or removed), the attributes
    of builtins and the core math modules, the attributes of every class those modules and
    their submodules define, threads left running, signal handlers, mask and interval timers,
    trace and profile functions, ``sys.path`` and the import hooks. Anything else a cell
    mutates in place (a module's inner object, a class's cache dict, an audit hook), or a cell
    written to evade these checks, can outlive it: use one process per execution (the default)
    where that matters. All checks together cost 0.2-0.3 ms per execution (1,120 classes, 780
    modules, measured on a busy 2-core box), against ~14 ms of CPU for a typical sympy
    execution.
    """

    def __init__(self, class_versions: ClassVersions | None) -> None:
        import decimal

        import mpmath
        import numpy

        self.home = os.getcwd()
        self.environ = dict(os.environ)
        self.limits = (sys.getrecursionlimit(), sys.get_int_max_str_digits())
        self.module_table = sys.modules
        self.module_names = set(sys.modules)
        self.module_objects = list(sys.modules.values())
        loaded = [name for name in WATCHED_MODULES if name in sys.modules]
        self.modules = {name: _entries(vars(sys.modules[name])) for name in loaded}
        self.class_versions = class_versions
        self.classes = class_versions.snapshot() if class_versions is not None else None
        self.handlers = list(map(signal.getsignal, _SIGNALS))
        self.signal_mask = signal.pthread_sigmask(signal.SIG_BLOCK, ())
        self.hooks = _hooks()
        self.numpy_print = numpy.get_printoptions()
        self.numpy_errors = numpy.geterr()
        self.numpy_random = numpy.random.get_state()
        self.decimal, self.mpmath, self.numpy = decimal, mpmath, numpy

    def restore(self) -> None:
        import random
        import shutil

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
        """True when nothing checked changed: the next execution may run in this process."""
        table = sys.modules
        if (
            table is not self.module_table
            or len(table) != len(self.module_objects)
            or table.keys() != self.module_names
            or not all(map(operator.is_, self.module_objects, table.values()))
        ):
            return False  # first: the checks below look modules up by name
        for name, (keys, values) in self.modules.items():
            if not _same_entries(vars(table[name]), keys, values):
                return False
        if self.class_versions is None or not self.class_versions.unchanged(self.classes):
            return False
        # Nothing left that could run later, between the check and the next cell or during it.
        return (
            len(sys._current_frames()) == 1  # a thread
            and all(signal.getitimer(timer) == (0.0, 0.0) for timer in _TIMERS)  # an alarm
            and all(map(operator.is_, map(signal.getsignal, _SIGNALS), self.handlers))
            and signal.pthread_sigmask(signal.SIG_BLOCK, ()) == self.signal_mask
            and _same_objects(_hooks(), self.hooks)  # a trace function, an import hook
        )


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
                    fresh_state = FreshState(setup.class_versions)
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
