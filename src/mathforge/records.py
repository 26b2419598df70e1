"""The shared data schema: a problem, and what sampling produced for it (one line of ``samples.jsonl``).

Every stage hands data to the next in these shapes: data loaders yield :class:`Problem`;
sampling (evaluation, reward-model data, rejection sampling, RL rollouts) writes one
:class:`ProblemRecord` per problem holding the prompt and every sampled response with its grade,
majority-vote group, tool calls, token ids and model/tool segments (so tool output can be
masked from a loss), log-probabilities when the engine gave them, reward scores and provenance.
This module imports nothing from the rest of mathforge, so any package may import it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


@dataclass(frozen=True)
class Problem:
    """A benchmark or generated problem, ready to be prompted and graded.

    ``id`` is stable across runs (benchmark, split and the file's own id or row index), so run
    directories can resume by id. ``question`` is the text shown to the model (for
    multiple-choice sets it already lists the choices). ``gold`` is the reference answer, or ""
    for a problem without one (labelled by majority vote where a command allows it, never
    graded correct). ``shots`` is how many few-shot examples
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


class Execution(BaseModel):
    """One tool call of a TIR response: the code run, what the model was shown back, and the
    sandbox's verdict (``status``: ok, error, timeout, memory or crash; other fields kept)."""

    model_config = ConfigDict(extra="allow")

    code: str = ""
    output: str = ""
    status: str = "ok"
    error: str | None = None
    wall_ms: float = 0.0

    @property
    def timed_out(self) -> bool:
        return self.status == "timeout"

    @property
    def failed(self) -> bool:
        """The code raised, ran out of memory or crashed (a timeout is counted apart)."""
        return self.status not in ("ok", "timeout")


class Segment(BaseModel):
    """A stretch of a response written by the model or by the executor (stored form of
    ``mathforge.solve.Segment``): ``start``/``end`` index the response's characters,
    ``token_start``/``token_end`` its ``token_ids`` (None without a local tokenizer)."""

    kind: Literal["model", "tool"]
    start: int
    end: int
    token_start: int | None = None
    token_end: int | None = None


class SampleRecord(BaseModel):
    """One sampled response to a problem, graded.

    ``token_ids``, ``segments`` and ``logprobs`` are None in records written before they were
    kept (or, for ``logprobs``, when the engine does not return them).
    """

    model_config = ConfigDict(extra="allow")

    response: str
    answer: str = ""
    correct: bool = False
    # how the grader decided: exact, numeric, symbolic, no_answer, mismatch, timeout, no_gold
    reason: str = ""
    # Majority-vote group: samples with equivalent answers share a group; groups are numbered
    # by first appearance and -1 marks an empty answer (which never votes).
    group: int = -1
    finish_reason: str = "stop"
    completion_tokens: int = 0
    executions: list[Execution] = Field(default_factory=list)
    token_ids: list[int] | None = None
    segments: list[Segment] | None = None
    logprobs: list[float | None] | None = None  # None per executor-output token
    rm_score: float | None = None

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"

    def tool_mask(self) -> list[bool]:
        """Per entry of ``token_ids``: True where the token is executor output (masked from losses)."""
        if self.token_ids is None or self.segments is None:
            raise ValueError("this record kept no token ids or segments (written by an older mathforge)")
        mask = [False] * len(self.token_ids)
        for segment in self.segments:
            if segment.kind == "tool" and segment.token_start is not None and segment.token_end is not None:
                mask[segment.token_start : segment.token_end] = [True] * (
                    segment.token_end - segment.token_start
                )
        return mask


class Provenance(BaseModel):
    """What produced a record's samples: the policy and the exact sampling settings of its chunk."""

    model_config = ConfigDict(extra="allow")

    model: str
    mode: str
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int | None = None  # the chunk's sampling seed


class ProblemRecord(BaseModel):
    """Everything produced for one problem, written as one line of ``samples.jsonl``."""

    model_config = ConfigDict(extra="allow")

    id: str
    benchmark: str
    question: str
    gold: str
    meta: dict[str, Any] = Field(default_factory=dict)
    prompt: str = ""
    prompt_tokens: int = 0
    samples: list[SampleRecord]
    seconds: float = 0.0
    provenance: Provenance | None = None

    @property
    def correct(self) -> list[bool]:
        return [sample.correct for sample in self.samples]

    @property
    def groups(self) -> list[int]:
        return [sample.group for sample in self.samples]

    @property
    def rm_scores(self) -> list[float] | None:
        scores = [sample.rm_score for sample in self.samples]
        if any(score is None for score in scores):
            return None
        return [float(score) for score in scores if score is not None]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
