"""Fast, isolated execution of model-written Python for tool-integrated reasoning (TIR).

    from mathforge.sandbox import Sandbox

    with Sandbox(timeout=5.0) as sandbox:
        sandbox.run("print(2**10)").stdout                 # '1024\\n'
        sandbox.run_batch(codes)                           # parallel, results in input order
        with sandbox.session() as s:                       # notebook: state survives cells
            s.run("x = 41"); s.run("print(x + 1)").observation()   # '42'
        sandbox.run_sessions([(s1, code1), (s2, code2)])   # one cell per session, in parallel

Design. A :class:`Sandbox` starts one *zygote* process: a fresh interpreter with a clean,
allow-listed environment that imports and exercises math, numpy and sympy once (never torch),
then forks. Every one-shot execution runs in its own child forked from it, so each starts warm
and clean (a patched ``print`` or ``math.pi`` dies with its process); pages are shared
copy-on-write and the zygote's heap is frozen for the garbage collector. A session is one
persistent child that runs its cells in order; idle session processes are stopped (SIGSTOP),
capped in number (least recently used are dropped), and rebuilt when needed by replaying the
cells that finished. After a cell times out, exhausts memory or crashes, the session rolls back
to the state before it (``reset=True``). Spare children are pre-forked so an execution does
not wait for a fork, and the zygote's heap sits on huge pages so that a fork is cheap.

Throughput. A fresh process per execution costs a fork and, above all, the copy-on-write
faults of every page the code touches (sympy touches thousands). ``Sandbox(reuse=N)`` lets one
confined process serve up to N one-shot executions, each with new globals and a restored
process state, retired early when a cell rebinds an attribute of builtins or a core math
module, sets or deletes an attribute of a class those modules define, changes ``sys.modules``,
leaves a thread, timer, signal handler or hook behind, or ends in timeout, memory error or
crash: the same isolation from the machine, but not the guarantee that nothing one execution
changes in place reaches the next (``child.FreshState`` lists what is restored and checked).
``bench/sandbox.py`` measures both against the Qwen2.5-Math executor.

Guarantees on Linux (each child, before it reads model code):

* its own session and process group; a wall-clock deadline enforced from outside by the
  zygote with SIGKILL to that group; the parent-death signal, so nothing outlives the zygote,
  which is also the subreaper of anything a child could orphan; every child is reaped;
* rlimits: address space (``memory_mb`` above the warm interpreter), CPU seconds (set from
  outside per execution), file size 64 MiB, 256 open files, no core dumps;
* a seccomp filter: no exec, no new processes (threads are fine), signals only to its own
  process group (or Landlock-scoped), only AF_UNIX sockets and no connect/bind/listen, no
  ptrace, mount, namespaces, bpf, io_uring, keyrings, System V IPC, chmod/chown/xattrs,
  identity or rlimit changes; denied calls fail with EPERM, so the model reads a
  PermissionError;
* Landlock: read-only access to the Python installation and system libraries only (no /proc
  of other processes, no home directory), writes only in a per-execution scratch directory
  that is wiped afterwards; TCP bind/connect denied (ABI 4+); signals and abstract UNIX
  sockets scoped to the child (ABI 6+);
* capabilities dropped and no_new_privs set, so a child started by root is not root;
* where the kernel allows (root, or unprivileged user namespaces), a private network
  namespace (no interfaces) and a size-capped tmpfs for scratch directories;
* stdin is /dev/null; stdout is streamed to the zygote and capped (head and tail kept), so a
  flood can neither exhaust memory nor block; stderr is discarded.

Whatever the child does, the caller's process and the zygote survive: a result always comes
back with status ok, error, timeout, memory or crash. Where a mechanism is unavailable (an
older kernel, a container that forbids it) the sandbox still runs, and warns once with a
:class:`SandboxWarning` naming each protection that is off; ``Sandbox.protections`` lists
them. On macOS only process groups, the deadline and some rlimits apply (no seccomp, Landlock
or namespaces; RLIMIT_AS is not enforced): use it for development, not for untrusted code.
Windows is not supported (no fork).
"""

from mathforge.sandbox.files import default_exec_path, run_file
from mathforge.sandbox.pool import Sandbox, SandboxWarning, Session
from mathforge.sandbox.result import ExecResult

__all__ = ["ExecResult", "Sandbox", "SandboxWarning", "Session", "default_exec_path", "run_file"]
