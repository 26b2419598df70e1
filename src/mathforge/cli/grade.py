"""`mathforge grade`: grade a JSONL file of responses (or extracted answers) against gold answers."""

from __future__ import annotations

import json
from collections import Counter, deque
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import typer

from mathforge.cli.app import app, console, err_console
from mathforge.errors import InputError, MathforgeError

BATCH = 32  # rows per task sent to a worker process
Task = tuple[str, str, bool, str | None, float]  # text, gold, is_response, dataset, timeout
Verdicts = list[tuple[str | None, bool, str]]  # pred, correct, reason


@app.command("grade")
def grade_command(
    input_path: Annotated[
        Path,
        typer.Argument(
            metavar="IN.jsonl",
            help="One JSON object a line: 'gold' and 'response' (model output) or 'pred' "
            "(extracted answer); optional 'dataset' and 'id'.",
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Graded JSONL (default: IN.graded.jsonl next to the input)."),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Dataset rules for rows without a 'dataset' field (e.g. mmlu_stem grades letters)."
        ),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Grading processes.")] = 1,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Count and skip malformed lines instead of stopping.")
    ] = False,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds allowed for one comparison.")] = 5.0,
    summary_json: Annotated[
        Path | None, typer.Option(help="Also write the summary as a JSON file here.")
    ] = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="Regrade every row instead of resuming an existing output.")
    ] = False,
) -> None:
    """Grade responses against gold answers; output lines are the input plus 'pred' and 'correct'.

    Rows are written and flushed as they are graded, so an interrupted run keeps its work.

    A rerun resumes after the rows already in the output (matched by 'id', else line number).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from mathforge.answers import KNOWN_DATASETS
    from mathforge.jsonl import JsonlWriter, read_jsonl_lenient

    out_path = output or input_path.with_name(input_path.name.removesuffix(".jsonl") + ".graded.jsonl")
    if out_path.resolve() == input_path.resolve():
        raise MathforgeError(f"{out_path}: the output would overwrite the input; choose another -o")
    done = {} if restart else _read_done(out_path)
    total = _count_rows(input_path)
    stats = _Stats()
    for row in done.values():
        stats.add(row, resumed=True)
    warned: set[str] = set()

    writer = JsonlWriter(out_path, mode="w" if restart else "a")
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=_spawn()) if workers > 1 else None
    pending: deque[tuple[Future[Verdicts], list[dict[str, Any]]]] = deque()
    progress = Progress(
        TextColumn("grading"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )
    try:
        with progress:
            bar = progress.add_task("grading", total=total, completed=len(done))
            batch_rows: list[dict[str, Any]] = []
            batch_tasks: list[Task] = []

            def flush_batch() -> None:
                if not batch_tasks:
                    return
                rows, tasks = list(batch_rows), list(batch_tasks)
                batch_rows.clear()
                batch_tasks.clear()
                if executor is None:
                    _write(writer, rows, _grade_batch(tasks), stats)
                    progress.advance(bar, len(rows))
                    return
                pending.append((executor.submit(_grade_batch, tasks), rows))
                while len(pending) > 4 * workers:
                    _drain_one(pending, writer, stats, progress, bar)

            for line, obj in read_jsonl_lenient(input_path):
                try:
                    if isinstance(obj, InputError):
                        raise obj
                    task = _task(obj, input_path, line, dataset, timeout)
                except InputError as exc:
                    if not skip_bad:  # stop, but keep every row before the bad line
                        flush_batch()
                        while pending:
                            _drain_one(pending, writer, stats, progress, bar)
                        raise
                    _skip(exc, stats)
                    progress.advance(bar)
                    continue
                key = _key(obj, line)
                if key in done:
                    continue
                if task[3] is not None and task[3] not in KNOWN_DATASETS and task[3] not in warned:
                    warned.add(task[3])
                    err_console.print(
                        f"warning: dataset '{task[3]}' has no special rules; graded as free-form math"
                    )
                batch_rows.append(obj if "id" in obj else {**obj, "line": line})
                batch_tasks.append(task)
                if len(batch_tasks) >= (BATCH if executor is not None else 1):
                    flush_batch()
            flush_batch()
            while pending:
                _drain_one(pending, writer, stats, progress, bar)
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: {stats.rows - stats.resumed} rows graded this run are saved in {out_path}; "
            "rerun the same command to resume"
        )
        raise typer.Exit(130) from None
    finally:
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        writer.close()

    summary = stats.summary(input_path, out_path)
    _print_summary(summary)
    if summary_json is not None:
        summary_json.parent.mkdir(parents=True, exist_ok=True)
        summary_json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def _grade_batch(tasks: list[Task]) -> Verdicts:
    """Grade a batch (runs in a worker process when --workers > 1)."""
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
    with path.open("rb") as handle:  # bytes: a non-UTF-8 line is reported where it is parsed
        return sum(1 for raw in handle if raw.strip())


def _spawn() -> Any:
    import multiprocessing

    # Workers are spawned, not forked: the parent may hold threads (progress display) and pipes.
    return multiprocessing.get_context("spawn")


def _skip(error: InputError, stats: _Stats) -> None:
    stats.bad_lines += 1
    if stats.bad_lines <= 5:
        err_console.print(f"skipped: {error}", highlight=False, soft_wrap=True)
    elif stats.bad_lines == 6:
        err_console.print("skipped: (further bad lines are counted, not shown)")


def _drain_one(pending: deque, writer: Any, stats: _Stats, progress: Any, bar: Any) -> None:
    future, rows = pending.popleft()
    _write(writer, rows, future.result(), stats)
    progress.advance(bar, len(rows))


def _write(writer: Any, rows: list[dict[str, Any]], verdicts: Verdicts, stats: _Stats) -> None:
    for row, (pred, correct, reason) in zip(rows, verdicts, strict=True):
        graded = {**row, "pred": pred, "correct": correct, "reason": reason}
        writer.write(graded)
        stats.add(graded)


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


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"graded {summary['input']} -> {summary['output']}")
    table.add_column("dataset")
    table.add_column("rows", justify="right")
    table.add_column("accuracy", justify="right")
    for name, counts in summary["by_dataset"].items():
        table.add_row(name, str(counts["rows"]), f"{counts['accuracy']:.1%}")
    if len(summary["by_dataset"]) != 1:
        table.add_section()
        table.add_row("all", str(summary["rows"]), f"{summary['accuracy']:.1%}")
    console.print(table)
    details = Table(show_header=False, box=None)
    for label, key in (
        ("correct", "correct"),
        ("empty extractions", "empty_extractions"),
        ("timeouts", "timeouts"),
        ("bad lines skipped", "bad_lines"),
        ("resumed from earlier run", "resumed"),
    ):
        details.add_row(label, str(summary[key]))
    details.add_row(
        "decided by", ", ".join(f"{reason} {n}" for reason, n in summary["reasons"].items()) or "-"
    )
    console.print(details)
    console.print(json.dumps(summary), highlight=False, soft_wrap=True)
