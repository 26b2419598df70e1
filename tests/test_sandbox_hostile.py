"""The hostile corpus: model code that attacks the sandbox, its parent or the machine.

Every case asserts the safe outcome, that it ended within timeout + 0.5 s, that canary files
outside the scratch directory are intact, that no zombie or stray process is left, and that
the next execution is clean and ok.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from mathforge.sandbox import Sandbox

TIMEOUT = 2.0
SECRET = "mathforge-test-secret-3f9a"


@dataclass(frozen=True)
class Case:
    name: str
    code: str
    statuses: tuple[str, ...]
    requires: tuple[str, ...] = ()
    error_contains: str | None = None


@pytest.fixture(scope="module")
def sandbox():
    os.environ["MATHFORGE_TEST_TOKEN"] = SECRET  # a credential the caller holds; must never leak
    try:
        with Sandbox(workers=2, timeout=TIMEOUT, memory_mb=512, max_output_chars=1000) as box:
            yield box
    finally:
        del os.environ["MATHFORGE_TEST_TOKEN"]


@pytest.fixture(scope="module")
def canary_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("canary")
    (directory / "canary.txt").write_text("canary")
    return directory


@pytest.fixture(scope="module")
def listener():
    """A loopback TCP server and a UNIX socket the child must not reach."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    yield server
    server.close()


def _descendants(root: int) -> list[tuple[int, int, str]]:
    """(pid, parent pid, state) of every process below ``root``."""
    table: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        table[int(entry)] = (int(fields[1]), fields[0])
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, state) in table.items():
            if ppid == parent:
                found.append((pid, ppid, state))
                frontier.append(pid)
    return found


def assert_clean(sandbox: Sandbox, canary_dir: Path, live_sessions: int = 0) -> None:
    assert (canary_dir / "canary.txt").read_text() == "canary"
    assert sorted(p.name for p in canary_dir.iterdir()) == ["canary.txt"]
    result = sandbox.run("import math, builtins\nprint(math.pi, builtins.print is print, 6 * 7)")
    assert result.status == "ok", result
    assert result.stdout == f"{3.141592653589793} True 42\n"
    # Every process below the zygote is its direct child (nothing forked further), none is a
    # zombie, and there are no more than the pre-forked spares plus live sessions.
    deadline = time.monotonic() + 2.0
    while True:
        tree = _descendants(sandbox.pid)
        ok = (
            all(ppid == sandbox.pid and state != "Z" for _, ppid, state in tree)
            and len(tree) <= sandbox.workers + live_sessions
        )
        if ok or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert ok, f"stray or zombie processes under the zygote: {tree}"


def require(sandbox: Sandbox, names: tuple[str, ...]) -> None:
    missing = [name for name in names if not sandbox.protections.get(name)]
    if missing:
        pytest.skip(
            f"protection unavailable on this machine: {', '.join(missing)} (running it would be unsafe)"
        )


CASES = [
    Case("busy loop", "while True:\n    pass", ("timeout",)),
    Case(
        "loop ignoring signals",
        "import signal\n"
        "for s in (signal.SIGALRM, signal.SIGINT, signal.SIGTERM, signal.SIGXCPU, signal.SIGHUP):\n"
        "    signal.signal(s, signal.SIG_IGN)\n"
        "while True:\n    pass",
        ("timeout",),
    ),
    Case(
        "loop swallowing BaseException",
        "while True:\n    try:\n        while True:\n            pass\n"
        "    except BaseException:\n        pass",
        ("timeout",),
    ),
    Case("sleep forever", "import time\ntime.sleep(10**6)", ("timeout",)),
    Case(
        "long C-level computation (SVD 4000x4000)",
        "import numpy as np\na = np.random.default_rng(0).random((4000, 4000))\n"
        "np.linalg.svd(a, compute_uv=False)",
        ("timeout", "memory"),
    ),
    Case(
        "str of a huge int",
        "import sys\nsys.set_int_max_str_digits(0)\nprint(len(str(10 ** (10**8))))",
        ("timeout", "memory"),
    ),
    Case(
        "str of a huge int (default limit)", "print(str(10**100000))", ("error",), error_contains="ValueError"
    ),
    Case("16 GiB bytearray", "x = bytearray(16 * 2**30)", ("memory",), error_contains="MemoryError"),
    Case(
        "gradual memory growth",
        "chunks = []\nwhile True:\n    chunks.append(b'x' * 10**7)",
        ("memory", "timeout"),  # the limit, or the deadline first on a loaded machine
    ),
    Case(
        "fork bomb",
        "import os\nwhile True:\n    os.fork()",
        ("error",),
        ("seccomp",),
        "PermissionError",
    ),
    Case(
        "orphaned setsid daemon",
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(1000)",
        ("error",),
        ("seccomp",),
        "PermissionError",
    ),
    Case(
        "kill the parent",
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
        ("error",),
        ("seccomp",),
        "PermissionError",
    ),
    Case(
        "kill(-1, SIGKILL)",
        "import os, signal\nos.kill(-1, signal.SIGKILL)",
        ("error",),
        ("seccomp",),
        "PermissionError",
    ),
    Case(
        "os.system",
        "import os\nprint(os.system('touch {canary_dir}/pwned'))",
        ("ok", "error"),
        ("seccomp",),
    ),
    Case(
        "obfuscated os.system",
        "getattr(__import__('o' + 's'), 'sys' + 'tem')('touch {canary_dir}/pwned')",
        ("ok", "error"),
        ("seccomp",),
    ),
    Case(
        "ctypes libc system",
        "import ctypes\nctypes.CDLL(None).system(b'touch {canary_dir}/pwned')",
        ("ok", "error"),
        ("seccomp",),
    ),
    Case(
        "subprocess",
        "import subprocess\nsubprocess.run(['touch', '{canary_dir}/pwned'])",
        ("error",),
        ("seccomp",),
        "PermissionError",
    ),
    Case(
        "read the parent's environment",
        "import os\nprint(open(f'/proc/{{os.getppid()}}/environ').read())",
        ("error",),
        ("landlock",),
        "PermissionError",
    ),
    Case(
        "dump the environment",
        "import os\nprint(dict(os.environ))\nprint(open('/proc/self/environ').read())",
        ("ok", "error"),
    ),
    Case(
        "write outside the scratch directory",
        "open('{canary_dir}/canary.txt', 'w').write('pwned')",
        ("error",),
        ("landlock",),
        "PermissionError",
    ),
    Case(
        "create a file outside the scratch directory",
        "open('{canary_dir}/pwned', 'w').write('pwned')",
        ("error",),
        ("landlock",),
        "PermissionError",
    ),
    Case(
        "delete outside the scratch directory",
        "import os\nos.remove('{canary_dir}/canary.txt')",
        ("error",),
        ("landlock",),
        "PermissionError",
    ),
    Case(
        "delete a tree outside the scratch directory",
        "import shutil\nshutil.rmtree('{canary_dir}')",
        ("error",),
        ("landlock",),
        "PermissionError",
    ),
    Case(
        "chmod outside the scratch directory",
        "import os\nos.chmod('{canary_dir}/canary.txt', 0)",
        ("error",),
        ("seccomp",),
        "PermissionError",
    ),
    Case(
        "fill the disk (one file)",
        "with open('big', 'wb') as f:\n    while True:\n        f.write(b'\\0' * 2**20)",
        ("error",),
        ("landlock",),
        "File too large",
    ),
    Case(
        "fill the disk (many files)",
        "i = 0\nwhile True:\n    with open(f'f{{i}}', 'wb') as f:\n"
        "        f.write(b'\\0' * (2**26 - 1))\n    i += 1",
        ("error", "timeout"),
        ("landlock", "scratch_quota"),
    ),
    Case(
        "network egress",
        "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=1)",
        ("error",),
        ("seccomp",),
        "PermissionError",
    ),
    Case(
        "loopback TCP connect",
        "import socket\ns = socket.socket()\ns.connect(('127.0.0.1', {port}))",
        ("error",),
        ("seccomp",),
        "PermissionError",
    ),
    Case(
        "loopback UDP",
        "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', {port}))",
        ("error",),
        ("seccomp",),
        "PermissionError",
    ),
    Case(
        "UNIX socket connect",
        "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('/run/systemd/private')",
        ("error",),
        ("seccomp",),
        "PermissionError",
    ),
    Case("one huge print", "print('x' * 10**8)", ("ok",)),
    Case("endless print loop", "while True:\n    print('spam' * 100)", ("timeout",)),
    Case("input()", "input()", ("error",), error_contains="EOFError"),
    Case("segfault", "import ctypes\nctypes.string_at(0)", ("crash",), error_contains="SIGSEGV"),
    Case(
        "patch builtins.print",
        "import builtins\nbuiltins.print = lambda *a, **k: None\nbuiltins.__import__ = None",
        ("ok",),
    ),
    Case("patch math.pi", "import math\nmath.pi = 3", ("ok",)),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_case(case: Case, sandbox: Sandbox, canary_dir: Path, listener: socket.socket) -> None:
    require(sandbox, case.requires)
    code = case.code.format(canary_dir=canary_dir, port=listener.getsockname()[1])
    started = time.monotonic()
    result = sandbox.run(code)
    elapsed = time.monotonic() - started
    assert result.status in case.statuses, result
    assert elapsed <= TIMEOUT + 0.5, f"{case.name} took {elapsed:.2f} s"
    if case.error_contains:
        assert case.error_contains in (result.error or ""), result
    assert len(result.stdout) <= sandbox.max_output_chars + 3
    assert SECRET not in result.stdout and SECRET not in (result.error or "")
    with pytest.raises(BlockingIOError):
        listener.accept()  # nothing reached the loopback server
    assert_clean(sandbox, canary_dir)


def test_output_is_capped_head_and_tail(sandbox: Sandbox) -> None:
    result = sandbox.run("print('A' * 5000 + 'B' * 5000)")
    assert result.status == "ok"
    assert result.stdout.startswith("A" * 500) and result.stdout.rstrip().endswith("B" * 499)
    assert "..." in result.stdout and len(result.stdout) <= sandbox.max_output_chars + 3


def test_environment_is_allow_listed(sandbox: Sandbox) -> None:
    result = sandbox.run("import os\nprint(sorted(os.environ))")
    assert result.status == "ok"
    names = eval(result.stdout)
    assert "MATHFORGE_TEST_TOKEN" not in names
    assert set(names) <= {
        "PATH", "HOME", "TMPDIR", "MPLCONFIGDIR", "LANG", "LC_ALL", "LC_CTYPE", "TZ",
        "PYTHONSAFEPATH", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE", "PYTHONNOUSERSITE",
        "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS",
    }  # fmt: skip


def test_scratch_is_private_and_wiped(sandbox: Sandbox) -> None:
    first = sandbox.run("import os\nopen('note.txt', 'w').write('hi')\nprint(os.getcwd())")
    assert first.status == "ok"
    scratch = first.stdout.strip()
    second = sandbox.run(f"import os\nprint(os.getcwd() != {scratch!r}, os.listdir('.'))")
    assert second.stdout == "True []\n"
    peek = sandbox.run(f"print(open({scratch + '/note.txt'!r}).read())")
    assert peek.status == "error"


def test_session_state_and_rollback_after_timeout(sandbox: Sandbox, canary_dir: Path) -> None:
    with sandbox.session() as session:
        assert session.run("x = 41").status == "ok"
        assert session.run("print(x + 1)").stdout == "42\n"
        started = time.monotonic()
        stuck = session.run("x = 0\nwhile True:\n    pass")
        assert time.monotonic() - started <= TIMEOUT + 0.5
        assert stuck.status == "timeout" and stuck.reset
        assert stuck.observation() == "Timeout Error"
        after = session.run("print(x)")
        assert after.status == "ok" and after.stdout == "41\n" and not after.reset
    assert_clean(sandbox, canary_dir)


def test_session_survives_crash_and_memory(sandbox: Sandbox, canary_dir: Path) -> None:
    with sandbox.session() as session:
        session.run("import numpy as np\nv = np.arange(5)")
        crash = session.run("import ctypes\nctypes.string_at(0)")
        assert crash.status == "crash" and crash.reset
        memory = session.run("big = bytearray(16 * 2**30)")
        assert memory.status == "memory" and memory.reset
        assert session.run("print(v.sum(), 'big' in globals())").stdout == "10 False\n"
    assert_clean(sandbox, canary_dir)


def test_session_patch_stays_in_its_session(sandbox: Sandbox) -> None:
    with sandbox.session() as patched, sandbox.session() as other:
        patched.run("import math\nmath.pi = 3")
        assert patched.run("print(math.pi)").stdout == "3\n"
        assert other.run("import math\nprint(math.pi)").stdout == "3.141592653589793\n"
        assert sandbox.run("import math\nprint(math.pi)").stdout == "3.141592653589793\n"


def test_parent_and_zygote_survive_everything(sandbox: Sandbox) -> None:
    pid = sandbox.pid
    os.kill(pid, 0)  # still alive after the whole corpus ran against it
    assert sandbox.run("print('alive')").stdout == "alive\n"
    assert sandbox.pid == pid


# --- contamination: what one execution changes, no later one sees, in every mode ---------------


@dataclass(frozen=True)
class Contamination:
    name: str
    patch: str  # changes the process's state
    probe: str  # prints what a process with a clean state prints
    clean: str


CONTAMINATIONS = [
    Contamination("math.pi", "import math\nmath.pi = 3", "import math\nprint(math.pi)", "3.141592653589793"),
    Contamination("builtin", "import builtins\nbuiltins.abs = lambda value: 0", "print(abs(-2))", "2"),
    Contamination(
        "sympy.sqrt",
        "import sympy\nsympy.sqrt = lambda arg, evaluate=None: arg",
        "import sympy\nprint(sympy.sqrt(4))",
        "2",
    ),
    Contamination(
        "sympy.Rational.__str__",
        "import sympy\nsympy.Rational.__str__ = lambda self: 'patched'",
        "import sympy\nprint(sympy.Rational(1, 3))",
        "1/3",
    ),
    Contamination(
        "fractions.Fraction.__str__",
        "import fractions\nfractions.Fraction.__str__ = lambda self: 'patched'",
        "from fractions import Fraction\nprint(Fraction(1, 3))",
        "1/3",
    ),
    Contamination(
        "class of a sympy submodule",
        "import sympy\ntype(sympy.S.One).__str__ = lambda self: 'patched'",
        "import sympy\nprint(sympy.S.One + 0)",
        "1",
    ),
    Contamination(
        "attribute added to a base outside the watched modules",
        "import numbers\nnumbers.Rational.leaked = 1",
        "from fractions import Fraction\nprint(hasattr(Fraction(1, 2), 'leaked'))",
        "False",
    ),
    Contamination(
        "module planted in sys.modules",
        "import sys, types\nsys.modules['planted'] = types.ModuleType('planted')",
        "import sys\nprint('planted' in sys.modules)",
        "False",
    ),
    Contamination(
        "module newly imported and patched",
        "import calendar\ncalendar.MONDAY = 5",
        "import calendar\nprint(calendar.MONDAY)",
        "0",
    ),
    Contamination(
        "module replaced in sys.modules",
        "import sys, types\nsys.modules['itertools'] = types.ModuleType('itertools')",
        "import itertools\nprint(hasattr(itertools, 'count'))",
        "True",
    ),
    Contamination(
        "thread that patches later",
        "import math, threading, time\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), setattr(math, 'e', 2))).start()",
        "import math, time\ntime.sleep(0.6)\nprint(math.e)",
        "2.718281828459045",
    ),
    Contamination(
        "CPU-time alarm that patches later",
        "import math, signal\n"
        "signal.signal(signal.SIGPROF, lambda *_: setattr(math, 'tau', 3))\n"
        "signal.setitimer(signal.ITIMER_PROF, 0.1)",
        "import math, time\nstart = time.process_time()\nwhile time.process_time() - start < 0.3:\n"
        "    pass\nprint(math.tau)",
        "6.283185307179586",
    ),
    Contamination(
        "trace function",
        "import sys\nsys.settrace(lambda frame, event, arg: None)",
        "import sys\nprint(sys.gettrace())",
        "None",
    ),
    Contamination(
        "import hook",
        "import sys\nclass Finder:\n    def find_spec(self, *args):\n        return None\n"
        "sys.meta_path.insert(0, Finder())",
        "import sys\nprint(any(type(f).__name__ == 'Finder' for f in sys.meta_path))",
        "False",
    ),
    Contamination(
        "blocked signal",
        "import signal\n_ = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})",
        "import signal\nprint(signal.SIGUSR1 in signal.pthread_sigmask(signal.SIG_BLOCK, ()))",
        "False",
    ),
    Contamination(
        "environment", "import os\nos.environ['X'] = '1'", "import os\nprint('X' in os.environ)", "False"
    ),
    Contamination(
        "recursion limit",
        "import sys\nsys.setrecursionlimit(50000)",
        "import sys\nprint(sys.getrecursionlimit())",
        "1000",
    ),
    Contamination(
        "random state",
        "import random\nrandom.seed(7)",
        "import random\nprint(random.random() == random.Random(7).random())",
        "False",
    ),
    Contamination(
        "mpmath precision", "import mpmath\nmpmath.mp.dps = 50", "import mpmath\nprint(mpmath.mp.dps)", "15"
    ),
]


@pytest.fixture(scope="module", params=[1, 20], ids=["fresh-process", "reuse"])
def any_mode(request):
    # One worker: in reuse mode the probe runs in the patched process unless it was retired.
    with Sandbox(workers=1, timeout=TIMEOUT, memory_mb=512, reuse=request.param) as box:
        yield box


@pytest.mark.parametrize("case", CONTAMINATIONS, ids=[case.name for case in CONTAMINATIONS])
def test_no_execution_sees_what_an_earlier_one_changed(case: Contamination, any_mode: Sandbox) -> None:
    both = any_mode.run(case.patch + "\n" + case.probe)
    assert both.status == "ok" and both.stdout != case.clean + "\n", both  # the patch works
    assert any_mode.run(case.probe).stdout == case.clean + "\n"
    assert any_mode.run(case.patch).status == "ok"  # alone: a thread it starts outlives the cell
    probe = any_mode.run(case.probe)
    assert (probe.status, probe.stdout) == ("ok", case.clean + "\n"), case.name
