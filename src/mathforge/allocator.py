"""jemalloc for long CPU runs: the loop's (and the benches') child commands preload it where installed.

glibc's malloc fragments under PyTorch's CPU tensors of many sizes (batches of different
lengths): in an SFT run of the embedded model on 2 cores the step time doubled within ~40 steps,
with 42% of the time in ``posix_memalign``/``malloc``, while the same steps under jemalloc stayed
near their start and used ~30% less memory (bench/RESULTS.md, "Supervised fine-tuning"). A
process cannot swap its allocator once started and no wheel ships one, so commands started by
mathforge get the system's jemalloc through ``LD_PRELOAD`` where a package installed it
(Debian/Ubuntu ``libjemalloc2``, Fedora ``jemalloc``, conda ``jemalloc``), and a CPU training
run started by hand prints how to do the same. ``MATHFORGE_ALLOCATOR=system`` turns this off.
The sandbox passes only a fixed list of variables to executed code, so programs there keep
the system allocator.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

ALLOCATOR_ENV = "MATHFORGE_ALLOCATOR"  # "auto" (default: jemalloc where installed) or "system"
_NAMES = ("libjemalloc.so.2", "libjemalloc.so")
_MULTIARCH = ("x86_64-linux-gnu", "aarch64-linux-gnu")


def library_dirs() -> list[Path]:
    """Where distributions and conda put shared libraries, in the order they are searched."""
    dirs = [Path(os.environ["CONDA_PREFIX"]) / "lib"] if os.environ.get("CONDA_PREFIX") else []
    for root in ("/usr/local/lib", "/usr/lib"):
        dirs += [Path(root) / arch for arch in _MULTIARCH] + [Path(root)]
    return [*dirs, Path("/usr/lib64")]


def find_jemalloc(dirs: Iterable[Path] | None = None) -> Path | None:
    """The first jemalloc shared library in ``dirs`` (default: :func:`library_dirs`), or None."""
    if not sys.platform.startswith("linux"):
        return None  # LD_PRELOAD is the Linux loader's; macOS's allocator does not show the problem
    for folder in library_dirs() if dirs is None else dirs:
        for name in _NAMES:
            if (folder / name).is_file():
                return folder / name
    return None


def enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether ``MATHFORGE_ALLOCATOR`` leaves the choice to mathforge (anything but ``system``)."""
    value = (os.environ if env is None else env).get(ALLOCATOR_ENV, "auto").strip().lower()
    return value != "system"


def child_environment(
    env: Mapping[str, str] | None = None, dirs: Iterable[Path] | None = None
) -> dict[str, str]:
    """``env`` (default: this process's) for a child command, with jemalloc first in ``LD_PRELOAD``.

    Unchanged where no library is found in ``dirs`` (default: :func:`library_dirs`), where
    ``MATHFORGE_ALLOCATOR=system``, or where jemalloc is preloaded already.
    """
    child = dict(os.environ if env is None else env)
    found = find_jemalloc(dirs)
    if found is None or not enabled(child):
        return child
    preloaded = child.get("LD_PRELOAD", "").replace(":", " ").split()
    if any("jemalloc" in Path(item).name for item in preloaded):
        return child
    child["LD_PRELOAD"] = ":".join([str(found), *preloaded])
    return child


def jemalloc_loaded() -> bool:
    """Whether this process runs on jemalloc (it is mapped into the process)."""
    maps = Path("/proc/self/maps")
    if not maps.is_file():
        return False
    return "libjemalloc" in maps.read_text(encoding="utf-8", errors="replace")


def long_run_hint(dirs: Iterable[Path] | None = None) -> str | None:
    """One line for a CPU training run on glibc's malloc saying how to preload jemalloc; None when moot."""
    if not sys.platform.startswith("linux") or not enabled() or jemalloc_loaded():
        return None
    found = find_jemalloc(dirs)
    how = (
        f"LD_PRELOAD={found} before the command"
        if found is not None
        else "install jemalloc (Debian/Ubuntu: apt install libjemalloc2) and preload it with LD_PRELOAD"
    )
    return (
        f"long CPU runs slow down under glibc's malloc (fragmentation): {how}; "
        f"`mathforge loop` does this itself ({ALLOCATOR_ENV}=system turns this hint off)"
    )
