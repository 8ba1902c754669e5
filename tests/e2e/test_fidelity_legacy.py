"""Handshake-era fidelity: what an upstream asks or tells its client mid-call reaches the client that made the call.

Real gateway, real demo upstream (stdio, and streamable HTTP in its own process), real 2025-era SDK clients.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from mcp.client.session import ClientRequestContext
from mcp.shared.exceptions import MCPError

from tests.e2e.test_fidelity_modern import audit_decisions, audited_outcomes
from tests.support.harness import DEMO_KEY, DEMO_UPSTREAM, make_config, mcp_client, serve_gateway
from tests.upstreams.test_upstreams import demo_http_server, free_port

LEGACY = "2025-11-25"


@pytest.fixture(scope="module", params=["stdio", "http"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
async def gateway(transport: str) -> AsyncIterator[str]:
    """The gateway in front of the demo upstream, spoken to over stdio or streamable HTTP, in the handshake era."""
    if transport == "stdio":
        upstream = {**DEMO_UPSTREAM, "protocol": "legacy"}
        async with serve_gateway(make_config(upstreams=[upstream])) as url:
            yield url
        return
    async with demo_http_server(free_port()) as upstream_url:
        upstream = {"name": "demo", "transport": "streamable-http", "url": upstream_url, "protocol": "legacy"}
        async with serve_gateway(make_config(upstreams=[upstream])) as url:
            yield url


class Answers:
    """The downstream client's side of sampling, elicitation and roots, recording what it was asked."""

    def __init__(self, name: str = "client") -> None:
        self.name = name
        self.asked: list[tuple[str, Any]] = []

    async def sampling(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        self.asked.append(("sampling", params))
        text = f"{self.name} model says hi"
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text=text), model="m")

    async def elicitation(self, context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.asked.append(("elicitation", params))
        return types.ElicitResult(action="accept", content={"confirm": self.name == "client"})

    async def roots(self, context: ClientRequestContext) -> types.ListRootsResult:
        self.asked.append(("roots", None))
        return types.ListRootsResult(roots=[types.Root.model_validate({"uri": f"file:///{self.name}"})])

    def callbacks(self) -> dict[str, Any]:
        return {
            "sampling_callback": self.sampling,
            "elicitation_callback": self.elicitation,
            "list_roots_callback": self.roots,
        }


def text_of(result: types.CallToolResult) -> str:
    content = result.content[0]
    assert isinstance(content, types.TextContent)
    return content.text


async def test_elicitation_reaches_the_calling_client_and_its_answer_the_upstream(gateway: str) -> None:
    answers = Answers()
    async with mcp_client(gateway, DEMO_KEY, mode="legacy", **answers.callbacks()) as client:
        result = await client.call_tool("demo__confirm_action", {"action": "delete the backup"})
    assert not result.is_error, result
    assert text_of(result) == "delete the backup: confirmed"
    [(kind, params)] = answers.asked
    assert kind == "elicitation"
    assert params.message == "Really delete the backup?"


async def test_sampling_reaches_the_calling_client_and_its_answer_the_upstream(gateway: str) -> None:
    answers = Answers()
    async with mcp_client(gateway, DEMO_KEY, mode="legacy", **answers.callbacks()) as client:
        result = await client.call_tool("demo__ask_model", {"question": "what is 6 x 7?"})
    assert text_of(result) == "client model says hi"
    [(kind, params)] = answers.asked
    assert kind == "sampling"
    assert params.messages[0].content.text == "what is 6 x 7?"


async def test_roots_request_reaches_the_calling_client(gateway: str) -> None:
    answers = Answers()
    async with mcp_client(gateway, DEMO_KEY, mode="legacy", **answers.callbacks()) as client:
        result = await client.call_tool("demo__client_roots", {})
    assert result.structured_content == {"result": ["file:///client"]}


async def test_concurrent_calls_never_ask_the_wrong_client(gateway: str, transport: str) -> None:
    """Two sessions' calls overlap. Over HTTP each question reaches the client whose call raised it. Over stdio the
    handshake-era wire does not say which call a request belongs to, so with two in flight the gateway refuses."""
    results: dict[str, types.CallToolResult | MCPError] = {}
    clients = [Answers("client"), Answers("other")]
    both_in_flight = anyio.Event()
    arrived = 0

    async def call(answers: Answers) -> None:
        nonlocal arrived
        async with mcp_client(gateway, DEMO_KEY, mode="legacy", **answers.callbacks()) as client:
            arrived += 1
            if arrived == 2:
                both_in_flight.set()
            await both_in_flight.wait()
            arguments = {"n": 3, "delay": 0.1}
            async with anyio.create_task_group() as tg:
                # A slow call keeps this session's stdio neighbour ambiguous while the question is asked.
                tg.start_soon(client.call_tool, "demo__count_slowly", arguments)
                await anyio.sleep(0.05)
                try:
                    results[answers.name] = await client.call_tool("demo__ask_model", {"question": answers.name})
                except MCPError as exc:
                    results[answers.name] = exc

    async with anyio.create_task_group() as tg:
        for answers in clients:
            tg.start_soon(call, answers)
    for answers in clients:
        result = results[answers.name]
        if transport == "http":
            assert isinstance(result, types.CallToolResult)
            assert text_of(result) == f"{answers.name} model says hi"
            assert [params.messages[0].content.text for _, params in answers.asked] == [answers.name]
        else:
            assert answers.asked == []
            assert isinstance(result, MCPError)
            assert "no client can be asked" in str(result)


async def test_client_without_the_capability_is_not_asked(gateway: str) -> None:
    async with mcp_client(gateway, DEMO_KEY, mode="legacy") as client:
        with pytest.raises(MCPError, match="did not declare the sampling capability"):
            await client.call_tool("demo__ask_model", {"question": "anyone?"})


async def test_log_messages_of_a_call_reach_its_client(gateway: str) -> None:
    logged: list[Any] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logged.append(params.data)

    async with mcp_client(gateway, DEMO_KEY, mode="legacy", logging_callback=on_log) as client:
        result = await client.call_tool("demo__log_steps", {"n": 3})
    assert text_of(result) == "logged 3"
    assert logged == ["step 1 of 3", "step 2 of 3", "step 3 of 3"]


async def test_tool_list_change_reaches_the_get_stream(gateway: str) -> None:
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with mcp_client(gateway, DEMO_KEY, mode="legacy", message_handler=on_message) as client:
        await anyio.sleep(0.2)  # the GET stream opens after initialize, in the background
        await client.call_tool("demo__toggle_extra_tool", {})
        try:
            with anyio.fail_after(10):
                await changed.wait()
            names = [tool.name for tool in (await client.list_tools()).tools]
        finally:
            await client.call_tool("demo__toggle_extra_tool", {})
    assert "demo__extra" in names


def _sse_messages(text: str) -> list[dict[str, Any]]:
    """The JSON-RPC messages of an SSE body (a priming event's empty data is none)."""
    return [json.loads(line[len("data: ") :]) for line in text.splitlines() if line.startswith("data: ") and line[6:]]


async def _open_session(
    http: httpx.AsyncClient, url: str, capabilities: dict[str, Any], version: str = LEGACY
) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {DEMO_KEY}", "Accept": "application/json, text/event-stream"}
    params = {"protocolVersion": version, "capabilities": capabilities, "clientInfo": {"name": "raw", "version": "0"}}
    response = await http.post(
        f"{url}/mcp", json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}, headers=headers
    )
    headers = {**headers, "Mcp-Session-Id": response.headers["mcp-session-id"], "MCP-Protocol-Version": version}
    await http.post(f"{url}/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    return headers


async def test_request_is_sent_on_the_calls_sse_stream_with_a_gateway_id_and_the_answer_routed_back(
    gateway: str,
) -> None:
    """On the wire: the call's answer switches to SSE, carries the gateway's request, and the POSTed answer lands."""
    async with httpx.AsyncClient(timeout=30) as http:
        headers = await _open_session(http, gateway, {"elicitation": {}})
        call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call"}
        call["params"] = {"name": "demo__confirm_action", "arguments": {"action": "ship"}}
        async with http.stream("POST", f"{gateway}/mcp", json=call, headers=headers) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            seen: list[dict[str, Any]] = []
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or not line[6:]:
                    continue
                message = json.loads(line[len("data: ") :])
                seen.append(message)
                if message.get("method") == "elicitation/create":
                    answer = {"jsonrpc": "2.0", "id": message["id"], "result": {"action": "decline"}}
                    accepted = await http.post(f"{gateway}/mcp", json=answer, headers=headers)
                    assert accepted.status_code == 202
    request, final = seen
    assert request["method"] == "elicitation/create"
    assert isinstance(request["id"], str) and request["id"].startswith("mgw-")
    assert final["id"] == 7
    assert final["result"]["content"][0]["text"] == "ship: decline"


async def test_plain_json_answer_before_2025_11_25_when_nothing_is_sent_first(gateway: str) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        headers = await _open_session(http, gateway, {}, version="2025-06-18")
        call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
        call["params"] = {"name": "demo__add", "arguments": {"a": 1, "b": 2}}
        response = await http.post(f"{gateway}/mcp", json=call, headers=headers)
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["result"]["structuredContent"] == {"result": 3}


async def test_2025_11_25_call_stream_opens_with_a_priming_event_and_every_event_has_an_id(gateway: str) -> None:
    """SEP-1699: an event with an id, a retry delay and empty data first; then ids on the events that follow."""
    async with httpx.AsyncClient(timeout=30) as http:
        headers = await _open_session(http, gateway, {})
        call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
        call["params"] = {"name": "demo__add", "arguments": {"a": 1, "b": 2}}
        response = await http.post(f"{gateway}/mcp", json=call, headers=headers)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [block.splitlines() for block in response.text.replace("\r\n", "\n").split("\n\n") if block.strip()]
    priming, answer = events
    assert priming[0].startswith("id: ") and priming[1:] == ["retry: 1000", "data: "]
    assert answer[0].startswith("id: ") and answer[0] != priming[0]
    assert _sse_messages(response.text)[0]["result"]["structuredContent"] == {"result": 3}


async def test_cancelled_notification_cancels_the_upstream_call(gateway: str) -> None:
    """The client cancels a slow call: its POST ends without an answer, and the upstream stops counting."""
    async with httpx.AsyncClient(timeout=30) as http:
        headers = await _open_session(http, gateway, {})
        call: dict[str, Any] = {"jsonrpc": "2.0", "id": "slow", "method": "tools/call"}
        arguments = {"n": 100, "delay": 0.1}
        call["params"] = {"name": "demo__count_slowly", "arguments": arguments, "_meta": {"progressToken": 1}}
        started = anyio.current_time()
        async with http.stream("POST", f"{gateway}/mcp", json=call, headers=headers) as response:
            messages: list[dict[str, Any]] = []
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or not line[6:]:
                    continue
                messages.append(json.loads(line[len("data: ") :]))
                if len(messages) == 2:
                    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "slow"}}
                    assert (await http.post(f"{gateway}/mcp", json=cancel, headers=headers)).status_code == 202
    assert anyio.current_time() - started < 5
    assert all(message.get("method") == "notifications/progress" for message in messages)
    assert len(messages) < 10
    with anyio.fail_after(5):
        while await cancelled_calls(gateway) < 1:  # noqa: ASYNC110 - the audit is written after the stream ends
            await anyio.sleep(0.05)


async def cancelled_calls(url: str) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{url}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("mcp_gateway_tool_calls_total{") and 'outcome="cancelled"' in line
    )


async def test_answer_to_an_unknown_request_is_accepted_and_dropped(gateway: str) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        headers = await _open_session(http, gateway, {})
        stray = {"jsonrpc": "2.0", "id": "mgw-nobody-asked", "result": {}}
        response = await http.post(f"{gateway}/mcp", json=stray, headers=headers)
    assert response.status_code == 202


async def test_client_that_accepts_no_stream_is_not_asked(gateway: str) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        headers = await _open_session(http, gateway, {"elicitation": {}})
        call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call"}
        call["params"] = {"name": "demo__confirm_action", "arguments": {"action": "ship"}}
        response = await http.post(f"{gateway}/mcp", json=call, headers={**headers, "Accept": "application/json"})
    assert response.headers["content-type"].startswith("application/json")
    assert "accepts no text/event-stream" in response.json()["error"]["message"]


async def test_log_level_set_by_the_client_filters_its_log_messages(gateway: str) -> None:
    logged: list[Any] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logged.append((params.level, params.data))

    async with mcp_client(gateway, DEMO_KEY, mode="legacy", logging_callback=on_log) as client:
        await client.set_logging_level("warning")
        assert text_of(await client.call_tool("demo__log_steps", {"n": 2})) == "logged 2"
        assert logged == []  # the demo logs at info
        await client.set_logging_level("info")
        await client.call_tool("demo__log_steps", {"n": 1})
        assert logged == [("info", "step 1 of 1")]


async def test_an_unknown_log_level_is_invalid_params(gateway: str) -> None:
    headers = {"Authorization": f"Bearer {DEMO_KEY}", "Accept": "application/json, text/event-stream"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": LEGACY}}
    async with httpx.AsyncClient() as http:
        opened = await http.post(f"{gateway}/mcp", json=init, headers=headers)
        headers["Mcp-Session-Id"] = opened.headers["mcp-session-id"]
        body = {"jsonrpc": "2.0", "id": 2, "method": "logging/setLevel", "params": {"level": "loud"}}
        answer = (await http.post(f"{gateway}/mcp", json=body, headers=headers)).json()
    assert answer["error"]["code"] == -32602
    assert "params.level must be one of debug, info" in answer["error"]["message"]


@pytest.mark.parametrize(
    ("version", "accept"),
    [("2025-11-25", "application/json"), ("2025-06-18", "application/json, text/event-stream")],
    ids=["json-only", "lazy-sse"],
)
async def test_client_closing_its_connection_cancels_the_call(
    gateway: str, version: str, accept: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Without SSE (a JSON body), or before the call sent anything (a lazy stream not yet started): the client gives
    up on the POST and the call is cancelled, audited as such."""
    caplog.set_level(logging.INFO, logger="mcp_gateway.audit")
    async with httpx.AsyncClient(timeout=30) as http:
        headers = {**await _open_session(http, gateway, {}, version=version), "Accept": accept}
        call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
        call["params"] = {"name": "demo__count_slowly", "arguments": {"n": 100, "delay": 0.1}}
        with pytest.raises(httpx.ReadTimeout):
            await http.post(f"{gateway}/mcp", json=call, headers=headers, timeout=httpx.Timeout(30, read=1))
    await audited_outcomes(caplog, "demo__count_slowly", "cancelled")
    assert [r["outcome"] for r in audit_decisions(caplog, "demo__count_slowly")] == ["cancelled"]
