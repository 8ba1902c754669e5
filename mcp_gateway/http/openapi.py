"""The REST surface (``/v1/*``) described as an OpenAPI 3.1 document, served at ``/openapi.json``.

Written out as data, not derived from the handlers: it is a promise to clients, and a property-based test
(``tests/test_openapi.py``, schemathesis) drives the running gateway from it so the promise and the code cannot
drift apart silently. Change a handler's answers and this document together.
"""

from __future__ import annotations

from typing import Any

_STRING_LIST_OR_NULL: dict[str, Any] = {"type": ["array", "null"], "items": {"type": "string", "minLength": 1}}
_STRING_MAP: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    meaning = {
        400: "Malformed body or query",
        401: "Missing, invalid or expired credential or task token",
        403: "Not allowed for this identity",
        404: "No such task or session (or not visible to this identity)",
        409: "Conflict: id taken, read-only config task, or a concurrent change",
        413: "Body too large",
        422: "The body fails validation; every problem with its JSON pointer",
        503: "The store is unreachable (fail closed)",
    }
    # 401 and 503 can answer any request: every one needs a credential, and most reach the store.
    return {str(status): _json(_ref("Error"), meaning[status]) for status in sorted({401, 503, *statuses})}


_TASK_ID_PARAM: dict[str, Any] = {
    "name": "taskId",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
}
_TOKEN_ID_PARAM: dict[str, Any] = {
    "name": "tokenId",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
}
_TASK_TOKEN_HEADER: dict[str, Any] = {
    "name": "X-Task-Token",
    "in": "header",
    "required": True,
    "schema": {"type": "string"},
    "description": "The task token returned when the session was created",
}
_NO_CONTENT = {"description": "Done"}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string", "description": "Stable machine-readable code"},
            "message": {"type": "string"},
            "details": {},
        },
    },
    "Problem": {
        "type": "object",
        "required": ["pointer", "message"],
        "properties": {
            "pointer": {"type": "string", "description": "RFC 6901 JSON pointer"},
            "message": {"type": "string"},
        },
    },
    "StartableBy": {
        "type": "object",
        "properties": {
            "identities": {"type": "array", "items": {"type": "string"}},
            "labels": _STRING_MAP,
        },
    },
    "TaskInput": {
        "type": "object",
        "description": "A task definition, with the same fields as a config-file task",
        "required": ["name"],
        "properties": {
            "id": {
                "type": "string",
                "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
                "description": "Defaults to name",
            },
            "name": {"type": "string"},
            "labels": _STRING_MAP,
            "contextSchema": {"type": "object", "description": "A JSON Schema for the session context"},
            "allowedTools": _STRING_LIST_OR_NULL,
            "allowedResources": _STRING_LIST_OR_NULL,
            "allowedPrompts": _STRING_LIST_OR_NULL,
            "startableBy": {"oneOf": [_ref("StartableBy"), {"type": "null"}]},
        },
    },
    "Task": {
        "type": "object",
        "required": [
            "id",
            "name",
            "labels",
            "contextSchema",
            "allowedTools",
            "allowedResources",
            "allowedPrompts",
            "startableBy",
            "source",
            "version",
            "modified",
        ],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "labels": _STRING_MAP,
            "contextSchema": {"type": ["object", "boolean"]},
            "allowedTools": _STRING_LIST_OR_NULL,
            "allowedResources": _STRING_LIST_OR_NULL,
            "allowedPrompts": _STRING_LIST_OR_NULL,
            "startableBy": {"oneOf": [_ref("StartableBy"), {"type": "null"}]},
            "source": {"enum": ["config", "api"], "description": "config tasks are read-only"},
            "version": {"type": "integer", "minimum": 1},
            "modified": {"type": ["string", "null"], "format": "date-time"},
        },
    },
    "TaskWritten": {
        "allOf": [
            _ref("Task"),
            {
                "type": "object",
                "required": ["warnings"],
                "properties": {
                    "warnings": {
                        "type": "array",
                        "items": _ref("Problem"),
                        "description": "allowedTools patterns that name no tool any upstream exposes now",
                    }
                },
            },
        ]
    },
    "TaskList": {
        "type": "object",
        "required": ["tasks"],
        "properties": {"tasks": {"type": "array", "items": _ref("Task")}},
    },
    "VersionList": {
        "type": "object",
        "required": ["versions"],
        "properties": {"versions": {"type": "array", "items": _ref("Task")}},
    },
    "SessionInput": {
        "type": "object",
        "required": ["taskId"],
        "properties": {
            "taskId": {"type": "string"},
            "context": {"type": "object"},
            "ttl": {"type": "integer", "minimum": 1, "maximum": 86400},
        },
    },
    "SessionCreated": {
        "type": "object",
        "required": ["taskToken", "tokenId", "taskId", "taskName", "expiresAt", "ttl"],
        "properties": {
            "taskToken": {"type": "string", "description": "Shown once; send it as X-Task-Token"},
            "tokenId": {"type": "string"},
            "taskId": {"type": "string"},
            "taskName": {"type": "string"},
            "expiresAt": {"type": "string", "format": "date-time"},
            "ttl": {"type": "integer"},
        },
    },
    "Session": {
        "type": "object",
        "required": [
            "tokenId",
            "taskId",
            "taskVersion",
            "taskName",
            "identityId",
            "context",
            "createdAt",
            "expiresAt",
            "ttl",
        ],
        "properties": {
            "tokenId": {"type": "string"},
            "taskId": {"type": "string"},
            "taskVersion": {"type": ["integer", "null"], "description": "null for a config task"},
            "taskName": {"type": "string"},
            "identityId": {"type": "string"},
            "context": {"type": "object"},
            "createdAt": {"type": "string", "format": "date-time"},
            "expiresAt": {"type": "string", "format": "date-time"},
            "ttl": {"type": "integer", "minimum": 0},
        },
    },
    "SessionList": {
        "type": "object",
        "required": ["sessions"],
        "properties": {"sessions": {"type": "array", "items": _ref("Session")}},
    },
}

_TASK_BODY = {"required": True, "content": {"application/json": {"schema": _ref("TaskInput")}}}

PATHS: dict[str, Any] = {
    "/v1/tasks": {
        "get": {
            "operationId": "listTasks",
            "summary": "Task definitions: every task for admins, the tasks it may start for any other identity",
            "responses": {"200": _json(_ref("TaskList"), "The tasks"), **_errors()},
        },
        "post": {
            "operationId": "createTask",
            "summary": "Create a task (admins)",
            "requestBody": _TASK_BODY,
            "responses": {
                "201": _json(_ref("TaskWritten"), "Created as version 1"),
                **_errors(400, 403, 409, 413, 422),
            },
        },
    },
    "/v1/tasks/{taskId}": {
        "parameters": [_TASK_ID_PARAM],
        "get": {
            "operationId": "getTask",
            "summary": "The current version of a task",
            "responses": {"200": _json(_ref("Task"), "The task"), **_errors(404)},
        },
        "put": {
            "operationId": "replaceTask",
            "summary": "Replace a task with a new version (admins; config tasks are read-only)",
            "requestBody": _TASK_BODY,
            "responses": {
                "200": _json(_ref("TaskWritten"), "The new version"),
                **_errors(400, 403, 404, 409, 413, 422),
            },
        },
        "delete": {
            "operationId": "deleteTask",
            "summary": "Delete a task (admins); its sessions live on unless revokeSessions=true",
            "parameters": [
                {"name": "revokeSessions", "in": "query", "required": False, "schema": {"enum": ["true", "false"]}}
            ],
            "responses": {"204": _NO_CONTENT, **_errors(400, 403, 404, 409)},
        },
    },
    "/v1/tasks/{taskId}/versions": {
        "parameters": [_TASK_ID_PARAM],
        "get": {
            "operationId": "listTaskVersions",
            "summary": "Every version of a task still kept, oldest first",
            "responses": {"200": _json(_ref("VersionList"), "The versions"), **_errors(404)},
        },
    },
    "/v1/tasks/sessions": {
        "get": {
            "operationId": "listTaskSessions",
            "summary": "Live task sessions: every identity's for admins, its own for any other identity",
            "parameters": [
                {"name": "identityId", "in": "query", "required": False, "schema": {"type": "string"}},
                {"name": "taskId", "in": "query", "required": False, "schema": {"type": "string"}},
            ],
            "responses": {"200": _json(_ref("SessionList"), "Soonest to expire first"), **_errors(403)},
        },
        "post": {
            "operationId": "createTaskSession",
            "summary": "Open a task session; the token is returned here only",
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("SessionInput")}}},
            "responses": {
                "201": _json(_ref("SessionCreated"), "The new session and its token"),
                **_errors(400, 403, 404, 413, 422),
            },
        },
    },
    "/v1/tasks/sessions/current": {
        "parameters": [_TASK_TOKEN_HEADER],
        "get": {
            "operationId": "getCurrentTaskSession",
            "summary": "The session X-Task-Token names",
            "responses": {"200": _json(_ref("Session"), "The session"), **_errors(403)},
        },
        "delete": {
            "operationId": "revokeCurrentTaskSession",
            "summary": "Revoke the session X-Task-Token names",
            "responses": {"204": _NO_CONTENT, **_errors(403)},
        },
    },
    "/v1/tasks/sessions/{tokenId}": {
        "parameters": [_TOKEN_ID_PARAM],
        "get": {
            "operationId": "getTaskSession",
            "summary": "One session (its owner, or an admin)",
            "responses": {"200": _json(_ref("Session"), "The session"), **_errors(403, 404)},
        },
        "delete": {
            "operationId": "revokeTaskSession",
            "summary": "Revoke a session at once, on every replica (its owner, or an admin)",
            "responses": {"204": _NO_CONTENT, **_errors(403, 404)},
        },
    },
}


def openapi_document(version: str) -> dict[str, Any]:
    """The whole document; ``version`` is the gateway's own."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mcp-gateway REST API",
            "version": version,
            "description": "Task definitions and task sessions. Errors are JSON {error, message[, details]}.",
        },
        "security": [{"bearer": []}],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API key or a JWT of an identity"}
            },
        },
    }
