"""The child set-up, and the start-up probe that keeps only the protections this machine enforces.

Which protections hold depends on the kernel and on what a container allows, and a child must
fail closed on any protection it cannot apply. So at start the zygote builds a set-up with
every candidate (Landlock, seccomp, rlimits, no_new_privs, dropped capabilities, parent-death
signal), forks one probe child that applies them leniently and then tests that each really
holds, and keeps only those: real children then apply exactly that set, strictly. What the
probe finds goes into the ``protections`` report (:data:`PROTECTION_NAMES` names every entry),
which the client warns about.
"""

from __future__ import annotations

import contextlib
import os
import socket

from mathforge.sandbox import isolation
from mathforge.sandbox.child import ChildSetup, confine, move_fds
from mathforge.sandbox.children import MAX_RESULT_FRAME
from mathforge.sandbox.protocol import READ_CHUNK, FrameDecoder, encode, write_all
from mathforge.sandbox.scratch import ScratchDirs, wipe

_FILE_SIZE_LIMIT = 64 << 20
_OPEN_FILES_LIMIT = 256

PROTECTION_NAMES = {
    "seccomp": "seccomp system-call filter (exec, fork, kill, sockets, mount, ptrace ...)",
    "landlock": "Landlock file-system confinement (writes outside the scratch directory)",
    "signal_scope": "Landlock signal scoping",
    "network_namespace": "private network namespace",
    "scratch_quota": "scratch disk quota (size-capped tmpfs)",
    "rlimits": "resource limits (address space, file size, open files)",
    "no_new_privs": "no_new_privs",
    "capabilities_dropped": "dropping capabilities",
    "parent_death_signal": "parent-death signal",
    "cpu_limit": "per-execution CPU-seconds limit",
}


def probe_setup(
    protections: dict[str, bool], scratch: ScratchDirs, memory_bytes: int, max_error_chars: int
) -> ChildSetup:
    """Build the child set-up with every candidate protection, keep those a child enforces.

    Records in ``protections`` which ones hold.
    """
    setup = ChildSetup(
        zygote_pid=os.getpid(),
        address_space=isolation.virtual_memory_bytes() + memory_bytes,
        file_size=_FILE_SIZE_LIMIT,
        open_files=_OPEN_FILES_LIMIT,
        max_error_chars=max_error_chars,
        linux_extras=isolation.IS_LINUX,
    )
    abi = isolation.landlock_abi()
    if abi:
        setup.landlock = isolation.LandlockPolicy(abi, isolation.python_read_paths())
    if isolation.IS_LINUX:
        with contextlib.suppress(Exception):  # no libseccomp, or an unknown architecture
            bpf = isolation.build_seccomp_program(allow_thread_signals=abi >= 6)
            setup.seccomp = isolation.SeccompProgram(bpf)
    report = _run_probe(setup, scratch)
    for name, ok in report.items():
        if name in protections:
            protections[name] = bool(ok)
    if not protections["landlock"]:
        setup.landlock = None
    protections["signal_scope"] = setup.landlock is not None and setup.landlock.signal_scoped
    if not protections["seccomp"]:
        setup.seccomp = None
    if not (
        protections["no_new_privs"]
        and protections["parent_death_signal"]
        and protections["capabilities_dropped"]
    ):
        setup.linux_extras = False
    return setup


def _run_probe(setup: ChildSetup, scratch_dirs: ScratchDirs) -> dict[str, bool]:
    """Fork a child that applies every protection, then checks each one actually holds."""
    scratch = scratch_dirs.new()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            move_fds(os.open(os.devnull, os.O_RDONLY), write_fd, os.open(os.devnull, os.O_WRONLY))
            confine(setup, scratch, strict=False)
            write_all(4, encode(_check_protections(setup, scratch_dirs.base)))
        finally:
            os._exit(0)
    os.close(write_fd)
    data = bytearray()
    while chunk := os.read(read_fd, READ_CHUNK):
        data += chunk
    os.close(read_fd)
    os.waitpid(pid, 0)
    wipe(scratch)
    frames = FrameDecoder(MAX_RESULT_FRAME).feed(bytes(data))
    return frames[0] if frames else {}


def _check_protections(setup: ChildSetup, scratch_base: str) -> dict[str, bool]:
    """In the probe child: which of the applied protections really hold."""
    report = dict(setup.applied)
    if report.get("seccomp"):
        try:
            pid = os.fork()
        except PermissionError:
            pass
        else:
            if pid == 0:
                os._exit(0)
            report["seccomp"] = False
        try:
            socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
            report["seccomp"] = False
        except PermissionError:
            pass
    if report.get("landlock"):
        outside = os.path.join(scratch_base, "probe-outside")
        try:
            with open(outside, "w"):
                report["landlock"] = False
        except PermissionError:
            pass
        try:
            with open("/proc/self/status", "rb"):
                report["landlock"] = False
        except PermissionError:
            pass
    return report
