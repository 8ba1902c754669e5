"""CPU per answer of ``streaming.answer``'s responses, in process: a fake ASGI receive (the client never leaves) and a
send that only keeps the messages, so only the response's own work (disconnect watcher, framing) is measured.

    PYTHONPATH=$PWD python benchmarks/event_streams.py [answers]

Prints µs of process CPU per answer for each shape; compare runs of the same machine only.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from starlette.types import Message

from mcp_gateway.eras.answers import Emit, answer


async def _never_leaves() -> Message:
    await asyncio.Event().wait()
    return {"type": "http.disconnect"}


async def _one(stream: bool, lazy: bool, emits: int, event_ids: str | None) -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def handler(emit: Emit | None) -> dict[str, Any]:
        for n in range(emits):
            assert emit is not None
            await emit({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": n}})
        return {"content": [{"type": "text", "text": "ok"}]}

    response = await answer(
        1, handler, lambda result: result, lambda code: 200, stream=stream, lazy=lazy, event_ids=event_ids
    )
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
