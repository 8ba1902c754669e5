"""The ``oauth`` config section: how it binds the token validator, and every problem reported with its path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mcp_gateway.config import load_config, parse_config
from mcp_gateway.errors import ConfigError
from mcp_gateway.identity.oauth_metadata import resource_metadata_url


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


def test_oauth_example_config_loads() -> None:
    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "oauth-example.yaml", env={})
    assert config.oauth is not None
    assert config.oauth.token.audience == config.oauth.resource == "https://gw.example/mcp"
    assert resource_metadata_url(config.oauth.resource) == "https://gw.example/.well-known/oauth-protected-resource/mcp"
