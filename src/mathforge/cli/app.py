"""The root `mathforge` Typer application; each stage registers its subcommands on it."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    name="mathforge",
    help="Turn a general language model into a math expert: grade, execute, solve, evaluate, train.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Results go to stdout; progress, warnings and errors to stderr so stdout stays pipeable.
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Turn a general language model into a math expert: grade, execute, solve, evaluate, train."""
