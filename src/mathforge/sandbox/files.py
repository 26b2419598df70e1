"""Run a JSONL file of model-written code in the sandbox: in parallel, resumable, in input order.

Each input line holds ``code`` (one execution) or ``cells`` (a notebook session whose cells share
variables). Each output line is the input line plus ``status``, ``stdout``, ``error`` and
``wall_ms`` (lists, plus ``reset``, for ``cells``). Lines run in parallel but are written in
input order, each as soon as every line before it is written; a rerun skips the ids already in
the output. ``mathforge exec`` is this function plus option parsing and printing.
"""

from __future__ import annotations

import queue
import time
import warnings
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from mathforge.errors import InputError, MathforgeError
from mathforge.jsonl import JsonlWriter, read_ids, read_jsonl
from mathforge.sandbox.pool import Sandbox
from mathforge.sandbox.result import ExecResult

STATUSES = ("ok", "error", "timeout", "memory", "crash")
Item = tuple[str, dict[str, Any], list[str], bool]  # id, input line, cells, is_session


def default_exec_path(input_path: str | Path) -> Path:
    """``IN.jsonl`` -> ``IN.exec.jsonl`` next to it."""
    path = Path(input_path)
    return path.with_name(path.name.removesuffix(".jsonl") + ".exec.jsonl")


def load_code_file(path: str | Path) -> list[Item]:
    """Validate every line before running anything; a bad line names its line and field."""
    path = Path(path)
    items: list[Item] = []
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


def run_file(
    input_path: str | Path,
    output_path: str | Path | None = None,
    *,
    timeout: float = 5.0,
    workers: int | None = None,
    memory_mb: int = 1024,
    max_output_chars: int = 4000,
    reuse: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Execute every line of ``input_path`` not yet in ``output_path``; return the summary.

    ``on_progress(done, total)`` follows the lines run now; ``on_notice`` receives the resume
    message and the sandbox's warnings (protections that are off on this machine).
    """
    input_path = Path(input_path)
    out_path = Path(output_path) if output_path is not None else default_exec_path(input_path)
    if out_path.resolve() == input_path.resolve():
        raise MathforgeError(f"{out_path}: the output would overwrite the input; choose another -o")
    items = load_code_file(input_path)
    if not items:
        raise MathforgeError(f"{input_path}: no lines to run (the file is empty)")
    notice = on_notice or (lambda message: None)
    progress = on_progress or (lambda done, total: None)
    done = read_ids(out_path)
    todo = [item for item in items if item[0] not in done]
    if done:
        notice(f"resuming: {len(items) - len(todo)} of {len(items)} lines already in {out_path}")
    counts: Counter[str] = Counter()
    started = time.monotonic()
    written = 0
    if todo:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sandbox = Sandbox(workers, timeout, memory_mb, max_output_chars, reuse=reuse)
        for warning in caught:
            notice(f"warning: {warning.message}")
        progress(0, len(todo))
        with sandbox, JsonlWriter(out_path) as writer:
            for item, results in _run_in_order(sandbox, todo):
                key, record, _, is_session = item
                writer.write(_output_record(key, record, results, is_session))
                counts.update(result.status for result in results)
                written += 1
                progress(written, len(todo))
    seconds = time.monotonic() - started
    executions = sum(counts.values())
    return {
        "lines": written,
        "resumed": len(items) - len(todo),
        "executions": executions,
        **{status: counts.get(status, 0) for status in STATUSES},
        "seconds": round(seconds, 3),
        "executions_per_s": round(executions / seconds, 2) if seconds > 0 else 0.0,
        "output": str(out_path),
    }


def _run_in_order(sandbox: Sandbox, todo: list[Item]) -> Any:
    """Yield ``(item, results)`` in input order while up to a window of lines runs in parallel."""
    finished: queue.Queue[int] = queue.Queue()
    window = min(sandbox.max_live_sessions, max(16, 4 * sandbox.workers))
    futures: dict[int, list[Future[ExecResult]]] = {}
    sessions: dict[int, Any] = {}
    ready: dict[int, list[ExecResult]] = {}
    next_submit = next_yield = 0

    def submit(index: int) -> None:
        _, _, cells, is_session = todo[index]
        if is_session:
            session = sessions[index] = sandbox.session()
            line_futures = [session.submit(cell) for cell in cells]
        else:
            line_futures = [sandbox.submit(cells[0])]
        futures[index] = line_futures
        line_futures[-1].add_done_callback(lambda _: finished.put(index))

    while next_yield < len(todo):
        # The window bounds the lines running; finished ones wait (small: output is capped) for
        # every line before them, so one slow line does not hold the others back.
        while next_submit < len(todo) and len(futures) < window:
            submit(next_submit)
            next_submit += 1
        try:
            index = finished.get(timeout=0.2)  # short waits keep Ctrl-C responsive
        except queue.Empty:
            continue
        ready[index] = [future.result() for future in futures.pop(index)]
        if index in sessions:
            sessions.pop(index).close()
        while next_yield in ready:
            yield todo[next_yield], ready.pop(next_yield)
            next_yield += 1


def _output_record(
    key: str, record: dict[str, Any], results: list[ExecResult], is_session: bool
) -> dict[str, Any]:
    out = dict(record)
    out.setdefault("id", key)
    fields = ["status", "stdout", "error", "wall_ms"] + (["reset"] if is_session else [])
    for name in fields:
        values = [getattr(result, name) for result in results]
        out[name] = values if is_session else values[0]
    return out
