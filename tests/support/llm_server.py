"""A local OpenAI-compatible chat-completions server whose replies each test scripts.

No LLM is reachable from the test machines, so agents talk to this: a real HTTP server (Starlette under uvicorn)
speaking ``POST /v1/chat/completions`` with tool calls, exactly what the official ``openai`` client expects. Each
test queues replies per model name and reads back every request the gateway sent (to check what the model saw).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass(frozen=True)
class Failure:
    """Answer with this HTTP status instead of a completion."""

    status: int


@dataclass
class Hold:
    """Answer only once the test sets ``release`` (a model that is still thinking); ``reached`` says it asked."""

    then: dict[str, Any]
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


Reply = dict[str, Any] | Failure | Hold
_ids = itertools.count(1)


def answer(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def tool_call(name: str, **arguments: Any) -> dict[str, Any]:
    call = {
        "id": f"call_{next(_ids)}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }
    return {"role": "assistant", "content": None, "tool_calls": [call]}


class ScriptedModels:
    def __init__(self) -> None:
        self._replies: dict[str, deque[Reply]] = defaultdict(deque)
        self.requests: list[dict[str, Any]] = []
        self._held: list[Hold] = []

    def script(self, model: str, *replies: Reply) -> None:
        self._replies[model].extend(replies)

    def release_all(self) -> None:
        """Let every held reply go, so a failed test cannot leave the server waiting for ever at shutdown."""
        for queue in self._replies.values():
            for reply in queue:
                if isinstance(reply, Hold):
                    reply.release.set()
        for hold in self._held:
            hold.release.set()

    def requests_for(self, model: str) -> list[dict[str, Any]]:
        return [request for request in self.requests if request["model"] == model]

    async def chat_completions(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        queue = self._replies[body["model"]]
        if not queue:
            return JSONResponse({"error": {"message": f"no scripted reply left for {body['model']!r}"}}, 500)
        reply = queue.popleft()
        if isinstance(reply, Failure):
            return JSONResponse({"error": {"message": "scripted failure", "type": "server_error"}}, reply.status)
        if isinstance(reply, Hold):
            self._held.append(reply)
            reply.reached.set()
            await reply.release.wait()
            reply = reply.then
        finish = "tool_calls" if reply.get("tool_calls") else "stop"
        return JSONResponse(
            {
                "id": f"chatcmpl-{next(_ids)}",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "message": reply, "finish_reason": finish}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
            }
        )


@asynccontextmanager
async def serve_models() -> AsyncIterator[tuple[str, ScriptedModels]]:
    """Yield the base URL for ``baseUrl`` (``.../v1``) and the script."""
    models = ScriptedModels()
    app = Starlette(routes=[Route("/v1/chat/completions", models.chat_completions, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}/v1", models
    finally:
        models.release_all()
        server.should_exit = True
        await task
