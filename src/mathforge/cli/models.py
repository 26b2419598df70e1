"""`mathforge models`: the known model names, where each is cached and its size."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from mathforge.cli.app import app, console, err_console


@app.command("models")
def models_command(
    fetch: Annotated[
        str | None,
        typer.Option(help="Materialise (embedded) or download (hub) this model, then list."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """List known models with their cache location and size; --fetch NAME makes one local."""
    from mathforge.models import list_models, mathforge_home, resolve_model

    if fetch is not None:
        with err_console.status(f"fetching {fetch}"):
            path = resolve_model(fetch)
        err_console.print(f"{fetch}: {path}", highlight=False)
    rows = list_models()
    if as_json:
        data = [
            {
                "name": row.model.name,
                "source": row.model.source,
                "location": row.model.location,
                "description": row.model.description,
                "path": str(row.path) if row.path else None,
                "size_bytes": row.size_bytes,
            }
            for row in rows
        ]
        console.print(json.dumps(data), soft_wrap=True, highlight=False, markup=False)
        return
    from rich.table import Table

    table = Table(title=f"models (cache: {mathforge_home()})", title_justify="left")
    for column in ("name", "source", "description", "cached at", "size"):
        table.add_column(column, overflow="fold")
    for row in rows:
        size = f"{row.size_bytes / 2**20:,.0f} MiB" if row.size_bytes is not None else ""
        table.add_row(row.model.name, row.model.source, row.model.description, str(row.path or "-"), size)
    console.print(table)
