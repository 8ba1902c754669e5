"""The task part of the OpenAPI document: ``/v1/tasks`` (definitions and versions) and ``/v1/tasks/sessions``."""

from __future__ import annotations

from typing import Any

from mcp_gateway.api.openapi_blocks import (
    NO_CONTENT,
    STRING_LIST_OR_NULL,
    STRING_MAP,
    errors,
    json_answer,
    ref,
)

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

SCHEMAS: dict[str, Any] = {
    "StartableBy": {
        "type": "object",
        "properties": {
            "identities": {"type": "array", "items": {"type": "string"}},
            "labels": STRING_MAP,
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
            "labels": STRING_MAP,
            "contextSchema": {"type": "object", "description": "A JSON Schema for the session context"},
            "allowedTools": STRING_LIST_OR_NULL,
            "allowedResources": STRING_LIST_OR_NULL,
            "allowedPrompts": STRING_LIST_OR_NULL,
            "startableBy": {"oneOf": [ref("StartableBy"), {"type": "null"}]},
            "instruction": {"type": "string", "description": "What the task is for, for an agent running it"},
            "outputSchema": {"type": "object", "description": "A JSON Schema for the task's result"},
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
            "labels": STRING_MAP,
            "contextSchema": {"type": ["object", "boolean"]},
            "allowedTools": STRING_LIST_OR_NULL,
            "allowedResources": STRING_LIST_OR_NULL,
            "allowedPrompts": STRING_LIST_OR_NULL,
            "startableBy": {"oneOf": [ref("StartableBy"), {"type": "null"}]},
            "instruction": {"type": ["string", "null"]},
            "outputSchema": {"type": ["object", "null"]},
            "source": {"enum": ["config", "api"], "description": "config tasks are read-only"},
            "version": {"type": "integer", "minimum": 1},
            "modified": {"type": ["string", "null"], "format": "date-time"},
        },
    },
    "TaskWritten": {
        "allOf": [
            ref("Task"),
            {
                "type": "object",
                "required": ["warnings"],
                "properties": {
                    "warnings": {
                        "type": "array",
                        "items": ref("Problem"),
                        "description": "allowedTools patterns that name no tool any upstream exposes now",
                    }
                },
            },
        ]
    },
    "TaskList": {
        "type": "object",
        "required": ["tasks"],
        "properties": {"tasks": {"type": "array", "items": ref("Task")}},
    },
    "VersionList": {
        "type": "object",
        "required": ["versions"],
        "properties": {"versions": {"type": "array", "items": ref("Task")}},
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
        "properties": {"sessions": {"type": "array", "items": ref("Session")}},
    },
}

_TASK_BODY = {"required": True, "content": {"application/json": {"schema": ref("TaskInput")}}}

PATHS: dict[str, Any] = {
    "/v1/tasks": {
        "get": {
            "operationId": "listTasks",
            "summary": "Task definitions: every task for admins, the tasks it may start for any other identity",
            "responses": {"200": json_answer(ref("TaskList"), "The tasks"), **errors()},
        },
        "post": {
            "operationId": "createTask",
            "summary": "Create a task (admins)",
            "requestBody": _TASK_BODY,
            "responses": {
                "201": json_answer(ref("TaskWritten"), "Created as version 1"),
                **errors(400, 403, 409, 413, 415, 422),
            },
        },
    },
    "/v1/tasks/{taskId}": {
        "parameters": [_TASK_ID_PARAM],
        "get": {
            "operationId": "getTask",
            "summary": "The current version of a task",
            "responses": {"200": json_answer(ref("Task"), "The task"), **errors(404)},
        },
        "put": {
            "operationId": "replaceTask",
            "summary": "Replace a task with a new version (admins; config tasks are read-only)",
            "requestBody": _TASK_BODY,
            "responses": {
                "200": json_answer(ref("TaskWritten"), "The new version"),
                **errors(400, 403, 404, 409, 413, 415, 422),
            },
        },
        "delete": {
            "operationId": "deleteTask",
            "summary": "Delete a task (admins); its sessions live on unless revokeSessions=true",
            "parameters": [
                {"name": "revokeSessions", "in": "query", "required": False, "schema": {"enum": ["true", "false"]}}
            ],
            "responses": {"204": NO_CONTENT, **errors(400, 403, 404, 409)},
        },
    },
    "/v1/tasks/{taskId}/versions": {
        "parameters": [_TASK_ID_PARAM],
        "get": {
            "operationId": "listTaskVersions",
            "summary": "Every version of a task still kept, oldest first",
            "responses": {"200": json_answer(ref("VersionList"), "The versions"), **errors(404)},
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
            "responses": {"200": json_answer(ref("SessionList"), "Soonest to expire first"), **errors(403)},
        },
        "post": {
            "operationId": "createTaskSession",
            "summary": "Open a task session; the token is returned here only",
            "requestBody": {"required": True, "content": {"application/json": {"schema": ref("SessionInput")}}},
            "responses": {
                "201": json_answer(ref("SessionCreated"), "The new session and its token"),
                **errors(400, 403, 404, 413, 415, 422, 429),
            },
        },
    },
    "/v1/tasks/sessions/current": {
        "parameters": [_TASK_TOKEN_HEADER],
        "get": {
            "operationId": "getCurrentTaskSession",
            "summary": "The session X-Task-Token names",
            "responses": {"200": json_answer(ref("Session"), "The session"), **errors(403)},
        },
        "delete": {
            "operationId": "revokeCurrentTaskSession",
            "summary": "Revoke the session X-Task-Token names",
            "responses": {"204": NO_CONTENT, **errors(403)},
        },
    },
    "/v1/tasks/sessions/{tokenId}": {
        "parameters": [_TOKEN_ID_PARAM],
        "get": {
            "operationId": "getTaskSession",
            "summary": "One session (its owner, or an admin)",
            "responses": {"200": json_answer(ref("Session"), "The session"), **errors(403, 404)},
        },
        "delete": {
            "operationId": "revokeTaskSession",
            "summary": "Revoke a session at once, on every replica (its owner, or an admin)",
            "responses": {"204": NO_CONTENT, **errors(403, 404)},
        },
    },
}
