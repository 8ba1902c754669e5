"""The gateway as an OAuth 2.1 resource server: what it publishes and how token claims become an identity.

Published: the Protected Resource Metadata document (RFC 9728) that OAuth-capable MCP clients discover from the
``resource_metadata`` parameter of a 401's challenge, and that challenge's parameters. Both come from config only.
Mapped: a token whose subject is not a configured identity becomes one on first sight through the first matching
``identityRules`` entry; a configured identity always wins over the rules, so they can never widen it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from mcp_gateway.config import Identity, IdentityRule, OAuthConfig

METADATA_PATH = "/.well-known/oauth-protected-resource"


def resource_metadata_url(resource: str) -> str:
    """RFC 9728 section 3.1: the well-known path goes between the resource's host and its path."""
    parts = urlsplit(resource)
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{METADATA_PATH}{path}"


def protected_resource_metadata(config: OAuthConfig) -> dict[str, Any]:
    document: dict[str, Any] = {
        "resource": config.resource,
        "authorization_servers": list(config.authorization_servers),
        "bearer_methods_supported": ["header"],
        "resource_name": "mcp-gateway",
    }
    if config.scopes_supported:
        document["scopes_supported"] = list(config.scopes_supported)
    return document


def _claim_matches(value: Any, expected: str) -> bool:
    if isinstance(value, list):
        return expected in value
    return isinstance(value, str | int | float) and not isinstance(value, bool) and str(value) == expected


def first_sight_identity(rules: tuple[IdentityRule, ...], subject: str, claims: dict[str, Any]) -> Identity | None:
    """The identity the first matching rule creates for ``subject``, or None when no rule matches."""
    for rule in rules:
        if all(_claim_matches(claims.get(name), expected) for name, expected in rule.claims.items()):
            return Identity(
                id=subject,
                name=subject,
                labels=rule.labels,
                allowed_tools=rule.allowed_tools,
                require_task=rule.require_task,
            )
    return None
