"""``models:`` and identity ``roles``: the config the Task Agents build on."""

from __future__ import annotations

import pytest

from mcp_gateway.config import parse_config
from mcp_gateway.errors import ConfigError


def test_models_are_parsed_with_defaults() -> None:
    config = parse_config(
        {
            "models": [
                {"id": "gpt", "model": "gpt-4o-mini", "baseUrl": "http://127.0.0.1:9/v1", "apiKey": "sk-x"},
                {"id": "local", "model": "llama3", "timeout": 5, "maxTokens": 512, "maxRetries": 0},
            ]
        }
    )
    gpt, local = config.models
    assert (gpt.id, gpt.provider, gpt.model, gpt.base_url, gpt.api_key) == (
        "gpt",
        "openai",
        "gpt-4o-mini",
        "http://127.0.0.1:9/v1",
        "sk-x",
    )
    assert (gpt.timeout, gpt.max_tokens, gpt.max_retries) == (60.0, None, 2)
    assert (local.base_url, local.timeout, local.max_tokens, local.max_retries) == (None, 5.0, 512, 0)


def test_model_api_key_is_not_in_its_repr() -> None:
    config = parse_config({"models": [{"id": "gpt", "model": "m", "apiKey": "sk-very-secret"}]})
    assert "sk-very-secret" not in repr(config)


def test_every_model_problem_is_reported_with_its_path() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "models": [
                    {"id": "a", "provider": "anthropic", "model": "m", "baseUrl": "ftp://x", "maxTokens": 0},
                    {"model": "m", "colour": "red"},
                    {"id": "a", "model": "m"},
                ]
            }
        )
    problems = caught.value.problems
    assert any(p.startswith("models[0].provider:") for p in problems)
    assert any(p.startswith("models[0].baseUrl:") for p in problems)
    assert any(p.startswith("models[0].maxTokens:") for p in problems)
    assert "models[1].id: is required" in problems
    assert any(p.startswith("models[1].colour: unknown key") for p in problems)
    assert any(p.startswith("models[2]: duplicate 'a'") for p in problems)


def test_identity_roles_make_an_admin() -> None:
    config = parse_config({"identities": [{"id": "root", "roles": ["admin"]}, {"id": "user"}]})
    root, user = config.identities
    assert root.roles == ("admin",) and root.is_admin
    assert user.roles == () and not user.is_admin


def test_unknown_role_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"identities": [{"id": "root", "roles": ["admn"]}]})
    assert caught.value.problems == ["identities[0].roles[0]: unknown role 'admn' (known: admin)"]


@pytest.mark.parametrize("name", ["agents", "tasks"])
def test_upstream_may_not_take_a_reserved_namespace(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"upstreams": [{"name": name, "url": "http://127.0.0.1:9/mcp"}]})
    assert any(p.startswith("upstreams[0].name:") and "reserved" in p for p in caught.value.problems)


def test_declared_agents_are_checked_like_api_bodies_with_config_paths() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "models": [{"id": "m", "model": "x"}],
                "agents": [
                    {
                        "name": "a",
                        "instruction": "i",
                        "llmModelId": "nope",
                        "maxTurns": 0,
                        "mcpServers": [{"upstream": "u", "allowedToolIds": ["t"]}],
                    },
                    {"name": "b", "instruction": "i", "llmModelId": "m"},
                    {"id": "other", "name": "b", "instruction": "i", "llmModelId": "m"},
                ],
            }
        )
    assert caught.value.problems == [
        "agents[0].llmModelId: unknown model 'nope' (known: m)",
        "agents[0].mcpServers[0].upstream: unknown upstream 'u'",
        "agents[0].maxTurns: must be an integer from 1 to 500, or null, got 0",
        "agents[2].name: 'b' is already the name of agents[1]",
    ]


def test_declared_agent_id_defaults_to_its_name() -> None:
    config = parse_config(
        {"models": [{"id": "m", "model": "x"}], "agents": [{"name": "helper", "instruction": "i", "llmModelId": "m"}]}
    )
    (agent,) = config.agents
    assert (agent.id, agent.fields.name, agent.spec.llm_model_id) == ("helper", "helper", "m")
