"""The root `mathforge` Typer application; each stage registers its subcommands on it."""

from __future__ import annotations

import typer

from mathforge.console import stderr_console, stdout_console

app = typer.Typer(
    name="mathforge",
    help="Turn a general language model into a math expert: grade, execute, solve, evaluate, train.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# Results go to stdout; progress, warnings and errors to stderr so stdout stays pipeable.
console = stdout_console()
err_console = stderr_console()


@app.callback()
def _root() -> None:
    """Turn a general language model into a math expert: grade, execute, solve, evaluate, train."""
