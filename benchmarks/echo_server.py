"""The upstream of every benchmark scenario: a minimal, fast MCP echo server over streamable HTTP.

A raw ASGI app (no framework, no SDK) on uvicorn with uvloop and httptools, so that as little time as possible is
spent upstream and what the benchmark shows is the cost of whatever sits in front of it. It serves both protocol eras
on one endpoint, the way the gateway's own era routing does: a ``MCP-Protocol-Version`` header naming 2026-07-28
selects the stateless era, anything else the handshake era.

- 2026-07-28: ``server/discover``, ``tools/list``, ``tools/call``, ``ping``, and ``subscriptions/listen`` (answered
  with the acknowledgment and then held open, as a real server with list-change news would; the gateway holds one).
- 2025-11-25 and older: ``initialize`` mints an ``Mcp-Session-Id``; later requests must carry a known one (404
  otherwise, so a client notices a restarted server); ``GET`` holds an empty server stream open; ``DELETE`` ends
  the session.

Answers are plain JSON, never SSE, except for the two held streams. There is one tool, ``echo``: it returns its
``text`` argument, and accepts an optional ``customer_id`` that the gateway's policies can compare.

    python benchmarks/echo_server.py --port 9100
"""

from __future__ import annotations

import argparse
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MODERN = "2026-07-28"
LEGACY_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
SERVER_INFO = {"name": "bench-echo", "version": "1.0.0"}
SERVER_INFO_META = "io.modelcontextprotocol/serverInfo"

ECHO_TOOL = {
    "name": "echo",
    "description": "Return the text unchanged.",
    "inputSchema": {
        "type": "object",
        "properties": {"text": {"type": "string"}, "customer_id": {"type": "string"}},
        "required": ["text"],
    },
}

BLOB_TOOL = {
    "name": "blob",
    "description": "Return a text of the given size (a large result).",
    "inputSchema": {"type": "object", "properties": {"bytes": {"type": "integer"}}, "required": ["bytes"]},
}
SINK_TOOL = {
    "name": "sink",
    "description": "Take a text and return its length (a large argument).",
    "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
}
# --tools N adds N more tools to the list (the catalog size scenarios); they answer like echo.
TOOLS: list[dict[str, Any]] = [ECHO_TOOL, BLOB_TOOL, SINK_TOOL]
_BLOBS: dict[int, str] = {}

_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def call_tool(params: dict[str, Any]) -> dict[str, Any]:
    name = params.get("name")
    arguments = params.get("arguments") or {}
    if name == "blob":
        size = arguments.get("bytes")
        if not isinstance(size, int) or not 0 <= size <= 64 << 20:
            raise RpcError(-32602, "blob: 'bytes' must be an integer up to 64 MiB")
        text = _BLOBS.get(size)
        if text is None:
            text = _BLOBS[size] = ("0123456789abcdef" * (size // 16 + 1))[:size]
        return {"content": [{"type": "text", "text": text}], "isError": False}
    if name == "sink":
        return {"content": [{"type": "text", "text": str(len(arguments.get("text") or ""))}], "isError": False}
    if name != "echo" and not (isinstance(name, str) and name.startswith("tool_")):
        raise RpcError(-32602, f"Unknown tool: {name}")
    text = arguments.get("text")
    if not isinstance(text, str):
        raise RpcError(-32602, "echo: 'text' must be a string")
    return {"content": [{"type": "text", "text": text}], "isError": False}


def answer(method: str, params: dict[str, Any], *, modern: bool) -> dict[str, Any]:
    """The result of one request (the listen stream and the handshake are handled by the caller)."""
    if method == "tools/call":
        result = call_tool(params)
    elif method == "tools/list":
        result = {"tools": TOOLS}
        if modern:
            result.update(ttlMs=60_000, cacheScope="public")
    elif method == "ping":
        result = {}
    elif method == "server/discover" and modern:
        result = {
            "supportedVersions": [MODERN],
            "capabilities": {"tools": {"listChanged": True}},
            "ttlMs": 60_000,
            "cacheScope": "public",
            "_meta": {SERVER_INFO_META: SERVER_INFO},
        }
    else:
        raise RpcError(-32601, f"Method not found: {method}")
    if modern:
        result.setdefault("resultType", "complete")
    return result


class EchoServer:
    """The ASGI app. Legacy sessions are just a set of ids: nothing else is per-session."""

    def __init__(self) -> None:
        self.sessions: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http" or scope["path"] != "/mcp":
            await _respond(send, 404, b'{"error":"not_found"}')
            return
        headers = dict(scope["headers"])
        modern = headers.get(b"mcp-protocol-version", b"").decode() >= MODERN
        method = scope["method"]
        if method == "POST":
            await self._post(headers, modern, receive, send)
        elif method == "GET" and not modern and self._known(headers):
            # The legacy standalone server stream: nothing ever arrives on it, but a client may hold it open.
            await _hold_stream(send, receive, first=None)
        elif method == "DELETE" and not modern and self._known(headers):
            self.sessions.discard(headers[b"mcp-session-id"].decode())
            await _respond(send, 200, b"")
        elif method in ("GET", "DELETE"):
            await _respond(send, 405 if modern else 404, b"")
        else:
            await _respond(send, 405, b"")

    def _known(self, headers: dict[bytes, bytes]) -> bool:
        return headers.get(b"mcp-session-id", b"").decode() in self.sessions

    async def _post(self, headers: dict[bytes, bytes], modern: bool, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        try:
            message = json.loads(body)
        except ValueError:
            await _respond(send, 400, _error(None, -32700, "Parse error"))
            return
        if not isinstance(message, dict) or not isinstance(message.get("method", ""), str):
            await _respond(send, 400, _error(None, -32600, "Invalid request"))
            return
        method = message.get("method")
        if method is None or "id" not in message:
            # A notification (or a response to us, which we never ask for): accepted, nothing to say.
            await _respond(send, 202, b"")
            return
        request_id = message["id"]
        params = message.get("params") or {}
        extra: list[tuple[bytes, bytes]] = []
        if not modern:
            if method == "initialize":
                session_id = secrets.token_hex(16)
                self.sessions.add(session_id)
                extra.append((b"mcp-session-id", session_id.encode()))
                requested = params.get("protocolVersion")
                result = {
                    "protocolVersion": requested if requested in LEGACY_VERSIONS else LEGACY_VERSIONS[0],
                    "capabilities": {"tools": {"listChanged": False}},
                    "serverInfo": SERVER_INFO,
                }
                await _respond(send, 200, _result(request_id, result), extra)
                return
            if not self._known(headers):
                await _respond(send, 404, _error(request_id, -32600, "Unknown or missing Mcp-Session-Id"))
                return
        elif method == "subscriptions/listen":
            await _hold_stream(send, receive, first=_acknowledge(request_id, params))
            return
        try:
            result = answer(method, params, modern=modern)
        except RpcError as exc:
            status = 404 if modern and exc.code == -32601 else 400 if modern else 200
            await _respond(send, status, _error(request_id, exc.code, exc.message))
            return
        await _respond(send, 200, _result(request_id, result), extra)


def _acknowledge(request_id: Any, params: dict[str, Any]) -> bytes:
    honored = {key: True for key in ("toolsListChanged",) if (params.get("notifications") or {}).get(key)}
    note = {
        "jsonrpc": "2.0",
        "method": "notifications/subscriptions/acknowledged",
        "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": request_id}, "notifications": honored},
    }
    return b"event: message\ndata: " + json.dumps(note, separators=(",", ":")).encode() + b"\n\n"


def _result(request_id: Any, result: dict[str, Any]) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}, separators=(",", ":")).encode()


def _error(request_id: Any, code: int, message: str) -> bytes:
    payload = {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
    return json.dumps(payload, separators=(",", ":")).encode()


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [*_JSON, *(extra or [])] if body else list(extra or [])
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _hold_stream(send: Send, receive: Receive, *, first: bytes | None) -> None:
    """Open an SSE response, send ``first`` if any, and keep it open until the client goes away."""
    await send({"type": "http.response.start", "status": 200, "headers": _SSE})
    await send({"type": "http.response.body", "body": first or b": open\n\n", "more_body": True})
    while (await receive())["type"] != "http.disconnect":
        pass


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--access-log", action="store_true", help="log every request (for debugging, not benchmarks)")
    parser.add_argument("--tools", type=int, default=0, help="list this many more tools (tool_0, tool_1, ...)")
    args = parser.parse_args()
    TOOLS.extend({**ECHO_TOOL, "name": f"tool_{i}", "description": f"Echo number {i}."} for i in range(args.tools))
    config = uvicorn.Config(
        EchoServer(),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level="info" if args.access_log else "warning",
        access_log=args.access_log,
        backlog=4096,
        timeout_keep_alive=300,
        timeout_graceful_shutdown=1,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
