"""The unit every stage passes around: one math problem with its gold answer and metadata."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """A benchmark or generated problem, ready to be prompted and graded.

    ``id`` is stable across runs (benchmark, split and the file's own id or row index), so run
    directories can resume by id. ``question`` is the text shown to the model (for
    multiple-choice sets it already lists the choices). ``shots`` is how many few-shot examples
    the evaluation protocol puts before it (5 for multiple-choice items, else 0).
    ``meta`` keeps the fields used for breakdowns (level, subject, type ...).
    """

    id: str
    benchmark: str
    question: str
    gold: str
    multiple_choice: bool = False
    shots: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Problem:
        return cls(
            id=str(obj["id"]),
            benchmark=str(obj["benchmark"]),
            question=str(obj["question"]),
            gold=str(obj["gold"]),
            multiple_choice=bool(obj.get("multiple_choice", False)),
            shots=int(obj.get("shots", 0)),
            meta=dict(obj.get("meta") or {}),
        )
