"""Reward-model data lines: one problem, its sampled responses and their correctness labels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mathforge.errors import InputError
from mathforge.jsonl import read_jsonl


@dataclass(frozen=True)
class RankedGroup:
    """The n responses sampled for one prompt, labelled correct or wrong by the grader."""

    id: str
    prompt: str
    responses: list[str]
    correct: list[bool]

    @property
    def n_correct(self) -> int:
        return sum(self.correct)

    @property
    def has_pair(self) -> bool:
        """At least one correct and one wrong response: only such groups carry a ranking signal."""
        return 0 < self.n_correct < len(self.correct)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "prompt": self.prompt, "responses": self.responses, "correct": self.correct}


def _string_list(path: Path, line: int, obj: dict[str, Any], field: str) -> list[str]:
    value = obj.get(field)
    if not isinstance(value, list) or not value:
        raise InputError(path, "expected a non-empty list of strings", line=line, field=field)
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise InputError(path, f"item {index} is {type(item).__name__}, expected a string", line, field)
    return value


def parse_group(path: Path, line: int, obj: dict[str, Any], *, labelled: bool = True) -> RankedGroup:
    """Validate one line; ``labelled=False`` accepts lines without ``correct`` (for scoring only)."""
    prompt = obj.get("prompt")
    if not isinstance(prompt, str):
        raise InputError(path, "missing or not a string", line=line, field="prompt")
    responses = _string_list(path, line, obj, "responses")
    raw_correct = obj.get("correct")
    if raw_correct is None and not labelled:
        correct: list[bool] = []
    else:
        if not isinstance(raw_correct, list) or len(raw_correct) != len(responses):
            raise InputError(
                path, f"expected a list of {len(responses)} booleans (one per response)", line, "correct"
            )
        if not all(isinstance(flag, bool | int) and flag in (0, 1) for flag in raw_correct):
            raise InputError(path, "expected booleans (true/false or 1/0)", line=line, field="correct")
        correct = [bool(flag) for flag in raw_correct]
    group_id = obj.get("id", f"line-{line}")
    return RankedGroup(id=str(group_id), prompt=prompt, responses=responses, correct=correct)


def read_groups(path: str | Path, *, labelled: bool = True) -> list[RankedGroup]:
    """All groups of an RM data file, validated; duplicate ids are refused (they would leak across splits)."""
    path = Path(path)
    groups: list[RankedGroup] = []
    seen: dict[str, int] = {}
    for line, obj in read_jsonl(path):
        group = parse_group(path, line, obj, labelled=labelled)
        if group.id in seen:
            raise InputError(path, f"duplicate id {group.id!r} (first on line {seen[group.id]})", line, "id")
        seen[group.id] = line
        groups.append(group)
    return groups
