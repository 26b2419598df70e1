"""Length-prefixed JSON frames: the wire format between the client, the zygote and children.

JSON rather than pickle because frames from children are written by untrusted code: a bad
frame must be a parse error, never code execution in the zygote.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

_HEADER = struct.Struct("<I")
HEADER_SIZE = _HEADER.size
READ_CHUNK = 1 << 16  # what the zygote takes per read from a non-blocking pipe or socket


class FrameError(ValueError):
    """A frame that is malformed or larger than allowed."""


def encode(obj: dict[str, Any]) -> bytes:
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    return _HEADER.pack(len(body)) + body


class FrameDecoder:
    """Accumulates bytes from a non-blocking stream and yields complete frames."""

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buffer += data
        frames: list[dict[str, Any]] = []
        offset = 0
        while len(self._buffer) - offset >= HEADER_SIZE:
            (size,) = _HEADER.unpack_from(self._buffer, offset)
            if size > self.max_frame:
                raise FrameError(f"frame of {size} bytes exceeds the {self.max_frame}-byte limit")
            end = offset + HEADER_SIZE + size
            if len(self._buffer) < end:
                break
            body = bytes(self._buffer[offset + HEADER_SIZE : end])
            offset = end
            try:
                obj = json.loads(body.decode("utf-8", "surrogatepass"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise FrameError(f"malformed frame: {exc}") from None
            if not isinstance(obj, dict):
                raise FrameError("frame is not a JSON object")
            frames.append(obj)
        del self._buffer[:offset]
        return frames


def read_exact(fd: int, size: int) -> bytes | None:
    """Blocking read of exactly ``size`` bytes; None at end of stream."""
    chunks = bytearray()
    while len(chunks) < size:
        chunk = os.read(fd, size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def read_frame(fd: int, max_frame: int) -> dict[str, Any] | None:
    """Blocking read of one frame from a trusted peer; None at end of stream."""
    header = read_exact(fd, HEADER_SIZE)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > max_frame:
        raise FrameError(f"frame of {size} bytes exceeds the {max_frame}-byte limit")
    body = read_exact(fd, size)
    if body is None:
        return None
    return json.loads(body.decode("utf-8", "surrogatepass"))


def write_all(fd: int, data: bytes) -> None:
    """Blocking write of all of ``data``."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
