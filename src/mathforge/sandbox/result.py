"""The outcome of one sandboxed execution, and the text the model sees of it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Status = Literal["ok", "error", "timeout", "memory", "crash"]
STATUSES: tuple[Status, ...] = ("ok", "error", "timeout", "memory", "crash")

# What a TIR model trained on the Qwen2.5-Math executor expects to read after a timeout.
TIMEOUT_OBSERVATION = "Timeout Error"


def truncate_middle(text: str, max_chars: int) -> str:
    """Keep the head and the tail around "..." (the Qwen2.5-Math executor's format)."""
    if len(text) <= max_chars:
        return text
    half = max_chars // 2
    return text[:half] + "..." + text[len(text) - half :]


@dataclass(frozen=True)
class ExecResult:
    """One execution: ``status`` is ok, error, timeout, memory or crash.

    ``stdout`` is the captured standard output (head and tail kept when it exceeded the
    sandbox's ``max_output_chars``); ``error`` is the last line of the traceback (for example
    ``NameError: name 'x' is not defined``) or a short reason for timeout/memory/crash, and
    ``None`` when the code finished normally. ``wall_ms`` is the wall-clock time of the
    execution itself. ``reset`` is True when a session's process was lost and rebuilt around
    this cell: either this cell was rolled back (timeout, memory, crash), or replaying the
    earlier cells into a fresh process did not reproduce them all.
    """

    status: Status
    stdout: str = ""
    error: str | None = None
    wall_ms: float = 0.0
    reset: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def observation(self, max_chars: int = 400) -> str:
        """What the model reads in its ```output block: stdout, else the error line."""
        if self.status == "timeout":
            return TIMEOUT_OBSERVATION
        text = self.stdout.strip() or (self.error or "").strip()
        return truncate_middle(text, max_chars)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExecResult:
        return cls(
            status=data["status"],
            stdout=data.get("stdout", ""),
            error=data.get("error"),
            wall_ms=float(data.get("wall_ms", 0.0)),
            reset=bool(data.get("reset", False)),
        )
