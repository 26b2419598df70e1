"""Sandbox API: results and observations, batches, sessions (replay, eviction), recovery."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import warnings

import pytest

from mathforge.errors import MathforgeError
from mathforge.sandbox import ExecResult, Sandbox, SandboxWarning
from mathforge.sandbox.child import ClassVersions
from mathforge.sandbox.children import OutputCapture
from mathforge.sandbox.pool import _warn_missing
from mathforge.sandbox.protocol import FrameDecoder, FrameError, encode
from mathforge.sandbox.result import truncate_middle


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=2, timeout=3.0, memory_mb=512, max_output_chars=400) as box:
        yield box


# --- pure parts ------------------------------------------------------------------------------


def test_observation_prefers_stdout_then_error_and_truncates_like_qwen() -> None:
    assert ExecResult("ok", stdout="  42\n").observation() == "42"
    assert ExecResult("error", stdout="", error="NameError: name 'x' is not defined").observation() == (
        "NameError: name 'x' is not defined"
    )
    assert ExecResult("error", stdout="partial\n", error="ValueError: bad").observation() == "partial"
    assert ExecResult("timeout", stdout="half", error="TimeoutError: ...").observation() == "Timeout Error"
    long = "a" * 300 + "b" * 300
    assert ExecResult("ok", stdout=long).observation(max_chars=10) == "aaaaa...bbbbb"
    assert truncate_middle("short", 10) == "short"
    result = ExecResult("ok", stdout="1\n", wall_ms=1.5)
    assert ExecResult.from_dict(result.to_dict()) == result


def test_output_capture_keeps_head_and_tail_in_bounded_memory() -> None:
    capture = OutputCapture(10)
    capture.feed(b"0123456789abc")
    assert capture.text() == "01234...89abc"  # contiguous: exactly truncate_middle of the whole
    for _ in range(1000):
        capture.feed(b"x" * 1000)
    capture.feed(b"END")
    assert capture.text() == "01234...xxEND"
    assert len(capture.head) == 10 and len(capture.tail) == 10


def test_frames_split_across_reads_and_bad_frames_are_errors() -> None:
    data = encode({"a": 1}) + encode({"b": "é"})
    decoder = FrameDecoder(100)
    assert decoder.feed(data[:3]) == [] and decoder.feed(data[3:]) == [{"a": 1}, {"b": "é"}]
    with pytest.raises(FrameError):
        FrameDecoder(4).feed(encode({"too": "big"}))
    with pytest.raises(FrameError):
        FrameDecoder(100).feed(b"\x03\x00\x00\x00{x}")


def test_class_versions_see_an_attribute_set_or_deleted_on_a_class_or_a_base() -> None:
    class Base:
        x = 1

    class Derived(Base):
        def __str__(self) -> str:
            return "derived"

    versions = ClassVersions([Derived])
    assert len(versions) == 1
    before = versions.snapshot()
    assert str(Derived()) == "derived" and Derived.x == 1  # using a class changes nothing
    assert versions.unchanged(before)
    Base.y = 2  # through the base
    assert not versions.unchanged(before)
    before = versions.snapshot()
    del Base.y
    assert not versions.unchanged(before)
    before = versions.snapshot()
    Derived.__str__ = lambda self: "patched"  # type: ignore[method-assign]
    assert not versions.unchanged(before)
    assert not versions.unchanged(None)


def test_missing_protection_warns_once_naming_it() -> None:
    protections = {"seccomp": False, "landlock": True, "network_namespace": False}
    with pytest.warns(SandboxWarning, match="seccomp system-call filter.*private network namespace"):
        _warn_missing(protections)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_missing(protections)  # the same message is not repeated


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux protections")
def test_every_protection_the_kernel_offers_is_on(sandbox: Sandbox) -> None:
    """A protection must never be silently off where this machine supports it."""
    from mathforge.sandbox import isolation

    on = sandbox.protections
    assert on["rlimits"] and on["no_new_privs"] and on["capabilities_dropped"] and on["parent_death_signal"]
    if isolation.landlock_abi() >= 1:
        assert on["landlock"]
    if isolation.landlock_abi() >= 6:
        assert on["signal_scope"]
    try:
        import pyseccomp  # noqa: F401
    except (ImportError, RuntimeError, OSError):
        pass
    else:
        assert on["seccomp"]


def test_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match="workers"):
        Sandbox(workers=0)
    with pytest.raises(ValueError, match="timeout"):
        Sandbox(timeout=0)
    with pytest.raises(ValueError, match="max_live_sessions"):
        Sandbox(workers=4, max_live_sessions=2)


def test_importing_the_sandbox_is_light() -> None:
    code = "import mathforge.sandbox, sys; print(sorted({'torch', 'numpy', 'sympy'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout == "[]\n"


# --- executions ------------------------------------------------------------------------------


def test_results_errors_and_notebook_display(sandbox: Sandbox) -> None:
    assert sandbox.run("print(2**10)").stdout == "1024\n"
    assert sandbox.run("x = 6\nx * 7").stdout == "42\n"  # a final bare expression is shown
    assert sandbox.run("import sympy as sp\nsp.factor(sp.Symbol('x')**2 - 1)").stdout == "(x - 1)*(x + 1)\n"
    assert sandbox.run("print('shown')\nNone").stdout == "shown\n"
    error = sandbox.run("print('before')\nundefined_name")
    assert (error.status, error.stdout, error.error) == (
        "error",
        "before\n",
        "NameError: name 'undefined_name' is not defined",
    )
    syntax = sandbox.run("x = = 1")
    assert syntax.status == "error" and syntax.error.startswith("SyntaxError")
    assert sandbox.run("import sys\nsys.exit(0)").status == "ok"
    assert sandbox.run("import sys\nsys.exit(3)").error == "SystemExit: 3"
    assert sandbox.run("import sys\nprint('hidden', file=sys.stderr)").stdout == ""
    assert sandbox.run("import sys\n_ = sys.stdout.buffer.write(b'\\xff ok\\n')").stdout == "\ufffd ok\n"
    assert sandbox.run("print('héllo ✓')").stdout == "héllo ✓\n"
    assert sandbox.run("import sys\nprint('torch' in sys.modules)").stdout == "False\n"
    assert sandbox.run("print(1)").wall_ms > 0


# Executions print monotonic-clock intervals (one clock for all processes): overlapping ones ran
# at the same time. This checks parallelism without depending on how loaded the machine is.
_INTERVAL = "import time\nstart = time.monotonic()\ntime.sleep({})\nprint(start, time.monotonic())\n"


def _overlaps(outputs: list[str]) -> int:
    spans = [tuple(map(float, out.splitlines()[0].split())) for out in outputs]
    return sum(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1 :])


def test_batch_keeps_input_order_and_runs_in_parallel(sandbox: Sandbox) -> None:
    results = sandbox.run_batch([_INTERVAL.format(0.3 if i % 2 else 0) + f"print({i})" for i in range(6)])
    assert [r.stdout.splitlines()[1] for r in results] == [str(i) for i in range(6)]
    assert _overlaps([r.stdout for i, r in enumerate(results) if i % 2]) >= 1  # sleepers ran side by side


def test_runs_from_many_threads(sandbox: Sandbox) -> None:
    results: list[ExecResult] = []

    def work(n: int) -> None:
        results.extend(sandbox.run(f"print({n} * {k})") for k in range(3))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 12 and all(r.status == "ok" for r in results)


def test_sessions_run_in_parallel_and_keep_their_own_state(sandbox: Sandbox) -> None:
    sessions = [sandbox.session() for _ in range(4)]
    results = sandbox.run_sessions([(s, f"value = {i}") for i, s in enumerate(sessions)])
    assert all(r.status == "ok" for r in results)
    results = sandbox.run_sessions([(s, _INTERVAL.format(0.3) + "print(value)") for s in sessions])
    assert [r.stdout.splitlines()[1] for r in results] == ["0", "1", "2", "3"]
    assert _overlaps([r.stdout for r in results]) >= 1  # sessions ran side by side
    twice = sandbox.run_sessions([(sessions[0], "value += 10"), (sessions[0], "print(value)")])
    assert twice[1].stdout == "10\n"
    for session in sessions:
        session.close()
    with pytest.raises(MathforgeError, match="closed"):
        sessions[0].run("print(1)")


def test_error_cells_stay_in_the_session(sandbox: Sandbox) -> None:
    with sandbox.session() as session:
        assert session.run("a = 1\nraise ValueError('half done')").status == "error"
        assert session.run("print(a)").stdout == "1\n"


def test_idle_sessions_are_evicted_and_replayed_transparently() -> None:
    with Sandbox(workers=1, timeout=2.0, memory_mb=256, max_live_sessions=1) as box:
        first, second = box.session(), box.session()
        first.run("import numpy as np\nv = np.arange(4)")
        second.run("w = 'second'")  # takes the only live slot: the first session's process goes
        again = first.run("print(v.sum())")
        assert (again.status, again.stdout, again.reset) == ("ok", "6\n", False)
        assert second.run("print(w)").stdout == "second\n"


def test_a_cell_that_cannot_be_replayed_is_dropped_and_reported() -> None:
    with Sandbox(workers=1, timeout=1.0, memory_mb=256) as box, box.session() as session:
        deadline = time.time() + 1.0
        session.run("x = 1")
        flaky = f"import time\nif time.time() > {deadline}:\n    while True:\n        pass\ny = 2"
        assert session.run(flaky).status == "ok"
        time.sleep(max(0.0, deadline - time.time()) + 0.1)
        assert session.run("import ctypes\nctypes.string_at(0)").reset  # forces a rebuild
        rebuilt = session.run("print(x, 'y' in globals())")
        assert (rebuilt.stdout, rebuilt.reset) == ("1 False\n", True)
        assert session._history == ["x = 1", "print(x, 'y' in globals())"]


def test_recovers_when_the_worker_process_dies() -> None:
    with Sandbox(workers=1, timeout=5.0, memory_mb=256) as box:
        session = box.session()
        session.run("kept = 'state'")
        slow = box.submit("import time\ntime.sleep(5)")
        time.sleep(0.3)
        import os
        import signal

        os.kill(box.pid, signal.SIGKILL)
        lost = slow.result(timeout=10)
        assert lost.status == "crash" and "died" in lost.error
        with pytest.warns(SandboxWarning, match="restarting"):
            assert box.run("print('back')").stdout == "back\n"
        assert session.run("print(kept)").stdout == "state\n"  # replayed into the new process


def test_closed_sandbox_refuses_work() -> None:
    box = Sandbox(workers=1, timeout=1.0, memory_mb=256)
    pid = box.pid
    box.close()
    with pytest.raises(MathforgeError, match="closed"):
        box.run("print(1)")
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)


def test_reused_processes_restore_state_and_retire_when_patched() -> None:
    with Sandbox(workers=1, timeout=1.0, memory_mb=256, reuse=20) as box:
        pid = box.run("import os\nprint(os.getpid())").stdout
        assert box.run("import os\nprint(os.getpid())").stdout == pid  # the same process
        # Ordinary sympy work keeps the process: new Dummies (a counter sympy rebinds on its
        # class), a subclass of a sympy class, an undefined function, an error.
        ordinary = (
            "import sympy as sp\nx = sp.Symbol('x')\nprint(sp.Matrix([[1, 2], [3, 4]]).eigenvals())",
            "import sympy as sp\nclass Mine(sp.Expr):\n    pass\nprint(Mine(), sp.Dummy('d'))",
            "import sympy as sp\nf, x = sp.Function('f'), sp.Symbol('x')\n"
            "print(sp.dsolve(f(x).diff(x) - f(x)))",
            "from fractions import Fraction\n1 / Fraction(0, 1)",
        )
        assert [box.run(code).status for code in ordinary] == ["ok", "ok", "ok", "error"]
        assert box.run("import os\nprint(os.getpid())").stdout == pid
        box.run("x = 5\nopen('left.txt', 'w').write('x')\nimport os\nos.environ['LEAK'] = '1'")
        clean = box.run("import os\nprint('x' in globals(), os.listdir('.'), 'LEAK' in os.environ)")
        assert clean.stdout == "False [] False\n"
        box.run("import sys, decimal\nsys.set_int_max_str_digits(0)\ndecimal.getcontext().prec = 50")
        limits = box.run("import sys, decimal as d\nprint(sys.get_int_max_str_digits(), d.getcontext().prec)")
        assert limits.stdout == "4300 28\n"
        box.run("import numpy as np\nnp.random.seed(1)\nnp.set_printoptions(precision=2)")
        assert box.run("import numpy as np\nprint(np.array([1/3]))").stdout == "[0.33333333]\n"
        box.run("import math\nmath.pi = 3")  # rebinding a core module attribute retires the process
        after = box.run("import math, os\nprint(math.pi, os.getpid())").stdout.split()
        assert after[0] == "3.141592653589793" and after[1] != pid.strip()
        assert box.run("while True:\n    pass").status == "timeout"
        assert box.run("print('ok')").stdout == "ok\n"
