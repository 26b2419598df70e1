"""Chunked, seeded, resumable sampling of problems into a run directory.

Problems are processed in fixed chunks (``chunk_size`` problems of one benchmark, all their
samples generated together). Each chunk's sampling seed depends only on the run seed, the
benchmark and the chunk's position, and a chunk is always generated whole, so a run that is
killed and resumed produces exactly the records an uninterrupted run would; finished problems
are appended to ``samples.jsonl`` as soon as their chunk ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from mathforge.console import stderr_console
from mathforge.errors import MathforgeError
from mathforge.records import Problem, ProblemRecord
from mathforge.runs import RunDirectory
from mathforge.sampling.config import ProblemSource, SamplingRunConfig
from mathforge.sampling.sampler import Sampler, chunk_seed, exemplars, load_sampler

HEARTBEAT_SECONDS = 10.0  # a log (non-terminal) gets a line at least this often while work runs


def select_problems(source: ProblemSource) -> dict[str, list[Problem]]:
    """The problems of every benchmark of ``source``, in order, limited to ``source.limit`` each."""
    from mathforge.data import GeneratedSpec, bench_label, load_problems, parse_field_map

    field_map = parse_field_map(source.field_map) if source.field_map else None
    generated = GeneratedSpec(
        n=source.gen_n, seed=source.gen_seed, level=source.gen_level, families=tuple(source.gen_families)
    )
    selected: dict[str, list[Problem]] = {}
    for name in source.benches:
        selected[bench_label(name)] = load_problems(
            name,
            data_dir=source.data_dir,
            split=source.split,
            limit=source.limit,
            field_map=field_map,
            generated=generated,
            require_gold=not source.GOLD_OPTIONAL,
        )
    return selected


def prepare(config: SamplingRunConfig) -> dict[str, list[Problem]]:
    """The problems of ``config``, checked: there are some, and each benchmark's few-shot set exists."""
    problems = select_problems(config)
    if not any(problems.values()):
        raise MathforgeError(f"no problems to sample: {', '.join(config.benches)} gave none")
    for items in problems.values():
        for problem in {(p.benchmark, p.shots): p for p in items}.values():
            exemplars(problem, config.shots)
    return problems


def sample_run(
    config: SamplingRunConfig,
    run: RunDirectory,
    problems: dict[str, list[Problem]],
    *,
    sampler: Callable[[SamplingRunConfig], Sampler] | None = None,
    console: Console | None = None,
) -> dict[str, ProblemRecord]:
    """Sample every problem of ``problems`` not yet in ``run``'s store; return all its records.

    ``run`` must be open (its config written). ``sampler`` builds the model side (default:
    :func:`load_sampler`); it is only called when some problem is left to sample.
    """
    done = run.store.load()
    total = sum(len(items) for items in problems.values())
    pending = sum(1 for items in problems.values() for problem in items if problem.id not in done)
    console = console or stderr_console()
    if pending and pending < total:
        console.print(
            f"resuming {run.path}: {total - pending} of {total} problems done",
            highlight=False,
            soft_wrap=True,
        )
    if pending:
        console.print(
            f"loading {config.model} ({config.engine}, {config.mode})", highlight=False, soft_wrap=True
        )
        model = sampler(config) if sampler is not None else load_sampler(config)
        try:
            _sample_pending(config, model, problems, done, run, console)
        finally:
            run.store.close()
            model.close()
    return done


def _sample_pending(
    config: SamplingRunConfig,
    sampler: Sampler,
    problems: dict[str, list[Problem]],
    done: dict[str, ProblemRecord],
    run: RunDirectory,
    console: Console,
) -> None:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    # A log file (nohup, CI) gets no live bar: plain lines instead, one per finished chunk and
    # one at least every HEARTBEAT_SECONDS while a chunk runs.
    log_lines = not console.is_terminal
    with Progress(*columns, console=console, transient=False, disable=log_lines) as progress:
        for bench, items in problems.items():
            finished = sum(1 for problem in items if problem.id in done)
            label = f"{bench} ({config.mode})"
            task = progress.add_task(label, total=len(items), completed=finished)
            start, resumed_at = time.monotonic(), finished
            for index in range(0, len(items), config.chunk_size):
                chunk = items[index : index + config.chunk_size]
                if all(problem.id in done for problem in chunk):
                    continue
                seed = chunk_seed(config.seed, bench, index // config.chunk_size)
                status = (
                    f"{label}: {finished}/{len(items)} problems, sampling {index + 1}-{index + len(chunk)}"
                )
                with _heartbeat(console, status, start, enabled=log_lines):
                    records = sampler.run(chunk, bench, seed)
                new = [record for record in records if record.id not in done]
                run.store.append(new)
                done.update((record.id, record) for record in new)
                progress.advance(task, len(new))
                finished += len(new)
                if log_lines:
                    elapsed = time.monotonic() - start
                    eta = elapsed / (finished - resumed_at) * (len(items) - finished)
                    times = f"{_clock(elapsed)} elapsed, eta {_clock(eta)}"
                    console.print(
                        f"{label}: {finished}/{len(items)} problems, {times}", highlight=False, soft_wrap=True
                    )


@contextmanager
def _heartbeat(console: Console, status: str, start: float, enabled: bool) -> Iterator[None]:
    """While the block runs, print ``status`` with the elapsed time every ``HEARTBEAT_SECONDS``."""
    if not enabled:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            console.print(
                f"{status}, {_clock(time.monotonic() - start)} elapsed", highlight=False, soft_wrap=True
            )

    thread = threading.Thread(target=beat, name="mathforge-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def open_run(
    config: SamplingRunConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    check_model: bool = True,
) -> tuple[RunDirectory, dict[str, list[Problem]]]:
    """Validate ``config`` and only then open the run directory ``out``.

    Checked first: the problems and few-shot sets, the run's identity (unless ``overwrite``)
    and, when something is left to sample and ``check_model``, that the model resolves. So a
    mistyped setting neither leaves a run directory behind nor deletes anything.
    """
    run = RunDirectory(out)
    problems = prepare(config)
    record = config.run_config()
    run.check(record, config.FREE_KEYS, overwrite)
    done = {} if overwrite else run.store.load()
    pending = any(problem.id not in done for items in problems.values() for problem in items)
    if check_model and pending and config.engine != "openai":
        from mathforge.models import resolve_model

        resolve_model(config.model)
    run.open(record, config.FREE_KEYS, overwrite=overwrite)
    return run, problems
