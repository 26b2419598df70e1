"""The zygote's end of its control socket: requests in, results out, never blocking.

The client (:class:`mathforge.sandbox.Sandbox`) sends one configuration frame, then request
frames (``run``, ``cell`` and ``close``); the zygote answers ``ready`` once warm and one
``result`` per run or cell. The socket is non-blocking and served by the zygote's event loop,
so a client slow to read its results never stalls the children; end of stream from the client
(or a failed send) means the zygote is to shut down.
"""

from __future__ import annotations

import selectors
import socket
from collections.abc import Callable
from typing import Any

from mathforge.sandbox.protocol import READ_CHUNK, FrameDecoder, encode

MAX_REQUEST_FRAME = 256 << 20


class ControlChannel:
    """Frames requests into ``on_requests`` and queues result frames; ``closed`` once the client left."""

    def __init__(
        self,
        control: socket.socket,
        selector: selectors.BaseSelector,
        on_requests: Callable[[list[dict[str, Any]]], object],
    ) -> None:
        self.socket = control
        self.selector = selector
        self.on_requests = on_requests
        self.requests = FrameDecoder(MAX_REQUEST_FRAME)
        self.outgoing = bytearray()
        self.closed = False
        self.socket.setblocking(False)
        self.selector.register(self.socket, selectors.EVENT_READ, self._on_event)

    def _on_event(self, events: int) -> None:
        if events & selectors.EVENT_READ:
            try:
                data = self.socket.recv(READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""
            if data == b"":
                self.closed = True
                return
            if data:
                self.on_requests(self.requests.feed(data))
        if events & selectors.EVENT_WRITE:
            self._flush()

    def send(self, message: dict[str, Any]) -> None:
        self.outgoing += encode(message)
        self._flush()

    def _flush(self) -> None:
        try:
            while self.outgoing:
                sent = self.socket.send(self.outgoing)
                del self.outgoing[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.closed = True
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.outgoing else 0)
        self.selector.modify(self.socket, events, self._on_event)


def result_message(
    request: dict[str, Any] | None,
    status: str,
    stdout: str,
    error: str | None,
    wall_ms: float,
    reset: bool,
    dropped: list[int],
) -> dict[str, Any]:
    """The ``result`` frame answering ``request`` (a run or a cell)."""
    assert request is not None
    message: dict[str, Any] = {
        "op": "result",
        "id": request["id"],
        "status": status,
        "stdout": stdout,
        "error": error,
        "wall_ms": wall_ms,
        "reset": reset,
    }
    if dropped:
        message["dropped"] = list(dropped)
    return message
