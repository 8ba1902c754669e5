"""The gateway as an OAuth 2.1 resource server, against a real authorization server (the pinned ``oidc-provider``).

Tokens come from the provider's token endpoint; the python SDK's client-credentials provider runs the whole
discovery from the gateway's 401 (protected resource metadata → authorization server metadata → token with the
resource indicator) before it lists and calls tools.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from pydantic import AnyUrl

from mcp_gateway.access_tokens import looks_like_jwt
from mcp_gateway.config import GatewayConfig, load_config, parse_config
from mcp_gateway.errors import ConfigError
from mcp_gateway.oauth import resource_metadata_url
from tests.conftest import free_port
from tests.harness import BASE_CONFIG, DEMO_KEY, make_config, mcp_client, serve_gateway
from tests.npm_peers import AuthorizationServer, oauth_provider

SCOPES = "mcp:tools mcp:admin"


@pytest.fixture(scope="module")
async def authorization_server() -> AsyncIterator[AuthorizationServer]:
    async with oauth_provider(SCOPES) as server:
        yield server


def oauth_gateway_config(
    server: AuthorizationServer, port: int, *, accounts: tuple[str, ...] = (), **oauth: Any
) -> GatewayConfig:
    """The base config behind ``oauth``; the resource is the gateway's own /mcp URL, as a client will see it."""
    section = {
        "resource": f"http://127.0.0.1:{port}/mcp",
        "authorizationServers": [server.issuer],
        "jwksUrl": server.jwks_url,
        "algorithms": ["RS256"],
        "scopesSupported": SCOPES.split(),
        "requiredScopes": ["mcp:tools"],
        **oauth,
    }
    identities = [
        *BASE_CONFIG["identities"],
        {"id": "machine", "labels": {"kind": "service"}},
        *({"id": account} for account in accounts),
    ]
    return make_config(
        server={"host": "127.0.0.1", "port": port, "maxBodyBytes": 65536}, identities=identities, oauth=section
    )


@pytest.fixture(scope="module")
async def gateway(authorization_server: AuthorizationServer) -> AsyncIterator[str]:
    port = free_port()
    async with serve_gateway(oauth_gateway_config(authorization_server, port)) as url:
        yield url


async def client_credentials_token(
    server: AuthorizationServer,
    resource: str,
    scope: str = "mcp:tools",
    client: tuple[str, str] = ("machine", "machine-secret"),
) -> str:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            server.token_endpoint,
            data={"grant_type": "client_credentials", "resource": resource, "scope": scope},
            auth=client,
        )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def tools_list() -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}


async def post_mcp(gateway: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers["Mcp-Protocol-Version"] = "2025-11-25"
    async with httpx.AsyncClient() as http:
        return await http.post(f"{gateway}/mcp", json=tools_list(), headers=headers)


def challenge_params(response: httpx.Response) -> dict[str, str]:
    scheme, _, rest = response.headers["www-authenticate"].partition(" ")
    assert scheme == "Bearer"
    params = {}
    for part in rest.split(", "):
        name, _, value = part.partition("=")
        params[name] = value.strip('"')
    return params


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


class MemoryTokenStorage:
    """The SDK's TokenStorage, in memory: one client's tokens for the length of a test."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


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


RULES = [
    {"claims": {"client_id": "robot"}, "labels": {"kind": "robot"}, "allowedTools": ["demo__echo", "demo__add"]},
    {"claims": {"client_id": "machine"}, "labels": {"kind": "rule"}, "allowedTools": ["demo__echo"]},
]
ADMIN_SCOPE_FOR_ADD = {
    "name": "admin-scope-for-add",
    "effect": "allow",
    "tools": ["demo__add"],
    "condition": '"mcp:admin" in identity.scopes',
    "message": "demo__add needs the mcp:admin scope",
}
ECHO_WITHOUT_SCOPES = {
    "name": "echo-without-scopes",
    "tools": ["demo__echo"],
    "condition": "size(identity.scopes) == 0",
}


@pytest.fixture(scope="module")
async def ruled_gateway(authorization_server: AuthorizationServer) -> AsyncIterator[str]:
    """A gateway that creates identities from claim rules and requires a scope for one tool through CEL."""
    port = free_port()
    config = oauth_gateway_config(authorization_server, port, identityRules=RULES)
    config = replace(config, policies=make_config(policies=[ADMIN_SCOPE_FOR_ADD, ECHO_WITHOUT_SCOPES]).policies)
    async with serve_gateway(config) as url:
        yield url


async def listed_tools(gateway: str, token: str) -> list[str]:
    async with mcp_client(gateway, token) as client:
        return sorted(tool.name for tool in (await client.list_tools()).tools)


async def test_unconfigured_subject_becomes_an_identity_by_the_first_matching_rule(
    ruled_gateway: str, authorization_server: AuthorizationServer
) -> None:
    token = await client_credentials_token(
        authorization_server, f"{ruled_gateway}/mcp", client=("robot", "robot-secret")
    )
    assert await listed_tools(ruled_gateway, token) == ["demo__add", "demo__echo"]


async def test_configured_identity_wins_over_a_matching_rule(
    ruled_gateway: str, authorization_server: AuthorizationServer
) -> None:
    token = await client_credentials_token(authorization_server, f"{ruled_gateway}/mcp")
    tools = await listed_tools(ruled_gateway, token)
    assert "demo__get_customer" in tools, "the configured identity has no allowedTools: it sees every tool"


async def test_subject_matching_no_rule_is_refused(
    ruled_gateway: str, authorization_server: AuthorizationServer
) -> None:
    token = await client_credentials_token(
        authorization_server, f"{ruled_gateway}/mcp", client=("stranger", "stranger-secret")
    )
    response = await post_mcp(ruled_gateway, token)
    assert response.status_code == 401
    assert challenge_params(response)["error_description"] == "token subject is not a known identity"


@pytest.mark.parametrize(("scope", "allowed"), [("mcp:tools", False), ("mcp:tools mcp:admin", True)])
async def test_policy_requires_a_scope_per_tool_through_identity_scopes(
    ruled_gateway: str, authorization_server: AuthorizationServer, scope: str, allowed: bool
) -> None:
    token = await client_credentials_token(authorization_server, f"{ruled_gateway}/mcp", scope=scope)
    async with mcp_client(ruled_gateway, token) as client:
        result = await client.call_tool("demo__add", {"a": 20, "b": 22})
    assert result.is_error is not allowed
    assert ("42" if allowed else "needs the mcp:admin scope") in str(result.content)


async def test_api_key_caller_has_an_empty_scope_list_in_cel(ruled_gateway: str) -> None:
    async with mcp_client(ruled_gateway, DEMO_KEY) as client:
        result = await client.call_tool("demo__echo", {"text": "no scopes"})
    assert not result.is_error, result.content


def oauth_config_problems(**oauth: Any) -> list[str]:
    section = {"resource": "https://gw.example/mcp", "authorizationServers": ["https://idp.example"], **oauth}
    with pytest.raises(ConfigError) as raised:
        parse_config({"oauth": {"jwksUrl": "https://idp.example/jwks", **section}})
    return raised.value.problems


def test_oauth_config_binds_the_audience_to_the_resource_and_the_issuer_to_the_server() -> None:
    config = parse_config(
        {
            "oauth": {
                "resource": "https://gw.example/mcp",
                "authorizationServers": ["https://idp.example"],
                "jwksUrl": "https://idp.example/jwks",
            }
        }
    )
    assert config.oauth is not None
    assert config.oauth.token.audience == "https://gw.example/mcp"
    assert config.oauth.token.issuer == "https://idp.example"


@pytest.mark.parametrize(
    ("oauth", "problem"),
    [
        ({"resource": "gw.example/mcp"}, "oauth.resource: must be an absolute http(s) URL"),
        ({"authorizationServers": []}, "oauth.authorizationServers: must list at least one"),
        (
            {"authorizationServers": ["https://a.example", "https://b.example"]},
            "oauth.issuer: is required when several authorization servers are listed",
        ),
        ({"scopesSupported": ["a"], "requiredScopes": ["b"]}, "oauth.requiredScopes: b not in scopesSupported"),
        ({"secret": "shared"}, "oauth.secret: unknown key"),
        ({"identityRules": [{"labels": {"a": "b"}}]}, "oauth.identityRules[0].claims: must name at least one claim"),
        (
            {"introspection": {"url": "https://idp.example/introspect", "clientId": "gw"}},
            "oauth.introspection.clientSecret: is required",
        ),
    ],
    ids=[
        "resource-not-url",
        "no-server",
        "issuer-ambiguous",
        "required-not-supported",
        "no-hs-secret",
        "rule-empty",
        "introspection-without-secret",
    ],
)
def test_bad_oauth_config_is_reported_with_its_path(oauth: dict[str, Any], problem: str) -> None:
    problems = oauth_config_problems(**oauth)
    assert any(p.startswith(problem) for p in problems), problems


def test_jwt_and_oauth_together_are_refused() -> None:
    section = {"resource": "https://gw.example/mcp", "authorizationServers": ["https://idp.example"]}
    with pytest.raises(ConfigError, match="set either jwt or oauth"):
        parse_config({"jwt": {"secret": "x" * 32}, "oauth": {**section, "jwksUrl": "https://idp.example/jwks"}})


async def credential_accepted(gateway: str, token: str) -> bool:
    """Whether the gateway takes ``token``: with it, a task-session probe fails only for the missing task token."""
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{gateway}/v1/tasks/sessions/current", headers={"Authorization": f"Bearer {token}"})
    return bool(response.json()["error"] == "invalid_task_token")


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


def test_oauth_example_config_loads() -> None:
    config = load_config(Path(__file__).resolve().parent.parent / "configs" / "oauth-example.yaml", env={})
    assert config.oauth is not None
    assert config.oauth.token.audience == config.oauth.resource == "https://gw.example/mcp"
    assert resource_metadata_url(config.oauth.resource) == "https://gw.example/.well-known/oauth-protected-resource/mcp"


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
