"""Append-only JSONL files: the hand-off format between stages and the unit of resumability.

Every stage writes one line per finished item and flushes it, so a crash or Ctrl-C loses at
most the items in flight; a rerun reads the ids already written and skips them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from mathforge.errors import InputError


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; a bad line raises :class:`InputError`."""
    for number, obj in read_jsonl_lenient(path):
        if isinstance(obj, InputError):
            raise obj
        yield number, obj


def read_jsonl_lenient(path: str | Path) -> Iterator[tuple[int, dict[str, Any] | InputError]]:
    """Like :func:`read_jsonl`, but a malformed line is yielded as its :class:`InputError`.

    Used by ``--skip-bad`` modes, which count and report bad lines instead of stopping.
    """
    for number, _, obj in read_jsonl_raw(path):
        yield number, obj


def read_jsonl_raw(path: str | Path) -> Iterator[tuple[int, str, dict[str, Any] | InputError]]:
    """``(line_number, raw_line, object or its InputError)`` per non-blank line.

    Filters that pass lines through unchanged write ``raw_line`` back byte for byte. Lines are
    decoded one by one, so a file that is not UTF-8 fails on the line that is not.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found" if not path.exists() else "not a regular file")
    with path.open("rb") as handle:
        for number, data in enumerate(handle, start=1):
            try:
                raw = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                problem = f"not UTF-8 text (byte 0x{data[exc.start]:02x} at column {exc.start + 1})"
                yield number, "", InputError(path, problem, line=number)
                continue
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                yield (
                    number,
                    raw,
                    InputError(path, f"not valid JSON ({exc.msg} at column {exc.colno})", line=number),
                )
                continue
            if not isinstance(obj, dict):
                yield (
                    number,
                    raw,
                    InputError(path, f"expected a JSON object, got {type(obj).__name__}", line=number),
                )
                continue
            yield number, raw, obj


def read_ids(path: str | Path, key: str = "id") -> set[str]:
    """Ids already written to an output file (for resuming); a torn last line is ignored."""
    path = Path(path)
    done: set[str] = set()
    if not path.is_file():
        return done
    with path.open(encoding="utf-8") as handle:
        for raw in handle:
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash: its item is simply redone
            if isinstance(obj, dict) and key in obj:
                done.add(str(obj[key]))
    return done


def repair_tail(path: str | Path) -> None:
    """Drop a partial last line left by a crash so appended lines start on a fresh line."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb+") as handle:
        data = handle.read()
        if data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        handle.seek(cut)
        handle.truncate()


class JsonlWriter:
    """Append JSON objects one per line, flushed and fsync'd-on-close, safe to resume after a crash."""

    def __init__(self, path: str | Path, mode: str = "a") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if mode == "a":
            repair_tail(self.path)
        self._handle: TextIO = self.path.open(mode, encoding="utf-8")

    def write(self, obj: dict[str, Any]) -> None:
        self._handle.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self._handle.flush()

    def write_many(self, objs: Iterable[dict[str, Any]]) -> None:
        for obj in objs:
            self.write(obj)

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
