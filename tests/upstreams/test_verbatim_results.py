"""An upstream's result reaches the client as the upstream wrote it: the members the gateway does not read are passed
on byte for byte (never decoded and encoded again), and a result the gateway must change (``resourcePrefix`` URIs)
still gets the change.

The upstream is a small streamable HTTP server written out below that answers ``tools/call`` with fixed bytes; the
client is plain HTTP in each era, so the answer's bytes can be compared.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.harness import DEMO_KEY, make_config, serve_app, serve_gateway

MODERN = "2026-07-28"
LEGACY = "2025-11-25"

# JSON the standard library and msgspec would both write differently: escapes kept as escapes, raw UTF-8, an integer
# beyond 64 bits, a float with more digits than a double holds, exponents, insignificant whitespace, -0.0.
TEXT = '"caf\\u00e9 caf\xe9 \\ud83d\\ude00 \U0001f600 \\"q\\" \\/ ' + "0123456789abcdef" * 65_536 + '"'
ODD_NUMBERS = b'{"big":123456789012345678901234567890,"pi":3.14159265358979323846264338327950288,"e":1E+2,"z":-0.0}'
CONTENT = b'[ {"type":"text", "text":' + TEXT.encode() + b"} ]"
LONE_SURROGATE = b'[{"type":"text","text":"half a pair: \\ud800, and the other half: \\udc00"}]'


def result_bytes(content: bytes) -> bytes:
    return b'{"content":' + content + b',"structuredContent":' + ODD_NUMBERS + b',"isError":false}'


def link_result(uri: str) -> bytes:
    content = [
        {"type": "resource_link", "uri": uri, "name": "note"},
        {"type": "resource", "resource": {"uri": uri, "text": "hi"}},
    ]
    return json.dumps({"content": content}).encode()


def upstream(results: dict[str, bytes]) -> Starlette:
    """A handshake-era MCP server over streamable HTTP (JSON answers, no GET stream) whose tools answer ``results``."""
    tools = [{"name": name, "inputSchema": {"type": "object"}} for name in results]

    async def mcp(request: Request) -> Response:
        if request.method != "POST":
            return Response(status_code=405)
        message = json.loads(await request.body())
        if "id" not in message:
            return Response(status_code=202)
        head = b'{"jsonrpc":"2.0","id":' + json.dumps(message["id"]).encode()
        method = message["method"]
        if method == "initialize":
            info = {"name": "fixed", "version": "0"}
            result: Any = {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": info}
        elif method == "tools/list":
            result = {"tools": tools}
        elif method == "tools/call":
            body = head + b',"result":' + results[message["params"]["name"]] + b"}"
            return Response(body, media_type="application/json")
        else:
            error = {"code": -32601, "message": "Method not found"}
            return JSONResponse({"jsonrpc": "2.0", "id": message["id"], "error": error})
        return JSONResponse({"jsonrpc": "2.0", "id": message["id"], "result": result})

    return Starlette(routes=[Route("/mcp", mcp, methods=["GET", "POST", "DELETE"])])


@asynccontextmanager
async def gateway_before(results: dict[str, bytes], **upstream_config: Any) -> AsyncIterator[str]:
    async with serve_app(upstream(results)) as upstream_url:
        config = {
            "name": "fixed",
            "transport": "streamable-http",
            "url": f"{upstream_url}/mcp",
            "protocol": "legacy",
            **upstream_config,
        }
        async with serve_gateway(make_config(upstreams=[config])) as url:
            yield url


async def call(url: str, era: str, tool: str) -> bytes:
    """``tools/call`` of ``tool`` over plain HTTP in ``era``; the answer's body."""
    headers = {"Authorization": f"Bearer {DEMO_KEY}", "Accept": "application/json, text/event-stream"}
    params: dict[str, Any] = {"name": tool, "arguments": {}}
    async with httpx.AsyncClient(timeout=30) as http:
        if era == MODERN:
            headers |= {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": tool}
            meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
            params["_meta"] = meta
        else:
            hello = {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}
            opened = await http.post(
                f"{url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}, headers=headers
            )
            headers |= {"MCP-Protocol-Version": LEGACY, "Mcp-Session-Id": opened.headers["mcp-session-id"]}
            initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
            await http.post(f"{url}/mcp", json=initialized, headers=headers)
        body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}
        response = await http.post(f"{url}/mcp", json=body, headers=headers)
    assert response.status_code == 200, response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        # A 2025-11-25 call's answer is a resumable stream: its last event's data is the answer.
        return [line for line in response.content.split(b"\r\n") if line.startswith(b"data: {")][-1][6:]
    return response.content


@pytest.mark.parametrize("era", [MODERN, LEGACY])
@pytest.mark.parametrize("content", [CONTENT, LONE_SURROGATE], ids=["1mb", "lone-surrogates"])
async def test_a_result_the_gateway_need_not_change_reaches_the_client_byte_for_byte(era: str, content: bytes) -> None:
    async with gateway_before({"blob": result_bytes(content)}) as url:
        body = await call(url, era, "fixed__blob")
    assert b'"content":' + content + b"," in body
    assert b'"structuredContent":' + ODD_NUMBERS + b"," in body
    result = json.loads(body)["result"]
    assert result["isError"] is False
    if era == MODERN:
        # What the gateway adds or reads is still there: the era's framing and its own _meta stamp.
        assert result["resultType"] == "complete"
        assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "mcp-gateway"
    else:
        assert "resultType" not in result and "_meta" not in result


@pytest.mark.parametrize("era", [MODERN, LEGACY])
async def test_a_result_carrying_resource_uris_is_still_rewritten_under_the_resource_prefix(era: str) -> None:
    async with gateway_before({"linked": link_result("demo://note")}, resourcePrefix="work") as url:
        body = await call(url, era, "fixed__linked")
    link, embedded = json.loads(body)["result"]["content"]
    assert link["uri"] == "work+demo://note"
    assert embedded["resource"]["uri"] == "work+demo://note"
