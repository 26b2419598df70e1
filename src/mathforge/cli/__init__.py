"""`mathforge` command line: one entry point, one subcommand per stage.

Command modules import their heavy dependencies (torch, transformers) inside the command
body, so `mathforge --help` and the light commands start fast. Importing a command module
registers its subcommands on the shared `app`.
"""

from __future__ import annotations

import errno
import sys

from mathforge.cli import (  # noqa: F401  (each module registers its commands)
    data,
    data_clean,
    eval,
    exec,
    grade,
    grpo,
    loop,
    models,
    report,
    rm,
    rs,
    sft,
    solve,
    synthesize,
    version,
)
from mathforge.cli.app import app, err_console
from mathforge.errors import MathforgeError


def main() -> None:
    """Run the CLI; a user error becomes one red line and exit code 2, never a traceback.

    User errors are ours (:class:`MathforgeError`), settings that fail validation (pydantic) and
    operating-system errors on a user's path (missing, a directory, read-only, ...). Anything else
    is a bug and keeps its traceback.
    """
    try:
        app()
    except Exception as exc:
        message = user_error_message(exc)
        if message is None:
            raise
        err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        sys.exit(2)


def user_error_message(exc: BaseException) -> str | None:
    """The one-line message for an error the user can fix, or None for a bug."""
    from pydantic import ValidationError

    if isinstance(exc, MathforgeError):
        return str(exc)
    if isinstance(exc, ValidationError):
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or exc.title
            problems.append(f"{where}: {error['msg']}")
        return "invalid setting " + "; ".join(problems)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:  # a write's error names no file
        where = f" writing {exc.filename}" if exc.filename else ""
        return f"the disk is full{where}: free some space and rerun the same command (finished work is kept)"
    if isinstance(exc, OSError) and exc.filename is not None:
        target = f"{exc.filename} -> {exc.filename2}" if exc.filename2 else str(exc.filename)
        return f"{target}: {exc.strerror or exc}"
    return None
