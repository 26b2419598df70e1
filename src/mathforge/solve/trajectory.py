"""A solved problem: the response with its model and tool-output parts marked, ready for grading,
reward-model data and RL losses (which mask tool output by the token spans)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

SegmentKind = Literal["model", "tool"]


@dataclass
class Segment:
    """A stretch of the response written by the model or by the executor.

    ``start``/``end`` index characters of ``Trajectory.response``; ``token_start``/``token_end``
    index ``Trajectory.token_ids`` (None when the engine has no local tokenizer).
    """

    kind: SegmentKind
    start: int
    end: int
    token_start: int | None = None
    token_end: int | None = None


@dataclass
class Trajectory:
    """One response to one prompt, possibly spanning several TIR rounds.

    ``token_ids`` are the response tokens: the model's own sampled tokens for its segments and
    the tokenised executor output for tool segments, so a trainer can score exactly what the
    model produced and mask the rest. ``executions`` hold each code cell and its result
    (``code``, ``output`` as the model saw it, and the sandbox's ``ExecResult`` fields).
    ``finish_reason`` is the last round's (``stop``, ``eos``, ``length``) or ``max_calls`` when
    the model asked for another execution after the last allowed one. ``completion_tokens``
    counts model-written tokens only.

    Token-exact (an engine with ``token_ids_in``): ``prompt_ids + token_ids`` is exactly the
    sequence the model conditioned on and sampled, round after round: model segments hold the
    tokens as sampled (a round's stop-string tokens included, and the final end-of-sequence
    token), tool segments the tokenised executor output, and each segment's text is its tokens
    decoded. ``logprobs`` (when asked for) has one entry per ``token_ids`` entry: the sampled
    token's log-probability (``Completion.logprobs``), None for tool tokens. Otherwise (a
    text-only engine) ``prompt_ids`` is empty, ``logprobs`` None, and ``token_ids`` are each
    round's ``Completion.token_ids``.
    """

    prompt: str
    response: str = ""
    segments: list[Segment] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    executions: list[dict[str, Any]] = field(default_factory=list)
    answer: str | None = None
    finish_reason: str = "length"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_ids: list[int] = field(default_factory=list)
    logprobs: list[float | None] | None = None

    def add(
        self,
        kind: SegmentKind,
        text: str,
        token_ids: list[int] | None,
        logprobs: Sequence[float] | None = None,
    ) -> None:
        """Append a segment (merged into the previous one when of the same kind).

        While ``self.logprobs`` is kept (a list), a model segment must bring one log-probability
        per token; a tool segment's tokens get None.
        """
        start, end = len(self.response), len(self.response) + len(text)
        self.response += text
        token_start = token_end = None
        if token_ids is not None:
            if self.logprobs is not None:
                if kind == "tool":
                    self.logprobs.extend([None] * len(token_ids))
                elif logprobs is None or len(logprobs) != len(token_ids):
                    raise ValueError("a model segment needs one log-probability per token")
                else:
                    self.logprobs.extend(logprobs)
            token_start = len(self.token_ids)
            self.token_ids.extend(token_ids)
            token_end = len(self.token_ids)
        last = self.segments[-1] if self.segments else None
        if last is not None and last.kind == kind and last.token_end == token_start:
            last.end, last.token_end = end, token_end
        else:
            self.segments.append(Segment(kind, start, end, token_start, token_end))

    def tool_mask(self) -> list[bool]:
        """Per entry of ``token_ids``: True where the token is executor output (to mask from losses)."""
        mask = [False] * len(self.token_ids)
        for segment in self.segments:
            if segment.kind == "tool" and segment.token_start is not None and segment.token_end is not None:
                mask[segment.token_start : segment.token_end] = [True] * (
                    segment.token_end - segment.token_start
                )
        return mask

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trajectory:
        values = dict(data)
        values["segments"] = [Segment(**segment) for segment in data.get("segments", [])]
        known = cls.__dataclass_fields__
        return cls(**{key: value for key, value in values.items() if key in known})
