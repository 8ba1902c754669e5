"""The live-reload part of the OpenAPI document: ``POST /v1/config/reload`` (``app.py``, ``reload.py``)."""

from __future__ import annotations

from typing import Any

from mcp_gateway.api.openapi_blocks import errors, json_answer, ref

_OUTCOME: dict[str, Any] = {
    "applied": {"type": "boolean"},
    "summary": {"type": "string", "description": "The one line the gateway also logs"},
    "problems": {"type": "array", "items": {"type": "string"}, "description": "Why a refused reload was refused"},
    "needsRestart": {
        "type": "array",
        "items": {"type": "string"},
        "description": "Settings whose change waits for a restart (their running value is kept)",
    },
}

SCHEMAS: dict[str, Any] = {
    "ConfigReloaded": {"type": "object", "required": list(_OUTCOME), "properties": _OUTCOME},
    "ConfigRefused": {
        "type": "object",
        "required": ["error", "message", *_OUTCOME],
        "properties": {"error": {"const": "config_refused"}, "message": {"type": "string"}, **_OUTCOME},
    },
}

PATHS: dict[str, Any] = {
    "/v1/config/reload": {
        "post": {
            "operationId": "reloadConfig",
            "summary": "Apply the config file again, as SIGHUP does (admins)",
            "description": (
                "All or nothing: the file is parsed, its policies compiled and its new upstreams connected before "
                "anything changes; a refused reload leaves the running config in force."
            ),
            "responses": {
                "200": json_answer(ref("ConfigReloaded"), "Applied"),
                "422": json_answer(ref("ConfigRefused"), "Refused, with every problem; nothing changed"),
                **errors(403, 409),
            },
        },
    },
}
