"""An in-memory ASGI driver: call an ASGI app or response with a scripted ``receive`` and a recording ``send``.

No server and no socket, so a test sees exactly the messages a response sends (status, headers, each body chunk as
its own frame) and decides when the client goes away.

    client = AsgiClient()
    async with anyio.create_task_group() as tg:
        tg.start_soon(client.call, response)
        await client.wait_for_frames(2)
        client.disconnect()
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
from starlette.types import ASGIApp, Message


class AsgiClient:
    """One HTTP request: ``receive`` yields the body, then blocks until ``disconnect()``; ``send`` records.

    A body given as chunks arrives one chunk per ``receive``; with ``complete=False`` the last chunk still says more
    is coming, as from a client that stalls or goes away mid-body. ``reads`` counts the body chunks taken.
    """

    def __init__(
        self,
        body: bytes | Sequence[bytes] = b"",
        *,
        method: str = "POST",
        path: str = "/mcp",
        headers: Mapping[str, str] | None = None,
        complete: bool = True,
    ) -> None:
        self.scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()],
        }
        self._chunks = [body] if isinstance(body, bytes) else list(body)
        self._complete = complete
        self.reads = 0
        self._gone = anyio.Event()
        self._changed = anyio.Event()
        self.sent: list[Message] = []
        self.returned = False

    async def receive(self) -> Message:
        if self.reads < len(self._chunks):
            self.reads += 1
            more = self.reads < len(self._chunks) or not self._complete
            return {"type": "http.request", "body": self._chunks[self.reads - 1], "more_body": more}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        self._changed.set()
        self._changed = anyio.Event()

    def disconnect(self) -> None:
        """The client closes its connection: the pending (and every later) ``receive`` says so."""
        self._gone.set()

    async def call(self, app: ASGIApp) -> None:
        """Run ``app`` for this request to its end."""
        await app(self.scope, self.receive, self.send)
        self.returned = True

    async def wait_for_frames(self, count: int) -> None:
        """Wait until at least ``count`` body frames were sent."""
        while len(self.frames) < count:
            await self._changed.wait()

    # What was sent.

    @property
    def status(self) -> int:
        return int(self._start()["status"])

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(bytes(k), bytes(v)) for k, v in self._start()["headers"]]

    @property
    def frames(self) -> list[bytes]:
        """Each ``http.response.body`` chunk, in order (the last one of a finished response is ``b""`` or its body)."""
        return [bytes(m.get("body", b"")) for m in self.sent if m["type"] == "http.response.body"]

    @property
    def finished(self) -> bool:
        """The response sent its last frame (``more_body`` false)."""
        return any(m["type"] == "http.response.body" and not m.get("more_body", False) for m in self.sent)

    def json(self) -> Any:
        return json.loads(b"".join(self.frames))

    def _start(self) -> Message:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        assert len(starts) == 1, f"expected one response start, got {self.sent!r}"
        return starts[0]
