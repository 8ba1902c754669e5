"""The gateway as an OAuth 2.1 resource server, against a real authorization server (the pinned ``oidc-provider``).

Tokens come from the provider's token endpoint; the python SDK's client-credentials provider runs the whole
discovery from the gateway's 401 (protected resource metadata → authorization server metadata → token with the
resource indicator) before it lists and calls tools.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata, OAuthToken
from pydantic import AnyUrl

from tests.conftest import free_port
from tests.support.harness import serve_gateway
from tests.support.npm_peers import AuthorizationServer, oauth_provider
from tests.support.oauth_support import (
    SCOPES,
    MemoryTokenStorage,
    challenge_params,
    client_credentials_token,
    credential_accepted,
    oauth_gateway_config,
    post_mcp,
    tools_list,
)


@pytest.fixture(scope="module")
async def authorization_server() -> AsyncIterator[AuthorizationServer]:
    async with oauth_provider(SCOPES) as server:
        yield server


@pytest.fixture(scope="module")
async def gateway(authorization_server: AuthorizationServer) -> AsyncIterator[str]:
    port = free_port()
    async with serve_gateway(oauth_gateway_config(authorization_server, port)) as url:
        yield url


async def test_protected_resource_metadata_is_served_at_both_well_known_paths(
    gateway: str, authorization_server: AuthorizationServer
) -> None:
    async with httpx.AsyncClient() as http:
        documents = [
            await http.get(f"{gateway}/.well-known/oauth-protected-resource"),
            await http.get(f"{gateway}/.well-known/oauth-protected-resource/mcp"),
        ]
    for response in documents:
        assert response.status_code == 200
        assert response.json() == {
            "resource": f"{gateway}/mcp",
            "authorization_servers": [authorization_server.issuer],
            "scopes_supported": ["mcp:tools", "mcp:admin"],
            "bearer_methods_supported": ["header"],
            "resource_name": "mcp-gateway",
        }


async def test_protected_resource_metadata_answers_a_browser_preflight(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.options(
            f"{gateway}/.well-known/oauth-protected-resource/mcp",
            headers={
                "Origin": "http://localhost:6274",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "mcp-protocol-version",
            },
        )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert "mcp-protocol-version" in response.headers["access-control-allow-headers"]


@pytest.mark.parametrize("path", ["/mcp", "/v1/tasks/sessions/current"])
async def test_request_without_credential_is_challenged_with_resource_metadata_and_scope(
    gateway: str, path: str
) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.request("POST" if path == "/mcp" else "GET", f"{gateway}{path}", json=tools_list())
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    params = challenge_params(response)
    assert params["resource_metadata"] == f"{gateway}/.well-known/oauth-protected-resource/mcp"
    assert params["scope"] == "mcp:tools"
    assert "error" not in params, "RFC 6750: no error code when the request carried no credential"


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_sdk_client_credentials_flow_discovers_the_server_then_lists_and_calls_tools(
    gateway: str, authorization_server: AuthorizationServer, mode: str
) -> None:
    storage = MemoryTokenStorage()
    auth = ClientCredentialsOAuthProvider(
        server_url=f"{gateway}/mcp",
        storage=storage,
        client_id="machine",
        client_secret="machine-secret",
        scope="mcp:tools",
        issuer=authorization_server.issuer,
    )
    async with (
        httpx2.AsyncClient(auth=auth, timeout=30) as http,
        Client(streamable_http_client(f"{gateway}/mcp", http_client=http), mode=mode) as client,
    ):
        names = [tool.name for tool in (await client.list_tools()).tools]
        echoed = await client.call_tool("demo__echo", {"text": "through oauth"})
    assert "demo__echo" in names
    assert not echoed.is_error
    assert "through oauth" in str(echoed.content)
    assert storage.tokens is not None and storage.tokens.scope == "mcp:tools"


async def test_token_minted_for_another_resource_is_refused(
    gateway: str, authorization_server: AuthorizationServer
) -> None:
    token = await client_credentials_token(authorization_server, "https://other.example/mcp")
    response = await post_mcp(gateway, token)
    assert response.status_code == 401
    params = challenge_params(response)
    assert params["error"] == "invalid_token"
    assert "audience" in params["error_description"]
    assert params["resource_metadata"].endswith("/.well-known/oauth-protected-resource/mcp")


async def test_expired_token_is_refused(gateway: str, authorization_server: AuthorizationServer) -> None:
    token = await client_credentials_token(
        authorization_server, f"{gateway}/mcp", client=("short-lived", "short-secret")
    )
    await anyio.sleep(3.1)
    response = await post_mcp(gateway, token)
    assert response.status_code == 401
    assert challenge_params(response)["error_description"] == "token expired"


async def test_token_without_a_required_scope_is_403_insufficient_scope_naming_it(
    gateway: str, authorization_server: AuthorizationServer
) -> None:
    token = await client_credentials_token(authorization_server, f"{gateway}/mcp", scope="mcp:admin")
    response = await post_mcp(gateway, token)
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    params = challenge_params(response)
    assert params["error"] == "insufficient_scope"
    assert params["scope"] == "mcp:tools"
    assert params["resource_metadata"] == f"{gateway}/.well-known/oauth-protected-resource/mcp"


async def test_sdk_client_steps_up_when_its_stored_token_lacks_the_required_scope(
    gateway: str, authorization_server: AuthorizationServer
) -> None:
    narrow = await client_credentials_token(authorization_server, f"{gateway}/mcp", scope="mcp:admin")
    storage = MemoryTokenStorage()
    storage.tokens = OAuthToken(access_token=narrow, token_type="Bearer", scope="mcp:admin")
    auth = ClientCredentialsOAuthProvider(
        server_url=f"{gateway}/mcp",
        storage=storage,
        client_id="machine",
        client_secret="machine-secret",
        issuer=authorization_server.issuer,
    )
    async with (
        httpx2.AsyncClient(auth=auth, timeout=30) as http,
        Client(streamable_http_client(f"{gateway}/mcp", http_client=http), mode="2026-07-28") as client,
    ):
        echoed = await client.call_tool("demo__echo", {"text": "stepped up"})
    assert not echoed.is_error
    assert storage.tokens is not None and storage.tokens.access_token != narrow
    assert set((storage.tokens.scope or "").split()) == {"mcp:admin", "mcp:tools"}


async def test_rotated_signing_key_is_fetched_and_the_withdrawn_one_refused() -> None:
    provider_port, gateway_port = free_port(), free_port()
    issuer = AuthorizationServer(f"http://127.0.0.1:{provider_port}", kid="old")
    config = oauth_gateway_config(issuer, gateway_port, jwksRefetchCooldown=0.5)
    async with serve_gateway(config) as gateway:
        async with oauth_provider(SCOPES, port=provider_port, kid="old") as server:
            old_token = await client_credentials_token(server, f"{gateway}/mcp")
            assert await credential_accepted(gateway, old_token)
        await anyio.sleep(0.6)
        async with oauth_provider(SCOPES, port=provider_port, kid="new") as rotated:
            new_token = await client_credentials_token(rotated, f"{gateway}/mcp")
            assert await credential_accepted(gateway, new_token), "an unknown kid refetches the JWKS"
            assert not await credential_accepted(gateway, old_token), "the refetched JWKS no longer has the old key"


class ScriptedBrowser:
    """The user's side of the authorization code flow, headless: it follows the authorization server's redirects
    (the provider's scripted interaction logs the account in and consents) until one reaches the client's
    redirect URI, and hands its parameters to the SDK as the callback."""

    def __init__(self, redirect_uri: str) -> None:
        self.redirect_uri = redirect_uri
        self.result: AuthorizationCodeResult | None = None

    async def open(self, authorization_url: str) -> None:
        url = authorization_url
        async with httpx.AsyncClient(timeout=30) as browser:
            for _ in range(10):
                response = await browser.get(url)
                location = response.headers.get("location")
                assert response.is_redirect and location, f"{response.status_code}: {response.text[:300]}"
                url = str(httpx.URL(url).join(location))
                if url.startswith(self.redirect_uri):
                    params = httpx.URL(url).params
                    assert "code" in params, f"the authorization server refused: {dict(params)}"
                    self.result = AuthorizationCodeResult(
                        code=params["code"], state=params.get("state"), iss=params.get("iss")
                    )
                    return
        raise AssertionError("the authorization server never redirected back to the client")

    async def callback(self) -> AuthorizationCodeResult:
        assert self.result is not None
        return self.result


async def test_sdk_authorization_code_flow_with_pkce_registers_consents_and_calls_tools(
    authorization_server: AuthorizationServer,
) -> None:
    port = free_port()
    # The provider's scripted login signs "alice" in: she is the token's subject.
    config = oauth_gateway_config(authorization_server, port, accounts=("alice",))
    redirect_uri = "http://127.0.0.1:9/callback"
    browser = ScriptedBrowser(redirect_uri)
    storage = MemoryTokenStorage()
    metadata = OAuthClientMetadata(
        redirect_uris=[AnyUrl(redirect_uri)],
        grant_types=["authorization_code", "refresh_token"],
        token_endpoint_auth_method="none",
        client_name="oauth-flow-test",
    )
    async with serve_gateway(config) as gateway:
        auth = OAuthClientProvider(f"{gateway}/mcp", metadata, storage, browser.open, browser.callback)
        async with (
            httpx2.AsyncClient(auth=auth, timeout=30) as http,
            Client(streamable_http_client(f"{gateway}/mcp", http_client=http), mode="2026-07-28") as client,
        ):
            echoed = await client.call_tool("demo__echo", {"text": "code flow"})
    assert not echoed.is_error and "code flow" in str(echoed.content)
    assert storage.client_info is not None, "the client registered itself (RFC 7591)"
    assert storage.tokens is not None and storage.tokens.scope == "mcp:tools"
