"""Linux isolation primitives for sandbox children: Landlock, seccomp, capabilities, namespaces.

Everything here is applied by the zygote (namespaces, once) or by a freshly forked child before
it runs any model code (the rest). Each function raises OSError when the kernel refuses, so the
zygote can probe what this machine supports once and the child can fail closed afterwards.

Python has no standard binding for Landlock or prctl, so those are thin ctypes calls; the
seccomp program is compiled once by libseccomp (through ``pyseccomp``) and loaded in each child
with a single prctl.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import resource
import sys
from collections.abc import Iterable
from pathlib import Path

IS_LINUX = sys.platform.startswith("linux")
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# prctl options (linux/prctl.h)
_PR_SET_PDEATHSIG = 1
_PR_SET_SECCOMP = 22
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_MODE_FILTER = 2

# unshare/mount flags (sched.h, sys/mount.h)
_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_CLONE_THREAD = 0x00010000
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18

# Landlock: the syscall numbers are shared by all architectures that have it.
_SYS_LANDLOCK_CREATE_RULESET = 444
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
_FS_EXECUTE = 1 << 0
_FS_WRITE_FILE = 1 << 1
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
_FS_REMOVE_DIR = 1 << 4
_FS_REMOVE_FILE = 1 << 5
_FS_MAKE_CHAR = 1 << 6
_FS_MAKE_DIR = 1 << 7
_FS_MAKE_REG = 1 << 8
_FS_MAKE_SOCK = 1 << 9
_FS_MAKE_FIFO = 1 << 10
_FS_MAKE_BLOCK = 1 << 11
_FS_MAKE_SYM = 1 << 12
_FS_REFER = 1 << 13  # ABI 2
_FS_TRUNCATE = 1 << 14  # ABI 3
_FS_IOCTL_DEV = 1 << 15  # ABI 5
_NET_BIND_TCP = 1 << 0  # ABI 4
_NET_CONNECT_TCP = 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
_SCOPE_SIGNAL = 1 << 1

# Files a Python process may legitimately need outside its installation (dynamic loader cache,
# time zone, user database) and device files it may open; everything else is invisible.
_SYSTEM_READ_PATHS = (
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/sys/devices/system/cpu",
)
_DEVICE_FILES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")


def _check(ret: int) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def _prctl(option: int, arg2: int = 0, arg3: int = 0) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), 0, 0))


def set_no_new_privs() -> None:
    """No privilege gain through exec (required before Landlock and seccomp)."""
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)


def set_parent_death_signal(signum: int) -> None:
    """Get ``signum`` when the parent dies, so a killed zygote leaves no running children."""
    _prctl(_PR_SET_PDEATHSIG, signum)


def become_subreaper() -> None:
    """Adopt orphaned descendants, so none can escape to init and outlive the sandbox."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def drop_capabilities() -> None:
    """Empty the effective, permitted and inheritable capability sets (a root child stops being root)."""
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data))


# --- namespaces --------------------------------------------------------------------------


def _write_text(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def enter_namespaces(scratch_base: str, quota_mb: int) -> set[str]:
    """Move the calling (single-threaded) zygote into private mount and network namespaces.

    Children inherit them: no network interface but a down loopback, and the scratch base
    becomes a size-capped tmpfs so filling the disk only fills that quota. As root this needs
    nothing more; otherwise it goes through a user namespace that maps the caller's own ids.
    Returns the protections obtained, a subset of {"network_namespace", "scratch_quota"}.
    """
    uid, gid = os.getuid(), os.getgid()
    attempts = [_CLONE_NEWNS | _CLONE_NEWNET] if os.geteuid() == 0 else []
    attempts.append(_CLONE_NEWUSER | _CLONE_NEWNS | _CLONE_NEWNET)
    entered = 0
    for flags in attempts:
        if _libc.unshare(flags) == 0:
            entered = flags
            break
    if not entered:
        return set()
    if entered & _CLONE_NEWUSER:
        try:
            _write_text("/proc/self/setgroups", "deny")
            _write_text("/proc/self/uid_map", f"{uid} {uid} 1")
            _write_text("/proc/self/gid_map", f"{gid} {gid} 1")
        except OSError:
            return {"network_namespace"}
    obtained = {"network_namespace"}
    try:
        _check(_libc.mount(None, b"/", None, ctypes.c_ulong(_MS_REC | _MS_PRIVATE), None))
        options = f"size={quota_mb}m,mode=0700".encode()
        flags = ctypes.c_ulong(_MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
        _check(_libc.mount(b"tmpfs", os.fsencode(scratch_base), b"tmpfs", flags, options))
        obtained.add("scratch_quota")
    except OSError:
        pass
    return obtained


# --- memory --------------------------------------------------------------------------------

_MADV_HUGEPAGE = 14
_MADV_COLLAPSE = 25
_HUGE_PAGE = 2 << 20


def collapse_to_huge_pages() -> int:
    """Back the zygote's heap with 2 MiB pages; returns the bytes collapsed.

    fork() copies, and each child's exit tears down, one page-table entry per 4 KiB page: with
    huge pages that is 512 times fewer entries, which is most of the cost of a fork here. A
    child's first write to a huge page still copies only 4 KiB.
    """
    _libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    collapsed = 0
    with open("/proc/self/maps") as maps:
        regions = [line.split() for line in maps]
    for fields in regions:
        perms, path = fields[1], fields[5] if len(fields) > 5 else ""
        if not perms.startswith("rw") or perms[3] != "p" or path not in ("", "[heap]"):
            continue
        low, high = (int(value, 16) for value in fields[0].split("-"))
        start = -(-low // _HUGE_PAGE) * _HUGE_PAGE
        end = high // _HUGE_PAGE * _HUGE_PAGE
        hinted = end > start and _libc.madvise(start, end - start, _MADV_HUGEPAGE) == 0
        if hinted and _libc.madvise(start, end - start, _MADV_COLLAPSE) == 0:
            collapsed += end - start
    return collapsed


# --- Landlock ------------------------------------------------------------------------------


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is absent or disabled."""
    if not IS_LINUX:
        return 0
    version = _libc.syscall(
        _SYS_LANDLOCK_CREATE_RULESET,
        None,
        ctypes.c_size_t(0),
        ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION),
    )
    return max(int(version), 0)


def python_read_paths() -> list[str]:
    """Directories the interpreter imports from: prefixes and every existing sys.path entry."""
    candidates = [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix, *sys.path]
    return [
        path for path in dict.fromkeys(os.path.abspath(p) for p in candidates if p) if os.path.isdir(path)
    ]


class LandlockPolicy:
    """Read-only access to the Python installation and system libraries; writes only in scratch.

    The path handles are opened once in the zygote; each child builds its own ruleset from
    them plus its scratch directory, so no child can write another child's scratch.
    """

    def __init__(self, abi: int, read_paths: Iterable[str]) -> None:
        self.abi = abi
        fs_all = (1 << 13) - 1
        if abi >= 2:
            fs_all |= _FS_REFER
        if abi >= 3:
            fs_all |= _FS_TRUNCATE
        if abi >= 5:
            fs_all |= _FS_IOCTL_DEV
        self.handled_fs = fs_all
        self.handled_net = _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0
        self.scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0
        self.signal_scoped = abi >= 6
        file_rights = _FS_READ_FILE | (_FS_TRUNCATE & fs_all)
        self.scratch_rights = fs_all & ~(
            _FS_EXECUTE | _FS_MAKE_CHAR | _FS_MAKE_BLOCK | _FS_MAKE_SOCK | _FS_IOCTL_DEV
        )
        self._rules: list[tuple[int, int]] = []
        for path in [*read_paths, *_SYSTEM_READ_PATHS]:
            self._add(path, _FS_READ_FILE | _FS_READ_DIR, _FS_READ_FILE)
        for path in _DEVICE_FILES:
            self._add(path, 0, file_rights | _FS_WRITE_FILE)

    def _add(self, path: str, dir_rights: int, file_rights: int) -> None:
        try:
            low = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return
        # Above the numbers a child moves its pipes to, so they survive until Landlock is applied.
        fd = fcntl.fcntl(low, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(low)
        rights = dir_rights if os.path.isdir(path) else file_rights
        if rights:
            self._rules.append((fd, rights))
        else:
            os.close(fd)

    def apply(self, scratch: str) -> None:
        """Restrict the calling process for good (no_new_privs must already be set)."""
        attr = _RulesetAttr(self.handled_fs, self.handled_net, self.scoped)
        size = 8 if self.abi < 4 else 16 if self.abi < 6 else 24
        ruleset = _check(
            _libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0)
        )
        scratch_fd = os.open(scratch, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for fd, rights in [*self._rules, (scratch_fd, self.scratch_rights)]:
                rule = _PathBeneathAttr(rights, fd)
                _check(
                    _libc.syscall(
                        _SYS_LANDLOCK_ADD_RULE, ruleset, _LANDLOCK_RULE_PATH_BENEATH, ctypes.byref(rule), 0
                    )
                )
            _check(_libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0))
        finally:
            os.close(ruleset)
            os.close(scratch_fd)


# --- seccomp -------------------------------------------------------------------------------

# System calls a child never needs: they start programs or processes, reach outside the
# sandbox (other processes, the kernel, the network, the mount table, System V IPC), or change
# ownership, permissions, identity and limits. They fail with EPERM so Python raises a
# PermissionError the model can read, rather than the process dying.
_DENIED_SYSCALLS = (
    "execve", "execveat", "fork", "vfork",
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    "pidfd_open", "pidfd_getfd", "pidfd_send_signal", "tkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo",
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns",
    "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "keyctl", "add_key", "request_key", "init_module", "finit_module", "delete_module",
    "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "acct", "syslog",
    "quotactl", "quotactl_fd", "iopl", "ioperm", "settimeofday", "clock_settime", "clock_adjtime",
    "adjtimex", "sethostname", "setdomainname", "vhangup", "lookup_dcookie", "personality",
    "name_to_handle_at", "open_by_handle_at", "fanotify_init",
    "mknod", "mknodat", "chmod", "fchmod", "fchmodat", "fchmodat2",
    "chown", "fchown", "lchown", "fchownat",
    "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups",
    "setfsuid", "setfsgid", "capset", "setrlimit",
    "connect", "bind", "listen", "accept", "accept4", "sendmsg", "sendmmsg",
    "shmget", "shmat", "shmctl", "msgget", "msgsnd", "msgrcv", "msgctl",
    "semget", "semop", "semtimedop", "semctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive",
)  # fmt: skip
_EPERM = 1
_ENOSYS = 38
_AF_UNIX = 1
_SIGKILL = 9
_TIOCSTI = 0x5412
_TIOCLINUX = 0x541C


def build_seccomp_program(allow_thread_signals: bool) -> bytes:
    """Compile the child's filter to a BPF program (needs libseccomp, through ``pyseccomp``).

    ``allow_thread_signals`` keeps tgkill (used by raise() and thread signals) when Landlock
    already confines signals to the child itself; otherwise only kill(0, sig), the child's own
    process group, is allowed.
    """
    import pyseccomp as sc

    program = sc.SyscallFilter(defaction=sc.ALLOW)
    program.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    deny = sc.ERRNO(_EPERM)

    def add(action: int, name: str, *args: object) -> None:
        if sc.resolve_syscall(sc.Arch.NATIVE, name) < 0:
            return  # unknown to this libseccomp or absent on this architecture
        program.add_rule(action, name, *args)

    for name in _DENIED_SYSCALLS:
        add(deny, name)
    add(deny, "clone", sc.Arg(0, sc.MASKED_EQ, _CLONE_THREAD, 0))  # a process, not a thread
    add(sc.ERRNO(_ENOSYS), "clone3")  # its flags sit in memory seccomp cannot read; libc falls back to clone
    add(deny, "socket", sc.Arg(0, sc.NE, _AF_UNIX))
    # Signals: only to its own process group (itself), and never SIGKILL, so an unexplained
    # SIGKILL always means the kernel's out-of-memory killer or the CPU limit.
    add(deny, "kill", sc.Arg(0, sc.NE, 0))
    add(deny, "kill", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, _SIGKILL))
    if allow_thread_signals:
        add(deny, "tgkill", sc.Arg(2, sc.MASKED_EQ, 0xFFFFFFFF, _SIGKILL))
    else:
        add(deny, "tgkill")
    add(deny, "prlimit64", sc.Arg(2, sc.NE, 0))  # reading limits is fine, changing them is not
    add(deny, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, _TIOCSTI))
    add(deny, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, _TIOCLINUX))
    fd = os.memfd_create("mathforge-seccomp")
    with open(fd, "w+b") as handle:
        program.export_bpf(handle)
        handle.seek(0)
        return handle.read()


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


class SeccompProgram:
    """A compiled filter held in memory by the zygote, loaded by each child with one prctl."""

    def __init__(self, bpf: bytes) -> None:
        self._buffer = ctypes.create_string_buffer(bpf, len(bpf))
        self._fprog = _SockFprog(len(bpf) // 8, ctypes.addressof(self._buffer))

    def load(self) -> None:
        _check(
            _libc.prctl(
                _PR_SET_SECCOMP, ctypes.c_ulong(_SECCOMP_MODE_FILTER), ctypes.byref(self._fprog), 0, 0
            )
        )


# --- rlimits -------------------------------------------------------------------------------


def set_rlimits(address_space: int, file_size: int, open_files: int) -> None:
    """Per-process limits: memory, file size, open files and no core dumps.

    CPU seconds are set from outside by the zygote with prlimit when it hands the child work
    (see :func:`limit_cpu`), which also removes any race with this call.
    """
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))
    if IS_LINUX:  # macOS accepts RLIMIT_AS but does not enforce it
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))


def limit_cpu(pid: int, soft: int, hard: int) -> bool:
    """Set another process's CPU-seconds limit (Linux prlimit); False where that is impossible."""
    prlimit = getattr(resource, "prlimit", None)
    if prlimit is None:
        return False
    try:
        prlimit(pid, resource.RLIMIT_CPU, (soft, hard))
    except (OSError, ValueError):
        return False
    return True


def process_cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a child has used, from /proc; None where unavailable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def virtual_memory_bytes() -> int:
    """The calling process's current address-space size (the base the child's limit adds to)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
