"""User-facing errors: the CLI prints them as one line, never as a traceback."""

from __future__ import annotations

from pathlib import Path


class MathforgeError(Exception):
    """An error caused by the user's input or environment, with a message that says how to fix it."""


class InputError(MathforgeError):
    """Bad content in an input file, located by file, line and field."""

    def __init__(
        self, path: str | Path, problem: str, line: int | None = None, field: str | None = None
    ) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.problem = problem
        where = self.path if line is None else f"{self.path}:{line}"
        what = problem if field is None else f"field '{field}': {problem}"
        super().__init__(f"{where}: {what}")
