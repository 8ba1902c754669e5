"""The ``auth:`` section of an HTTP upstream: how the gateway proves itself to that upstream.

The caller's own credential is never passed through. The gateway presents either its own credential (``static``
headers, or an OAuth ``clientCredentials`` token) or one made for the caller (``tokenExchange``: RFC 8693 with the
caller's validated access token as subject; ``perIdentity``: a personal secret kept by reference). Secrets are held
in fields left out of ``repr`` so a config dump or a traceback cannot show them; ``perIdentity`` holds only
references (``env:NAME``, ``file:/path``), read when a call needs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcp_gateway.config import _Reader

SECRET_PLACEHOLDER = "{secret}"


@dataclass(frozen=True)
class OAuthClient:
    """The gateway as an OAuth client of a token endpoint (``client_secret_basic``), asking for one upstream."""

    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    resource: str | None = None
    audience: str | None = None
    scope: str | None = None
    timeout: float = 10.0


@dataclass(frozen=True)
class ClientCredentials:
    """OAuth 2.1 client credentials: one token for the whole upstream, shared by every caller."""

    client: OAuthClient


@dataclass(frozen=True)
class TokenExchange:
    """RFC 8693: per caller, the caller's access token exchanged for one meant for this upstream."""

    client: OAuthClient


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives: ``env`` (an environment variable's name) or ``file`` (a path); never the secret."""

    kind: str
    location: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.location}"


@dataclass(frozen=True)
class PerIdentity:
    """A header whose value is made per identity from a secret reference (personal access tokens)."""

    header: str
    format: str
    secrets: Mapping[str, SecretRef] = field(default_factory=dict)


UpstreamAuth = ClientCredentials | TokenExchange | PerIdentity
"""``static`` is not here: its headers join the transport's ``headers`` at config load."""

_MODES = ("static", "clientCredentials", "tokenExchange", "perIdentity")
_CLIENT_KEYS = {"tokenUrl", "clientId", "clientSecret", "resource", "audience", "scope", "timeout"}


def parse_upstream_auth(r: _Reader, data: dict[str, Any], path: str) -> tuple[dict[str, str], UpstreamAuth | None]:
    """The section's static headers (for ``static``) and its dynamic mode (the others); exactly one mode is set."""
    modes = [mode for mode in _MODES if mode in data]
    r.unknown_keys(data, set(_MODES), path)
    if len(modes) != 1:
        r.fail(path, f"must set exactly one of {', '.join(_MODES)}")
        return {}, None
    mode = modes[0]
    section = r.mapping(data[mode], f"{path}.{mode}")
    mode_path = f"{path}.{mode}"
    if mode == "static":
        r.unknown_keys(section, {"headers"}, mode_path)
        return r.string_map(section, "headers", mode_path), None
    if mode == "perIdentity":
        return {}, _parse_per_identity(r, section, mode_path)
    client = _parse_client(r, section, mode_path)
    if client is None:
        return {}, None
    return {}, ClientCredentials(client) if mode == "clientCredentials" else TokenExchange(client)


def _parse_client(r: _Reader, data: dict[str, Any], path: str) -> OAuthClient | None:
    r.unknown_keys(data, _CLIENT_KEYS, path)
    token_url = r.string(data, "tokenUrl", path)
    if token_url is not None and not token_url.startswith(("http://", "https://")):
        r.fail(f"{path}.tokenUrl", "must be an absolute http(s) URL")
    client_id = r.string(data, "clientId", path)
    client_secret = r.string(data, "clientSecret", path)
    if token_url is None or client_id is None or client_secret is None:
        return None
    return OAuthClient(
        token_url=token_url,
        client_id=client_id,
        client_secret=client_secret,
        resource=r.optional_string(data, "resource", path),
        audience=r.optional_string(data, "audience", path),
        scope=r.optional_string(data, "scope", path),
        timeout=r.number(data, "timeout", path, 10.0, minimum=0.001),
    )


def _parse_per_identity(r: _Reader, data: dict[str, Any], path: str) -> PerIdentity | None:
    r.unknown_keys(data, {"header", "format", "secrets"}, path)
    header = r.string(data, "header", path, default="Authorization") or "Authorization"
    text_format = r.string(data, "format", path, default="Bearer {secret}") or ""
    if SECRET_PLACEHOLDER not in text_format:
        r.fail(f"{path}.format", f"must contain {SECRET_PLACEHOLDER}")
    secrets: dict[str, SecretRef] = {}
    for identity, ref in r.string_map(data, "secrets", path).items():
        kind, _, location = ref.partition(":")
        if kind not in ("env", "file") or not location:
            r.fail(f"{path}.secrets.{identity}", "must be a reference: env:VARIABLE_NAME or file:/path/to/secret")
            continue
        secrets[identity] = SecretRef(kind, location)
    if not secrets:
        r.fail(f"{path}.secrets", "must map at least one identity id to a secret reference")
    return PerIdentity(header=header.lower(), format=text_format, secrets=secrets)
