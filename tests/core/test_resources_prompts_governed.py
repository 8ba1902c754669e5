"""Resources, resource templates, prompts and completions are governed like tools, on a real gateway in both eras.

Visibility (``allowedResources`` / ``allowedPrompts``, the task's list over the identity's), hidden things answering
byte for byte like missing ones, ``resources`` / ``prompts`` policy filters with their CEL variables, denials that
never reach the upstream, and the audit records of those decisions. The demo upstream lists demo://note,
demo://readme, the template demo://customers/{customer_id} and the prompt summarize.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.subscriptions import listen
from mcp.shared.exceptions import MCPError

from mcp_gateway.core.audit import AuditRecord, read_recent
from mcp_gateway.errors import POLICY_DENIED
from mcp_gateway.store import open_store
from tests.support.harness import DEMO_KEY, create_task_session, make_config, mcp_client, serve_gateway, sha

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
ERAS = ["legacy", MODERN]
READER_KEY = "mgw_test_reader_key_3333333333333333333333"
NOTE, README, GONE = "demo://note", "demo://readme", "demo://gone"
TEMPLATE = "demo://customers/{customer_id}"

IDENTITIES = [
    {"id": "demo-agent", "credentials": [{"sha256": sha(DEMO_KEY)}]},
    {
        "id": "reader",
        # demo://gone exists nowhere: a visible missing resource, the answer a hidden one must match.
        "allowedResources": [README, GONE],
        "allowedPrompts": ["demo__gone"],
        "credentials": [{"sha256": sha(READER_KEY)}],
    },
]
TASKS = [
    {
        "id": "take-notes",
        "name": "Take notes",
        "allowedResources": [NOTE, "demo://customers/*"],
        "allowedPrompts": ["demo__summarize"],
        # The task's lists are broader than reader's own: only an explicit startableBy lets reader open it.
        "startableBy": {"identities": ["reader"]},
        "contextSchema": {"type": "object"},
    }
]
POLICIES = [
    {
        "name": "no-cust-002",
        "effect": "deny",
        "resources": ["demo://customers/*"],
        "condition": "request.resource.uri.endsWith('/cust-002')",
        "message": "cust-002 is off limits",
    },
    {
        "name": "short-summaries",
        "effect": "allow",
        "prompts": ["demo__summarize"],
        "condition": "request.prompt.arguments.text.size() <= 20",
        "message": "text too long to summarize",
    },
    {
        # Written before resources were governed: no filter, reads request.tool, which a read does not have.
        "name": "no-boom",
        "effect": "deny",
        "condition": "has(request.tool.args.text) && request.tool.args.text == 'boom'",
    },
]


@pytest.fixture(scope="module")
async def gateway(redis_url: str) -> AsyncIterator[tuple[str, str]]:
    prefix = f"test:{os.urandom(6).hex()}:"
    config = make_config(
        store={"url": redis_url, "prefix": prefix}, identities=IDENTITIES, tasks=TASKS, policies=POLICIES
    )
    async with serve_gateway(config) as url:
        yield url, prefix


@contextmanager
def refused() -> Iterator[pytest.ExceptionInfo[MCPError]]:
    with pytest.raises(MCPError) as caught:
        yield caught


async def notes_task_token(url: str) -> str:
    response = await create_task_session(url, READER_KEY, "take-notes", {})
    assert response.status_code == 201, response.text
    return str(response.json()["taskToken"])


async def visible(client: Client) -> tuple[list[str], list[str], list[str]]:
    resources = [str(r.uri) for r in (await client.list_resources()).resources]
    templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
    prompts = [p.name for p in (await client.list_prompts()).prompts]
    return resources, templates, prompts


class RawSession:
    """Plain JSON-RPC over HTTP in one era, to compare the gateway's answers byte for byte."""

    def __init__(self, http: httpx.AsyncClient, url: str, mode: str) -> None:
        self._http = http
        self._url = f"{url}/mcp"
        self._mode = mode
        self._session_id: str | None = None

    async def open(self) -> None:
        if self._mode == MODERN:
            return
        params = {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}
        response = await self._post("initialize", params)
        self._session_id = response.headers["mcp-session-id"]
        await self._http.post(
            self._url,
            json={"jsonrpc": "2.0", "method": "notifications/initialized"},
            headers=self._headers("notifications/initialized"),
        )

    def _headers(self, method: str) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {READER_KEY}", "Accept": "application/json, text/event-stream"}
        if self._mode == MODERN:
            headers |= {"MCP-Protocol-Version": MODERN, "Mcp-Method": method}
        elif self._session_id is not None:
            headers |= {"MCP-Protocol-Version": LEGACY, "Mcp-Session-Id": self._session_id}
        return headers

    async def _post(self, method: str, params: dict[str, Any]) -> httpx.Response:
        if self._mode == MODERN:
            meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
            params = {**params, "_meta": meta}
        headers = self._headers(method)
        name = params.get("name", params.get("uri"))
        if self._mode == MODERN and isinstance(name, str) and method in ("prompts/get", "resources/read"):
            headers["Mcp-Name"] = name
        body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
        return await self._http.post(self._url, json=body, headers=headers)

    async def answer(self, method: str, params: dict[str, Any]) -> tuple[int, bytes]:
        response = await self._post(method, params)
        return response.status_code, response.content


@pytest.mark.parametrize("mode", ERAS)
async def test_hidden_resources_templates_and_prompts_are_left_out_of_lists(
    gateway: tuple[str, str], mode: str
) -> None:
    url, _ = gateway
    async with mcp_client(url, READER_KEY, mode=mode) as reader, mcp_client(url, DEMO_KEY, mode=mode) as everyone:
        assert await visible(reader) == ([README], [], [])
        resources, templates, prompts = await visible(everyone)
    assert {NOTE, README} <= set(resources) and templates == [TEMPLATE] and "demo__summarize" in prompts


@pytest.mark.parametrize("mode", ERAS)
@pytest.mark.parametrize(
    ("method", "hidden", "missing"),
    [
        ("resources/read", {"uri": NOTE}, {"uri": GONE}),
        ("resources/read", {"uri": "demo://customers/cust-001"}, {"uri": GONE}),
        ("prompts/get", {"name": "demo__summarize", "arguments": {"text": "x"}}, {"name": "demo__gone"}),
        (
            "completion/complete",
            {"ref": {"type": "ref/prompt", "name": "demo__summarize"}, "argument": {"name": "text", "value": ""}},
            {"ref": {"type": "ref/prompt", "name": "demo__gone"}, "argument": {"name": "text", "value": ""}},
        ),
        (
            "completion/complete",
            {"ref": {"type": "ref/resource", "uri": TEMPLATE}, "argument": {"name": "customer_id", "value": ""}},
            {"ref": {"type": "ref/resource", "uri": GONE}, "argument": {"name": "customer_id", "value": ""}},
        ),
    ],
    ids=["read", "read-through-template", "prompt", "complete-prompt", "complete-resource"],
)
async def test_a_hidden_resource_or_prompt_answers_byte_for_byte_like_a_missing_one(
    gateway: tuple[str, str], mode: str, method: str, hidden: dict[str, Any], missing: dict[str, Any]
) -> None:
    url, _ = gateway
    async with httpx.AsyncClient(timeout=30) as http:
        raw = RawSession(http, url, mode)
        await raw.open()
        hidden_status, hidden_body = await raw.answer(method, hidden)
        missing_status, missing_body = await raw.answer(method, missing)
    hidden_name = _name(hidden).encode()
    missing_name = _name(missing).encode()
    assert b"Unknown " in hidden_body
    assert (hidden_status, _same_stream(hidden_body).replace(hidden_name, b"X")) == (
        missing_status,
        _same_stream(missing_body).replace(missing_name, b"X"),
    )


def _same_stream(body: bytes) -> bytes:
    """``body`` with its SSE event ids, random per stream, made equal (their order is kept)."""
    return re.sub(rb"^id: \S+-(\d+)\r$", rb"id: E-\1\r", body, flags=re.MULTILINE)


def _name(params: dict[str, Any]) -> str:
    target = params.get("ref", params)
    return str(target.get("name", target.get("uri")))


async def test_subscribing_to_a_hidden_resource_is_refused_like_an_unknown_one(gateway: tuple[str, str]) -> None:
    url, _ = gateway
    async with mcp_client(url, READER_KEY, mode="legacy") as reader, mcp_client(url, DEMO_KEY, mode="legacy") as other:
        await reader.subscribe_resource(README)
        with refused() as hidden:
            await reader.subscribe_resource(NOTE)
        with refused() as hidden_and_missing:
            await reader.subscribe_resource("demo://nowhere")
        with refused() as read_missing:
            await reader.read_resource(GONE)
        await other.subscribe_resource(NOTE)
    assert hidden.value.error.message == f"Unknown resource: {NOTE}"
    for error in (hidden, hidden_and_missing, read_missing):
        assert error.value.error.code == types.INVALID_PARAMS
        assert re.sub(r"demo://\S+", "X", error.value.error.message) == "Unknown resource: X"


@pytest.mark.parametrize("mode", ERAS)
async def test_unknown_resource_error_names_the_uri_in_its_data(gateway: tuple[str, str], mode: str) -> None:
    """Hidden or missing alike: ``data.uri`` says which read failed, as the SDK's own resource-not-found does."""
    url, _ = gateway
    async with mcp_client(url, READER_KEY, mode=mode) as reader:
        with refused() as hidden:
            await reader.read_resource(NOTE)
        with refused() as missing:
            await reader.read_resource(GONE)
    assert hidden.value.error.data == {"uri": NOTE}
    assert missing.value.error.data == {"uri": GONE}


async def test_a_listen_stream_leaves_hidden_uris_out_of_its_acknowledgment(gateway: tuple[str, str]) -> None:
    url, _ = gateway
    async with mcp_client(url, READER_KEY, mode=MODERN) as reader, mcp_client(url, DEMO_KEY, mode=MODERN) as other:
        async with listen(reader.session, resource_subscriptions=[NOTE, README]) as events:
            restricted = events.honored.resource_subscriptions
        async with listen(other.session, resource_subscriptions=[NOTE, README]) as events:
            unrestricted = events.honored.resource_subscriptions
    assert unrestricted == [NOTE, README]
    assert restricted == [README]


@pytest.mark.parametrize("mode", ERAS)
async def test_a_tasks_resource_and_prompt_lists_override_the_identitys(gateway: tuple[str, str], mode: str) -> None:
    url, _ = gateway
    async with mcp_client(url, READER_KEY, mode=mode, task_token=await notes_task_token(url)) as client:
        assert await visible(client) == ([NOTE], [TEMPLATE], ["demo__summarize"])
        assert (await client.read_resource(NOTE)).contents
        assert (await client.get_prompt("demo__summarize", {"text": "a note"})).messages
        with refused() as hidden:
            await client.read_resource(README)
    assert hidden.value.error.message == f"Unknown resource: {README}"


@pytest.mark.parametrize("mode", ERAS)
async def test_a_resources_deny_policy_blocks_the_read_without_forwarding_it(
    gateway: tuple[str, str], mode: str
) -> None:
    url, _ = gateway
    async with mcp_client(url, DEMO_KEY, mode=mode) as client:
        with refused() as denied:
            await client.read_resource("demo://customers/cust-002")
        allowed = await client.read_resource("demo://customers/cust-003")
        reads = (await client.call_tool("demo__customer_reads", {})).content[0].text  # type: ignore[union-attr]
    assert denied.value.error.code == POLICY_DENIED
    assert denied.value.error.message == "Call denied by policy 'no-cust-002': cust-002 is off limits"
    assert "Grace Hopper" in allowed.contents[0].text  # type: ignore[union-attr]
    assert "cust-003" in reads and "cust-002" not in reads


@pytest.mark.parametrize("mode", ERAS)
async def test_a_prompts_allow_policy_reads_the_prompt_arguments(gateway: tuple[str, str], mode: str) -> None:
    url, _ = gateway
    async with mcp_client(url, DEMO_KEY, mode=mode) as client:
        short = await client.get_prompt("demo__summarize", {"text": "short enough"})
        with refused() as denied:
            await client.get_prompt("demo__summarize", {"text": "a text that is far too long to summarize"})
    assert "short enough" in short.messages[0].content.text  # type: ignore[union-attr]
    assert denied.value.error.code == POLICY_DENIED
    assert denied.value.error.message == "Call denied by policy 'short-summaries': text too long to summarize"


@pytest.mark.parametrize("mode", ERAS)
async def test_an_unfiltered_policy_reading_tool_arguments_judges_tools_but_not_reads(
    gateway: tuple[str, str], mode: str
) -> None:
    url, _ = gateway
    async with mcp_client(url, DEMO_KEY, mode=mode) as client:
        read = await client.read_resource(README)
        boom = await client.call_tool("demo__echo", {"text": "boom"})
    assert "Demo upstream" in read.contents[0].text  # type: ignore[union-attr]
    assert boom.is_error and "no-boom" in boom.content[0].text  # type: ignore[union-attr]


async def test_resource_and_prompt_decisions_are_audited(gateway: tuple[str, str], redis_url: str) -> None:
    url, prefix = gateway
    async with mcp_client(url, DEMO_KEY, mode=MODERN) as client:
        await client.read_resource("demo://customers/cust-001")
        with refused():
            await client.read_resource("demo://customers/cust-002")
        with refused():
            await client.get_prompt("demo__summarize", {"text": "a text that is far too long to summarize"})
    store = open_store(redis_url, prefix)
    mine: list[AuditRecord] = []
    try:
        for _ in range(50):
            records = await read_recent(store, "audit", 200)
            mine = [r for r in records if r.identity == "demo-agent" and r.method != "tools/call"]
            if len(mine) >= 3:
                break
            await anyio.sleep(0.1)
    finally:
        await store.close()
    allowed, denied_read, denied_prompt = mine[-3:]
    assert (allowed.method, allowed.resource, allowed.decision, allowed.outcome) == (
        "resources/read",
        "demo://customers/cust-001",
        "allow",
        "ok",
    )
    assert allowed.latency_ms is not None and allowed.upstream == "demo" and allowed.tool == ""
    assert (denied_read.resource, denied_read.decision, denied_read.policy, denied_read.outcome) == (
        "demo://customers/cust-002",
        "deny",
        "no-cust-002",
        "denied",
    )
    assert denied_read.latency_ms is None
    assert (denied_prompt.method, denied_prompt.prompt, denied_prompt.policy, denied_prompt.outcome) == (
        "prompts/get",
        "demo__summarize",
        "short-summaries",
        "denied",
    )
    assert denied_prompt.args == {"text": "a text that is far too long to summarize"}
