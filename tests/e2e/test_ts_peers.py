"""Clients nobody here wrote drive the gateway: the pinned ``inspector-cli`` and a TypeScript SDK client.

Both are Node programs speaking the handshake era (2025-11-25) over streamable HTTP, sending our headers themselves
(``--header`` and ``requestInit.headers``), in front of the bundled demo upstream (stdio). The SDK client's round
includes a sampling request from the upstream, so it runs against the upstream spoken to in either era: a
handshake-era client must reach an upstream of either era. In front of the conformance fixture, a dual-era upstream
whose tools ask their client the handshake way, the TypeScript client gets its sampling and elicitation requests with
the default upstream settings.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from scripts.conformance import FIXTURE_MODULE, ROOT, fixture_server
from tests.support.harness import (
    DEMO_KEY,
    DEMO_UPSTREAM,
    OTHER_KEY,
    SUPPORT_KEY,
    create_task_session,
    make_config,
    serve_gateway,
)
from tests.support.npm_peers import inspector_cli, sdk_back_channel_client, sdk_client


@pytest.fixture(scope="module")
async def gateway() -> AsyncIterator[str]:
    async with serve_gateway(make_config()) as url:
        yield url


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_inspector_cli_lists_every_tool_in_sorted_order(gateway: str) -> None:
    listed = (await inspector_cli(f"{gateway}/mcp", "--method", "tools/list", headers=bearer(DEMO_KEY))).json()
    names = [tool["name"] for tool in listed["tools"]]
    assert names == sorted(names)
    assert {"demo__add", "demo__echo", "demo__get_customer", "demo__count_slowly", "demo__ask_model"} <= set(names)
    add = next(tool for tool in listed["tools"] if tool["name"] == "demo__add")
    assert add["inputSchema"]["required"] == ["a", "b"]


async def test_inspector_cli_sees_only_the_identitys_allowed_tools(gateway: str) -> None:
    listed = (await inspector_cli(f"{gateway}/mcp", "--method", "tools/list", headers=bearer(OTHER_KEY))).json()
    assert [tool["name"] for tool in listed["tools"]] == ["demo__echo"]


async def test_inspector_cli_calls_a_tool(gateway: str) -> None:
    args = ["--method", "tools/call", "--tool-name", "demo__add", "--tool-arg", "a=20", "b=22"]
    result = (await inspector_cli(f"{gateway}/mcp", *args, headers=bearer(DEMO_KEY))).json()
    assert result["isError"] is False
    assert result["structuredContent"] == {"result": 42}
    assert result["content"] == [{"type": "text", "text": "42"}]


async def test_inspector_cli_with_an_unknown_key_is_refused(gateway: str) -> None:
    run = await inspector_cli(f"{gateway}/mcp", "--method", "tools/list", headers=bearer("mgw_not_a_real_key"))
    assert run.returncode != 0
    assert '"error":"unauthorized"' in run.stdout + run.stderr


async def test_inspector_cli_sends_the_task_token_with_its_other_headers(gateway: str) -> None:
    context = {"ticket_id": "T-1", "customer_id": "cust-001"}
    created = await create_task_session(gateway, SUPPORT_KEY, "resolve-ticket", context)
    assert created.status_code == 201, created.text
    headers = {**bearer(SUPPORT_KEY), "X-Task-Token": created.json()["taskToken"]}
    listed = (await inspector_cli(f"{gateway}/mcp", "--method", "tools/list", headers=headers)).json()
    call = ["--method", "tools/call", "--tool-name", "demo__get_customer"]
    own = (await inspector_cli(f"{gateway}/mcp", *call, "--tool-arg", "customer_id=cust-001", headers=headers)).json()
    other = (await inspector_cli(f"{gateway}/mcp", *call, "--tool-arg", "customer_id=cust-002", headers=headers)).json()
    assert [tool["name"] for tool in listed["tools"]] == ["demo__get_customer", "demo__update_ticket"]
    assert own["isError"] is False
    assert json.loads(own["content"][0]["text"])["name"] == "Ada Lovelace"
    assert other["isError"] is True
    assert "same-customer" in other["content"][0]["text"]


@pytest.fixture(scope="module", params=["legacy", "2026-07-28"])
async def gateway_by_upstream_era(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    upstream = {**DEMO_UPSTREAM, "protocol": request.param}
    async with serve_gateway(make_config(upstreams=[upstream])) as url:
        yield url


async def test_typescript_sdk_client_lists_calls_and_answers_sampling_through_the_gateway(
    gateway_by_upstream_era: str,
) -> None:
    seen = (await sdk_client(f"{gateway_by_upstream_era}/mcp", bearer(DEMO_KEY))).json()
    assert seen["protocolVersion"] == "2025-11-25"
    assert seen["server"]["name"] == "mcp-gateway"
    assert seen["sessionId"]
    assert seen["tools"] == sorted(seen["tools"])
    assert {"demo__add", "demo__count_slowly", "demo__ask_model"} <= set(seen["tools"])
    assert seen["add"]["structuredContent"] == {"result": 42}
    assert seen["counted"]["content"][0]["text"] == "counted to 3"
    assert seen["progress"] == [1, 2, 3]
    assert seen["samplingRequests"] == ["what is 6 x 7?"]
    assert seen["sampled"]["content"][0]["text"] == "ts peer heard: what is 6 x 7?"


@pytest.fixture(scope="module", params=["stdio", "http"])
async def gateway_to_dual_era_upstream(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """The gateway in front of the conformance fixture with the default upstream settings (``protocol: auto``).

    The fixture speaks both eras, and its ``test_sampling`` and ``test_elicitation`` ask a handshake-era caller with a
    server→client request during the call, which only a handshake-era session can carry.
    """
    if request.param == "stdio":
        upstream = {"name": "fixture", "transport": "stdio", "command": sys.executable, "args": ["-m", FIXTURE_MODULE]}
        async with serve_gateway(make_config(upstreams=[{**upstream, "cwd": str(ROOT)}])) as url:
            yield url
        return
    workdir: Path = tmp_path_factory.mktemp("fixture")
    async with fixture_server(workdir) as fixture_url:
        upstream = {"name": "fixture", "transport": "streamable-http", "url": fixture_url}
        async with serve_gateway(make_config(upstreams=[upstream])) as url:
            yield url


def tool_text(result: dict[str, Any]) -> str:
    assert result.get("isError") is not True, result
    text: str = result["content"][0]["text"]
    return text


async def test_typescript_handshake_client_is_asked_for_sampling_and_elicitation_by_a_dual_era_upstream(
    gateway_to_dual_era_upstream: str,
) -> None:
    calls = [
        {"name": "fixture__test_sampling", "arguments": {"prompt": "What is the capital of France?"}},
        {"name": "fixture__test_elicitation", "arguments": {"message": "Who are you?"}},
    ]
    capabilities: dict[str, Any] = {"sampling": {}, "elicitation": {}}
    url = f"{gateway_to_dual_era_upstream}/mcp"
    seen = (await sdk_back_channel_client(url, bearer(DEMO_KEY), capabilities, calls)).json()
    assert seen["protocolVersion"] == "2025-11-25"
    assert seen["asked"] == [
        {"method": "sampling/createMessage", "text": "What is the capital of France?"},
        {"method": "elicitation/create", "text": "Who are you?"},
    ]
    sampled, elicited = (tool_text(result) for result in seen["results"])
    assert sampled == "LLM response: ts peer says Paris"
    assert elicited.startswith("User response: action=accept, content=")
    assert json.loads(elicited.split("content=", 1)[1])["username"] == "ts-user"


async def test_upstream_hears_of_no_capability_the_typescript_client_did_not_declare(
    gateway_to_dual_era_upstream: str,
) -> None:
    """The fixture's tool asks for whatever the session declared; each client gets a session declaring its own."""
    url = f"{gateway_to_dual_era_upstream}/mcp"
    calls = [{"name": "fixture__test_input_required_result_capabilities", "arguments": {}}]
    elicitation_only = (await sdk_back_channel_client(url, bearer(DEMO_KEY), {"elicitation": {}}, calls)).json()
    both = (await sdk_back_channel_client(url, bearer(DEMO_KEY), {"sampling": {}, "elicitation": {}}, calls)).json()
    assert [asked["method"] for asked in elicitation_only["asked"]] == ["elicitation/create"]
    assert tool_text(elicitation_only["results"][0]).startswith("user_name: ")
    assert sorted(asked["method"] for asked in both["asked"]) == ["elicitation/create", "sampling/createMessage"]
    assert tool_text(both["results"][0]).startswith("capital_question: ts peer says Paris; user_name: ")
