"""Request bodies in, validated agent fields out, or every problem at once with its JSON pointer.

Checked against what the gateway knows right now: the models in config, the tasks of config and ``/v1/tasks``, the
upstreams attached, and
(for an upstream that is connected) the tools it actually lists. A definition that names something unknown is
refused whole (422), so a stored revision always refers to things that existed when it was written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from mcp_gateway.agents.definitions import McpServerGrant, RuntimeSpec, Skill
from mcp_gateway.errors import ValidationFailed

T = TypeVar("T")
MAX_NAME_LENGTH = 255
MAX_TURNS = 500
RUNTIME_FIELDS = frozenset(
    {
        "instruction",
        "llmModelId",
        "fallbackLlmModelId",
        "mode",
        "taskTools",
        "mcpServers",
        "skills",
        "memoryStrategy",
        "memoryConfig",
        "maxTurns",
    }
)
AGENT_FIELDS = frozenset({"name", "description", "taskAgentRunVisibility"})
_MODES = ("agentic", "sequential")
_MEMORY_LIMITS = {"sliding_window": "maxMessages", "token_budget": "maxTokens"}


@dataclass(frozen=True)
class DefinitionRules:
    """What a definition may refer to; ``upstream_tools[name]`` is None while that upstream lists nothing."""

    models: frozenset[str]
    tasks: frozenset[str]
    upstream_tools: Mapping[str, frozenset[str] | None]


@dataclass(frozen=True)
class AgentFields:
    name: str
    description: str
    run_visibility: str


@dataclass(frozen=True)
class DeclaredAgent:
    """An agent under ``agents:`` in config: one revision, read-only over the API."""

    id: str
    fields: AgentFields
    spec: RuntimeSpec


def json_pointer(path: tuple[str | int, ...]) -> str:
    """RFC 6901; the root is the empty string."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


class _Problems:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, path: tuple[str | int, ...], message: str) -> None:
        self.items.append({"pointer": json_pointer(path), "message": message})

    def raise_if_any(self, what: str) -> None:
        if self.items:
            noun = "problem" if len(self.items) == 1 else "problems"
            raise ValidationFailed(f"{what} is invalid ({len(self.items)} {noun})", details=self.items)


def parse_agent(body: dict[str, Any], rules: DefinitionRules) -> tuple[AgentFields, RuntimeSpec]:
    """``POST /v1/agents``: the agent's fields and revision 1's runtime fields, in one flat body."""
    problems = _Problems()
    _unknown_keys(body, AGENT_FIELDS | RUNTIME_FIELDS, problems)
    fields = _agent_fields(body, problems)
    spec = _runtime(body, rules, problems)
    problems.raise_if_any("agent definition")
    assert fields is not None and spec is not None
    return fields, spec


def parse_declared(body: dict[str, Any], rules: DefinitionRules) -> DeclaredAgent:
    """An ``agents:`` entry: the ``POST /v1/agents`` body plus an optional ``id`` (default: the name)."""
    fields, spec = parse_agent({key: value for key, value in body.items() if key != "id"}, rules)
    agent_id = body.get("id", fields.name)
    if not isinstance(agent_id, str) or not agent_id:
        raise ValidationFailed(
            "agent definition is invalid", details=[{"pointer": "/id", "message": "must be a string"}]
        )
    return DeclaredAgent(id=agent_id, fields=fields, spec=spec)


def parse_revision(body: dict[str, Any], rules: DefinitionRules) -> tuple[RuntimeSpec, bool]:
    """``POST /v1/agents/{id}/revisions``: runtime fields and whether to activate the new revision at once."""
    problems = _Problems()
    _unknown_keys(body, RUNTIME_FIELDS | {"activate"}, problems)
    activate = body.get("activate", True)
    if not isinstance(activate, bool):
        problems.add(("activate",), "must be true or false")
    spec = _runtime(body, rules, problems)
    problems.raise_if_any("revision")
    assert spec is not None
    return spec, bool(activate)


def _unknown_keys(body: Mapping[str, Any], allowed: frozenset[str], problems: _Problems) -> None:
    for key in body:
        if key not in allowed:
            problems.add((key,), f"unknown field (allowed: {', '.join(sorted(allowed))})")


def _agent_fields(body: Mapping[str, Any], problems: _Problems) -> AgentFields | None:
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.add(("name",), "is required: a non-empty string")
        name = None
    elif len(name) > MAX_NAME_LENGTH:
        problems.add(("name",), f"must be at most {MAX_NAME_LENGTH} characters, got {len(name)}")
    description = body.get("description", "")
    if not isinstance(description, str):
        problems.add(("description",), "must be a string")
    visibility = body.get("taskAgentRunVisibility", "owner_only")
    if visibility not in ("owner_only", "all"):
        problems.add(("taskAgentRunVisibility",), f"must be 'owner_only' or 'all', got {visibility!r}")
    if name is None or not isinstance(description, str):
        return None
    return AgentFields(name=name, description=description, run_visibility=str(visibility))


def _runtime(body: Mapping[str, Any], rules: DefinitionRules, problems: _Problems) -> RuntimeSpec | None:
    before = len(problems.items)
    instruction = body.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        problems.add(("instruction",), "is required: the agent's system prompt")
    model = _model(body, "llmModelId", rules, problems, required=True)
    fallback = _model(body, "fallbackLlmModelId", rules, problems, required=False)
    mode = body.get("mode", "agentic")
    if mode not in _MODES:
        problems.add(("mode",), f"must be one of {', '.join(_MODES)}, got {mode!r}")
    task_tools = _strings(body, "taskTools", problems)
    if mode == "sequential" and not task_tools:
        problems.add(("taskTools",), "sequential mode runs the task tools in order: name at least one")
    for i, task_id in enumerate(task_tools):
        if task_id not in rules.tasks:
            problems.add(("taskTools", i), f"unknown task {task_id!r}")
    grants = _list_of(body, "mcpServers", problems, lambda item, path: _grant(item, path, rules, problems))
    skills = _list_of(body, "skills", problems, lambda item, path: _skill(item, path, problems))
    strategy, memory_config = _memory(body, problems)
    max_turns = body.get("maxTurns")
    if max_turns is not None and (
        isinstance(max_turns, bool) or not isinstance(max_turns, int) or not 1 <= max_turns <= MAX_TURNS
    ):
        problems.add(("maxTurns",), f"must be an integer from 1 to {MAX_TURNS}, or null, got {max_turns!r}")
    if len(problems.items) > before:
        return None
    return RuntimeSpec(
        instruction=cast(str, instruction),
        llm_model_id=cast(str, model),
        fallback_llm_model_id=fallback,
        mode=mode,
        task_tools=task_tools,
        mcp_servers=grants,
        skills=skills,
        memory_strategy=strategy,
        memory_config=memory_config,
        max_turns=max_turns,
    )


def _model(
    body: Mapping[str, Any], key: str, rules: DefinitionRules, problems: _Problems, *, required: bool
) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            problems.add((key,), "is required: the id of a model under models: in the gateway config")
        return None
    if not isinstance(value, str) or value not in rules.models:
        known = ", ".join(sorted(rules.models)) or "none configured"
        problems.add((key,), f"unknown model {value!r} (known: {known})")
        return None
    return value


def _strings(body: Mapping[str, Any], key: str, problems: _Problems) -> tuple[str, ...]:
    value = body.get(key) or []
    if not isinstance(value, list):
        problems.add((key,), "must be a list of strings")
        return ()
    result: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            problems.add((key, i), "must be a non-empty string")
            continue
        result.append(item)
    return tuple(result)


def _list_of(
    body: Mapping[str, Any],
    key: str,
    problems: _Problems,
    parse: Callable[[dict[str, Any], tuple[str | int, ...]], T | None],
) -> tuple[T, ...]:
    value = body.get(key) or []
    if not isinstance(value, list):
        problems.add((key,), "must be a list of objects")
        return ()
    result: list[T] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            problems.add((key, i), "must be an object")
            continue
        parsed = parse(cast(dict[str, Any], item), (key, i))
        if parsed is not None:
            result.append(parsed)
    return tuple(result)


def _grant(
    item: dict[str, Any], path: tuple[str | int, ...], rules: DefinitionRules, problems: _Problems
) -> McpServerGrant | None:
    _unknown_nested(item, {"upstream", "allowedToolIds"}, path, problems)
    upstream = item.get("upstream")
    if not isinstance(upstream, str) or upstream not in rules.upstream_tools:
        problems.add((*path, "upstream"), f"unknown upstream {upstream!r}")
        return None
    tool_ids = item.get("allowedToolIds")
    if not isinstance(tool_ids, list) or not all(isinstance(t, str) and t for t in tool_ids):
        problems.add((*path, "allowedToolIds"), "is required: a list of the upstream's own tool names")
        return None
    listed = rules.upstream_tools[upstream]
    for i, tool_id in enumerate(tool_ids):
        if listed is not None and tool_id not in listed:
            problems.add((*path, "allowedToolIds", i), f"upstream {upstream!r} does not expose a tool {tool_id!r}")
    return McpServerGrant(upstream=upstream, allowed_tool_ids=tuple(tool_ids))


def _skill(item: dict[str, Any], path: tuple[str | int, ...], problems: _Problems) -> Skill | None:
    _unknown_nested(item, {"name", "description", "instruction"}, path, problems)
    values: dict[str, str] = {}
    for key in ("name", "description", "instruction"):
        value = item.get(key, "" if key == "description" else None)
        if not isinstance(value, str) or (key != "description" and not value.strip()):
            problems.add(
                (*path, key), "is required: a non-empty string" if key != "description" else "must be a string"
            )
            continue
        values[key] = value
    if len(values) < 3:
        return None
    return Skill(name=values["name"], description=values["description"], instruction=values["instruction"])


def _memory(body: Mapping[str, Any], problems: _Problems) -> tuple[Any, Mapping[str, Any] | None]:
    strategy = body.get("memoryStrategy")
    config = body.get("memoryConfig")
    if strategy is None:
        if config is not None:
            problems.add(("memoryConfig",), "is only used with a memoryStrategy")
        return None, None
    if not isinstance(strategy, str) or strategy not in _MEMORY_LIMITS:
        problems.add(("memoryStrategy",), f"must be null, 'sliding_window' or 'token_budget', got {strategy!r}")
        return None, None
    if not isinstance(config, dict):
        problems.add(("memoryConfig",), f"is required with memoryStrategy {strategy!r}: an object")
        return None, None
    limit_key = _MEMORY_LIMITS[strategy]
    limit = config.get(limit_key)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        problems.add(("memoryConfig", limit_key), f"is required with memoryStrategy {strategy!r}: a positive integer")
    for key in config:
        if key != limit_key:
            problems.add(("memoryConfig", key), f"unknown field (allowed: {limit_key})")
    return strategy, dict(cast(dict[str, Any], config))


def _unknown_nested(
    item: Mapping[str, Any], allowed: set[str], path: tuple[str | int, ...], problems: _Problems
) -> None:
    for key in item:
        if key not in allowed:
            problems.add((*path, key), f"unknown field (allowed: {', '.join(sorted(allowed))})")
