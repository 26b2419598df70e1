"""Scratch directories: the only place a child may write, one per process, wiped when it ends.

The zygote numbers them under its base directory (a size-capped tmpfs where the kernel lets it
mount one, see :func:`mathforge.sandbox.isolation.enter_namespaces`). Wiping is its own job
because model code can leave directories it has removed its own permissions from.
"""

from __future__ import annotations

import contextlib
import os
import shutil

# The tmpfs holding every scratch directory is capped at this much per worker.
QUOTA_MB_PER_WORKER = 256


class ScratchDirs:
    """Hands out fresh, private scratch directories under ``base``."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.count = 0

    def new(self) -> str:
        self.count += 1
        path = os.path.join(self.base, str(self.count))
        os.mkdir(path, 0o700)
        return path


def wipe(path: str) -> None:
    """Remove a scratch directory, even one holding directories made without permissions."""
    try:
        os.rmdir(path)
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    for root, dirs, _ in os.walk(path):
        for name in dirs:
            target = os.path.join(root, name)
            if not os.path.islink(target):
                with contextlib.suppress(OSError):
                    os.chmod(target, 0o700)
    shutil.rmtree(path, ignore_errors=True)
