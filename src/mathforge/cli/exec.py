"""`mathforge exec`: run model-written Python from a JSONL file in the sandbox."""

from __future__ import annotations

import json
import queue
import time
import warnings
from collections import Counter
from concurrent.futures import Future
from pathlib import Path
from typing import Annotated, Any

import typer

from mathforge.cli.app import app, console, err_console
from mathforge.errors import InputError, MathforgeError
from mathforge.jsonl import JsonlWriter, read_ids, read_jsonl


def _load(path: Path) -> list[tuple[str, dict[str, Any], list[str], bool]]:
    """Validate every line before running anything: (id, record, cells, is_session)."""
    items: list[tuple[str, dict[str, Any], list[str], bool]] = []
    seen: set[str] = set()
    for line, record in read_jsonl(path):
        has_code, has_cells = "code" in record, "cells" in record
        if has_code == has_cells:
            raise InputError(path, "needs exactly one of 'code' (a string) or 'cells' (a list)", line)
        if has_code:
            if not isinstance(record["code"], str):
                raise InputError(path, "must be a string", line, "code")
            cells, session = [record["code"]], False
        else:
            cells, session = record["cells"], True
            if not isinstance(cells, list) or not cells or not all(isinstance(c, str) for c in cells):
                raise InputError(path, "must be a non-empty list of strings", line, "cells")
        key = str(record.get("id", line))
        if key in seen:
            raise InputError(path, f"duplicate id {key!r} (ids are how a rerun resumes)", line, "id")
        seen.add(key)
        items.append((key, record, cells, session))
    return items


@app.command("exec")
def exec_command(
    input_path: Annotated[
        Path,
        typer.Argument(
            metavar="IN.jsonl", help="One JSON object a line: 'code' (an execution) or 'cells' (a session)."
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Output JSONL (default: IN.exec.jsonl); ids in it are skipped."),
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.01, help="Wall-clock seconds per execution.")] = 5.0,
    workers: Annotated[int | None, typer.Option(min=1, help="Parallel executions (default: cores).")] = None,
    memory_mb: Annotated[int, typer.Option(min=32, help="Memory per execution, MiB.")] = 1024,
    max_output_chars: Annotated[int, typer.Option(min=16, help="Stdout kept per execution.")] = 4000,
    reuse: Annotated[
        int,
        typer.Option(
            min=1, help="'code' executions one process may serve (default 1: a fresh process for each)."
        ),
    ] = 1,
) -> None:
    """Execute code in the isolated sandbox; each output line adds status, stdout, error and wall_ms.

    For 'cells' lines those fields (and 'reset') are lists, one entry per cell; the cells share
    variables like a notebook. Lines are written as they finish, so an interrupted run resumes
    where it stopped.
    """
    from mathforge.sandbox import ExecResult, Sandbox

    out_path = output or input_path.with_name(input_path.name.removesuffix(".jsonl") + ".exec.jsonl")
    if out_path.resolve() == input_path.resolve():
        raise MathforgeError(f"{out_path}: the output would overwrite the input; choose another -o")
    items = _load(input_path)
    done = read_ids(out_path)
    todo = [item for item in items if item[0] not in done]
    if done:
        message = f"resuming: {len(items) - len(todo)} of {len(items)} lines already in {out_path}"
        err_console.print(message, highlight=False, soft_wrap=True)
    if not todo:
        _print_summary(Counter(), 0, 0.0, out_path)
        return

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sandbox = Sandbox(workers, timeout, memory_mb, max_output_chars, reuse=reuse)
    for warning in caught:
        err_console.print(f"[yellow]warning:[/] {warning.message}", highlight=False, soft_wrap=True)

    finished: queue.Queue[int] = queue.Queue()
    window = min(sandbox.max_live_sessions, max(16, 4 * sandbox.workers))
    futures: dict[int, list[Future[ExecResult]]] = {}
    sessions: dict[int, Any] = {}
    counts: Counter[str] = Counter()
    written = 0
    started = time.monotonic()

    def submit(index: int) -> None:
        _, _, cells, is_session = todo[index]
        if is_session:
            session = sessions[index] = sandbox.session()
            line_futures = [session.submit(cell) for cell in cells]
        else:
            line_futures = [sandbox.submit(cells[0])]
        futures[index] = line_futures
        line_futures[-1].add_done_callback(lambda _: finished.put(index))

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("exec"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with sandbox, JsonlWriter(out_path) as writer, Progress(*columns, console=err_console) as progress:
            task = progress.add_task("exec", total=len(todo))
            next_index = 0
            while written < len(todo):
                while next_index < len(todo) and len(futures) < window:
                    submit(next_index)
                    next_index += 1
                try:
                    index = finished.get(timeout=0.2)  # short waits keep Ctrl-C responsive
                except queue.Empty:
                    continue
                key, record, _, is_session = todo[index]
                results = [future.result() for future in futures.pop(index)]
                if is_session:
                    sessions.pop(index).close()
                writer.write(_output_record(key, record, results, is_session))
                counts.update(result.status for result in results)
                written += 1
                progress.advance(task)
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: {written} new lines in {out_path}; rerun the same command to resume",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(130) from None

    seconds = time.monotonic() - started
    _print_summary(counts, written, seconds, out_path)


def _output_record(key: str, record: dict[str, Any], results: list[Any], is_session: bool) -> dict[str, Any]:
    out = dict(record)
    out.setdefault("id", key)
    fields = ["status", "stdout", "error", "wall_ms"] + (["reset"] if is_session else [])
    for name in fields:
        values = [getattr(result, name) for result in results]
        out[name] = values if is_session else values[0]
    return out


def _print_summary(counts: Counter[str], lines: int, seconds: float, out_path: Path) -> None:
    from rich.table import Table

    executions = sum(counts.values())
    table = Table(title="mathforge exec")
    table.add_column("status")
    table.add_column("executions", justify="right")
    for status in ("ok", "error", "timeout", "memory", "crash"):
        table.add_row(status, str(counts.get(status, 0)))
    table.add_row("[bold]total[/]", f"[bold]{executions}[/]")
    console.print(table)
    rate = executions / seconds if seconds > 0 else 0.0
    console.print(f"{lines} lines, {seconds:.1f} s, {rate:.1f} executions/s -> {out_path}", highlight=False)
    summary = {
        "lines": lines,
        "executions": executions,
        **{status: counts.get(status, 0) for status in ("ok", "error", "timeout", "memory", "crash")},
        "seconds": round(seconds, 3),
        "executions_per_s": round(rate, 2),
        "output": str(out_path),
    }
    console.print(json.dumps(summary), highlight=False, soft_wrap=True)
