"""The root `mathforge` Typer application; each stage registers its subcommands on it."""

from __future__ import annotations

import os
import sys
from typing import TextIO

import typer
from rich.console import Console

app = typer.Typer(
    name="mathforge",
    help="Turn a general language model into a math expert: grade, execute, solve, evaluate, train.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _width(stream: TextIO) -> int | None:
    """Rich's own width on a terminal or with $COLUMNS; 120 columns in logs and pipes, where
    the 80 it assumes would wrap result tables."""
    return None if os.environ.get("COLUMNS") or stream.isatty() else 120


# Results go to stdout; progress, warnings and errors to stderr so stdout stays pipeable.
console = Console(width=_width(sys.stdout))
err_console = Console(stderr=True, width=_width(sys.stderr))


@app.callback()
def _root() -> None:
    """Turn a general language model into a math expert: grade, execute, solve, evaluate, train."""
