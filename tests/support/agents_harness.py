"""Config and REST helpers shared by the Task Agent tests: the base test config plus an admin and two models."""

from __future__ import annotations

import copy
from typing import Any

import httpx

from mcp_gateway.config import GatewayConfig
from tests.support.harness import BASE_CONFIG, make_config, sha

ADMIN_KEY = "mgw_test_admin_key_33333333333333333333"
ADMIN = {"id": "admin", "roles": ["admin"], "credentials": [{"sha256": sha(ADMIN_KEY)}]}
TICKET_BOT_KEY = "mgw_test_ticket_bot_key_4444444444444444"
# Works only inside task sessions, and may see the agents' tools.
TICKET_BOT = {
    "id": "ticket-bot",
    "requireTask": True,
    "allowedTools": ["demo__*", "agents__*"],
    "credentials": [{"sha256": sha(TICKET_BOT_KEY)}],
}


def agent_config(model_url: str, **sections: Any) -> GatewayConfig:
    """BASE_CONFIG with an admin identity and two models, ``primary`` and ``backup``, on the scripted server."""
    models = [
        {"id": "primary", "model": "primary-model", "baseUrl": model_url, "timeout": 10, "maxRetries": 0},
        {"id": "backup", "model": "backup-model", "baseUrl": model_url, "timeout": 10, "maxRetries": 0},
    ]
    identities = [*copy.deepcopy(BASE_CONFIG["identities"]), ADMIN, TICKET_BOT]
    return make_config(**{"models": models, "identities": identities, **sections})


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def agent_body(name: str = "echo-agent", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "description": "echoes things",
        "instruction": "You help by echoing.",
        "llmModelId": "primary",
        "mcpServers": [{"upstream": "demo", "allowedToolIds": ["echo", "get_customer"]}],
    }
    body.update(fields)
    return body


async def create_agent(http: httpx.AsyncClient, base_url: str, **fields: Any) -> dict[str, Any]:
    response = await http.post(f"{base_url}/v1/agents", json=agent_body(**fields), headers=auth(ADMIN_KEY))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created
