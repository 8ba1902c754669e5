"""Opaque access tokens through RFC 7662 introspection at the real authorization server: accepted when active and
bound to this resource, cached no longer than they live, refused (503) when the server cannot answer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from mcp_gateway.config import GatewayConfig
from mcp_gateway.identity.access_tokens import looks_like_jwt
from tests.conftest import free_port
from tests.support.harness import serve_gateway
from tests.support.npm_peers import AuthorizationServer, oauth_provider
from tests.support.oauth_support import (
    SCOPES,
    challenge_params,
    client_credentials_token,
    credential_accepted,
    listed_tools,
    oauth_gateway_config,
    post_mcp,
)


@pytest.fixture(scope="module")
async def authorization_server() -> AsyncIterator[AuthorizationServer]:
    async with oauth_provider(SCOPES) as server:
        yield server


def introspecting_config(server: AuthorizationServer, port: int, cache_seconds: float = 60) -> GatewayConfig:
    """Opaque tokens checked at the provider's introspection endpoint; client-credentials tokens name the client."""
    introspection = {
        "url": f"{server.issuer}/token/introspection",
        "clientId": "gateway",
        "clientSecret": "gateway-secret",
        "cacheSeconds": cache_seconds,
    }
    rules = [{"claims": {"token_type": "Bearer"}, "labels": {"kind": "opaque"}}]
    return oauth_gateway_config(
        server, port, introspection=introspection, identityClaim="client_id", identityRules=rules
    )


@pytest.fixture(scope="module")
async def introspecting_gateway(authorization_server: AuthorizationServer) -> AsyncIterator[str]:
    port = free_port()
    async with serve_gateway(introspecting_config(authorization_server, port)) as url:
        yield url


async def test_opaque_token_is_introspected_then_lists_tools(
    introspecting_gateway: str, authorization_server: AuthorizationServer
) -> None:
    token = await client_credentials_token(
        authorization_server, f"{introspecting_gateway}/mcp", client=("opaque", "opaque-secret")
    )
    assert not looks_like_jwt(token)
    assert "demo__echo" in await listed_tools(introspecting_gateway, token)


async def test_opaque_token_for_another_resource_is_refused(
    introspecting_gateway: str, authorization_server: AuthorizationServer
) -> None:
    token = await client_credentials_token(
        authorization_server, "https://other.example/mcp", client=("opaque", "opaque-secret")
    )
    response = await post_mcp(introspecting_gateway, token)
    assert response.status_code == 401
    assert "audience" in challenge_params(response)["error_description"]


async def test_unknown_opaque_token_is_refused_as_inactive(introspecting_gateway: str) -> None:
    response = await post_mcp(introspecting_gateway, "not-a-token-the-server-issued")
    assert response.status_code == 401
    assert challenge_params(response)["error_description"] == "invalid token: it is not active"


async def test_cached_introspection_never_outlives_the_token(
    introspecting_gateway: str, authorization_server: AuthorizationServer
) -> None:
    token = await client_credentials_token(
        authorization_server, f"{introspecting_gateway}/mcp", client=("short-opaque", "short-opaque-secret")
    )
    assert await credential_accepted(introspecting_gateway, token)
    await anyio.sleep(3.1)
    assert not await credential_accepted(introspecting_gateway, token), "the cache entry ended with the token"


async def test_introspection_is_cached_and_an_unreachable_server_fails_closed() -> None:
    provider_port, gateway_port = free_port(), free_port()
    issuer = AuthorizationServer(f"http://127.0.0.1:{provider_port}", kid="key-1")
    async with serve_gateway(introspecting_config(issuer, gateway_port, cache_seconds=2)) as gateway:
        async with oauth_provider(SCOPES, port=provider_port) as server:
            token = await client_credentials_token(server, f"{gateway}/mcp", client=("opaque", "opaque-secret"))
            assert await credential_accepted(gateway, token)
        assert await credential_accepted(gateway, token), "answered from the cache while the server is down"
        await anyio.sleep(2.1)
        async with httpx.AsyncClient() as http:
            response = await http.get(
                f"{gateway}/v1/tasks/sessions/current", headers={"Authorization": f"Bearer {token}"}
            )
    assert response.status_code == 503
    assert response.json()["error"] == "authorization_server_unavailable"
    assert token not in response.text
