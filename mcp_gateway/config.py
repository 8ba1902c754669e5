"""Gateway configuration: YAML in, frozen dataclasses out.

Config is parsed once at start-up; nothing on the request path ever looks at YAML again. Every problem is
collected with its path into the file (``identities[0].credentials[1].sha256``) so ``mcp-gateway check`` can
report all of them in one run instead of one per edit-restart cycle.
"""

from __future__ import annotations

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
    require_task: bool = False
    # What the identity may do beyond calling tools: "admin" may manage agents and read every agent run.
    roles: tuple[str, ...] = ()

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles


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


@dataclass(frozen=True)
class TaskDefinition:
    id: str
    name: str
    context_schema: Mapping[str, Any]
    labels: Mapping[str, str] = field(default_factory=dict)
    allowed_tools: tuple[str, ...] | None = None


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


@dataclass(frozen=True)
class AuditConfig:
    # Argument keys matching any of these globs (case-insensitive) are written as "[REDACTED]".
    redact_keys: tuple[str, ...] = ("*password*", "*secret*", "*token*", "*api_key*", "*apikey*", "authorization")
    stream_key: str = "audit"
    stream_maxlen: int = 100_000


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 4 * 1024 * 1024
    # Origins allowed on /mcp in addition to requests without an Origin header (non-browser clients).
    allowed_origins: tuple[str, ...] = ()
    tool_separator: str = DEFAULT_SEPARATOR
    # How long an idle legacy Mcp-Session-Id lives in the store.
    mcp_session_ttl: int = 3600


@dataclass(frozen=True)
class GatewayConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    store_url: str = "memory://"
    store_prefix: str = "mcpgw:"
    upstreams: tuple[UpstreamConfig, ...] = ()
    identities: tuple[Identity, ...] = ()
    jwt: JwtConfig | None = None
    tasks: tuple[TaskDefinition, ...] = ()
    policies: tuple[PolicyConfig, ...] = ()
    audit: AuditConfig = field(default_factory=AuditConfig)
    models: tuple[ModelConfig, ...] = ()
    agents: tuple[DeclaredAgent, ...] = ()


_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
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
        transport = HttpTransport(url=url, headers=r.string_map(data, "headers", path))
    else:
        r.fail(f"{path}.transport", f"must be 'stdio' or 'streamable-http', got {kind!r}")
        return None
    protocol = r.string(data, "protocol", path, default="auto") or "auto"
    if protocol not in ("auto", "legacy", "2026-07-28"):
        r.fail(f"{path}.protocol", f"must be 'auto', 'legacy' or '2026-07-28', got {protocol!r}")
    return UpstreamConfig(
        name=name,
        transport=transport,
        prefix=r.boolean(data, "prefix", path, True),
        protocol=protocol,
        call_timeout=r.number(data, "timeout", path, 60.0, minimum=0.001),
        connect_timeout=r.number(data, "connectTimeout", path, 30.0, minimum=0.001),
    )


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
    r.unknown_keys(data, {"id", "name", "labels", "credentials", "allowedTools", "requireTask", "roles"}, path)
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
        data, {"algorithms", "secret", "publicKey", "jwksUrl", "issuer", "audience", "leeway", "identityClaim"}, path
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
    )


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


def _parse_task(r: _Reader, data: dict[str, Any], path: str) -> TaskDefinition | None:
    r.unknown_keys(data, {"id", "name", "labels", "contextSchema", "allowedTools"}, path)
    name = r.string(data, "name", path)
    if name is None:
        return None
    schema = data.get("contextSchema", {"type": "object"})
    if not isinstance(schema, dict | bool):
        r.fail(f"{path}.contextSchema", "must be a JSON Schema object")
        schema = {}
    elif problem := _schema_problem(schema):
        r.fail(f"{path}.contextSchema", f"is not a valid JSON Schema: {problem}")
    return TaskDefinition(
        id=r.string(data, "id", path, default=name) or name,
        name=name,
        context_schema=cast(dict[str, Any], schema),
        labels=r.string_map(data, "labels", path),
        allowed_tools=r.string_list(data, "allowedTools", path),
    )


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
    r.unknown_keys(data, {"name", "effect", "condition", "tools", "message"}, path)
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
    )


def _parse_server(r: _Reader, data: dict[str, Any], path: str) -> ServerConfig:
    r.unknown_keys(data, {"host", "port", "maxBodyBytes", "allowedOrigins", "toolSeparator", "mcpSessionTtl"}, path)
    separator = r.string(data, "toolSeparator", path, default=DEFAULT_SEPARATOR) or DEFAULT_SEPARATOR
    return ServerConfig(
        host=r.string(data, "host", path, default="127.0.0.1") or "127.0.0.1",
        port=r.integer(data, "port", path, 8080),
        max_body_bytes=r.integer(data, "maxBodyBytes", path, 4 * 1024 * 1024, minimum=1),
        allowed_origins=r.string_list(data, "allowedOrigins", path) or (),
        tool_separator=separator,
        mcp_session_ttl=r.integer(data, "mcpSessionTtl", path, 3600, minimum=1),
    )


def _parse_audit(r: _Reader, data: dict[str, Any], path: str) -> AuditConfig:
    r.unknown_keys(data, {"redactKeys", "streamKey", "streamMaxLen"}, path)
    default = AuditConfig()
    return AuditConfig(
        redact_keys=r.string_list(data, "redactKeys", path) or default.redact_keys,
        stream_key=r.string(data, "streamKey", path, default=default.stream_key) or default.stream_key,
        stream_maxlen=r.integer(data, "streamMaxLen", path, default.stream_maxlen, minimum=1),
    )


def parse_config(raw: Any) -> GatewayConfig:
    """Turn parsed YAML into a GatewayConfig, or raise ConfigError listing every problem."""
    r = _Reader()
    root = r.mapping(raw, "config")
    r.unknown_keys(
        root,
        {"server", "store", "upstreams", "identities", "jwt", "tasks", "policies", "audit", "models", "agents"},
        "config",
    )
    store = r.mapping(root.get("store"), "store")
    r.unknown_keys(store, {"url", "prefix"}, "store")
    store_url = r.string(store, "url", "store", default="memory://") or "memory://"
    if not store_url.startswith(("memory://", "redis://", "rediss://", "unix://", "redis+cluster://")):
        r.fail("store.url", f"unsupported store {store_url.split(':', 1)[0]!r} (use memory:// or redis://)")
    jwt_raw = root.get("jwt")
    config = GatewayConfig(
        server=_parse_server(r, r.mapping(root.get("server"), "server"), "server"),
        store_url=store_url,
        store_prefix=r.string(store, "prefix", "store", default="mcpgw:") or "mcpgw:",
        upstreams=r.items(root.get("upstreams"), "upstreams", lambda d, p: _parse_upstream(r, d, p), lambda u: u.name),
        identities=r.items(root.get("identities"), "identities", lambda d, p: _parse_identity(r, d, p), lambda i: i.id),
        jwt=_parse_jwt(r, r.mapping(jwt_raw, "jwt"), "jwt") if jwt_raw is not None else None,
        tasks=r.items(root.get("tasks"), "tasks", lambda d, p: _parse_task(r, d, p), lambda t: t.id),
        policies=r.items(root.get("policies"), "policies", lambda d, p: _parse_policy(r, d, p), lambda p: p.name),
        audit=_parse_audit(r, r.mapping(root.get("audit"), "audit"), "audit"),
        models=r.items(root.get("models"), "models", lambda d, p: _parse_model(r, d, p), lambda m: m.id),
    )
    config = replace(config, agents=_parse_agents(r, root.get("agents"), config))
    _check_api_key_reuse(r, config)
    if r.problems:
        raise ConfigError(r.problems)
    return config


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
