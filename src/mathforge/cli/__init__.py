"""`mathforge` command line: one entry point, one subcommand per stage.

Command modules import their heavy dependencies (torch, transformers) inside the command
body, so `mathforge --help` and the light commands start fast. Importing a command module
registers its subcommands on the shared `app`.
"""

from __future__ import annotations

import sys

from mathforge.cli import data, eval, exec, grade, models, report, rm, rs, sft, solve, version  # noqa: F401
from mathforge.cli.app import app, err_console
from mathforge.errors import MathforgeError


def main() -> None:
    """Run the CLI; a user error becomes one red line and exit code 2, never a traceback."""
    try:
        app()
    except MathforgeError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
