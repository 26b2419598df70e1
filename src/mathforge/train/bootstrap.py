"""Iteration-0 SFT data from gold solutions: the model cannot yet learn from its own samples.

CoT records are the gold reasoning (GSM8K's ``<<48/2=24>>`` calculator annotations removed)
ending with a sentence that boxes the gold answer. TIR records hold a program derived from the
gold solution, run in the sandbox, laid out exactly as the TIR solve loop writes a trajectory:
the model's ```python block, the executor's ```output block with the real output, then a short
conclusion with the boxed answer. A program whose output does not grade equal to the gold
answer is dropped and counted: the data never teaches a program that gets it wrong.

GSM8K programs have one assignment per annotated step, in the solution's order, each variable
named from the words around its step ("24 clips in May" -> ``clips_may``); a number in a later
step that is an earlier step's result (and not a number of the question) becomes that variable.
"""

from __future__ import annotations

import builtins
import json
import keyword
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from mathforge.answers import grade_answer
from mathforge.console import stderr_console
from mathforge.data.decontam import drop_contaminated
from mathforge.errors import InputError, MathforgeError
from mathforge.jsonl import JsonlWriter, read_jsonl
from mathforge.prompts import prompt_messages
from mathforge.records import Problem
from mathforge.solve.code import output_block
from mathforge.solve.trajectory import Trajectory

FORMATS = ("cot", "tir")
_ANNOTATION = re.compile(r"<<([^<>]*)>>")
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?|\.\d+)(?![\w.]*\()")
_WORD = re.compile(r"[A-Za-z]+")
_STOP_WORDS = frozenset(
    re.findall(
        r"\w+",
        """a an the of in on at to for and or but so is are was were be been will would can could has have
        had it its he she they them his her their him we you i this that these those there then than with
        by from as per each every which who what how if also all more less much many make makes made need
        needs get gets got now total""",
    )
)
_RESERVED = frozenset(dir(builtins)) | {"math", "sympy", "np"}


@dataclass(frozen=True)
class GoldSolution:
    """A problem with the gold worked solution it is bootstrapped from."""

    problem: Problem
    solution: str
    program: str | None
    source: str
    index: int


CONTAMINATED = "overlaps an evaluation benchmark"


@dataclass
class BootstrapSummary:
    """What a bootstrap run read, wrote and dropped (with why)."""

    read: int = 0
    written: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


# --- CoT ---------------------------------------------------------------------------------------


def clean_reasoning(solution: str) -> str:
    """GSM8K reasoning without its calculator annotations and without the ``#### answer`` line."""
    body = solution.split("####", 1)[0]
    return "\n".join(_ANNOTATION.sub("", line).rstrip() for line in body.strip().splitlines()).strip()


def boxed_sentence(answer: str) -> str:
    """The closing sentence every bootstrap response ends with."""
    return f"The answer is $\\boxed{{{answer}}}$."


def cot_response(solution: str, answer: str) -> str:
    """The gold reasoning followed by the boxed gold answer (kept as it is when it boxes one already)."""
    reasoning = clean_reasoning(solution)
    if "\\boxed" in reasoning:
        return reasoning
    return f"{reasoning}\n{boxed_sentence(answer)}" if reasoning else boxed_sentence(answer)


# --- TIR programs from GSM8K annotations ------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One annotated calculation: its expression, its stated result and the words around it."""

    expression: str
    result: str
    after: str
    before: str


def annotated_steps(solution: str) -> list[Step]:
    """The ``<<expression=result>>`` steps of a GSM8K solution, in order."""
    steps = []
    for line in solution.split("####", 1)[0].splitlines():
        for match in _ANNOTATION.finditer(line):
            expression, sep, result = match.group(1).rpartition("=")
            if not sep or not expression.strip():
                continue
            steps.append(Step(expression.strip(), result.strip(), line[match.end() :], line[: match.start()]))
    return steps


def _name_words(text: str, from_end: bool) -> list[str]:
    words = [w.lower() for w in _WORD.findall(text) if w.lower() not in _STOP_WORDS and len(w) > 1]
    return words[-3:] if from_end else words[:3]


def step_name(step: Step, used: set[str], position: int) -> str:
    """A Python name for a step from the words after its result, else before its expression."""
    after = re.split(r"[.,;:!?\n]|<<", re.sub(r"^\s*\$?[\d.,/]+", "", step.after), maxsplit=1)[0]
    before = re.split(r"[.;:!?]", re.sub(r"[\d.,$%*/+\-=()x ]+$", "", step.before))[-1]
    words = _name_words(after, from_end=False) or _name_words(before, from_end=True)
    name = "_".join(words) or f"step_{position}"
    if keyword.iskeyword(name) or name in _RESERVED:
        name += "_value"
    candidate, suffix = name, 2
    while candidate in used:
        candidate, suffix = f"{name}_{suffix}", suffix + 1
    used.add(candidate)
    return candidate


def _as_number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").replace("$", ""))
    except ValueError:
        return None


def gsm8k_program(question: str, solution: str) -> str | None:
    """A program with one assignment per annotated step that prints the last one; None without steps."""
    steps = annotated_steps(solution)
    if not steps:
        return None
    given = {_as_number(n) for n in _NUMBER.findall(question.replace(",", ""))}
    used: set[str] = set()
    known: list[tuple[float, str]] = []  # (value, name) of earlier steps, latest last
    lines = []
    for position, step in enumerate(steps, start=1):
        expression = re.sub(r"(?<=\d),(?=\d{3})", "", step.expression)

        def substitute(match: re.Match[str]) -> str:
            value = _as_number(match.group(0))
            if value is None or value in given:
                return match.group(0)
            names = [name for earlier, name in known if earlier == value]
            return names[-1] if names else match.group(0)

        expression = _NUMBER.sub(substitute, expression)
        name = step_name(step, used, position)
        lines.append(f"{name} = {expression}")
        value = _as_number(step.result)
        if value is not None:
            known.append((value, name))
    lines.append(f"print({name})")
    return "\n".join(lines)


def tir_trajectory(code: str, observation: str, answer: str) -> Trajectory:
    """The trajectory the TIR loop records for one code round: model code, executor output, conclusion."""
    trajectory = Trajectory(prompt="")
    trajectory.add("model", f"```python\n{code}\n```\n", None)
    trajectory.add("tool", output_block(observation, trajectory.response), None)
    trajectory.add("model", boxed_sentence(answer), None)
    trajectory.answer = answer
    trajectory.finish_reason = "eos"
    return trajectory


# --- sources -----------------------------------------------------------------------------------


def gsm8k_solutions(path: str | Path, source: str, split: str, limit: int | None) -> list[GoldSolution]:
    """Problems of a file with worked solutions: GSM8K's format (``question``, ``answer`` ending in
    ``#### gold``), or MATH's (``problem`` or ``question``, ``solution`` with a ``\\boxed{}`` answer;
    such solutions give CoT records only: no program is derived from them)."""
    from mathforge.answers import extract_answer

    found = []
    for index, (line, row) in enumerate(read_jsonl(path)):
        if limit is not None and index >= limit:
            break
        question = row.get("question", row.get("problem"))
        if not isinstance(question, str) or not question.strip():
            raise InputError(path, "missing or empty", line, "question")
        answer, solution = row.get("answer"), row.get("solution")
        if isinstance(answer, str) and "####" in answer:
            solution, gold = answer, answer.rsplit("####", 1)[1].strip().replace(",", "")
            program = gsm8k_program(question, answer)
        elif isinstance(solution, str) and extract_answer(solution):
            gold, program = str(extract_answer(solution)), None
        else:
            raise InputError(
                path,
                "expected a solution ending with '#### ANSWER' (or a 'solution' with \\boxed{})",
                line,
                "answer",
            )
        problem = Problem(
            id=f"{source}/{split}/{index}", benchmark=source, question=question.strip(), gold=gold
        )
        found.append(GoldSolution(problem, solution, program, source, index))
    if not found:
        raise InputError(path, "no problems: the file is empty")
    return found


def _record(item: GoldSolution, mode: str, trajectory: Trajectory, extra: dict[str, Any]) -> dict[str, Any]:
    problem = item.problem
    return {
        "id": problem.id,
        "prompt": prompt_messages(problem.question, mode),
        "response": trajectory.response,
        "segments": [{"kind": s.kind, "start": s.start, "end": s.end} for s in trajectory.segments],
        "answer": problem.gold,
        "source": item.source,
        "format": mode,
        "provenance": {"kind": "bootstrap", "from": "gold solution", "index": item.index, **extra},
    }


def bootstrap_records(
    items: Sequence[GoldSolution],
    mode: str,
    sandbox: Any = None,
    dataset: str | None = None,
) -> tuple[list[dict[str, Any]], BootstrapSummary]:
    """Records for ``items`` in ``mode``; TIR programs run in ``sandbox`` (or in a new one)."""
    if mode not in FORMATS:
        raise MathforgeError(f"--format must be one of {', '.join(FORMATS)}, got '{mode}'")
    summary = BootstrapSummary(read=len(items))
    if mode == "cot":
        records = [_record(item, mode, _cot_trajectory(item), {}) for item in items]
        summary.written = len(records)
        return records, summary
    programs = [(item, item.program) for item in items]
    for _, code in programs:
        if code is None:
            summary.drop("no program (no calculation steps)")
    runnable = [(item, code) for item, code in programs if code is not None]
    results = _run_all([code for _, code in runnable], sandbox)
    records = []
    for (item, code), result in zip(runnable, results, strict=True):
        observation = result.observation()
        if result.status != "ok":
            summary.drop(f"program failed ({result.status})")
            continue
        if not grade_answer(observation, item.problem.gold, dataset).correct:
            summary.drop("output is not the gold answer")
            continue
        trajectory = tir_trajectory(code, observation, item.problem.gold)
        records.append(_record(item, mode, trajectory, {"program": code, "output": observation}))
    summary.written = len(records)
    return records, summary


def _cot_trajectory(item: GoldSolution) -> Trajectory:
    trajectory = Trajectory(prompt="")
    trajectory.add("model", cot_response(item.solution, item.problem.gold), None)
    return trajectory


def _run_all(codes: list[str], sandbox: Any) -> list[Any]:
    if not codes:
        return []
    if sandbox is not None:
        return sandbox.run_batch(codes)
    from mathforge.sandbox import Sandbox

    with Sandbox() as own:
        return own.run_batch(codes)


def write_records(records: Iterable[dict[str, Any]], out: str | Path) -> int:
    """Write records as JSONL (replacing ``out``); returns how many."""
    count = 0
    with JsonlWriter(out, mode="w") as writer:
        for record in records:
            writer.write(record)
            count += 1
    return count


def generated_solutions(
    n: int, seed: int = 0, level: int = 1, families: list[str] | None = None
) -> tuple[list[GoldSolution], BootstrapSummary]:
    """Generated problems with templated solutions; a question no template matches, or whose
    templated answer is not the gold one, is counted in the summary and left out."""
    from mathforge.data import generate_problems
    from mathforge.train.templated import worked_solution

    summary = BootstrapSummary()
    found = []
    for index, problem in enumerate(generate_problems(n, seed=seed, level=level, families=families)):
        worked = worked_solution(problem.question)
        if worked is None:
            summary.drop("no template for the question")
        elif not grade_answer(worked.answer, problem.gold).correct:
            summary.drop("templated answer is not the gold answer")
        else:
            found.append(GoldSolution(problem, worked.reasoning(), worked.program(), "generated", index))
    return found, summary


def bootstrap(
    source: str,
    mode: str,
    out: str | Path,
    split: str = "train",
    data_dir: str | Path | None = None,
    limit: int | None = None,
    sandbox: Any = None,
    gen_level: int = 1,
    gen_seed: int = 0,
    gen_families: list[str] | None = None,
    console: Console | None = None,
) -> BootstrapSummary:
    """Write bootstrap records to ``out`` from ``source``: ``gsm8k`` (``data_dir/gsm8k/<split>.jsonl``),
    ``generated`` (``limit`` problems, default 1000) or a JSONL file of worked solutions.

    Problems overlapping an evaluation benchmark's test items (under ``data_dir``) are dropped
    first and counted, as for every training input."""
    unmatched = BootstrapSummary()
    if source == "gsm8k":
        from mathforge.data import default_data_dir

        path = (Path(data_dir) if data_dir is not None else default_data_dir()) / "gsm8k" / f"{split}.jsonl"
        if not path.is_file():
            raise MathforgeError(
                f"gsm8k: no file at {path}; pass --data-dir DIR (a folder holding gsm8k/{split}.jsonl)"
            )
        items, dataset = gsm8k_solutions(path, "gsm8k", split, limit), "gsm8k"
    elif source == "generated":
        items, unmatched = generated_solutions(limit or 1000, gen_seed, gen_level, gen_families)
        dataset = None
    elif Path(source).is_file():
        items, dataset = gsm8k_solutions(source, Path(source).stem, split, limit), None
    else:
        raise MathforgeError(f"--source: '{source}' is not gsm8k, generated or an existing JSONL file")
    clean, _ = drop_contaminated([item.problem for item in items], data_dir, console or stderr_console())
    kept = {problem.id for problem in clean}
    contaminated = len(items) - len(kept)
    items = [item for item in items if item.problem.id in kept]
    records, summary = bootstrap_records(items, mode, sandbox, dataset)
    if contaminated:
        summary.read += contaminated
        summary.dropped[CONTAMINATED] = contaminated
    summary.read += unmatched.read + sum(unmatched.dropped.values())
    for reason, count in unmatched.dropped.items():
        summary.dropped[reason] = count
    write_records(records, out)
    summary_path = Path(out).with_name(f"{Path(out).stem}.summary.json")
    summary_path.write_text(json.dumps(asdict(summary), indent=2) + "\n", encoding="utf-8")
    return summary
