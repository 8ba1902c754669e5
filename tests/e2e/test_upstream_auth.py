"""Upstream credentials (``auth:`` of an HTTP upstream) against a real authorization server and a real upstream.

The authorization server is the pinned ``oidc-provider`` (``tests/support/peers/oauth_provider.mjs``, with RFC 8693
token exchange registered as a grant). The upstream (``tests/support/peers/token_checking_upstream.py``) is an MCP SDK
server that refuses every request whose bearer JWT does not verify against that server's JWKS with its own URL as
audience, and tells in its ``whoami`` tool which token a call carried. The caller's own credential never reaches it.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import Process
from mcp.shared.exceptions import MCPError

from mcp_gateway.config import GatewayConfig
from mcp_gateway.errors import ConfigError
from tests.support.harness import DEMO_KEY, OTHER_KEY, make_config, mcp_client, serve_gateway, sha
from tests.support.npm_peers import AuthorizationServer, oauth_provider
from tests.support.oauth_support import SCOPES, client_credentials_token

UPSTREAM = Path(__file__).resolve().parents[1] / "support" / "peers" / "token_checking_upstream.py"
GATEWAY_SECRET = "gateway-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def token_checking_upstream(server: AuthorizationServer) -> AsyncIterator[str]:
    """The token-checking upstream as a process; yields its /mcp URL (also the audience it demands)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    options = {"port": port, "issuer": server.issuer, "jwks": server.jwks_url, "audience": url}
    command = [sys.executable, str(UPSTREAM), json.dumps(options)]
    process: Process = await anyio.open_process(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with anyio.fail_after(20):
            while True:
                try:
                    stream = await anyio.connect_tcp("127.0.0.1", port)
                except OSError:
                    await anyio.sleep(0.05)
                    continue
                await stream.aclose()
                break
        yield url
    finally:
        process.kill()
        with anyio.move_on_after(5):
            await process.wait()


def gateway_config(server: AuthorizationServer, upstream: dict[str, Any]) -> tuple[GatewayConfig, str]:
    """A gateway behind ``oauth`` (so OAuth callers can be exchanged) with one upstream ``checked``."""
    port = free_port()
    gateway = f"http://127.0.0.1:{port}"
    config = make_config(
        server={"host": "127.0.0.1", "port": port, "maxBodyBytes": 65536},
        upstreams=[{"name": "checked", "transport": "streamable-http", "timeout": 20, **upstream}],
        identities=[
            {"id": "alice", "credentials": [{"sha256": sha(DEMO_KEY)}]},
            {"id": "bob", "credentials": [{"sha256": sha(OTHER_KEY)}]},
            {"id": "machine"},
        ],
        tasks=[],
        policies=[],
        oauth={
            "resource": f"{gateway}/mcp",
            "authorizationServers": [server.issuer],
            "jwksUrl": server.jwks_url,
            "algorithms": ["RS256"],
            "scopesSupported": SCOPES.split(),
        },
    )
    return config, gateway


def client_auth(server: AuthorizationServer, url: str, client: str = "gateway", secret: str = GATEWAY_SECRET) -> Any:
    return {"tokenUrl": server.token_endpoint, "clientId": client, "clientSecret": secret, "resource": url}


async def whoami(gateway: str, credential: str) -> dict[str, Any]:
    async with mcp_client(gateway, credential) as client:
        result = await client.call_tool("checked__whoami", {})
    assert not result.is_error, result
    answer: dict[str, Any] = json.loads(result.content[0].text)  # type: ignore[union-attr]
    return answer


async def call_error(gateway: str, credential: str, tool: str = "checked__whoami") -> str:
    async with mcp_client(gateway, credential) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool(tool, {})
    return caught.value.error.message


async def call(gateway: str, credential: str, tool: str) -> None:
    async with mcp_client(gateway, credential) as client:
        result = await client.call_tool(tool, {})
    assert not result.is_error, result


def assert_no_secret(text: str, *secrets: str) -> None:
    assert "eyJ" not in text, "a JWT reached the logs or an answer"
    for secret in secrets:
        assert secret not in text


@pytest.mark.parametrize("protocol", ["legacy", "2026-07-28"])
async def test_client_credentials_token_reaches_the_upstream_on_every_path_and_is_reused(protocol: str) -> None:
    async with oauth_provider(SCOPES) as server, token_checking_upstream(server) as url:
        auth = {"clientCredentials": client_auth(server, url)}
        config, _ = gateway_config(server, {"url": url, "protocol": protocol, "auth": auth})
        async with serve_gateway(config) as gateway:
            # The connection came up (its handshake or discover, lists and GET or listen stream were let through).
            async with mcp_client(gateway, DEMO_KEY) as client:
                tools = sorted(tool.name for tool in (await client.list_tools()).tools)
            assert "checked__whoami" in tools
            first = await whoami(gateway, DEMO_KEY)
            second = await whoami(gateway, OTHER_KEY)
    assert first["sub"] == "gateway"
    assert first["client_id"] == "gateway"
    assert second["jti"] == first["jti"], "the token is cached, not fetched per call"


async def test_client_credentials_token_is_refreshed_after_expiry_once_for_concurrent_calls() -> None:
    async with oauth_provider(SCOPES) as server, token_checking_upstream(server) as url:
        auth = client_auth(server, url, client="short-gateway", secret="short-secret")
        config, _ = gateway_config(server, {"url": url, "auth": {"clientCredentials": auth}})
        async with serve_gateway(config) as gateway:
            first = await whoami(gateway, DEMO_KEY)
            await anyio.sleep(3.2)  # the short-gateway client's tokens live 3 seconds
            answers: list[dict[str, Any]] = []

            async def ask() -> None:
                answers.append(await whoami(gateway, DEMO_KEY))

            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(ask)
    assert {answer["jti"] for answer in answers} != {first["jti"]}
    assert len({answer["jti"] for answer in answers}) == 1, "one refresh for all the calls that found it expired"


async def test_upstream_401_gets_one_fresh_token_and_the_call_goes_through() -> None:
    async with oauth_provider(SCOPES) as server, token_checking_upstream(server) as url:
        config, _ = gateway_config(server, {"url": url, "auth": {"clientCredentials": client_auth(server, url)}})
        async with serve_gateway(config) as gateway:
            first = await whoami(gateway, DEMO_KEY)
            await call(gateway, DEMO_KEY, "checked__refuse_my_token")
            second = await whoami(gateway, DEMO_KEY)
    assert second["jti"] != first["jti"]
    assert second["client_id"] == "gateway"


async def test_upstream_refusing_the_fresh_token_too_is_a_clear_error_naming_the_upstream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with oauth_provider(SCOPES) as server, token_checking_upstream(server) as url:
        config, _ = gateway_config(server, {"url": url, "auth": {"clientCredentials": client_auth(server, url)}})
        async with serve_gateway(config) as gateway:
            await call(gateway, DEMO_KEY, "checked__refuse_my_client")
            message = await call_error(gateway, DEMO_KEY)
            async with httpx.AsyncClient() as http:
                metrics = (await http.get(f"{gateway}/metrics")).text
    assert message == "upstream 'checked' refused the gateway's credential for tools/call (HTTP 401)"
    retries = [r for r in caplog.records if "retrying with a fresh one" in r.getMessage()]
    assert len(retries) == 1, "exactly one refresh before giving up"
    assert_no_secret(caplog.text + metrics, GATEWAY_SECRET)


async def test_token_exchange_gives_the_upstream_a_token_with_the_callers_subject() -> None:
    async with oauth_provider(SCOPES) as server, token_checking_upstream(server) as url:
        # The connection's own traffic carries a service token in the static headers; calls carry exchanged ones.
        service = await client_credentials_token(server, url, client=("robot", "robot-secret"))
        upstream = {
            "url": url,
            "headers": {"Authorization": f"Bearer {service}"},
            "auth": {"tokenExchange": client_auth(server, url)},
        }
        config, gateway_url = gateway_config(server, upstream)
        caller = await client_credentials_token(server, f"{gateway_url}/mcp")
        async with serve_gateway(config) as gateway:
            first = await whoami(gateway, caller)
            again = await whoami(gateway, caller)
    assert first["sub"] == "machine", "the exchanged token is for the caller"
    assert first["client_id"] == "gateway", "issued to the gateway, not the caller's client"
    assert again["jti"] == first["jti"], "the exchanged token is cached per caller token"


async def test_token_exchange_refuses_an_api_key_caller_clearly() -> None:
    async with oauth_provider(SCOPES) as server, token_checking_upstream(server) as url:
        service = await client_credentials_token(server, url, client=("robot", "robot-secret"))
        upstream = {
            "url": url,
            "headers": {"Authorization": f"Bearer {service}"},
            "auth": {"tokenExchange": client_auth(server, url)},
        }
        config, _ = gateway_config(server, upstream)
        async with serve_gateway(config) as gateway:
            message = await call_error(gateway, DEMO_KEY)
    assert message == (
        "upstream 'checked' acts on behalf of the caller (token exchange) and needs the caller to authenticate with "
        "an OAuth access token; an API key cannot be exchanged"
    )


async def test_per_identity_secret_from_env_reaches_the_upstream_and_a_caller_without_one_is_refused(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with oauth_provider(SCOPES) as server, token_checking_upstream(server) as url:
        service = await client_credentials_token(server, url, client=("machine", "machine-secret"))
        personal = await client_credentials_token(server, url, client=("robot", "robot-secret"))
        monkeypatch.setenv("UPCREDS_TEST_ALICE_TOKEN", personal)
        upstream = {
            "url": url,
            "headers": {"Authorization": f"Bearer {service}"},
            "auth": {"perIdentity": {"secrets": {"alice": "env:UPCREDS_TEST_ALICE_TOKEN"}}},
        }
        config, _ = gateway_config(server, upstream)
        async with serve_gateway(config) as gateway:
            alice = await whoami(gateway, DEMO_KEY)
            bob = await call_error(gateway, OTHER_KEY)
    assert alice["client_id"] == "robot", "alice's personal token, not the connection's service token"
    assert bob == "upstream 'checked' needs a personal credential, and none is configured for identity 'bob'"
    assert_no_secret(caplog.text)


async def test_per_identity_secret_the_upstream_refuses_is_read_again_once_then_a_clear_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_file = tmp_path / "alice-token"
    secret_file.write_text("not-a-token-the-upstream-takes\n")
    async with oauth_provider(SCOPES) as server, token_checking_upstream(server) as url:
        service = await client_credentials_token(server, url, client=("machine", "machine-secret"))
        upstream = {
            "url": url,
            "headers": {"Authorization": f"Bearer {service}"},
            "auth": {"perIdentity": {"secrets": {"alice": f"file:{secret_file}"}}},
        }
        config, _ = gateway_config(server, upstream)
        async with serve_gateway(config) as gateway:
            message = await call_error(gateway, DEMO_KEY)
            # Rotated in place: the next refusal reads it again, and the new one is taken.
            secret_file.write_text(await client_credentials_token(server, url, client=("robot", "robot-secret")))
            rotated = await whoami(gateway, DEMO_KEY)
    assert message == "upstream 'checked' refused the gateway's credential for tools/call (HTTP 401)"
    assert rotated["client_id"] == "robot"
    assert_no_secret(caplog.text, "not-a-token-the-upstream-takes")


def test_auth_on_a_stdio_upstream_is_a_config_error() -> None:
    upstream = {"name": "local", "command": "true", "auth": {"static": {"headers": {"X-Key": "k"}}}}
    with pytest.raises(ConfigError) as caught:
        make_config(upstreams=[upstream])
    assert "upstreams[0].auth: applies to streamable-http upstreams" in str(caught.value)


def test_auth_must_name_exactly_one_mode() -> None:
    auth = {"static": {"headers": {"X-Key": "k"}}, "perIdentity": {"secrets": {"demo-agent": "env:X"}}}
    with pytest.raises(ConfigError) as caught:
        make_config(upstreams=[{"name": "remote", "url": "http://127.0.0.1:1/mcp", "auth": auth}])
    assert "upstreams[0].auth: must set exactly one of static, clientCredentials, tokenExchange, perIdentity" in str(
        caught.value
    )


def test_per_identity_secret_must_be_a_reference_not_a_value() -> None:
    auth = {"perIdentity": {"secrets": {"demo-agent": "ghp_literal_token"}}}
    with pytest.raises(ConfigError) as caught:
        make_config(upstreams=[{"name": "remote", "url": "http://127.0.0.1:1/mcp", "auth": auth}])
    text = str(caught.value)
    assert "upstreams[0].auth.perIdentity.secrets.demo-agent: must be a reference" in text
    assert "ghp_literal_token" not in text


def test_static_auth_headers_join_the_transport_headers() -> None:
    auth = {"static": {"headers": {"X-Api-Key": "k"}}}
    config = make_config(upstreams=[{"name": "remote", "url": "http://127.0.0.1:1/mcp", "auth": auth}])
    transport = config.upstreams[0].transport
    assert getattr(transport, "headers", None) == {"X-Api-Key": "k"}
    assert config.upstreams[0].auth is None


def test_client_secret_is_not_in_the_config_repr() -> None:
    auth = {"clientCredentials": {"tokenUrl": "http://as/token", "clientId": "gw", "clientSecret": "s3cr3t-value"}}
    config = make_config(upstreams=[{"name": "remote", "url": "http://127.0.0.1:1/mcp", "auth": auth}])
    assert "s3cr3t-value" not in repr(config)
