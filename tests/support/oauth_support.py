"""Shared pieces of the OAuth suites: a gateway config behind ``oauth``, token requests to the real authorization
server, and probes of what the gateway answers."""

from __future__ import annotations

from typing import Any

import httpx
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

from mcp_gateway.config import GatewayConfig
from tests.support.harness import BASE_CONFIG, make_config, mcp_client
from tests.support.npm_peers import AuthorizationServer

SCOPES = "mcp:tools mcp:admin"


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


async def listed_tools(gateway: str, token: str) -> list[str]:
    async with mcp_client(gateway, token) as client:
        return sorted(tool.name for tool in (await client.list_tools()).tools)


async def credential_accepted(gateway: str, token: str) -> bool:
    """Whether the gateway takes ``token``: with it, a task-session probe fails only for the missing task token."""
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{gateway}/v1/tasks/sessions/current", headers={"Authorization": f"Bearer {token}"})
    return bool(response.json()["error"] == "invalid_task_token")
