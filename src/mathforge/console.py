"""The consoles results and progress are printed on, one width rule for the CLI and the Python API.

Rich assumes 80 columns when output is not a terminal, which wraps result tables and one-line
notices in logs and pipes; there they get 120 columns, and a terminal or $COLUMNS keeps its own.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from rich.console import Console


def _width(stream: TextIO) -> int | None:
    return None if os.environ.get("COLUMNS") or stream.isatty() else 120


def stdout_console() -> Console:
    """Results (tables, paths): stdout, so it stays pipeable."""
    return Console(width=_width(sys.stdout))


def stderr_console() -> Console:
    """Progress, notices, warnings and errors."""
    return Console(stderr=True, width=_width(sys.stderr))
