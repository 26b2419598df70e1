"""Where mathforge keeps materialised models: ``$MATHFORGE_HOME`` (default ``~/.cache/mathforge``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def mathforge_home() -> Path:
    """The cache root; set ``MATHFORGE_HOME`` to move it (tests and shared machines do)."""
    return Path(os.environ.get("MATHFORGE_HOME", Path.home() / ".cache" / "mathforge")).expanduser()


def models_dir() -> Path:
    """Directory holding one plain Hugging Face model directory per materialised model."""
    return mathforge_home() / "models"


def dir_size(path: Path) -> int:
    """Total size in bytes of the regular files under ``path`` (symlinks followed once, as HF caches use)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:
                continue
    return total


def build_model_dir(target: Path, is_complete: Callable[[], bool], build: Callable[[Path], None]) -> Path:
    """Build ``target`` once: under a file lock, into a temporary directory renamed into place, so a
    crash never leaves half a model and two processes starting at once build it only once.

    ``build`` writes the model into the directory it is given, its completion marker last;
    ``is_complete`` says whether ``target`` already holds a current build.
    """
    if is_complete():
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        if is_complete():  # another process finished it while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the cache is an ordinary directory
        try:
            build(tmp)
            if target.exists():  # an older build: move aside, then swap in the new one
                stale = target.with_name(f".{target.name}.stale-{os.getpid()}")
                os.rename(target, stale)
                os.rename(tmp, target)
                shutil.rmtree(stale, ignore_errors=True)
            else:
                os.rename(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target
