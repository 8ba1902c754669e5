"""Gateway configuration: YAML in, frozen dataclasses out.

Config is parsed once at start-up; nothing on the request path ever looks at YAML again. Every problem is
collected with its path into the file (``identities[0].credentials[1].sha256``) so ``mcp-gateway check`` can
report all of them in one run instead of one per edit-restart cycle.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import yaml

from mcp_gateway.agents.validation import DeclaredAgent, DefinitionRules, parse_declared
from mcp_gateway.errors import ConfigError, ValidationFailed
from mcp_gateway.upstreams.auth.config import UpstreamAuth, parse_upstream_auth

DEFAULT_SEPARATOR = "__"
ADMIN_ROLE = "admin"
# Namespaces of the gateway's own tools: Task Agents (agents__{name}) and their task tools (tasks__{id}).
RESERVED_UPSTREAM_NAMES = frozenset({"agents", "tasks"})
DEFAULT_SESSION_TTL = 3600
MAX_SESSION_TTL = 86400


@dataclass(frozen=True)
class StdioTransport:
    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None


@dataclass(frozen=True)
class HttpTransport:
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UpstreamConfig:
    name: str
    transport: StdioTransport | HttpTransport
    prefix: bool = True
    # "auto" probes server/discover and falls back to initialize; "legacy" forces the handshake.
    protocol: str = "auto"
    call_timeout: float = 60.0
    connect_timeout: float = 30.0
    # What a changed tool definition does (pins.py): "off", "warn" (log, audit, metric) or "enforce" (withhold).
    pinning: Literal["off", "warn", "enforce"] = "warn"
    # How the gateway authenticates to an HTTP upstream beyond its static headers (upstream_auth_config.py).
    auth: UpstreamAuth | None = None
    # Exposes its resource URIs as "{resource_prefix}+{uri}" (upstreams/resource_uris.py); None: as they are.
    resource_prefix: str | None = None


@dataclass(frozen=True)
class ApiKey:
    sha256: str
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Identity:
    id: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    api_keys: tuple[ApiKey, ...] = ()
    # None means "every tool"; an empty tuple means "no tool".
    allowed_tools: tuple[str, ...] | None = None
    allowed_resources: tuple[str, ...] | None = None
    allowed_prompts: tuple[str, ...] | None = None
    require_task: bool = False
    # What the identity may do beyond calling tools: "admin" may manage agents and read every agent run.
    roles: tuple[str, ...] = ()

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles

    # The validated OAuth/JWT access token the request at hand presented (None for API keys and in config): the
    # subject token of a ``tokenExchange`` upstream. Never forwarded as is, never logged.
    access_token: str | None = field(default=None, repr=False, compare=False)
    # Granted by the OAuth/JWT access token of the request at hand (its `scope` claim); always empty in config and
    # for API keys. The authenticator hands out a copy carrying them, so CEL can read `identity.scopes`.
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True)
class JwtConfig:
    algorithms: tuple[str, ...]
    secret: str | None = None
    public_key: str | None = None
    jwks_url: str | None = None
    issuer: str | None = None
    audience: str | None = None
    leeway: float = 0.0
    identity_claim: str = "sub"
    # After a JWKS fetch, how long a token naming an unknown kid waits before it may trigger another fetch: picks up
    # a rotated key without letting a stream of made-up kids hammer the issuer.
    jwks_refetch_cooldown: float = 30.0


@dataclass(frozen=True)
class IdentityRule:
    """How a token whose subject is not a configured identity becomes one on first sight.

    A rule matches when every claim it names equals the given value (or, for a list claim, contains it).
    """

    claims: Mapping[str, str]
    labels: Mapping[str, str] = field(default_factory=dict)
    allowed_tools: tuple[str, ...] | None = None
    require_task: bool = False


@dataclass(frozen=True)
class IntrospectionConfig:
    """RFC 7662 token introspection for opaque access tokens, as the client ``client_id`` of the endpoint."""

    url: str
    client_id: str
    client_secret: str = field(repr=False)
    # An active answer is reused for at most this long, and never past the token's own expiry: also how long a
    # token revoked at the authorization server may still be accepted.
    cache_seconds: float = 60.0
    timeout: float = 10.0


@dataclass(frozen=True)
class OAuthConfig:
    """The gateway as an OAuth 2.1 resource server (MCP authorization spec, RFC 9728, RFC 8707).

    ``token`` is the JWT validator's config with the audience bound to ``resource`` and the issuer required.
    """

    resource: str
    authorization_servers: tuple[str, ...]
    token: JwtConfig
    scopes_supported: tuple[str, ...] = ()
    required_scopes: tuple[str, ...] = ()
    identity_rules: tuple[IdentityRule, ...] = ()
    introspection: IntrospectionConfig | None = None


@dataclass(frozen=True)
class StartableBy:
    """Who may open sessions of a task, whatever its lists: a listed id, or every label of the selector."""

    identities: frozenset[str] = frozenset()
    labels: Mapping[str, str] = field(default_factory=dict)

    def admits(self, identity: Identity) -> bool:
        if identity.id in self.identities:
            return True
        return bool(self.labels) and all(identity.labels.get(k) == v for k, v in self.labels.items())


@dataclass(frozen=True)
class TaskBudgets:
    """How many calls one session of a task may make: per exposed tool name, and in all (None: no cap)."""

    tools: Mapping[str, int] = field(default_factory=dict)
    total_calls: int | None = None


@dataclass(frozen=True)
class TaskDefinition:
    id: str
    name: str
    context_schema: Mapping[str, Any]
    labels: Mapping[str, str] = field(default_factory=dict)
    allowed_tools: tuple[str, ...] | None = None
    allowed_resources: tuple[str, ...] | None = None
    allowed_prompts: tuple[str, ...] | None = None
    startable_by: StartableBy | None = None
    budgets: TaskBudgets | None = None
    # Used when a Task Agent runs the task as a tool: added to the sub-conversation's system prompt, and the JSON
    # Schema the sub-conversation's answer must meet (else the agent's model gets an error result).
    instruction: str | None = None
    output_schema: Mapping[str, Any] | bool | None = None


@dataclass(frozen=True)
class ModelConfig:
    """An OpenAI-compatible chat-completions endpoint that agents may use, by ``id``."""

    id: str
    model: str
    provider: Literal["openai"] = "openai"
    # None: the openai client's own default endpoint (api.openai.com).
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 60.0
    max_tokens: int | None = None
    # Retries the openai client makes itself (connection errors, 408/409/429/5xx) before the fallback model is tried.
    max_retries: int = 2


@dataclass(frozen=True)
class PolicyConfig:
    name: str
    effect: Literal["allow", "deny"]
    condition: str
    tools: tuple[str, ...] | None = None
    message: str | None = None
    # Globs over resource URIs / exposed prompt names; None means the policy does not judge that kind at all.
    resources: tuple[str, ...] | None = None
    prompts: tuple[str, ...] | None = None


@dataclass(frozen=True)
class AuditConfig:
    # Argument keys matching any of these globs (case-insensitive) are written as "[REDACTED]".
    redact_keys: tuple[str, ...] = ("*password*", "*secret*", "*token*", "*api_key*", "*apikey*", "authorization")
    stream_key: str = "audit"
    stream_maxlen: int = 100_000
    # A string argument longer than this (UTF-8 bytes) is recorded as its length and SHA-256 (audit_args.py).
    max_arg_bytes: int = 1024
    # One record's hard cap in bytes; over it, the arguments are recorded as their size only.
    max_record_bytes: int = 16 * 1024
    # The store stream's cap in bytes, beside stream_maxlen's in entries (exact in memory, approximate in Redis).
    stream_max_bytes: int = 256 * 1024 * 1024
    # Records kept in memory while the store fails, written to the stream in order once it is back.
    spool_size: int = 10_000


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 4 * 1024 * 1024
    # How long a client may take to send its whole request body, in seconds.
    body_read_timeout: float = 30.0
    # How deeply a request's JSON may nest, and a tool's or prompt's arguments within it.
    max_json_depth: int = 128
    max_argument_depth: int = 64
    # Origins allowed on /mcp and /v1 in addition to requests without an Origin header (non-browser clients).
    allowed_origins: tuple[str, ...] = ()
    tool_separator: str = DEFAULT_SEPARATOR
    # How long an idle legacy Mcp-Session-Id lives in the store.
    mcp_session_ttl: int = 3600
    # On SIGTERM, how long calls in flight may take to finish before they are cancelled (idle streams end at once).
    shutdown_grace: int = 25
    # While tool definitions await approval, how often (seconds) to check the pins again: how soon an approval made
    # on another replica takes effect here.
    pin_recheck: float = 10.0
    # Reload the config when its file changes (its modification time is polled), as on SIGHUP.
    watch_config: bool = False


@dataclass(frozen=True)
class RateLimit:
    """``rate`` requests per ``per`` seconds on average, up to ``burst`` of them at once (GCRA)."""

    rate: float
    per: float
    burst: int

    @property
    def interval_us(self) -> int:
        """The average spacing of requests the limit admits, in microseconds (at least one)."""
        return max(1, round(self.per * 1_000_000 / self.rate))


@dataclass(frozen=True)
class ToolRateLimit:
    """A rate limit for each identity on each tool its ``tools`` globs match (every tool has its own bucket)."""

    tools: tuple[str, ...]
    limit: RateLimit


@dataclass(frozen=True)
class LimitsConfig:
    per_identity: RateLimit | None = None
    per_identity_tool: tuple[ToolRateLimit, ...] = ()
    per_task_session: RateLimit | None = None
    per_upstream: Mapping[str, RateLimit] = field(default_factory=dict)


MAX_JSON_DEPTH = 512
"""Deeper values would bring the parser, and every later walk of the value, near Python's recursion limit."""


@dataclass(frozen=True)
class ConsoleConfig:
    # Signs the console's session cookie; the console is off while it is unset.
    secret: str | None = None
    session_seconds: int = 8 * 3600


@dataclass(frozen=True)
class MetricsConfig:
    # Scrapers of /metrics must send it as a bearer token; /metrics is open while it is unset.
    bearer_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class GatewayConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    store_url: str = "memory://"
    store_prefix: str = "mcpgw:"
    upstreams: tuple[UpstreamConfig, ...] = ()
    identities: tuple[Identity, ...] = ()
    jwt: JwtConfig | None = None
    oauth: OAuthConfig | None = None
    tasks: tuple[TaskDefinition, ...] = ()
    policies: tuple[PolicyConfig, ...] = ()
    audit: AuditConfig = field(default_factory=AuditConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    models: tuple[ModelConfig, ...] = ()
    agents: tuple[DeclaredAgent, ...] = ()


_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_RESOURCE_PREFIX_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9.-]*$")
_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
T = TypeVar("T")


class _Reader:
    """Walks the parsed YAML and records every problem instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def mapping(self, value: Any, path: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(path, f"must be a mapping, got {type(value).__name__}")
            return {}
        return cast(dict[str, Any], value)

    def sequence(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(path, f"must be a list, got {type(value).__name__}")
            return []
        return value

    def string(self, data: Mapping[str, Any], key: str, path: str, default: str | None = None) -> str | None:
        value = data.get(key, default)
        if value is None:
            if default is None:
                self.fail(f"{path}.{key}", "is required")
            return default
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.fail(f"{path}.{key}", f"must be a string, got {type(value).__name__}")
            return default
        return str(value)

    def optional_string(self, data: Mapping[str, Any], key: str, path: str) -> str | None:
        if data.get(key) is None:
            return None
        return self.string(data, key, path)

    def number(self, data: Mapping[str, Any], key: str, path: str, default: float, minimum: float = 0) -> float:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(f"{path}.{key}", f"must be a number, got {type(value).__name__}")
            return default
        if value < minimum:
            self.fail(f"{path}.{key}", f"must be at least {minimum}")
            return default
        return float(value)

    def integer(self, data: Mapping[str, Any], key: str, path: str, default: int, minimum: int = 0) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"{path}.{key}", f"must be an integer, got {type(value).__name__}")
            return default
        if value < minimum:
            self.fail(f"{path}.{key}", f"must be at least {minimum}")
            return default
        return value

    def boolean(self, data: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            self.fail(f"{path}.{key}", f"must be true or false, got {value!r}")
            return default
        return value

    def string_map(self, data: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
        raw = self.mapping(data.get(key), f"{path}.{key}")
        result: dict[str, str] = {}
        for k, v in raw.items():
            if isinstance(v, bool) or not isinstance(v, str | int | float):
                self.fail(f"{path}.{key}.{k}", "must be a string")
                continue
            result[str(k)] = str(v)
        return result

    def string_list(self, data: Mapping[str, Any], key: str, path: str) -> tuple[str, ...] | None:
        """A list of strings where absent/null stays None: for allowedTools, None and [] mean different things."""
        if data.get(key) is None:
            return None
        items = self.sequence(data[key], f"{path}.{key}")
        result: list[str] = []
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item:
                self.fail(f"{path}.{key}[{i}]", "must be a non-empty string")
                continue
            result.append(item)
        return tuple(result)

    def unknown_keys(self, data: Mapping[str, Any], allowed: set[str], path: str) -> None:
        for key in data:
            if key not in allowed:
                self.fail(f"{path}.{key}", f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def items(
        self, value: Any, path: str, parse: Callable[[dict[str, Any], str], T | None], unique: Callable[[T], str]
    ) -> tuple[T, ...]:
        """Parse a list of mappings, rejecting duplicate ids so a later entry never silently shadows an earlier."""
        result: list[T] = []
        seen: dict[str, int] = {}
        for i, raw in enumerate(self.sequence(value, path)):
            item_path = f"{path}[{i}]"
            parsed = parse(self.mapping(raw, item_path), item_path)
            if parsed is None:
                continue
            key = unique(parsed)
            if key in seen:
                self.fail(item_path, f"duplicate {key!r} (first defined at {path}[{seen[key]}])")
                continue
            seen[key] = i
            result.append(parsed)
        return tuple(result)


def interpolate_env(text: str, env: Mapping[str, str], problems: list[str]) -> str:
    """Replace ``${NAME}`` and ``${NAME:-default}``; an unset variable without default is a problem."""

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        line = text.count("\n", 0, match.start()) + 1
        problems.append(f"line {line}: environment variable {name} is not set")
        return ""

    return _ENV_PATTERN.sub(replace, text)


def _parse_upstream(r: _Reader, data: dict[str, Any], path: str) -> UpstreamConfig | None:
    r.unknown_keys(
        data,
        {
            "name",
            "transport",
            "command",
            "args",
            "env",
            "cwd",
            "url",
            "headers",
            "prefix",
            "protocol",
            "timeout",
            "connectTimeout",
            "pinning",
            "auth",
            "resourcePrefix",
        },
        path,
    )
    name = r.string(data, "name", path)
    if name is None:
        return None
    if not _NAME_PATTERN.match(name):
        r.fail(f"{path}.name", f"{name!r} must match {_NAME_PATTERN.pattern}")
    if name in RESERVED_UPSTREAM_NAMES:
        r.fail(f"{path}.name", f"{name!r} is reserved for the gateway's own tools (agents__{{name}}, tasks__{{id}})")
    kind = r.string(data, "transport", path, default="stdio" if "command" in data else "streamable-http")
    transport: StdioTransport | HttpTransport
    auth_headers: dict[str, str] = {}
    auth: UpstreamAuth | None = None
    if data.get("auth") is not None:
        if kind == "stdio":
            # One process serves every caller, so nothing per call can reach it; its own secrets go in `env`.
            r.fail(f"{path}.auth", "applies to streamable-http upstreams; give a stdio upstream its secrets in env")
        else:
            auth_headers, auth = parse_upstream_auth(r, r.mapping(data["auth"], f"{path}.auth"), f"{path}.auth")
    if kind == "stdio":
        command = r.string(data, "command", path)
        args = r.string_list(data, "args", path) or ()
        transport = StdioTransport(
            command=command or "",
            args=args,
            env=r.string_map(data, "env", path),
            cwd=r.optional_string(data, "cwd", path),
        )
    elif kind == "streamable-http":
        url = r.string(data, "url", path) or ""
        if url and not url.startswith(("http://", "https://")):
            r.fail(f"{path}.url", "must be an http:// or https:// URL")
        headers = r.string_map(data, "headers", path)
        if both := {name.lower() for name in headers} & {name.lower() for name in auth_headers}:
            r.fail(f"{path}.auth.static.headers", f"{', '.join(sorted(both))} also set in headers; set it once")
        transport = HttpTransport(url=url, headers={**headers, **auth_headers})
    else:
        r.fail(f"{path}.transport", f"must be 'stdio' or 'streamable-http', got {kind!r}")
        return None
    protocol = r.string(data, "protocol", path, default="auto") or "auto"
    if protocol not in ("auto", "legacy", "2026-07-28"):
        r.fail(f"{path}.protocol", f"must be 'auto', 'legacy' or '2026-07-28', got {protocol!r}")
    pinning = r.string(data, "pinning", path, default="warn") or "warn"
    if pinning not in ("off", "warn", "enforce"):
        r.fail(f"{path}.pinning", f"must be 'off', 'warn' or 'enforce', got {pinning!r}")
    return UpstreamConfig(
        name=name,
        transport=transport,
        prefix=r.boolean(data, "prefix", path, True),
        protocol=protocol,
        call_timeout=r.number(data, "timeout", path, 60.0, minimum=0.001),
        connect_timeout=r.number(data, "connectTimeout", path, 30.0, minimum=0.001),
        pinning=cast(Literal["off", "warn", "enforce"], pinning),
        auth=auth,
        resource_prefix=_resource_prefix(r, data, path),
    )


def _resource_prefix(r: _Reader, data: dict[str, Any], path: str) -> str | None:
    """A URI scheme's characters, so ``{prefix}+{scheme}://...`` is still a URI; no ``+``, so it splits one way."""
    prefix = r.optional_string(data, "resourcePrefix", path)
    if prefix is not None and not _RESOURCE_PREFIX_PATTERN.match(prefix):
        r.fail(f"{path}.resourcePrefix", f"{prefix!r} must match {_RESOURCE_PREFIX_PATTERN.pattern}")
    return prefix


def _parse_timestamp(r: _Reader, value: Any, path: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            r.fail(path, f"{value!r} is not an ISO 8601 timestamp")
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    r.fail(path, "must be an ISO 8601 timestamp")
    return None


def _parse_credential(r: _Reader, data: dict[str, Any], path: str) -> ApiKey | None:
    r.unknown_keys(data, {"sha256", "expiresAt"}, path)
    digest = r.string(data, "sha256", path)
    if digest is None:
        return None
    digest = digest.lower()
    if not _SHA256_PATTERN.match(digest):
        r.fail(f"{path}.sha256", "must be 64 hex characters (the SHA-256 of the key; see `mcp-gateway keygen`)")
        return None
    return ApiKey(sha256=digest, expires_at=_parse_timestamp(r, data.get("expiresAt"), f"{path}.expiresAt"))


def _parse_identity(r: _Reader, data: dict[str, Any], path: str) -> Identity | None:
    r.unknown_keys(
        data,
        {
            "id",
            "name",
            "labels",
            "credentials",
            "allowedTools",
            "allowedResources",
            "allowedPrompts",
            "requireTask",
            "roles",
        },
        path,
    )
    identity_id = r.string(data, "id", path)
    if identity_id is None:
        return None
    keys = r.items(
        data.get("credentials"), f"{path}.credentials", lambda d, p: _parse_credential(r, d, p), lambda k: k.sha256
    )
    return Identity(
        id=identity_id,
        name=r.string(data, "name", path, default=identity_id) or identity_id,
        labels=r.string_map(data, "labels", path),
        api_keys=keys,
        allowed_tools=r.string_list(data, "allowedTools", path),
        allowed_resources=r.string_list(data, "allowedResources", path),
        allowed_prompts=r.string_list(data, "allowedPrompts", path),
        require_task=r.boolean(data, "requireTask", path, False),
        roles=_roles(r, data, path),
    )


def _roles(r: _Reader, data: dict[str, Any], path: str) -> tuple[str, ...]:
    """Unknown roles are an error: a misspelt "admin" would otherwise silently grant nothing."""
    roles = r.string_list(data, "roles", path) or ()
    for i, role in enumerate(roles):
        if role != ADMIN_ROLE:
            r.fail(f"{path}.roles[{i}]", f"unknown role {role!r} (known: {ADMIN_ROLE})")
    return roles


def _parse_jwt(r: _Reader, data: dict[str, Any], path: str) -> JwtConfig | None:
    r.unknown_keys(
        data,
        {
            "algorithms",
            "secret",
            "publicKey",
            "jwksUrl",
            "jwksRefetchCooldown",
            "issuer",
            "audience",
            "leeway",
            "identityClaim",
        },
        path,
    )
    secret = r.optional_string(data, "secret", path)
    public_key = r.optional_string(data, "publicKey", path)
    jwks_url = r.optional_string(data, "jwksUrl", path)
    sources = [s for s in (secret, public_key, jwks_url) if s]
    if len(sources) != 1:
        r.fail(path, "set exactly one of secret, publicKey, jwksUrl")
    default_algs = ["HS256"] if secret else ["RS256", "ES256"]
    algorithms = r.string_list(data, "algorithms", path) or tuple(default_algs)
    for i, alg in enumerate(algorithms):
        if alg.startswith("HS") != bool(secret) or alg not in _JWT_ALGORITHMS:
            r.fail(f"{path}.algorithms[{i}]", f"{alg!r} does not fit the key source (HS* needs secret)")
    return JwtConfig(
        algorithms=algorithms,
        secret=secret,
        public_key=public_key,
        jwks_url=jwks_url,
        issuer=r.optional_string(data, "issuer", path),
        audience=r.optional_string(data, "audience", path),
        leeway=r.number(data, "leeway", path, 0.0),
        identity_claim=r.string(data, "identityClaim", path, default="sub") or "sub",
        jwks_refetch_cooldown=r.number(data, "jwksRefetchCooldown", path, 30.0),
    )


_OAUTH_TOKEN_KEYS = ("publicKey", "jwksUrl", "jwksRefetchCooldown", "algorithms", "leeway", "identityClaim")


def _parse_oauth(r: _Reader, data: dict[str, Any], path: str) -> OAuthConfig | None:
    r.unknown_keys(
        data,
        {
            "resource",
            "authorizationServers",
            "issuer",
            "scopesSupported",
            "requiredScopes",
            "identityRules",
            "introspection",
            *_OAUTH_TOKEN_KEYS,
        },
        path,
    )
    resource = r.string(data, "resource", path)
    if resource is not None and (not _is_http_url(resource) or "#" in resource):
        r.fail(f"{path}.resource", "must be an absolute http(s) URL without a fragment (the gateway's /mcp URL)")
    servers = r.string_list(data, "authorizationServers", path) or ()
    if not servers:
        r.fail(f"{path}.authorizationServers", "must list at least one authorization server's issuer URL")
    for i, server in enumerate(servers):
        if not _is_http_url(server):
            r.fail(f"{path}.authorizationServers[{i}]", "must be an absolute http(s) URL")
    issuer = r.optional_string(data, "issuer", path)
    if issuer is None and len(servers) > 1:
        r.fail(f"{path}.issuer", "is required when several authorization servers are listed")
    issuer = issuer or (servers[0] if servers else None)
    scopes_supported = r.string_list(data, "scopesSupported", path) or ()
    required = r.string_list(data, "requiredScopes", path) or ()
    if scopes_supported and (missing := [s for s in required if s not in scopes_supported]):
        r.fail(f"{path}.requiredScopes", f"{', '.join(missing)} not in scopesSupported")
    token_section = {key: data[key] for key in _OAUTH_TOKEN_KEYS if key in data}
    token = _parse_jwt(r, {**token_section, "issuer": issuer, "audience": resource}, path)
    rules = tuple(
        rule
        for i, raw in enumerate(r.sequence(data.get("identityRules", []), f"{path}.identityRules"))
        if (rule := _parse_identity_rule(r, r.mapping(raw, f"{path}.identityRules[{i}]"), f"{path}.identityRules[{i}]"))
    )
    introspection_raw = data.get("introspection")
    introspection = (
        _parse_introspection(r, r.mapping(introspection_raw, f"{path}.introspection"), f"{path}.introspection")
        if introspection_raw is not None
        else None
    )
    if resource is None or token is None:
        return None
    return OAuthConfig(
        resource=resource,
        authorization_servers=servers,
        token=token,
        scopes_supported=scopes_supported,
        required_scopes=required,
        identity_rules=rules,
        introspection=introspection,
    )


def _parse_introspection(r: _Reader, data: dict[str, Any], path: str) -> IntrospectionConfig | None:
    r.unknown_keys(data, {"url", "clientId", "clientSecret", "cacheSeconds", "timeout"}, path)
    url = r.string(data, "url", path)
    if url is not None and not _is_http_url(url):
        r.fail(f"{path}.url", "must be an absolute http(s) URL")
    client_id = r.string(data, "clientId", path)
    client_secret = r.string(data, "clientSecret", path)
    if url is None or client_id is None or client_secret is None:
        return None
    return IntrospectionConfig(
        url=url,
        client_id=client_id,
        client_secret=client_secret,
        cache_seconds=r.number(data, "cacheSeconds", path, 60.0),
        timeout=r.number(data, "timeout", path, 10.0, minimum=0.001),
    )


def _parse_identity_rule(r: _Reader, data: dict[str, Any], path: str) -> IdentityRule | None:
    r.unknown_keys(data, {"claims", "labels", "allowedTools", "requireTask"}, path)
    claims = r.string_map(data, "claims", path)
    if not claims:
        r.fail(f"{path}.claims", "must name at least one claim to match")
        return None
    return IdentityRule(
        claims=claims,
        labels=r.string_map(data, "labels", path),
        allowed_tools=r.string_list(data, "allowedTools", path),
        require_task=r.boolean(data, "requireTask", path, False),
    )


def _is_http_url(value: str) -> bool:
    return value.startswith(("http://", "https://")) and len(value.split("://", 1)[1]) > 0


_JWT_ALGORITHMS = {
    "HS256",
    "HS384",
    "HS512",
    "RS256",
    "RS384",
    "RS512",
    "ES256",
    "ES384",
    "ES512",
    "PS256",
    "PS384",
    "PS512",
    "EdDSA",
}


def _parse_task(r: _Reader, data: dict[str, Any], path: str, identity_ids: frozenset[str]) -> TaskDefinition | None:
    r.unknown_keys(
        data,
        {
            "id",
            "name",
            "labels",
            "contextSchema",
            "allowedTools",
            "allowedResources",
            "allowedPrompts",
            "startableBy",
            "budgets",
            "instruction",
            "outputSchema",
        },
        path,
    )
    name = r.string(data, "name", path)
    if name is None:
        return None
    schema = data.get("contextSchema", {"type": "object"})
    if not isinstance(schema, dict | bool):
        r.fail(f"{path}.contextSchema", "must be a JSON Schema object")
        schema = {}
    elif problem := _schema_problem(schema):
        r.fail(f"{path}.contextSchema", f"is not a valid JSON Schema: {problem}")
    output_schema = data.get("outputSchema")
    if output_schema is not None and not isinstance(output_schema, dict | bool):
        r.fail(f"{path}.outputSchema", "must be a JSON Schema object")
        output_schema = None
    elif output_schema is not None and (problem := _schema_problem(output_schema)):
        r.fail(f"{path}.outputSchema", f"is not a valid JSON Schema: {problem}")
    return TaskDefinition(
        id=r.string(data, "id", path, default=name) or name,
        name=name,
        context_schema=cast(dict[str, Any], schema),
        labels=r.string_map(data, "labels", path),
        allowed_tools=r.string_list(data, "allowedTools", path),
        allowed_resources=r.string_list(data, "allowedResources", path),
        allowed_prompts=r.string_list(data, "allowedPrompts", path),
        startable_by=_parse_startable_by(r, data.get("startableBy"), f"{path}.startableBy", identity_ids),
        budgets=_parse_budgets(r, data.get("budgets"), f"{path}.budgets"),
        instruction=r.optional_string(data, "instruction", path),
        output_schema=cast("dict[str, Any] | bool | None", output_schema),
    )


def _parse_budgets(r: _Reader, value: Any, path: str) -> TaskBudgets | None:
    if value is None:
        return None
    data = r.mapping(value, path)
    r.unknown_keys(data, {"tools", "totalCalls"}, path)
    tools: dict[str, int] = {}
    for name, count in r.mapping(data.get("tools"), f"{path}.tools").items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            r.fail(f"{path}.tools.{name}", f"must be a whole number of calls (0 or more), got {count!r}")
            continue
        tools[str(name)] = count
    total = r.integer(data, "totalCalls", path, 0) if data.get("totalCalls") is not None else None
    return TaskBudgets(tools=tools, total_calls=total)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def _parse_rate_limit(r: _Reader, value: Any, path: str, extra: frozenset[str] = frozenset()) -> RateLimit | None:
    """``{rate, per, burst?}``: ``per`` in seconds, or a duration such as ``"60s"``, ``"1m"``, ``"500ms"``;
    ``burst`` defaults to ``rate`` (a whole period's worth at once)."""
    data = r.mapping(value, path)
    r.unknown_keys(data, {"rate", "per", "burst"} | extra, path)
    if "rate" not in data:
        r.fail(f"{path}.rate", "is required")
        return None
    rate = r.number(data, "rate", path, 0)
    per_raw = data.get("per", 1)
    per: float | None = None
    if isinstance(per_raw, int | float) and not isinstance(per_raw, bool):
        per = float(per_raw)
    elif isinstance(per_raw, str) and (match := _DURATION.match(per_raw)):
        per = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if per is None or per <= 0:
        r.fail(f"{path}.per", f"must be a positive number of seconds or a duration like '60s', got {per_raw!r}")
        return None
    if rate <= 0:
        r.fail(f"{path}.rate", "must be more than 0")
        return None
    burst = r.integer(data, "burst", path, max(1, math.ceil(rate)), minimum=1)
    return RateLimit(rate=rate, per=per, burst=burst)


def _parse_limits(r: _Reader, data: dict[str, Any], path: str, upstream_names: frozenset[str]) -> LimitsConfig:
    r.unknown_keys(data, {"perIdentity", "perIdentityTool", "perTaskSession", "perUpstream"}, path)
    tool_limits: list[ToolRateLimit] = []
    for i, raw in enumerate(r.sequence(data.get("perIdentityTool"), f"{path}.perIdentityTool")):
        item_path = f"{path}.perIdentityTool[{i}]"
        item = r.mapping(raw, item_path)
        tools = r.string_list(item, "tools", item_path)
        limit = _parse_rate_limit(r, item, item_path, frozenset({"tools"}))
        if not tools:
            r.fail(f"{item_path}.tools", "must name at least one tool name or glob")
        elif limit is not None:
            tool_limits.append(ToolRateLimit(tools, limit))
    per_upstream: dict[str, RateLimit] = {}
    for name, raw in r.mapping(data.get("perUpstream"), f"{path}.perUpstream").items():
        if name not in upstream_names:
            # A misspelt upstream would silently limit nothing.
            r.fail(f"{path}.perUpstream.{name}", "is not a configured upstream")
        elif (limit := _parse_rate_limit(r, raw, f"{path}.perUpstream.{name}")) is not None:
            per_upstream[name] = limit

    def single(key: str) -> RateLimit | None:
        return None if data.get(key) is None else _parse_rate_limit(r, data[key], f"{path}.{key}")

    return LimitsConfig(
        per_identity=single("perIdentity"),
        per_identity_tool=tuple(tool_limits),
        per_task_session=single("perTaskSession"),
        per_upstream=per_upstream,
    )


def parse_task(raw: Any, identity_ids: frozenset[str]) -> TaskDefinition:
    """One task definition outside a config file (a ``/v1/tasks`` body), or ConfigError with every problem, each
    prefixed ``task.`` and the field's path."""
    r = _Reader()
    task = _parse_task(r, r.mapping(raw, "task"), "task", identity_ids)
    if r.problems or task is None:
        raise ConfigError(r.problems or ["task: is not a task definition"])
    return task


def _parse_startable_by(r: _Reader, value: Any, path: str, identity_ids: frozenset[str]) -> StartableBy | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        r.fail(path, "must be a mapping {identities: [...], labels: {...}}")
        return None
    data = cast(dict[str, Any], value)
    r.unknown_keys(data, {"identities", "labels"}, path)
    ids = r.string_list(data, "identities", path) or ()
    for i, identity_id in enumerate(ids):
        if identity_id not in identity_ids:
            # A misspelt id would silently admit nobody.
            r.fail(f"{path}.identities[{i}]", f"unknown identity {identity_id!r}")
    labels = r.string_map(data, "labels", path)
    if "labels" in data and not labels:
        # all() over no labels is true: an empty selector would admit every identity.
        r.fail(f"{path}.labels", "must name at least one label (an empty selector would match every identity)")
    startable = StartableBy(identities=frozenset(ids), labels=labels)
    if not startable.identities and not startable.labels:
        r.fail(path, "must name at least one identity id or label (omit startableBy to use the coverage rule)")
    return startable


def _schema_problem(schema: Any) -> str | None:
    from jsonschema import validators
    from jsonschema.exceptions import SchemaError

    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        return f"{exc.message} (at /{where})" if where else exc.message
    return None


def _parse_model(r: _Reader, data: dict[str, Any], path: str) -> ModelConfig | None:
    r.unknown_keys(data, {"id", "provider", "baseUrl", "apiKey", "model", "timeout", "maxTokens", "maxRetries"}, path)
    model_id = r.string(data, "id", path)
    model = r.string(data, "model", path)
    provider = r.string(data, "provider", path, default="openai")
    if provider != "openai":
        r.fail(f"{path}.provider", f"must be 'openai' (any OpenAI-compatible endpoint), got {provider!r}")
    base_url = r.optional_string(data, "baseUrl", path)
    if base_url and not base_url.startswith(("http://", "https://")):
        r.fail(f"{path}.baseUrl", "must be an http:// or https:// URL")
    max_tokens = data.get("maxTokens")
    if max_tokens is not None:
        max_tokens = r.integer(data, "maxTokens", path, 1, minimum=1)
    if model_id is None or model is None:
        return None
    return ModelConfig(
        id=model_id,
        model=model,
        base_url=base_url,
        api_key=r.optional_string(data, "apiKey", path),
        timeout=r.number(data, "timeout", path, 60.0, minimum=0.001),
        max_tokens=max_tokens,
        max_retries=r.integer(data, "maxRetries", path, 2),
    )


def _parse_policy(r: _Reader, data: dict[str, Any], path: str) -> PolicyConfig | None:
    r.unknown_keys(data, {"name", "effect", "condition", "tools", "resources", "prompts", "message"}, path)
    name = r.string(data, "name", path)
    condition = r.string(data, "condition", path)
    effect = r.string(data, "effect", path, default="allow")
    if effect not in ("allow", "deny"):
        r.fail(f"{path}.effect", f"must be 'allow' or 'deny', got {effect!r}")
        return None
    if name is None or condition is None:
        return None
    return PolicyConfig(
        name=name,
        effect=cast(Literal["allow", "deny"], effect),
        condition=condition,
        tools=r.string_list(data, "tools", path),
        message=r.optional_string(data, "message", path),
        resources=r.string_list(data, "resources", path),
        prompts=r.string_list(data, "prompts", path),
    )


def _parse_server(r: _Reader, data: dict[str, Any], path: str) -> ServerConfig:
    keys = {"host", "port", "maxBodyBytes", "bodyReadTimeout", "maxJsonDepth", "maxArgumentDepth"}
    r.unknown_keys(
        data,
        keys | {"allowedOrigins", "toolSeparator", "mcpSessionTtl", "shutdownGrace", "pinRecheck", "watchConfig"},
        path,
    )
    separator = r.string(data, "toolSeparator", path, default=DEFAULT_SEPARATOR) or DEFAULT_SEPARATOR
    default = ServerConfig()
    max_json_depth = r.integer(data, "maxJsonDepth", path, default.max_json_depth, minimum=2)
    max_argument_depth = r.integer(data, "maxArgumentDepth", path, default.max_argument_depth, minimum=1)
    if max_json_depth > MAX_JSON_DEPTH:
        r.fail(f"{path}.maxJsonDepth", f"must be at most {MAX_JSON_DEPTH}")
    if max_argument_depth > max_json_depth - 2:
        # The arguments sit two levels down (message, params): a larger limit could never be reached.
        r.fail(f"{path}.maxArgumentDepth", f"must be at most maxJsonDepth - 2 ({max_json_depth - 2})")
    return ServerConfig(
        host=r.string(data, "host", path, default="127.0.0.1") or "127.0.0.1",
        port=r.integer(data, "port", path, 8080),
        max_body_bytes=r.integer(data, "maxBodyBytes", path, 4 * 1024 * 1024, minimum=1),
        body_read_timeout=r.number(data, "bodyReadTimeout", path, default.body_read_timeout, minimum=0.001),
        max_json_depth=max_json_depth,
        max_argument_depth=max_argument_depth,
        allowed_origins=r.string_list(data, "allowedOrigins", path) or (),
        tool_separator=separator,
        mcp_session_ttl=r.integer(data, "mcpSessionTtl", path, 3600, minimum=1),
        shutdown_grace=r.integer(data, "shutdownGrace", path, 25),
        pin_recheck=r.number(data, "pinRecheck", path, default.pin_recheck, minimum=0.01),
        watch_config=r.boolean(data, "watchConfig", path, default.watch_config),
    )


def _parse_audit(r: _Reader, data: dict[str, Any], path: str) -> AuditConfig:
    keys = {"redactKeys", "streamKey", "streamMaxLen", "maxArgBytes", "maxRecordBytes", "streamMaxBytes", "spoolSize"}
    r.unknown_keys(data, keys, path)
    default = AuditConfig()
    return AuditConfig(
        redact_keys=r.string_list(data, "redactKeys", path) or default.redact_keys,
        stream_key=r.string(data, "streamKey", path, default=default.stream_key) or default.stream_key,
        stream_maxlen=r.integer(data, "streamMaxLen", path, default.stream_maxlen, minimum=1),
        max_arg_bytes=r.integer(data, "maxArgBytes", path, default.max_arg_bytes, minimum=1),
        # Room for the record's own fields (identity, tool, reason...) beside a summary of its arguments.
        max_record_bytes=r.integer(data, "maxRecordBytes", path, default.max_record_bytes, minimum=1024),
        stream_max_bytes=r.integer(data, "streamMaxBytes", path, default.stream_max_bytes, minimum=1),
        spool_size=r.integer(data, "spoolSize", path, default.spool_size, minimum=1),
    )


_MIN_CONSOLE_SECRET = 32


def _parse_console(r: _Reader, data: dict[str, Any], path: str) -> ConsoleConfig:
    r.unknown_keys(data, {"secret", "sessionSeconds"}, path)
    secret = r.optional_string(data, "secret", path)
    if secret and len(secret) < _MIN_CONSOLE_SECRET:
        # A short secret lets anyone who sees one cookie forge others offline.
        r.fail(f"{path}.secret", f"must be at least {_MIN_CONSOLE_SECRET} characters (try `openssl rand -hex 32`)")
    return ConsoleConfig(
        secret=secret or None, session_seconds=r.integer(data, "sessionSeconds", path, 8 * 3600, minimum=60)
    )


_MIN_METRICS_TOKEN = 16


def _parse_metrics(r: _Reader, data: dict[str, Any], path: str) -> MetricsConfig:
    r.unknown_keys(data, {"bearerToken"}, path)
    token = r.optional_string(data, "bearerToken", path)
    if token and len(token) < _MIN_METRICS_TOKEN:
        r.fail(f"{path}.bearerToken", f"must be at least {_MIN_METRICS_TOKEN} characters (try `openssl rand -hex 32`)")
    return MetricsConfig(bearer_token=token or None)


def parse_config(raw: Any) -> GatewayConfig:
    """Turn parsed YAML into a GatewayConfig, or raise ConfigError listing every problem."""
    r = _Reader()
    root = r.mapping(raw, "config")
    r.unknown_keys(
        root,
        {
            "server",
            "store",
            "upstreams",
            "identities",
            "jwt",
            "oauth",
            "tasks",
            "policies",
            "audit",
            "console",
            "metrics",
            "limits",
            "models",
            "agents",
        },
        "config",
    )
    store = r.mapping(root.get("store"), "store")
    r.unknown_keys(store, {"url", "prefix"}, "store")
    store_url = r.string(store, "url", "store", default="memory://") or "memory://"
    if not store_url.startswith(("memory://", "redis://", "rediss://", "unix://", "redis+cluster://")):
        r.fail("store.url", f"unsupported store {store_url.split(':', 1)[0]!r} (use memory:// or redis://)")
    jwt_raw = root.get("jwt")
    identities = r.items(root.get("identities"), "identities", lambda d, p: _parse_identity(r, d, p), lambda i: i.id)
    identity_ids = frozenset(identity.id for identity in identities)
    oauth_raw = root.get("oauth")
    if jwt_raw is not None and oauth_raw is not None:
        r.fail("oauth", "set either jwt or oauth, not both (oauth validates JWT access tokens itself)")
    upstreams = r.items(root.get("upstreams"), "upstreams", lambda d, p: _parse_upstream(r, d, p), lambda u: u.name)
    upstream_names = frozenset(upstream.name for upstream in upstreams)
    _check_resource_prefixes(r, upstreams)
    config = GatewayConfig(
        server=_parse_server(r, r.mapping(root.get("server"), "server"), "server"),
        store_url=store_url,
        store_prefix=r.string(store, "prefix", "store", default="mcpgw:") or "mcpgw:",
        upstreams=upstreams,
        identities=identities,
        jwt=_parse_jwt(r, r.mapping(jwt_raw, "jwt"), "jwt") if jwt_raw is not None else None,
        tasks=r.items(root.get("tasks"), "tasks", lambda d, p: _parse_task(r, d, p, identity_ids), lambda t: t.id),
        oauth=_parse_oauth(r, r.mapping(oauth_raw, "oauth"), "oauth") if oauth_raw is not None else None,
        policies=r.items(root.get("policies"), "policies", lambda d, p: _parse_policy(r, d, p), lambda p: p.name),
        audit=_parse_audit(r, r.mapping(root.get("audit"), "audit"), "audit"),
        console=_parse_console(r, r.mapping(root.get("console"), "console"), "console"),
        metrics=_parse_metrics(r, r.mapping(root.get("metrics"), "metrics"), "metrics"),
        limits=_parse_limits(r, r.mapping(root.get("limits"), "limits"), "limits", upstream_names),
        models=r.items(root.get("models"), "models", lambda d, p: _parse_model(r, d, p), lambda m: m.id),
    )
    config = replace(config, agents=_parse_agents(r, root.get("agents"), config))
    _check_api_key_reuse(r, config)
    if r.problems:
        raise ConfigError(r.problems)
    return config


def _check_resource_prefixes(r: _Reader, upstreams: tuple[UpstreamConfig, ...]) -> None:
    """Two upstreams under one prefix would be one namespace again (schemes compare case-insensitively)."""
    seen: dict[str, int] = {}
    for i, upstream in enumerate(upstreams):
        if upstream.resource_prefix is None:
            continue
        key = upstream.resource_prefix.lower()
        if key in seen:
            r.fail(f"upstreams[{i}].resourcePrefix", f"{upstream.resource_prefix!r} is also upstreams[{seen[key]}]'s")
        else:
            seen[key] = i


def _parse_agents(r: _Reader, raw: Any, config: GatewayConfig) -> tuple[DeclaredAgent, ...]:
    """Task Agents declared in config, checked like ``POST /v1/agents`` bodies (tool ids only once connected)."""
    rules = DefinitionRules(
        models=frozenset(model.id for model in config.models),
        tasks=frozenset(task.id for task in config.tasks),
        upstream_tools={upstream.name: None for upstream in config.upstreams},
    )

    named: dict[str, str] = {}

    def parse(data: dict[str, Any], path: str) -> DeclaredAgent | None:
        try:
            agent = parse_declared(data, rules)
        except ValidationFailed as exc:
            for problem in exc.details or ():
                where = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in problem["pointer"].split("/")[1:])
                r.fail(f"{path}{where}", problem["message"])
            return None
        if agent.fields.name in named:
            r.fail(f"{path}.name", f"{agent.fields.name!r} is already the name of {named[agent.fields.name]}")
            return None
        named[agent.fields.name] = path
        return agent

    return r.items(raw, "agents", parse, lambda agent: agent.id)


def _check_api_key_reuse(r: _Reader, config: GatewayConfig) -> None:
    """One key must map to one identity, or authentication would depend on list order."""
    owners: dict[str, str] = {}
    for i, identity in enumerate(config.identities):
        for key in identity.api_keys:
            if key.sha256 in owners and owners[key.sha256] != identity.id:
                r.fail(f"identities[{i}].credentials", f"key already belongs to identity {owners[key.sha256]!r}")
            owners[key.sha256] = identity.id


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read, interpolate and parse a config file; raise ConfigError with every problem found."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    problems: list[str] = []
    text = interpolate_env(text, os.environ if env is None else env, problems)
    if problems:
        raise ConfigError(problems)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: invalid YAML: {exc}"]) from exc
    return parse_config(raw)
