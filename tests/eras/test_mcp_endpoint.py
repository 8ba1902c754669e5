"""/mcp end to end: real gateway, real demo upstream over stdio, real SDK clients of both eras."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from tests.conftest import free_port
from tests.support.harness import DEMO_KEY, DEMO_UPSTREAM, OTHER_KEY, make_config, mcp_client, serve_gateway

MODERN = "2026-07-28"
ERAS = ["legacy", MODERN]


@pytest.fixture(scope="module")
async def gateway() -> AsyncIterator[str]:
    async with serve_gateway(make_config()) as url:
        yield url


def modern_body(method: str, params: dict[str, Any] | None = None, request_id: int | str = 1) -> dict[str, Any]:
    envelope = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {**(params or {}), "_meta": envelope}}


def modern_headers(method: str, name: str | None = None, key: str = DEMO_KEY) -> dict[str, str]:
    headers = {
        "Authorization": f"Bearer {key}",
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": method,
        "Accept": "application/json, text/event-stream",
    }
    if name is not None:
        headers["Mcp-Name"] = name
    return headers


async def tool_calls_forwarded(url: str) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{url}/metrics")).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("mcp_gateway_tool_calls_total{") and 'decision="allow"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize("mode", ERAS)
async def test_client_lists_prefixed_sorted_tools(gateway: str, mode: str) -> None:
    async with mcp_client(gateway, DEMO_KEY, mode=mode) as client:
        assert client.protocol_version == (MODERN if mode == MODERN else client.protocol_version)
        names = [tool.name for tool in (await client.list_tools()).tools]
    assert names == sorted(names)
    assert {"demo__echo", "demo__add", "demo__get_customer"} <= set(names)


@pytest.mark.parametrize("mode", ERAS)
async def test_client_calls_tool_through_gateway(gateway: str, mode: str) -> None:
    async with mcp_client(gateway, DEMO_KEY, mode=mode) as client:
        result = await client.call_tool("demo__add", {"a": 2, "b": 40})
    assert not result.is_error
    assert "42" in json.dumps(result.model_dump(mode="json"))


@pytest.mark.parametrize("mode", ERAS)
async def test_progress_notifications_stream_back(gateway: str, mode: str) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with mcp_client(gateway, DEMO_KEY, mode=mode) as client:
        result = await client.call_tool("demo__count_slowly", {"n": 3, "delay": 0.01}, progress_callback=on_progress)
    assert not result.is_error
    assert len(seen) == 3


@pytest.mark.parametrize("mode", ERAS)
async def test_hidden_tool_is_filtered_and_indistinguishable_from_missing(gateway: str, mode: str) -> None:
    async with mcp_client(gateway, OTHER_KEY, mode=mode) as client:
        names = [tool.name for tool in (await client.list_tools()).tools]
        assert names == ["demo__echo"]
        with pytest.raises(MCPError) as hidden:
            await client.call_tool("demo__add", {"a": 1, "b": 2})
        with pytest.raises(MCPError) as missing:
            await client.call_tool("demo__no_such_tool", {})
    assert hidden.value.error.code == missing.value.error.code == -32602
    assert hidden.value.error.message.replace("demo__add", "X") == missing.value.error.message.replace(
        "demo__no_such_tool", "X"
    )


@pytest.mark.parametrize("mode", ERAS)
async def test_resources_and_prompts_pass_through(gateway: str, mode: str) -> None:
    async with mcp_client(gateway, DEMO_KEY, mode=mode) as client:
        resources = (await client.list_resources()).resources
        assert resources, "the demo upstream lists a resource"
        read = await client.read_resource(str(resources[0].uri))
        assert read.contents
        prompts = [p.name for p in (await client.list_prompts()).prompts]
        assert prompts and all(p.startswith("demo__") for p in prompts)
        prompt = await client.get_prompt(prompts[0], {"text": "hello"})
        assert prompt.messages


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-key", "Basic Zm9vOmJhcg==", "Bearer"],
    ids=["missing", "unknown", "not-bearer", "empty"],
)
async def test_bad_credential_is_401_with_challenge(gateway: str, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway}/mcp", json=modern_body("tools/list"), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer ")
    assert response.json()["error"] == "unauthorized"
    assert "wrong-key" not in response.text


async def test_expired_api_key_is_401() -> None:
    from tests.support.harness import BASE_CONFIG, sha

    identities = [
        {"id": "old", "credentials": [{"sha256": sha("old-key"), "expiresAt": "2020-01-01T00:00:00Z"}]},
        *BASE_CONFIG["identities"],
    ]
    async with serve_gateway(make_config(identities=identities)) as url, httpx.AsyncClient() as http:
        response = await http.post(
            f"{url}/mcp", json=modern_body("tools/list"), headers=modern_headers("tools/list", key="old-key")
        )
    assert response.status_code == 401
    assert "expired" in response.json()["message"]


async def test_foreign_origin_is_rejected(gateway: str) -> None:
    headers = {**modern_headers("tools/list"), "Origin": "https://evil.example"}
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway}/mcp", json=modern_body("tools/list"), headers=headers)
    assert response.status_code == 403


async def test_dns_rebinding_origin_matching_host_is_rejected(gateway: str) -> None:
    # After a rebinding, the attacker's page and the request name the same host: that proves nothing.
    port = gateway.rsplit(":", 1)[1]
    headers = {
        **modern_headers("tools/list"),
        "Origin": f"http://rebind.example:{port}",
        "Host": f"rebind.example:{port}",
    }
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway}/mcp", json=modern_body("tools/list"), headers=headers)
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


@pytest.mark.parametrize("origin", ["http://localhost:6274", "http://127.0.0.1:6274/", "http://[::1]:3000"])
async def test_loopback_origin_is_accepted(gateway: str, origin: str) -> None:
    headers = {**modern_headers("tools/list"), "Origin": origin}
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway}/mcp", json=modern_body("tools/list"), headers=headers)
    assert response.status_code == 200


async def test_listed_origin_is_accepted() -> None:
    config = make_config(server={"allowedOrigins": ["https://console.example/"]})
    async with serve_gateway(config) as url, httpx.AsyncClient() as http:
        for origin, status in [("https://console.example", 200), ("https://other.example", 403)]:
            headers = {**modern_headers("tools/list"), "Origin": origin}
            response = await http.post(f"{url}/mcp", json=modern_body("tools/list"), headers=headers)
            assert response.status_code == status, origin


async def test_mismatched_mcp_name_is_rejected_and_not_forwarded(gateway: str) -> None:
    before = await tool_calls_forwarded(gateway)
    body = modern_body("tools/call", {"name": "demo__add", "arguments": {"a": 1, "b": 2}})
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway}/mcp", json=body, headers=modern_headers("tools/call", name="demo__echo"))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32020
    assert await tool_calls_forwarded(gateway) == before


async def test_modern_list_carries_result_type_and_private_cache_hint(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{gateway}/mcp", json=modern_body("tools/list"), headers=modern_headers("tools/list")
        )
    result = response.json()["result"]
    assert result["resultType"] == "complete"
    assert result["cacheScope"] == "private"
    assert result["ttlMs"] > 0


async def test_server_discover_lists_modern_versions(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{gateway}/mcp", json=modern_body("server/discover"), headers=modern_headers("server/discover")
        )
    result = response.json()["result"]
    assert MODERN in result["supportedVersions"]
    assert "tools" in result["capabilities"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", -32700),
        (b'[{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}]', -32600),
        (b'{"jsonrpc": "1.0", "id": 1, "method": "tools/list"}', -32600),
        (b'{"jsonrpc": "2.0", "id": 1}', -32600),
    ],
    ids=["malformed", "batch", "wrong-version", "no-method"],
)
async def test_bad_json_rpc_is_400(gateway: str, body: bytes, code: int) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{gateway}/mcp", content=body, headers={**modern_headers("tools/list"), "Content-Type": "application/json"}
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


async def test_oversized_body_is_413(gateway: str) -> None:
    body = modern_body("tools/call", {"name": "demo__echo", "arguments": {"text": "x" * 70_000}})
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway}/mcp", json=body, headers=modern_headers("tools/call", "demo__echo"))
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


async def test_unknown_method_is_method_not_found(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{gateway}/mcp", json=modern_body("tools/frobnicate"), headers=modern_headers("tools/frobnicate")
        )
    assert response.json()["error"]["code"] == -32601


async def test_tools_call_without_name_is_invalid_params(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{gateway}/mcp", json=modern_body("tools/call", {"arguments": {}}), headers=modern_headers("tools/call")
        )
    assert response.json()["error"]["code"] == -32602


async def test_legacy_request_without_session_is_400_and_unknown_session_404(gateway: str) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Authorization": f"Bearer {DEMO_KEY}", "Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient() as http:
        missing = await http.post(f"{gateway}/mcp", json=body, headers=headers)
        unknown = await http.post(f"{gateway}/mcp", json=body, headers={**headers, "Mcp-Session-Id": "nope"})
    assert missing.status_code == 400
    assert unknown.status_code == 404


async def test_legacy_session_of_another_identity_is_not_found(gateway: str) -> None:
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    accept = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient() as http:
        opened = await http.post(f"{gateway}/mcp", json=init, headers={"Authorization": f"Bearer {DEMO_KEY}", **accept})
        session_id = opened.headers["mcp-session-id"]
        stolen = await http.post(
            f"{gateway}/mcp",
            json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
            headers={"Authorization": f"Bearer {OTHER_KEY}", "Mcp-Session-Id": session_id, **accept},
        )
    assert stolen.status_code == 404


async def test_health_and_readiness(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        health = await http.get(f"{gateway}/healthz")
        ready = await http.get(f"{gateway}/readyz")
    assert health.status_code == 200
    assert ready.status_code == 200
    assert ready.json()["ready"] is True


async def test_results_carry_the_gateway_stamp_not_the_upstreams(gateway: str) -> None:
    """The demo upstream speaks 2026-07-28 and stamps its own serverInfo; the client talks to the gateway."""
    call = {"name": "demo__add", "arguments": {"a": 1, "b": 2}}
    accept = {"Accept": "application/json, text/event-stream"}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    async with httpx.AsyncClient() as http:
        modern = await http.post(
            f"{gateway}/mcp", json=modern_body("tools/call", call), headers=modern_headers("tools/call", "demo__add")
        )
        auth = {"Authorization": f"Bearer {DEMO_KEY}", **accept}
        opened = await http.post(f"{gateway}/mcp", json=init, headers=auth)
        legacy = await http.post(
            f"{gateway}/mcp",
            json={"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call},
            headers={**auth, "Mcp-Session-Id": opened.headers["mcp-session-id"]},
        )
    modern_meta = modern.json()["result"]["_meta"]
    assert modern_meta["io.modelcontextprotocol/serverInfo"]["name"] == "mcp-gateway"
    # A 2025-11-25 session that accepts SSE is answered on a stream: the answer is its last event's data.
    legacy_result = json.loads(legacy.text.strip().splitlines()[-1].removeprefix("data: "))["result"]
    assert not any(key.startswith("io.modelcontextprotocol/") for key in legacy_result.get("_meta", {}))
    assert legacy_result["content"] == modern.json()["result"]["content"]


@pytest.fixture(scope="module")
async def gateway_with_offline_upstream() -> AsyncIterator[str]:
    """The demo upstream, and a configured HTTP upstream on a port nothing listens on (never connects)."""
    offline = {"name": "offline", "transport": "streamable-http", "url": f"http://127.0.0.1:{free_port()}/mcp"}
    async with serve_gateway(make_config(upstreams=[DEMO_UPSTREAM, offline])) as url:
        yield url


@pytest.mark.parametrize("mode", ERAS)
async def test_a_tool_of_an_upstream_that_never_connected_answers_not_connected_naming_it(
    gateway_with_offline_upstream: str, mode: str
) -> None:
    async with mcp_client(gateway_with_offline_upstream, DEMO_KEY, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("offline__search", {})
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("demo__no_such_tool", {})
    assert caught.value.error.code == -32603
    assert caught.value.error.message.startswith("upstream 'offline' is not connected")
    assert caught.value.error.data == {"upstream": "offline"}
    assert unknown.value.error.message == "Unknown tool: demo__no_such_tool"


async def test_a_tool_of_an_unconnected_upstream_the_caller_could_not_see_is_unknown(
    gateway_with_offline_upstream: str,
) -> None:
    async with mcp_client(gateway_with_offline_upstream, OTHER_KEY) as client:  # sees demo__e* only
        with pytest.raises(MCPError) as caught:
            await client.call_tool("offline__search", {})
    assert caught.value.error.code == -32602
    assert caught.value.error.message == "Unknown tool: offline__search"


async def raw_post(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """POST over a bare socket: HTTP clients refuse to send header values with surrounding whitespace."""
    parsed = httpx.URL(url)
    payload = json.dumps(body).encode()
    lines = [
        "POST /mcp HTTP/1.1",
        f"Host: {parsed.host}:{parsed.port}",
        "Connection: close",
        "Content-Type: application/json",
    ]
    lines += [f"{name}:{value}" for name, value in headers.items()] + [f"Content-Length: {len(payload)}", "", ""]
    reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
    writer.write("\r\n".join(lines).encode() + payload)
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"chunked" not in head.lower(), head
    return status, json.loads(rest)


@pytest.mark.parametrize("padding", ["  ", "\t", " \t "], ids=["spaces", "tab", "mixed"])
async def test_mcp_header_values_are_compared_without_surrounding_whitespace(gateway: str, padding: str) -> None:
    """RFC 9110 §5.5: optional whitespace around a field value is not part of it."""
    body = modern_body("tools/call", {"name": "demo__add", "arguments": {"a": 1, "b": 2}})
    headers = modern_headers("tools/call", name=f"{padding}demo__add{padding}")
    headers["Mcp-Method"] = f"{padding}tools/call{padding}"
    headers["Accept"] = "application/json"
    status, answer = await raw_post(gateway, body, headers)
    assert status == 200, answer
    assert answer["result"]["content"]


async def test_modern_ping_is_method_not_found(gateway: str) -> None:
    """2026-07-28 has no ping; the handshake era keeps it (see test_legacy_ping_is_answered)."""
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway}/mcp", json=modern_body("ping"), headers=modern_headers("ping"))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == -32601


async def test_legacy_ping_is_answered(gateway: str) -> None:
    async with mcp_client(gateway, DEMO_KEY, mode="legacy") as client:
        await client.send_ping()
