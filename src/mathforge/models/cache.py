"""Where mathforge keeps materialised models: ``$MATHFORGE_HOME`` (default ``~/.cache/mathforge``)."""

from __future__ import annotations

import os
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
