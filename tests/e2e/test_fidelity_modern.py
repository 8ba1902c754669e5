"""2026-07-28 fidelity: MRTR passes through with its state, the retry is judged again, and per-request metadata
(``traceparent``, ``Mcp-Param-*``) and stream closes reach the upstream.

Real gateway, real demo upstream (stdio, or streamable HTTP in its own process), real modern SDK clients and raw HTTP
where the wire itself is the point.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from mcp.client.session import ClientRequestContext

from tests.eras.test_mcp_endpoint import modern_body, modern_headers
from tests.support.harness import BASE_CONFIG, DEMO_KEY, DEMO_UPSTREAM, make_config, mcp_client, serve_gateway
from tests.upstreams.test_upstreams import PROBE_SERVER, demo_http_server, free_port

MODERN = "2026-07-28"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
POLICIES = [
    *BASE_CONFIG["policies"],
    {
        "name": "no-deleting",
        "effect": "deny",
        "tools": ["demo__confirm_action"],
        "condition": "request.tool.args.action.startsWith('delete')",
        "message": "deleting needs a human",
    },
]
PROBE = {"name": "probe", "transport": "stdio", "command": sys.executable, "args": ["-c", PROBE_SERVER]}


@pytest.fixture(scope="module")
async def gateway() -> AsyncIterator[str]:
    async with serve_gateway(make_config(upstreams=[DEMO_UPSTREAM, PROBE], policies=POLICIES)) as url:
        yield url


async def confirm(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content={"confirm": True})


def text_of(result: types.CallToolResult) -> str:
    content = result.content[0]
    assert isinstance(content, types.TextContent)
    return content.text


def call_body(params: dict[str, Any], request_id: int = 1) -> dict[str, Any]:
    """A tools/call from a client that declares form elicitation (the upstream asks only clients that can answer)."""
    body = modern_body("tools/call", params, request_id)
    body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] = {"elicitation": {"form": {}}}
    return body


async def post(url: str, body: dict[str, Any], name: str | None = None, status: int = 200) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(f"{url}/mcp", json=body, headers=modern_headers(body["method"], name))
    assert response.status_code == status, response.text
    message: dict[str, Any] = response.json()
    return message


def audit_decisions(caplog: pytest.LogCaptureFixture, tool: str) -> list[dict[str, Any]]:
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "mcp_gateway.audit"]
    return [record for record in records if record.get("tool") == tool]


async def test_upstream_is_told_the_calling_clients_capabilities(gateway: str) -> None:
    """The gateway could answer anything, but the upstream must ask only what this client can answer."""
    body = modern_body("tools/call", {"name": "demo__confirm_action", "arguments": {"action": "ship it"}})
    message = await post(gateway, body, "demo__confirm_action", status=400)
    assert message["error"]["code"] == -32021
    assert message["error"]["data"]["requiredCapabilities"] == {"elicitation": {"form": {}}}


async def test_sdk_client_resolves_input_required_through_the_gateway(gateway: str) -> None:
    async with mcp_client(gateway, DEMO_KEY, mode=MODERN, elicitation_callback=confirm) as client:
        result = await client.call_tool("demo__confirm_action", {"action": "ship it"})
    assert text_of(result) == "ship it: confirmed"


async def test_input_required_passes_through_with_its_state_and_the_retry_reaches_the_upstream(gateway: str) -> None:
    arguments = {"name": "demo__confirm_action", "arguments": {"action": "ship it"}}
    first = (await post(gateway, call_body(arguments), "demo__confirm_action"))["result"]
    assert first["resultType"] == "input_required"
    [(key, request)] = first["inputRequests"].items()
    assert request["method"] == "elicitation/create"
    assert request["params"]["message"] == "Really ship it?"
    state = first["requestState"]
    assert isinstance(state, str) and state

    answer = {"action": "accept", "content": {"confirm": False}}
    retry = {**arguments, "inputResponses": {key: answer}, "requestState": state}
    final = (await post(gateway, call_body(retry, request_id=2), "demo__confirm_action"))["result"]
    assert final["resultType"] == "complete"
    assert final["content"][0]["text"] == "ship it: not confirmed"


async def test_tampered_request_state_is_relayed_and_refused_by_the_upstream(gateway: str) -> None:
    arguments = {"name": "demo__confirm_action", "arguments": {"action": "ship it"}}
    first = (await post(gateway, call_body(arguments), "demo__confirm_action"))["result"]
    [key] = first["inputRequests"]
    state = first["requestState"][:-4] + "AAAA"
    retry = {**arguments, "inputResponses": {key: {"action": "accept", "content": {"confirm": True}}}}
    retry["requestState"] = state
    body = call_body(retry, request_id=2)
    message = await post(gateway, body, "demo__confirm_action", status=400)
    assert message["error"]["code"] == -32602
    assert "requestState" in message["error"]["message"]


async def test_policy_is_evaluated_again_on_the_retry(gateway: str, caplog: pytest.LogCaptureFixture) -> None:
    """The retry is a tools/call of its own: a retry whose arguments a policy denies never reaches the upstream."""
    caplog.set_level(logging.INFO, logger="mcp_gateway.audit")
    allowed = {"name": "demo__confirm_action", "arguments": {"action": "archive"}}
    first = (await post(gateway, call_body(allowed), "demo__confirm_action"))["result"]
    [key] = first["inputRequests"]
    retry = {
        "name": "demo__confirm_action",
        "arguments": {"action": "delete everything"},
        "inputResponses": {key: {"action": "accept", "content": {"confirm": True}}},
        "requestState": first["requestState"],
    }
    final = (await post(gateway, call_body(retry, request_id=2), "demo__confirm_action"))["result"]
    assert final["isError"] is True
    assert "no-deleting" in final["content"][0]["text"]
    records = await audited_outcomes(caplog, "demo__confirm_action", "denied")
    decisions = [(r["decision"], r["outcome"]) for r in audit_decisions(caplog, "demo__confirm_action")]
    assert records and decisions[-2:] == [("allow", "input_required"), ("deny", "denied")]


@pytest.mark.parametrize("mode", ["legacy", MODERN])
async def test_traceparent_in_meta_reaches_the_upstream(gateway: str, mode: str) -> None:
    async with mcp_client(gateway, DEMO_KEY, mode=mode) as client:
        result = await client.call_tool("probe__tool00", {}, meta={"traceparent": TRACEPARENT, "vendor/x": 1})  # type: ignore[arg-type]
    received = json.loads(text_of(result))
    assert received["traceparent"] == TRACEPARENT
    assert received["vendor/x"] == 1


async def test_mcp_param_header_is_mirrored_to_a_modern_http_upstream() -> None:
    async with demo_http_server(free_port()) as upstream_url:
        upstream = {"name": "demo", "transport": "streamable-http", "url": upstream_url, "protocol": MODERN}
        async with (
            serve_gateway(make_config(upstreams=[upstream])) as url,
            mcp_client(url, DEMO_KEY, mode=MODERN) as client,
        ):
            await client.list_tools()
            result = await client.call_tool("demo__region_header", {"region": "eu-west-1"})
    assert text_of(result) == "eu-west-1"


async def test_closing_the_response_stream_cancels_the_upstream_call(gateway: str) -> None:
    before = await calls_with_outcome(gateway, "cancelled")
    body = modern_body("tools/call", {"name": "demo__count_slowly", "arguments": {"n": 100, "delay": 0.1}})
    body["params"]["_meta"]["progressToken"] = "p"
    started = anyio.current_time()
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream(
            "POST", f"{gateway}/mcp", json=body, headers=modern_headers("tools/call", "demo__count_slowly")
        ) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        progress = 0
        async for line in response.aiter_lines():
            if line.startswith("data: ") and json.loads(line[6:]).get("method") == "notifications/progress":
                progress += 1
                if progress == 2:
                    break
    with anyio.fail_after(5):
        while await calls_with_outcome(gateway, "cancelled") <= before:  # noqa: ASYNC110 - a counter, no event
            await anyio.sleep(0.05)
    assert anyio.current_time() - started < 5


async def calls_with_outcome(url: str, outcome: str) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{url}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("mcp_gateway_tool_calls_total{") and f'outcome="{outcome}"' in line
    )


async def audited_outcomes(caplog: pytest.LogCaptureFixture, tool: str, outcome: str) -> list[dict[str, Any]]:
    """The audit records of ``tool`` with ``outcome``, waiting up to 5 s for the first (the audit writer logs them in
    the background, moments after the call ends)."""
    with anyio.fail_after(5):
        while not (found := [r for r in audit_decisions(caplog, tool) if r["outcome"] == outcome]):  # noqa: ASYNC110
            await anyio.sleep(0.05)
    return found


async def test_client_abandoning_a_plain_json_call_cancels_the_upstream_call(
    gateway: str, caplog: pytest.LogCaptureFixture
) -> None:
    """No progress token, so the answer would be a JSON body; the SDK client gives up and aborts its POST."""
    caplog.set_level(logging.INFO, logger="mcp_gateway.audit")
    async with mcp_client(gateway, DEMO_KEY, mode=MODERN) as client:
        with anyio.move_on_after(1):
            await client.call_tool("demo__count_slowly", {"n": 100, "delay": 0.1})
    [record] = await audited_outcomes(caplog, "demo__count_slowly", "cancelled")
    assert record["latency_ms"] < 5000  # the upstream's ten seconds were not waited out
