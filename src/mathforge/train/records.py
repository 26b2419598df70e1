"""SFT records: one prompt (chat messages), one response and which parts of it the model wrote.

A record is one JSON line: ``id``, ``prompt`` (messages: the mode's system prompt and the
question), ``response``, ``segments`` (character spans of the response marked ``model`` or
``tool``, as in :class:`~mathforge.solve.Trajectory`), ``answer``, ``source`` and provenance
fields. Bootstrap data, rejection-sampled data and solved trajectories all take this shape, so
one trainer and one loss mask serve them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mathforge.errors import InputError
from mathforge.jsonl import read_jsonl
from mathforge.solve.trajectory import Segment, Trajectory

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class SFTRecord:
    """A validated record, remembering the file and line it came from for error messages."""

    id: str
    prompt: list[dict[str, str]]
    response: str
    segments: list[Segment]
    answer: str | None = None
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    path: str = "<memory>"
    line: int | None = None

    @classmethod
    def from_dict(
        cls, obj: dict[str, Any], path: str | Path = "<memory>", line: int | None = None
    ) -> SFTRecord:
        """Check every field the trainer reads; a bad one raises an :class:`InputError` naming it."""
        for name in ("id", "prompt", "response", "segments"):
            if name not in obj:
                raise InputError(path, "missing", line, name)
        prompt = obj["prompt"]
        if not isinstance(prompt, list) or not prompt:
            raise InputError(path, "expected a non-empty list of {role, content} messages", line, "prompt")
        for message in prompt:
            if (
                not isinstance(message, dict)
                or message.get("role") not in ROLES
                or not isinstance(message.get("content"), str)
            ):
                raise InputError(
                    path,
                    f"each message needs a role ({', '.join(ROLES)}) and a string content",
                    line,
                    "prompt",
                )
        response = obj["response"]
        if not isinstance(response, str) or not response:
            raise InputError(path, "expected a non-empty string", line, "response")
        segments = _segments(obj["segments"], len(response), path, line)
        if not any(segment.kind == "model" and segment.end > segment.start for segment in segments):
            raise InputError(path, "no model-written text: nothing to train on", line, "segments")
        known = {"id", "prompt", "response", "segments", "answer", "source"}
        answer = obj.get("answer")
        return cls(
            id=str(obj["id"]),
            prompt=[{"role": m["role"], "content": m["content"]} for m in prompt],
            response=response,
            segments=segments,
            answer=None if answer is None else str(answer),
            source=None if obj.get("source") is None else str(obj["source"]),
            extra={key: value for key, value in obj.items() if key not in known},
            path=str(path),
            line=line,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON line (the inverse of :meth:`from_dict`)."""
        return {
            "id": self.id,
            "prompt": self.prompt,
            "response": self.response,
            "segments": [asdict(segment) for segment in self.segments],
            "answer": self.answer,
            "source": self.source,
            **self.extra,
        }

    def trajectory(self) -> Trajectory:
        """The response as a :class:`Trajectory` (character spans only: token ids depend on the model)."""
        return Trajectory(prompt="", response=self.response, segments=list(self.segments), answer=self.answer)


def _segments(value: Any, length: int, path: str | Path, line: int | None) -> list[Segment]:
    """Segments that cover the response from start to end, in order, without gaps."""
    if not isinstance(value, list) or not value:
        raise InputError(path, "expected a non-empty list of {kind, start, end} spans", line, "segments")
    segments, position = [], 0
    for item in value:
        if not isinstance(item, dict) or item.get("kind") not in ("model", "tool"):
            raise InputError(path, "each span needs kind 'model' or 'tool'", line, "segments")
        start, end = item.get("start"), item.get("end")
        if not isinstance(start, int) or not isinstance(end, int) or start != position or end < start:
            raise InputError(
                path,
                f"spans must cover the response in order without gaps (at character {position})",
                line,
                "segments",
            )
        segments.append(Segment(item["kind"], start, end))
        position = end
    if position != length:
        raise InputError(
            path, f"spans end at character {position}, the response at {length}", line, "segments"
        )
    return segments


def read_records(paths: Sequence[str | Path]) -> list[SFTRecord]:
    """All records of ``paths`` in order; an empty file or a bad line is an :class:`InputError`."""
    records: list[SFTRecord] = []
    for path in paths:
        found = [SFTRecord.from_dict(obj, path, line) for line, obj in read_jsonl(path)]
        if not found:
            raise InputError(path, "no records: the file is empty")
        records.extend(found)
    return records
