"""`mathforge version`."""

from __future__ import annotations

from mathforge import __version__
from mathforge.cli.app import app, console


@app.command()
def version() -> None:
    """Print the installed mathforge version."""
    console.print(__version__)
