"""Token claims → identities: configured ones first, then first-sight ones from claim rules; the token's scopes
in CEL as ``identity.scopes``, against the real authorization server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from tests.conftest import free_port
from tests.support.harness import DEMO_KEY, make_config, mcp_client, serve_gateway
from tests.support.npm_peers import AuthorizationServer, oauth_provider
from tests.support.oauth_support import (
    SCOPES,
    challenge_params,
    client_credentials_token,
    listed_tools,
    oauth_gateway_config,
    post_mcp,
)


@pytest.fixture(scope="module")
async def authorization_server() -> AsyncIterator[AuthorizationServer]:
    async with oauth_provider(SCOPES) as server:
        yield server


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
