"""The pieces every part of the OpenAPI document is built from: references, JSON answers, and the error answers.

Errors are declared here once because they are produced in one place too (``http/responses.py``): whatever the
endpoint, a refusal is ``{"error", "message"[, "details"]}`` with the status its ``GatewayError`` carries.
"""

from __future__ import annotations

from typing import Any

STRING_LIST_OR_NULL: dict[str, Any] = {"type": ["array", "null"], "items": {"type": "string", "minLength": 1}}
STRING_MAP: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}
TIMESTAMP: dict[str, Any] = {"type": "string", "format": "date-time"}
TIMESTAMP_OR_NULL: dict[str, Any] = {"type": ["string", "null"], "format": "date-time"}
NO_CONTENT: dict[str, Any] = {"description": "Done"}
BOOLEAN_QUERY: dict[str, Any] = {"type": "string", "enum": ["true", "false"]}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_answer(schema: dict[str, Any], description: str, *, location: bool = False) -> dict[str, Any]:
    """A JSON response; ``location`` when it carries a ``Location`` header naming what was created."""
    answer: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if location:
        answer["headers"] = {
            "Location": {"description": "The path of what was created", "schema": {"type": "string"}, "required": True}
        }
    return answer


def json_body(schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def path_param(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string", "minLength": 1}}


def query_param(name: str, schema: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        param["description"] = description
    return param


_MEANINGS = {
    400: "Malformed body or query",
    401: "Missing, invalid or expired credential or task token",
    403: "Not allowed for this identity",
    404: "Not found (or not visible to this identity)",
    409: "Conflict with what exists: a taken id or name, something read-only, or a finished run",
    413: "Body too large",
    415: "A body not sent as Content-Type: application/json",
    422: "The body fails validation; every problem with its JSON pointer",
    429: "Over a rate limit; Retry-After says when to try again",
    503: "The store is unreachable (fail closed)",
}


def errors(*statuses: int) -> dict[str, Any]:
    """The error answers of an operation; 401 and 503 can answer any request (every one needs a credential, and
    most reach the store)."""
    return {str(status): json_answer(ref("Error"), _MEANINGS[status]) for status in sorted({401, 503, *statuses})}


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
}
