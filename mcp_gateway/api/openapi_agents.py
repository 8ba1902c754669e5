"""The Task Agents part of the OpenAPI document: ``/v1/agents`` (definitions, revisions) and ``/v1/runs``.

The answers are what ``agents/definitions.py`` and ``agents/records.py`` put on the wire (``to_wire``); the request
bodies are what ``agents/validation.py`` and ``RunRequest.parse`` accept. What JSON Schema cannot say (a model,
task or upstream the gateway does not know) is a 422 with a pointer to the field.
"""

from __future__ import annotations

from typing import Any

from mcp_gateway.api.openapi_blocks import (
    BOOLEAN_QUERY,
    NO_CONTENT,
    TIMESTAMP,
    TIMESTAMP_OR_NULL,
    errors,
    json_answer,
    json_body,
    path_param,
    query_param,
    ref,
)

_STRING = {"type": "string"}
_STRING_OR_NULL = {"type": ["string", "null"]}
_NON_EMPTY = {"type": "string", "minLength": 1}
_COUNT = {"type": "integer", "minimum": 0}
_MODES = {"type": "string", "enum": ["agentic", "sequential"]}
_MEMORY_STRATEGY = {"enum": ["sliding_window", "token_budget", None]}
_VISIBILITY = {
    "type": "string",
    "enum": ["owner_only", "all"],
    "description": "Who may read the agent's runs: their owner (and admins), or every identity",
}


def _object(required: list[str], properties: dict[str, Any], *, closed: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "required": required, "properties": properties}
    if closed:
        schema["additionalProperties"] = False
    return schema


def _list_of(key: str, item: str) -> dict[str, Any]:
    return _object([key], {key: {"type": "array", "items": ref(item)}})


# The runtime fields of a revision as a client sends them; unknown fields are a 422, so the inputs are closed.
_RUNTIME_INPUT: dict[str, Any] = {
    "instruction": {**_NON_EMPTY, "description": "The agent's system prompt"},
    "llmModelId": {**_NON_EMPTY, "description": "The id of a model under models: in the gateway config"},
    "fallbackLlmModelId": {"type": ["string", "null"], "description": "Asked when the primary model fails"},
    "mode": _MODES,
    "taskTools": {
        "type": ["array", "null"],
        "items": _NON_EMPTY,
        "description": "Ids of config tasks the model may run as tools (sequential mode runs them in order)",
    },
    "mcpServers": {"type": ["array", "null"], "items": ref("McpServerGrantInput")},
    "skills": {"type": ["array", "null"], "items": ref("SkillInput")},
    "memoryStrategy": _MEMORY_STRATEGY,
    "memoryConfig": {
        "type": ["object", "null"],
        "description": "maxMessages with sliding_window, maxTokens with token_budget",
        "properties": {
            "maxMessages": {"type": "integer", "minimum": 1},
            "maxTokens": {"type": "integer", "minimum": 1},
        },
        "additionalProperties": False,
    },
    "maxTurns": {"type": ["integer", "null"], "minimum": 1, "maximum": 500},
}

SCHEMAS: dict[str, Any] = {
    "McpServerGrantInput": _object(
        ["upstream", "allowedToolIds"],
        {"upstream": _NON_EMPTY, "allowedToolIds": {"type": "array", "items": _NON_EMPTY}},
        closed=True,
    ),
    "SkillInput": _object(
        ["name", "instruction"], {"name": _NON_EMPTY, "description": _STRING, "instruction": _NON_EMPTY}, closed=True
    ),
    "AgentInput": {
        **_object(
            ["name", "instruction", "llmModelId"],
            {
                "name": {"type": "string", "minLength": 1, "maxLength": 255, "description": "Unique among agents"},
                "description": _STRING,
                "taskAgentRunVisibility": _VISIBILITY,
                **_RUNTIME_INPUT,
            },
            closed=True,
        ),
        "description": "The agent's own fields and its revision 1, in one flat body",
    },
    "RevisionInput": {
        **_object(
            ["instruction", "llmModelId"],
            {
                **_RUNTIME_INPUT,
                "activate": {"type": "boolean", "default": True, "description": "Make it the active revision now"},
            },
            closed=True,
        ),
        "description": "A new revision's runtime fields",
    },
    "McpServerGrant": _object(
        ["upstream", "allowedToolIds"], {"upstream": _STRING, "allowedToolIds": {"type": "array", "items": _STRING}}
    ),
    "Skill": _object(
        ["name", "description", "instruction"], {"name": _STRING, "description": _STRING, "instruction": _STRING}
    ),
    "Revision": {
        **_object(
            [
                "revision",
                "created",
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
            ],
            {
                "revision": {"type": "integer", "minimum": 1},
                "created": TIMESTAMP,
                "instruction": _STRING,
                "llmModelId": _STRING,
                "fallbackLlmModelId": _STRING_OR_NULL,
                "mode": _MODES,
                "taskTools": {"type": "array", "items": _STRING},
                "mcpServers": {"type": "array", "items": ref("McpServerGrant")},
                "skills": {"type": "array", "items": ref("Skill")},
                "memoryStrategy": _MEMORY_STRATEGY,
                "memoryConfig": {"type": ["object", "null"]},
                "maxTurns": {"type": ["integer", "null"]},
            },
        ),
        "description": "One immutable revision: a run keeps the one it started on",
    },
    "RevisionCreated": {
        "allOf": [ref("Revision"), _object(["active"], {"active": {"type": "boolean"}})],
    },
    "RevisionSummary": _object(["revision", "created"], {"revision": {"type": "integer"}, "created": TIMESTAMP}),
    "Agent": _object(
        [
            "id",
            "name",
            "description",
            "taskAgentRunVisibility",
            "isDeleted",
            "created",
            "modified",
            "activeRevision",
            "readOnly",
            "revisions",
        ],
        {
            "id": _STRING,
            "name": _STRING,
            "description": _STRING,
            "taskAgentRunVisibility": _VISIBILITY,
            "isDeleted": {"type": "boolean", "description": "Soft-deleted: still readable, no longer runnable"},
            "created": TIMESTAMP,
            "modified": TIMESTAMP,
            "activeRevision": ref("Revision"),
            "readOnly": {"type": "boolean", "description": "Declared under agents: in the config"},
            "revisions": {"type": "array", "items": ref("RevisionSummary")},
        },
    ),
    "AgentList": _list_of("agents", "Agent"),
    "RevisionList": _list_of("revisions", "Revision"),
    "RunInput": _object(
        ["input"],
        {
            "input": {**_NON_EMPTY, "description": "The user message the run starts from"},
            "taskId": {
                "type": ["string", "null"],
                "minLength": 1,
                "description": "Run inside a new session of this task (revoked when the run ends)",
            },
            "context": {"description": "The task session's context (with taskId only)"},
        },
        closed=True,
    ),
    "ToolCall": _object(
        ["id", "tool", "arguments", "decision", "outcome", "latencyMs", "error"],
        {
            "id": _STRING,
            "tool": {"type": "string", "description": "The gateway's tool name, or the task a task tool runs"},
            "arguments": {"type": "object", "description": "Redacted with the audit's redactKeys"},
            "decision": {"type": "string", "enum": ["allowed", "denied", "unknown_tool"]},
            "outcome": {"type": "string", "enum": ["ok", "tool_error", "denied", "error"]},
            "latencyMs": {"type": "number", "minimum": 0},
            "error": {"type": ["string", "null"], "description": "A denial names the policy that refused"},
            "taskSessionId": {"type": "string", "description": "A task tool: the child session it ran under"},
            "turns": {"type": "array", "items": ref("Turn"), "description": "A task tool: its sub-conversation"},
        },
    ),
    "Turn": _object(
        [
            "turn",
            "model",
            "content",
            "finishReason",
            "latencyMs",
            "usage",
            "toolCalls",
            "fallbackFrom",
            "fallbackReason",
        ],
        {
            "turn": {"type": "integer", "minimum": 1},
            "model": _STRING,
            "content": _STRING_OR_NULL,
            "finishReason": _STRING_OR_NULL,
            "latencyMs": {"type": "number", "minimum": 0},
            "usage": _object(
                ["promptTokens", "completionTokens"], {"promptTokens": _COUNT, "completionTokens": _COUNT}
            ),
            "toolCalls": {"type": "array", "items": ref("ToolCall")},
            "fallbackFrom": _STRING_OR_NULL,
            "fallbackReason": _STRING_OR_NULL,
        },
    ),
    "ModelUsage": _object(
        ["calls", "promptTokens", "completionTokens", "totalTokens"],
        {"calls": _COUNT, "promptTokens": _COUNT, "completionTokens": _COUNT, "totalTokens": _COUNT},
    ),
    "Run": _object(
        [
            "id",
            "agentId",
            "agentName",
            "revision",
            "identity",
            "visibility",
            "status",
            "input",
            "taskId",
            "taskSessionId",
            "output",
            "turns",
            "usage",
            "startedAt",
            "endedAt",
            "error",
        ],
        {
            "id": _STRING,
            "agentId": _STRING,
            "agentName": _STRING,
            "revision": {"type": "integer", "minimum": 1},
            "identity": {"type": "string", "description": "Who started the run"},
            "visibility": _VISIBILITY,
            "status": {"type": "string", "enum": ["running", "completed", "failed", "cancelled", "max_turns_exceeded"]},
            "input": _STRING,
            "taskId": _STRING_OR_NULL,
            "taskSessionId": _STRING_OR_NULL,
            "output": _STRING_OR_NULL,
            "turns": {"type": "array", "items": ref("Turn")},
            "usage": {"type": "object", "additionalProperties": ref("ModelUsage"), "description": "Per model id"},
            "startedAt": TIMESTAMP,
            "endedAt": TIMESTAMP_OR_NULL,
            "error": _STRING_OR_NULL,
        },
    ),
    "RunList": _list_of("runs", "Run"),
}

_AGENT_ID = path_param("agentId")
_AGENT = json_answer(ref("Agent"), "The agent, its active revision in full")
_RUN = json_answer(ref("Run"), "The run record")

PATHS: dict[str, Any] = {
    "/v1/agents": {
        "get": {
            "operationId": "listAgents",
            "summary": "Every agent (config-declared first, then the stored ones, oldest first)",
            "parameters": [query_param("includeDeleted", BOOLEAN_QUERY, "true lists soft-deleted agents too")],
            "responses": {"200": json_answer(ref("AgentList"), "The agents"), **errors()},
        },
        "post": {
            "operationId": "createAgent",
            "summary": "Create an agent with revision 1 active (admins)",
            "requestBody": json_body(ref("AgentInput")),
            "responses": {
                "201": json_answer(ref("Agent"), "Created", location=True),
                **errors(400, 403, 409, 413, 415, 422),
            },
        },
    },
    "/v1/agents/{agentId}": {
        "parameters": [_AGENT_ID],
        "get": {
            "operationId": "getAgent",
            "summary": "One agent, deleted or not",
            "responses": {"200": _AGENT, **errors(404)},
        },
        "delete": {
            "operationId": "deleteAgent",
            "summary": "Soft-delete an agent (admins): still readable, no longer runnable, its name free again",
            "responses": {"204": NO_CONTENT, **errors(403, 404, 409)},
        },
    },
    "/v1/agents/{agentId}/revisions": {
        "parameters": [_AGENT_ID],
        "get": {
            "operationId": "listAgentRevisions",
            "summary": "Every revision of an agent, 1 first",
            "responses": {"200": json_answer(ref("RevisionList"), "The revisions"), **errors(404)},
        },
        "post": {
            "operationId": "addAgentRevision",
            "summary": "Add a revision, active at once unless activate is false (admins)",
            "requestBody": json_body(ref("RevisionInput")),
            "responses": {
                "201": json_answer(ref("RevisionCreated"), "The new revision"),
                **errors(400, 403, 404, 409, 413, 415, 422),
            },
        },
    },
    "/v1/agents/{agentId}/revisions/{n}/activate": {
        "parameters": [_AGENT_ID, path_param("n", {"type": "integer", "minimum": 1})],
        "post": {
            "operationId": "activateAgentRevision",
            "summary": "Make revision n the one new runs use (admins); runs already started keep theirs",
            "responses": {"200": _AGENT, **errors(403, 404, 409)},
        },
    },
    "/v1/agents/{agentId}/runs": {
        "parameters": [_AGENT_ID],
        "get": {
            "operationId": "listAgentRuns",
            "summary": "The agent's newest runs this identity may read, newest first",
            "responses": {"200": json_answer(ref("RunList"), "The runs"), **errors(404)},
        },
        "post": {
            "operationId": "startAgentRun",
            "summary": "Start a run as the caller (404 when the caller may not see the agent's tool)",
            "parameters": [query_param("wait", BOOLEAN_QUERY, "true answers 200 with the finished run")],
            "requestBody": json_body(ref("RunInput")),
            "responses": {
                "200": json_answer(ref("Run"), "The finished run (wait=true)"),
                "202": json_answer(ref("Run"), "Started; the record says running", location=True),
                **errors(400, 403, 404, 413, 415, 422, 429),
            },
        },
    },
    "/v1/runs/{runId}": {
        "parameters": [path_param("runId")],
        "get": {
            "operationId": "getRun",
            "summary": "A run with every turn and tool call so far (its owner, an admin, or anyone if visible to all)",
            "responses": {"200": _RUN, **errors(404)},
        },
        "delete": {
            "operationId": "cancelRun",
            "summary": "Ask a running run to stop: at once on the replica running it, else at its next turn",
            "responses": {"202": json_answer(ref("Run"), "Cancellation asked"), **errors(404, 409)},
        },
    },
}
