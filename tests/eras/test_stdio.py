"""``mcp-gateway stdio``: the real python SDK stdio client launches the gateway as its local server, in either era.

The gateway process shares a real Redis with an HTTP gateway (as a desktop sidecar shares it with the deployed
replicas): task sessions are created and revoked over HTTP and used over stdio, and the audit records of stdio calls
land in the same stream.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

from mcp_gateway.core.audit import read_recent
from mcp_gateway.errors import GATEWAY_REFUSED
from mcp_gateway.store import RedisStore
from tests.support.harness import (
    BASE_CONFIG,
    DEMO_KEY,
    OTHER_KEY,
    SUPPORT_KEY,
    create_task_session,
    make_config,
    serve_gateway,
)
from tests.test_config import REPO

ERAS = ["legacy", "2026-07-28"]
CONTEXT = {"ticket_id": "T-9", "customer_id": "C-1"}


@pytest.fixture
def config_file(tmp_path: Path, redis_url: str, key_prefix: str) -> Path:
    raw: dict[str, Any] = {**BASE_CONFIG, "store": {"url": redis_url, "prefix": key_prefix}}
    path = tmp_path / "gateway.yaml"
    path.write_text(json.dumps(raw))  # JSON is YAML
    return path


@pytest.fixture
async def http_gateway(redis_url: str, key_prefix: str) -> AsyncIterator[str]:
    """A replica of the same gateway over HTTP, on the same Redis and key prefix."""
    async with serve_gateway(make_config(store={"url": redis_url, "prefix": key_prefix})) as url:
        yield url


def launch(config: Path, credential: str | None, task_token: str | None = None) -> StdioServerParameters:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MCP_GATEWAY_API_KEY", None)
    if credential is not None:
        env["MCP_GATEWAY_API_KEY"] = credential
    if task_token is not None:
        env["MCP_GATEWAY_TASK_TOKEN"] = task_token
    args = ["-m", "mcp_gateway", "stdio", "--config", str(config)]
    return StdioServerParameters(command=sys.executable, args=args, env=env, cwd=REPO)


@asynccontextmanager
async def stdio_gateway(
    config: Path, credential: str, *, mode: str, task_token: str | None = None
) -> AsyncIterator[tuple[Client, Path]]:
    """A real SDK client over stdio to a launched ``mcp-gateway stdio``; yields it and the process's stderr log."""
    log = config.parent / f"stdio-{os.urandom(4).hex()}.log"
    with log.open("w") as errlog:
        transport = stdio_client(launch(config, credential, task_token), errlog=errlog)
        async with Client(transport, mode=mode, read_timeout_seconds=60) as client:
            yield client, log


def text_of(result: Any) -> str:
    return "".join(block.text for block in result.content if block.type == "text")


@pytest.mark.parametrize("mode", ERAS)
async def test_each_identity_lists_its_own_tools_over_stdio(config_file: Path, mode: str) -> None:
    async with stdio_gateway(config_file, DEMO_KEY, mode=mode) as (client, _):
        everything = sorted(tool.name for tool in (await client.list_tools()).tools)
        echoed = await client.call_tool("demo__echo", {"text": "over stdio"})
    async with stdio_gateway(config_file, OTHER_KEY, mode=mode) as (client, _):
        narrowed = sorted(tool.name for tool in (await client.list_tools()).tools)
        with pytest.raises(MCPError) as hidden:
            await client.call_tool("demo__get_customer", {"customer_id": "C-1"})

    assert "demo__get_customer" in everything and "demo__echo" in everything
    assert text_of(echoed) == "over stdio"
    assert narrowed == sorted(name for name in everything if name.startswith("demo__e"))
    # What other-agent may not see answers exactly as a tool that does not exist.
    assert hidden.value.message == "Unknown tool: demo__get_customer"


@pytest.mark.parametrize("mode", ERAS)
async def test_policy_denies_over_stdio_and_the_audit_stream_records_it(
    config_file: Path, http_gateway: str, redis_url: str, key_prefix: str, mode: str
) -> None:
    created = await create_task_session(http_gateway, SUPPORT_KEY, "resolve-ticket", CONTEXT)
    assert created.status_code == 201, created.text
    session = created.json()
    async with stdio_gateway(config_file, SUPPORT_KEY, mode=mode, task_token=session["taskToken"]) as (client, log):
        visible = sorted(tool.name for tool in (await client.list_tools()).tools)
        allowed = await client.call_tool("demo__get_customer", {"customer_id": "C-1"})
        denied = await client.call_tool("demo__get_customer", {"customer_id": "C-2"})

    assert visible == ["demo__get_customer", "demo__update_ticket"]  # the task's list, not the identity's
    assert not allowed.is_error
    assert denied.is_error and "same-customer" in text_of(denied)
    store = RedisStore.from_url(redis_url, key_prefix)
    try:
        records = await read_recent(store, "audit", 10)
    finally:
        await store.close()
    mine = [r for r in records if r.task_session_id == session["tokenId"]]
    assert [(r.decision, r.policy, r.outcome) for r in mine] == [
        ("allow", None, "ok"),
        ("deny", "same-customer", "denied"),
    ]
    assert all(r.identity == "support-agent" and r.task_name == "Resolve a support ticket" for r in mine)
    assert '"policy":"same-customer"' in log.read_text()  # the audit log line, on stderr


async def test_a_task_session_revoked_over_http_is_refused_on_the_next_stdio_request(
    config_file: Path, http_gateway: str
) -> None:
    created = await create_task_session(http_gateway, SUPPORT_KEY, "resolve-ticket", CONTEXT)
    session = created.json()
    async with stdio_gateway(config_file, SUPPORT_KEY, mode="legacy", task_token=session["taskToken"]) as (client, _):
        assert not (await client.call_tool("demo__get_customer", {"customer_id": "C-1"})).is_error
        async with httpx.AsyncClient() as http:
            revoked = await http.delete(
                f"{http_gateway}/v1/tasks/sessions/{session['tokenId']}",
                headers={"Authorization": f"Bearer {SUPPORT_KEY}"},
            )
        assert revoked.status_code == 204
        with pytest.raises(MCPError) as refused:
            await client.call_tool("demo__get_customer", {"customer_id": "C-1"})
    assert refused.value.code == GATEWAY_REFUSED
    assert refused.value.data == {"error": "invalid_task_token", "status": 401}


def run_stdio(config: Path, credential: str | None) -> subprocess.CompletedProcess[str]:
    params = launch(config, credential)
    return subprocess.run(
        [params.command, *params.args],
        env=params.env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_refused_credential_ends_the_process_with_the_reason_and_nothing_on_stdout(config_file: Path) -> None:
    finished = run_stdio(config_file, "mgw_not_a_key_of_anyone_0000000000000000")
    assert finished.returncode == 2
    assert "refusing to serve: " in finished.stderr and "(unauthorized)" in finished.stderr
    assert "mgw_not_a_key" not in finished.stderr  # never the credential itself
    assert finished.stdout == ""


def test_a_missing_credential_ends_the_process_naming_the_variable(config_file: Path) -> None:
    finished = run_stdio(config_file, None)
    assert finished.returncode == 2
    assert "set MCP_GATEWAY_API_KEY" in finished.stderr
    assert finished.stdout == ""
