"""Per-problem record schema of ``samples.jsonl``: the hand-off from evaluation to later stages.

One JSON line per problem holds everything needed to recompute metrics or build training data
without generating again: the prompt, every sampled response with its extracted answer,
correctness, majority-vote group, execution calls and token counts, and reward-model scores
when a scorer was used. Rejection sampling and reward-model data reuse the same records.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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


class SampleRecord(BaseModel):
    """One sampled response to a problem."""

    model_config = ConfigDict(extra="allow")

    response: str
    answer: str = ""
    correct: bool = False
    reason: str = ""  # how the grader decided: exact, numeric, symbolic, no_answer, mismatch, timeout
    # Majority-vote group: samples with equivalent answers share a group; groups are numbered
    # by first appearance and -1 marks an empty answer (which never votes).
    group: int = -1
    finish_reason: str = "stop"
    completion_tokens: int = 0
    executions: list[Execution] = Field(default_factory=list)
    rm_score: float | None = None

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


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
