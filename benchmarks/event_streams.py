"""CPU per answer of ``answers.answer``'s responses, in process: a fake ASGI receive (the client never leaves) and a
send that only keeps the messages, so only the response's own work (disconnect watcher, framing) is measured.

    PYTHONPATH=$PWD python benchmarks/event_streams.py [answers]

Prints µs of process CPU per answer for each shape; compare runs of the same machine only.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from starlette.types import Message

from mcp_gateway.config import Identity
from mcp_gateway.core.proxy import Caller, ClientLink
from mcp_gateway.eras.answers import answer, progress_sink
from mcp_gateway.eras.calls import Emit, PreparedCall

CALLER = Caller(Identity(id="bench", name="bench"))


class _PlainEra:
    """Frames nothing, so only the response's own work is measured; progress goes out for token 1."""

    def calling(self, call: PreparedCall, emit: Emit | None) -> AbstractContextManager[ClientLink]:
        return nullcontext(ClientLink(progress=progress_sink(emit, 1) if emit is not None else None))

    def finish(self, method: str, caller: Caller, result: dict[str, Any]) -> dict[str, Any]:
        return result

    def error_status(self, code: int) -> int:
        return 200


ERA = _PlainEra()


async def _never_leaves() -> Message:
    await asyncio.Event().wait()
    return {"type": "http.disconnect"}


async def _one(stream: bool, lazy: bool, emits: int, event_ids: str | None) -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def handler(caller: Caller, params: Mapping[str, Any], link: ClientLink) -> dict[str, Any]:
        for n in range(emits):
            assert link.progress is not None
            await link.progress(n, None, None)
        return {"content": [{"type": "text", "text": "ok"}]}

    call = PreparedCall(1, "tools/call", {}, CALLER, handler, ERA, stream, lazy, event_ids)
    response = answer(call)
    await response({"type": "http"}, _never_leaves, send)


SHAPES = {
    "json (no SSE)": (False, False, 0, None),
    "lazy SSE, answered as JSON": (True, True, 0, None),
    "SSE, 1 progress + answer": (True, False, 1, None),
    "resumable SSE, 1 progress + answer": (True, False, 1, "abc"),
}


async def main(answers: int) -> None:
    for name, shape in SHAPES.items():
        for _ in range(answers // 10):  # warm up
            await _one(*shape)
        start = time.process_time()
        for _ in range(answers):
            await _one(*shape)
        spent = time.process_time() - start
        print(f"{name:40s} {spent / answers * 1e6:8.1f} µs CPU per answer")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000))
