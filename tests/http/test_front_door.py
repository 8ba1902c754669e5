"""The front door, end to end: a real gateway over HTTP (and raw sockets) refusing what no route should see.

Origin on every /mcp and /v1 route, JSON-only bodies, nesting limits, slow bodies, and JSON errors for unknown
paths and methods. Each refusal is checked for what it must not do too: forward a call, create a session, or 500.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from mcp_gateway.store.redis import RedisStore
from tests.support.harness import DEMO_KEY, SUPPORT_KEY, make_config, serve_gateway

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
TASK_BODY: dict[str, Any] = {"taskId": "resolve-ticket", "context": {"ticket_id": "t-1", "customer_id": "c-1"}}


@pytest.fixture(scope="module")
async def gateway() -> AsyncIterator[str]:
    async with serve_gateway(make_config()) as url:
        yield url


def auth(key: str = DEMO_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def nested(depth: int) -> Any:
    """A JSON value ``depth`` containers deep: ``[[...]]``."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def with_deep_value(body: dict[str, Any], depth: int) -> bytes:
    """``body`` with ``"deep": [[...]]`` nested ``depth`` levels added (deeper than ``json.dumps`` can write)."""
    return json.dumps(body)[:-1].encode() + b', "deep": ' + b"[" * depth + b"]" * depth + b"}"


def json_type() -> dict[str, str]:
    return {"Content-Type": "application/json"}


def modern_request(
    method: str, params: dict[str, Any], name: str | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": meta}}
    headers = {**auth(), "MCP-Protocol-Version": MODERN, "Mcp-Method": method, "Accept": "application/json"}
    if name is not None:
        headers["Mcp-Name"] = name
    return body, headers


async def legacy_session(http: httpx.AsyncClient, url: str) -> dict[str, str]:
    """Headers of a fresh handshake-era session (raw initialize, so later requests can carry any body)."""
    params = {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    response = await http.post(
        f"{url}/mcp", json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}, headers=auth()
    )
    assert response.status_code == 200, response.text
    return {**auth(), "Mcp-Session-Id": response.headers["mcp-session-id"], "MCP-Protocol-Version": LEGACY}


async def tool_calls_forwarded(url: str) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{url}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("mcp_gateway_tool_calls_total{") and 'decision="allow"' in line
    )


# --- Origin on every route -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/tasks/sessions"),
        ("GET", "/v1/tasks/sessions/current"),
        ("DELETE", "/v1/tasks/sessions/current"),
        ("GET", "/v1/tasks/sessions/ts_any"),
        ("DELETE", "/v1/tasks/sessions/ts_any"),
        ("POST", "/mcp"),
        ("GET", "/mcp"),
        ("DELETE", "/mcp"),
    ],
)
async def test_foreign_origin_is_refused_on_every_mcp_and_v1_route(gateway: str, method: str, path: str) -> None:
    headers = {**auth(SUPPORT_KEY), "Origin": "https://evil.example"}
    async with httpx.AsyncClient() as http:
        response = await http.request(method, f"{gateway}{path}", json=TASK_BODY, headers=headers)
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert "evil.example" in response.json()["message"]


async def test_task_session_is_created_only_for_no_listed_or_loopback_origin() -> None:
    config = make_config(server={"maxBodyBytes": 65536, "allowedOrigins": ["https://console.example"]})
    async with serve_gateway(config) as url, httpx.AsyncClient() as http:
        for origin, status in [
            (None, 201),
            ("https://console.example", 201),
            ("http://localhost:6274", 201),
            ("https://evil.example", 403),
            ("http://[::1", 403),  # not even a URL
        ]:
            headers = auth(SUPPORT_KEY) | ({"Origin": origin} if origin else {})
            response = await http.post(f"{url}/v1/tasks/sessions", json=TASK_BODY, headers=headers)
            assert response.status_code == status, (origin, response.text)


# --- Nesting ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [129, 1000, 30_000])
async def test_too_deeply_nested_mcp_message_is_invalid_request(gateway: str, depth: int) -> None:
    body, headers = modern_request("tools/call", {"name": "demo__echo", "arguments": {"text": "x"}}, "demo__echo")
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{gateway}/mcp", content=with_deep_value(body, depth), headers=headers | json_type()
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32600 and "128" in error["message"]


@pytest.mark.parametrize("depth", [128, 1000])
async def test_too_deeply_nested_task_session_body_is_bad_request(gateway: str, depth: int) -> None:
    body = with_deep_value(TASK_BODY, depth)  # one level more with the body object itself
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{gateway}/v1/tasks/sessions", content=body, headers=auth(SUPPORT_KEY) | json_type()
        )
    assert response.status_code == 400
    assert response.json() == {"error": "bad_request", "message": "body nests deeper than 128 levels"}


async def test_nesting_within_the_limit_passes_and_brackets_in_strings_do_not_count(gateway: str) -> None:
    context = {**TASK_BODY["context"], "extra": nested(126), "text": "[{" * 500}
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{gateway}/v1/tasks/sessions", json={**TASK_BODY, "context": context}, headers=auth(SUPPORT_KEY)
        )
    assert response.status_code == 201, response.text


async def test_max_json_depth_is_configurable() -> None:
    config = make_config(server={"maxBodyBytes": 65536, "maxJsonDepth": 8, "maxArgumentDepth": 4})
    async with serve_gateway(config) as url, httpx.AsyncClient() as http:
        deep = {**TASK_BODY, "context": {**TASK_BODY["context"], "extra": nested(7)}}
        response = await http.post(f"{url}/v1/tasks/sessions", json=deep, headers=auth(SUPPORT_KEY))
    assert response.status_code == 400
    assert response.json()["message"] == "body nests deeper than 8 levels"


@pytest.mark.parametrize("era", ["legacy", MODERN])
@pytest.mark.parametrize(("method", "name"), [("tools/call", "demo__echo"), ("prompts/get", "demo__summarize")])
async def test_too_deep_arguments_are_invalid_params_and_not_forwarded(
    gateway: str, era: str, method: str, name: str
) -> None:
    before = await tool_calls_forwarded(gateway)
    arguments = {"text": "hi", "extra": nested(64)}  # 65 deep with the arguments object itself
    async with httpx.AsyncClient() as http:
        if era == MODERN:
            body, headers = modern_request(method, {"name": name, "arguments": arguments}, name)
        else:
            headers = await legacy_session(http, gateway)
            body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {"name": name, "arguments": arguments}}
        response = await http.post(f"{gateway}/mcp", json=body, headers=headers)
    # Like every other invalid params: the SDK's 400 in the modern era, 200 in the legacy one.
    assert response.status_code == (400 if era == MODERN else 200)
    assert response.json()["error"] == {"code": -32602, "message": "params.arguments nests deeper than 64 levels"}
    assert await tool_calls_forwarded(gateway) == before


async def test_arguments_at_the_limit_are_forwarded(gateway: str) -> None:
    before = await tool_calls_forwarded(gateway)
    arguments = {"text": "hi", "extra": nested(63)}
    body, headers = modern_request("tools/call", {"name": "demo__echo", "arguments": arguments}, "demo__echo")
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway}/mcp", json=body, headers=headers)
    assert response.status_code == 200
    assert "result" in response.json(), response.text
    assert await tool_calls_forwarded(gateway) == before + 1


# --- Content types ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx"])
async def test_mcp_post_that_is_not_json_is_415_and_not_forwarded(gateway: str, content_type: str | None) -> None:
    before = await tool_calls_forwarded(gateway)
    body, headers = modern_request("tools/call", {"name": "demo__echo", "arguments": {"text": "x"}}, "demo__echo")
    if content_type is not None:
        headers["Content-Type"] = content_type
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway}/mcp", content=json.dumps(body).encode(), headers=headers)
    assert response.status_code == 415
    assert response.json()["error"]["code"] == -32600
    assert "application/json" in response.json()["error"]["message"]
    assert await tool_calls_forwarded(gateway) == before


@pytest.mark.parametrize("content_type", [None, "text/plain", "multipart/form-data; boundary=x"])
async def test_task_session_post_that_is_not_json_is_415(gateway: str, content_type: str | None) -> None:
    headers = auth(SUPPORT_KEY) | ({"Content-Type": content_type} if content_type else {})
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway}/v1/tasks/sessions", content=json.dumps(TASK_BODY), headers=headers)
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"


@pytest.mark.parametrize("content_type", ["application/json", "Application/JSON", "application/json; charset=utf-8"])
async def test_json_media_type_is_accepted_with_parameters_in_any_case(gateway: str, content_type: str) -> None:
    headers = auth(SUPPORT_KEY) | {"Content-Type": content_type}
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway}/v1/tasks/sessions", content=json.dumps(TASK_BODY), headers=headers)
    assert response.status_code == 201


# --- Slow bodies -----------------------------------------------------------------------------------------------


async def stall_body(url: str, path: str) -> tuple[bytes, float]:
    """Send headers and half of a declared body, then nothing: what comes back, and after how long."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {SUPPORT_KEY}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    try:
        writer.write(head.encode() + b'{"taskId": ')
        await writer.drain()
        started = time.monotonic()
        answer = await asyncio.wait_for(reader.read(), timeout=10)  # read() returns once the gateway closes
        return answer, time.monotonic() - started
    finally:
        writer.close()  # else a gateway that never gives up would keep the test server from stopping


@pytest.mark.parametrize("path", ["/v1/tasks/sessions", "/mcp"])
async def test_stalled_body_is_cut_off_after_body_read_timeout(path: str) -> None:
    config = make_config(server={"maxBodyBytes": 65536, "bodyReadTimeout": 0.5})
    async with serve_gateway(config) as url:
        stalled = asyncio.create_task(stall_body(url, path))
        await asyncio.sleep(0.1)
        async with httpx.AsyncClient() as http:  # others are served meanwhile
            assert (await http.get(f"{url}/healthz")).status_code == 200
            assert (await http.post(f"{url}/v1/tasks/sessions", json=TASK_BODY, headers=auth(SUPPORT_KEY))).is_success
        answer, elapsed = await stalled
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 408 Request Timeout"
    assert b"connection: close" in rest.lower()
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["error"] == "request_timeout"
    assert 0.4 < elapsed < 2.5


# --- Every error is JSON ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nope", 404, "not_found"),
        ("POST", "/nope", 404, "not_found"),
        ("PUT", "/mcp", 405, "method_not_allowed"),
        ("PUT", "/v1/tasks/sessions/current", 405, "method_not_allowed"),
        ("POST", "/v1/tasks/sessions/", 404, "not_found"),
        ("GET", "/healthz/", 404, "not_found"),
        ("GET", "/mcp/", 404, "not_found"),
    ],
)
async def test_unmatched_paths_and_methods_answer_the_json_error_body(
    gateway: str, method: str, path: str, status: int, code: str
) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.request(method, f"{gateway}{path}", json=TASK_BODY, headers=auth(SUPPORT_KEY))
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == code
    assert path in response.json()["message"]
    if status == 405:
        allowed = {m.strip() for m in response.headers["allow"].split(",")}
        assert allowed == ({"GET", "HEAD", "POST", "DELETE"} if path == "/mcp" else {"GET", "HEAD", "DELETE"})


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("/mcp", b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "x": "\xff\xfe"}', {}),
        ("/v1/tasks/sessions", b'{"taskId": "\xff"}', {}),
        ("/v1/tasks/sessions", b"[1, 2]", {}),
        ("/v1/tasks/sessions", b'"text"', {}),
        ("/v1/tasks/sessions", b"", {}),
        ("/mcp", b"", {}),
        ("/mcp", b"12", {}),
        ("/mcp", b"{}", {"X-Task-Token": b"\xff\xfe\x80"}),
        ("/v1/tasks/sessions", b"{}", {"Authorization": b"Bearer \xff\xfe"}),
        ("/mcp", b"{}", {"Origin": b"http://\xff"}),
    ],
)
async def test_client_mistakes_get_a_json_error_never_a_500(
    gateway: str, path: str, body: bytes, headers: dict[str, bytes | str]
) -> None:
    sent = {"Authorization": f"Bearer {SUPPORT_KEY}", "Content-Type": "application/json", **headers}
    async with httpx.AsyncClient() as http:
        # Deliberately bytes that are not valid header text: httpx sends them as they are.
        response = await http.post(f"{gateway}{path}", content=body, headers=sent)  # type: ignore[arg-type]
    assert 400 <= response.status_code < 500, response.text
    assert "Traceback" not in response.text
    payload = response.json()
    assert "error" in payload


@pytest.mark.parametrize("path", ["/mcp", "/v1/tasks/sessions"])
async def test_huge_declared_content_length_is_413_before_any_upload(gateway: str, path: str) -> None:
    host, port = gateway.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {SUPPORT_KEY}\r\n"
        "Content-Type: application/json\r\nContent-Length: 9999999999\r\n\r\n{}".encode()
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.readuntil(b"}"), timeout=10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b'"error":"payload_too_large"' in answer


async def test_client_leaving_mid_body_logs_no_traceback(gateway: str, caplog: pytest.LogCaptureFixture) -> None:
    host, port = gateway.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST /v1/tasks/sessions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {SUPPORT_KEY}\r\n"
        'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"taskId": '.encode()
    )
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    await asyncio.sleep(0.3)
    async with httpx.AsyncClient() as http:  # the gateway is still serving
        assert (await http.get(f"{gateway}/healthz")).status_code == 200
    assert not [r for r in caplog.records if r.exc_info is not None], [r.getMessage() for r in caplog.records]


async def test_an_internal_failure_answers_json_without_details(
    redis_url: str, key_prefix: str, redis_store: RedisStore
) -> None:
    # A session record the gateway cannot read (written by some other program) is the gateway's failure, not the
    # client's: 500, but in the same JSON shape, with the traceback in the log only.
    await redis_store.set("mcpsession:unreadable", b'{"not": "a session"}', 60)
    config = make_config(store={"url": redis_url, "prefix": key_prefix})
    async with serve_gateway(config) as url, httpx.AsyncClient() as http:
        headers = {**auth(), "Mcp-Session-Id": "unreadable"}
        response = await http.post(f"{url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=headers)
    assert response.status_code == 500
    assert response.json() == {"error": "internal_error", "message": "the gateway failed to handle the request"}
