"""The pinning part of the OpenAPI document: ``/v1/tools/pins`` and ``/v1/tools/{name}/approve`` (``tools_api.py``)."""

from __future__ import annotations

from typing import Any

from mcp_gateway.api.openapi_blocks import errors, json_answer, json_body, path_param, ref

_PIN_PROPERTIES: dict[str, Any] = {
    "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    "definition": {"type": "object", "description": "The pinned fields of the tool, under the upstream's own name"},
    "at": {"type": "string", "format": "date-time", "description": "When it was pinned, seen or approved"},
    "approvedBy": {"type": ["string", "null"], "description": "null: pinned on first sight, or not approved"},
}

SCHEMAS: dict[str, Any] = {
    "PinnedDefinition": {"type": "object", "required": list(_PIN_PROPERTIES), "properties": _PIN_PROPERTIES},
    "ToolChange": {
        "type": "object",
        "required": ["name", "upstream", "tool", "mode", "withheld", "pinned", "current", "diff"],
        "properties": {
            "name": {"type": "string", "description": "The tool's name as the gateway exposes it"},
            "upstream": {"type": "string"},
            "tool": {"type": "string", "description": "The upstream's own name of the tool"},
            "mode": {"enum": ["off", "warn", "enforce", None], "description": "The upstream's pinning mode"},
            "withheld": {"type": "boolean", "description": "Hidden and refused until approved (pinning: enforce)"},
            "pinned": ref("PinnedDefinition"),
            "current": ref("PinnedDefinition"),
            "diff": {"type": "string", "description": "A unified diff of the two definitions"},
        },
    },
    "ToolChangeList": {
        "type": "object",
        "required": ["tools"],
        "properties": {"tools": {"type": "array", "items": ref("ToolChange")}},
    },
    "ApproveInput": {
        "type": "object",
        "properties": {"sha256": {"type": "string", "description": "Approve only the definition with this hash"}},
    },
    "ToolApproved": {
        "type": "object",
        "required": ["name", "upstream", *_PIN_PROPERTIES],
        "properties": {"name": {"type": "string"}, "upstream": {"type": "string"}, **_PIN_PROPERTIES},
    },
}

PATHS: dict[str, Any] = {
    "/v1/tools/pins": {
        "get": {
            "operationId": "listToolChanges",
            "summary": "Tools whose definition changed since it was pinned, with a diff (admins)",
            "responses": {"200": json_answer(ref("ToolChangeList"), "The changed tools"), **errors(403)},
        },
    },
    "/v1/tools/{name}/approve": {
        "parameters": [path_param("name")],
        "post": {
            "operationId": "approveToolDefinition",
            "summary": "Pin a tool's changed definition and serve the tool again (admins)",
            "requestBody": json_body(ref("ApproveInput"), required=False),
            "responses": {
                "200": json_answer(ref("ToolApproved"), "The definition now pinned"),
                **errors(400, 403, 404, 409, 413, 415),
            },
        },
    },
}
