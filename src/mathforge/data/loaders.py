"""Problem sources: a benchmark folder, any JSONL file with a field map, or the Hugging Face hub.

Every loader returns :class:`~mathforge.records.Problem` objects in file order with stable
ids, and turns a missing file or a bad row into one line naming the path, line and field.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mathforge.answers import extract_answer, gold_answer
from mathforge.data.registry import Benchmark, get_benchmark, item_multiple_choice, question_text
from mathforge.errors import InputError, MathforgeError
from mathforge.jsonl import read_jsonl
from mathforge.records import Problem

DATA_DIR_ENV = "MATHFORGE_DATA_DIR"
DEFAULT_FIELD_MAP = {"question": "question", "answer": "answer"}
# Fields a custom file may map besides question and answer; other mapped names become metadata.
_ID_KEYS = ("id", "idx", "unique_id")
_OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def default_data_dir() -> Path:
    """``$MATHFORGE_DATA_DIR`` when set, else ``./data``."""
    return Path(os.environ.get(DATA_DIR_ENV, "data"))


def parse_field_map(text: str | None) -> dict[str, str]:
    """``"question=problem,answer=solution,level=difficulty"`` -> mapping of our names to file fields."""
    mapping = dict(DEFAULT_FIELD_MAP)
    if not text:
        return mapping
    for part in text.split(","):
        if not part.strip():
            continue
        ours, sep, theirs = part.partition("=")
        if not sep or not ours.strip() or not theirs.strip():
            raise MathforgeError(f"--field-map: expected NAME=FIELD pairs separated by commas, got '{part}'")
        mapping[ours.strip()] = theirs.strip()
    return mapping


def _row_id(bench_name: str, split: str, example: dict[str, Any], index: int, id_field: str | None) -> str:
    key = example.get(id_field) if id_field else None
    return f"{bench_name}/{split}/{index if key in (None, '') else key}"


def _to_problem(
    bench: Benchmark, example: dict[str, Any], index: int, split: str, where: str, line: int | None
) -> Problem:
    try:
        gold = str(gold_answer(example, bench.gold_dataset)).strip()
    except MathforgeError as exc:
        raise InputError(where, str(exc), line=line) from None
    question = question_text(bench, example, gold)
    if not question:
        raise InputError(where, f"no question text for {bench.name}", line=line)
    multiple_choice, shots = item_multiple_choice(bench, gold)
    meta = {
        field.lower(): example[field] for field in bench.meta_fields if example.get(field) not in (None, "")
    }
    return Problem(
        id=_row_id(bench.name, split, example, index, bench.id_field),
        benchmark=bench.name,
        question=question,
        gold=gold,
        multiple_choice=multiple_choice,
        shots=shots,
        meta=meta,
    )


def load_benchmark(
    name: str, data_dir: str | Path | None = None, split: str = "test", limit: int | None = None
) -> list[Problem]:
    """Load a registered benchmark from ``DATA_DIR/<name>/<split>.jsonl``, else from the hub.

    The hub is tried only for benchmarks that name a hub source (e.g. the full ``math`` set);
    when neither works the error names the path looked at and the flag to pass.
    """
    bench = get_benchmark(name)
    base = Path(data_dir) if data_dir is not None else default_data_dir()
    path = base / name / f"{split}.jsonl"
    if path.is_file():
        problems: list[Problem] = []
        for index, (line, example) in enumerate(read_jsonl(path)):
            if limit is not None and index >= limit:
                break
            problems.append(_to_problem(bench, example, index, split, str(path), line))
        return problems
    if bench.hub is not None and split in bench.hub.splits:
        return _load_from_hub(bench, split, limit, path)
    raise MathforgeError(
        f"{name}: no file at {path}; pass --data-dir DIR (a folder holding {name}/{split}.jsonl)"
        + (" or run where the Hugging Face hub is reachable" if bench.hub else "")
    )


@functools.cache
def hub_reachable() -> bool:
    """Whether the Hugging Face hub answers within a few seconds (never, when set offline).

    Asked once per process before any hub load: without it, ``datasets`` spends ~30 s on
    retries on an offline machine before it fails.
    """
    if any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on") for name in _OFFLINE_ENV):
        return False
    import httpx

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    try:
        httpx.head(endpoint, timeout=3.0)
    except httpx.HTTPError:
        return False
    return True


def _load_from_hub(bench: Benchmark, split: str, limit: int | None, looked_at: Path) -> list[Problem]:
    assert bench.hub is not None
    if not hub_reachable():
        raise MathforgeError(
            f"{bench.name}: no file at {looked_at} and the Hugging Face hub cannot be reached (offline); "
            f"pass --data-dir DIR (a folder holding {bench.name}/{split}.jsonl) or set {DATA_DIR_ENV}"
        )
    try:
        from datasets import load_dataset

        dataset = load_dataset(bench.hub.path, bench.hub.config, split=split)
    except Exception as exc:  # offline, missing extra, or hub error: one line, never a traceback
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise MathforgeError(
            f"{bench.name}: no file at {looked_at} and the hub dataset {bench.hub.path} could not be "
            f"loaded ({reason}); pass --data-dir DIR (a folder holding {bench.name}/{split}.jsonl)"
        ) from None
    where = f"hf://{bench.hub.path}/{split}"
    problems = []
    for index, example in enumerate(dataset):
        if limit is not None and index >= limit:
            break
        problems.append(_to_problem(bench, dict(example), index, split, where, index + 1))
    return problems


def load_problems_file(
    path: str | Path,
    field_map: dict[str, str] | None = None,
    name: str | None = None,
    limit: int | None = None,
    require_gold: bool = True,
) -> list[Problem]:
    """Load any JSONL file of problems.

    ``field_map`` maps our names to the file's fields: ``question`` and ``answer`` (required,
    unless ``require_gold`` is False: a command labelling by majority vote gets ``gold=""``),
    ``id`` (optional; else ``id``/``idx``/``unique_id`` when present, else the row index) and
    any other name, which is kept as metadata for breakdowns (``level=difficulty``). A gold
    field holding a worked solution with a ``\\boxed{}`` answer is reduced to that answer.
    Optional ``multiple_choice`` and ``shots`` fields, as written by :func:`write_problems`,
    are honoured.
    """
    path = Path(path)
    mapping = parse_field_map(None) if field_map is None else {**DEFAULT_FIELD_MAP, **field_map}
    bench_name = name or path.stem
    if not path.is_file():
        raise MathforgeError(f"{bench_name}: no file at {path}; pass the path of an existing JSONL file")
    problems = []
    for index, (line, row) in enumerate(read_jsonl(path)):
        if limit is not None and index >= limit:
            break
        question = row.get(mapping["question"])
        if question in (None, ""):
            raise InputError(
                path, "missing or empty (set --field-map question=FIELD)", line, mapping["question"]
            )
        answer = row.get(mapping["answer"])
        if isinstance(answer, (dict, list)):
            raise InputError(path, "not a scalar (set --field-map answer=FIELD)", line, mapping["answer"])
        gold = "" if answer is None else str(answer).strip()
        if "\\boxed" in gold:
            gold = str(extract_answer(gold, bench_name)).strip() or gold
        if require_gold and not gold:
            problem = "missing or empty (set --field-map answer=FIELD; this command needs a gold answer)"
            raise InputError(path, problem, line, mapping["answer"])
        id_field = mapping.get("id") or next((key for key in _ID_KEYS if key in row), None)
        meta = {
            ours: row[theirs]
            for ours, theirs in mapping.items()
            if ours not in ("question", "answer", "id") and row.get(theirs) not in (None, "")
        }
        for key in ("level", "subject", "type"):
            if key not in meta and row.get(key) not in (None, ""):
                meta[key] = row[key]
        meta.pop("multiple_choice", None)
        meta.pop("shots", None)
        key = row.get(id_field) if id_field else None
        problems.append(
            Problem(
                id=f"{bench_name}/{index if key in (None, '') else key}",
                benchmark=bench_name,
                question=str(question).strip(),
                gold=gold,
                multiple_choice=bool(row.get("multiple_choice", False)),
                shots=int(row.get("shots", 0) or 0),
                meta=meta,
            )
        )
    return problems


def write_problems(problems: Iterable[Problem], path: str | Path) -> int:
    """Write problems as JSONL (``id, question, answer, multiple_choice, shots`` + metadata fields).

    The file loads back with :func:`load_problems_file` and no field map.
    """
    from mathforge.jsonl import JsonlWriter

    count = 0
    with JsonlWriter(path, mode="w") as writer:
        for problem in problems:
            writer.write(
                {
                    "id": problem.id.split("/", 1)[-1] if "/" in problem.id else problem.id,
                    "question": problem.question,
                    "answer": problem.gold,
                    "multiple_choice": problem.multiple_choice,
                    "shots": problem.shots,
                    **problem.meta,
                }
            )
            count += 1
    return count
