"""Grade a JSONL file of responses (or extracted answers): resumable, in parallel worker processes.

Each output line is its input line plus ``pred``, ``correct`` and ``reason``, written and flushed
in input order as it is graded, so an interrupted run keeps its work and a rerun resumes after
the rows already in the output (matched by ``id``, else by line number). ``mathforge grade`` is
this function plus option parsing and printing.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from mathforge.errors import InputError, MathforgeError

BATCH = 32  # rows per task sent to a worker process
Task = tuple[str, str, bool, str | None, float]  # text, gold, is_response, dataset, timeout
Verdicts = list[tuple[str | None, bool, str]]  # pred, correct, reason


def default_graded_path(input_path: str | Path) -> Path:
    """``IN.jsonl`` -> ``IN.graded.jsonl`` next to it."""
    path = Path(input_path)
    return path.with_name(path.name.removesuffix(".jsonl") + ".graded.jsonl")


def grade_file(
    input_path: str | Path,
    output_path: str | Path | None = None,
    *,
    dataset: str | None = None,
    workers: int = 1,
    skip_bad: bool = False,
    timeout: float = 5.0,
    restart: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Grade every row of ``input_path`` into ``output_path`` and return the summary.

    Rows need ``gold`` and ``response`` (model output) or ``pred`` (an extracted answer);
    ``dataset`` gives the rules for rows without their own. A bad row raises an
    :class:`InputError` naming its line and field after every row before it is written, unless
    ``skip_bad`` (then it is counted). ``restart`` regrades everything. ``on_progress(done,
    total)`` follows the rows; ``on_notice`` receives warnings and skipped-row messages.
    """
    from mathforge.answers import KNOWN_DATASETS
    from mathforge.jsonl import JsonlWriter, read_jsonl_lenient

    input_path = Path(input_path)
    out_path = Path(output_path) if output_path is not None else default_graded_path(input_path)
    if out_path.resolve() == input_path.resolve():
        raise MathforgeError(f"{out_path}: the output would overwrite the input; choose another -o")
    total = _count_rows(input_path)
    if total == 0:
        raise MathforgeError(f"{input_path}: no rows to grade (the file is empty)")
    notice = on_notice or (lambda message: None)
    progress = on_progress or (lambda done, total: None)
    done = {} if restart else _read_done(out_path)
    stats = _Stats()
    for row in done.values():
        stats.add(row, resumed=True)
    warned: set[str] = set()
    finished = len(done)
    progress(finished, total)

    writer = JsonlWriter(out_path, mode="w" if restart else "a")
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=_spawn()) if workers > 1 else None
    pending: deque[tuple[Future[Verdicts], list[dict[str, Any]]]] = deque()
    batch_rows: list[dict[str, Any]] = []
    batch_tasks: list[Task] = []

    def write(rows: list[dict[str, Any]], verdicts: Verdicts) -> None:
        nonlocal finished
        for row, (pred, correct, reason) in zip(rows, verdicts, strict=True):
            graded = {**row, "pred": pred, "correct": correct, "reason": reason}
            writer.write(graded)
            stats.add(graded)
        finished += len(rows)
        progress(finished, total)

    def drain_one() -> None:
        future, rows = pending.popleft()
        write(rows, future.result())

    def flush_batch() -> None:
        if not batch_tasks:
            return
        rows, tasks = list(batch_rows), list(batch_tasks)
        batch_rows.clear()
        batch_tasks.clear()
        if executor is None:
            write(rows, _grade_batch(tasks))
            return
        pending.append((executor.submit(_grade_batch, tasks), rows))
        while len(pending) > 4 * workers:
            drain_one()

    try:
        for line, obj in read_jsonl_lenient(input_path):
            try:
                if isinstance(obj, InputError):
                    raise obj
                task = _task(obj, input_path, line, dataset, timeout)
            except InputError as exc:
                if not skip_bad:  # stop, but keep every row before the bad line
                    flush_batch()
                    while pending:
                        drain_one()
                    raise
                stats.bad_lines += 1
                if stats.bad_lines <= 5:
                    notice(f"skipped: {exc}")
                elif stats.bad_lines == 6:
                    notice("skipped: (further bad lines are counted, not shown)")
                finished += 1
                progress(finished, total)
                continue
            if _key(obj, line) in done:
                continue
            if task[3] is not None and task[3] not in KNOWN_DATASETS and task[3] not in warned:
                warned.add(task[3])
                notice(f"warning: dataset '{task[3]}' has no special rules; graded as free-form math")
            batch_rows.append(obj if "id" in obj else {**obj, "line": line})
            batch_tasks.append(task)
            if len(batch_tasks) >= (BATCH if executor is not None else 1):
                flush_batch()
        flush_batch()
        while pending:
            drain_one()
    finally:
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        writer.close()
    return stats.summary(input_path, out_path)


def _grade_batch(tasks: list[Task]) -> Verdicts:
    """Grade a batch (runs in a worker process when workers > 1)."""
    from mathforge.answers import grade, grade_answer

    verdicts = []
    for text, gold, is_response, dataset, timeout in tasks:
        verdict = (grade if is_response else grade_answer)(text, gold, dataset, timeout)
        verdicts.append((verdict.pred, verdict.correct, verdict.reason))
    return verdicts


def _task(obj: dict[str, Any], path: Path, line: int, dataset: str | None, timeout: float) -> Task:
    """Validate one input row; an :class:`InputError` names the line and the field."""
    gold = obj.get("gold")
    if gold is None:
        raise InputError(path, "missing (every row needs its gold answer)", line=line, field="gold")
    if isinstance(gold, bool) or not isinstance(gold, str | int | float):
        raise InputError(
            path, f"expected a string or number, got {type(gold).__name__}", line=line, field="gold"
        )
    if isinstance(gold, float | int):
        from mathforge.answers.datasets import format_number

        gold = format_number(gold)
    if not str(gold).strip():
        raise InputError(path, "is empty", line=line, field="gold")
    if "response" in obj:
        field, is_response = "response", True
    elif "pred" in obj:
        field, is_response = "pred", False
    else:
        raise InputError(path, "needs a 'response' (model output) or a 'pred' (extracted answer)", line=line)
    text = obj[field]
    if text is None and field == "pred":
        text = ""
    if isinstance(text, int | float) and not isinstance(text, bool) and field == "pred":
        text = str(text)
    if not isinstance(text, str):
        raise InputError(path, f"expected a string, got {type(text).__name__}", line=line, field=field)
    row_dataset = obj.get("dataset") or dataset
    if row_dataset is not None and not isinstance(row_dataset, str):
        raise InputError(
            path, f"expected a string, got {type(row_dataset).__name__}", line=line, field="dataset"
        )
    return text, str(gold), is_response, row_dataset or None, timeout


def _key(obj: dict[str, Any], line: int) -> str:
    return f"id:{obj['id']}" if "id" in obj else f"line:{line}"


def _read_done(path: Path) -> dict[str, dict[str, Any]]:
    """Rows already graded in an existing output, by resume key (a torn last line is redone)."""
    done: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return done
    with path.open(encoding="utf-8") as handle:
        for raw in handle:
            try:
                row = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "correct" in row and ("id" in row or "line" in row):
                done[f"id:{row['id']}" if "id" in row else f"line:{row['line']}"] = row
    return done


def _count_rows(path: Path) -> int:
    if not path.is_file():
        raise InputError(path, "file not found")
    with path.open("rb") as handle:
        return sum(1 for raw in handle if raw.strip())


def _spawn() -> Any:
    import multiprocessing

    # Workers are spawned, not forked: the parent may hold threads (progress display) and pipes.
    return multiprocessing.get_context("spawn")


class _Stats:
    """Running totals for the summary (including rows resumed from an earlier run)."""

    def __init__(self) -> None:
        self.rows = 0
        self.resumed = 0
        self.bad_lines = 0
        self.reasons: Counter[str] = Counter()
        self.by_dataset: dict[str, Counter[str]] = {}

    def add(self, row: dict[str, Any], resumed: bool = False) -> None:
        self.rows += 1
        self.resumed += resumed
        reason = str(row.get("reason") or ("no_answer" if not row.get("pred") else "mismatch"))
        self.reasons[reason] += 1
        counts = self.by_dataset.setdefault(str(row.get("dataset") or "-"), Counter())
        counts["rows"] += 1
        counts["correct"] += bool(row.get("correct"))

    def summary(self, input_path: Path, out_path: Path) -> dict[str, Any]:
        correct = sum(counts["correct"] for counts in self.by_dataset.values())
        return {
            "input": str(input_path),
            "output": str(out_path),
            "rows": self.rows,
            "correct": correct,
            "accuracy": round(correct / self.rows, 4) if self.rows else 0.0,
            "empty_extractions": self.reasons["no_answer"],
            "timeouts": self.reasons["timeout"],
            "bad_lines": self.bad_lines,
            "resumed": self.resumed,
            "reasons": dict(sorted(self.reasons.items())),
            "by_dataset": {
                name: {
                    "rows": counts["rows"],
                    "accuracy": round(counts["correct"] / counts["rows"], 4),
                }
                for name, counts in sorted(self.by_dataset.items())
            },
        }
