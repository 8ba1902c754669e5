"""The REST surface (``/v1/*``) described as an OpenAPI 3.1 document, served at ``/openapi.json``.

Written out as data, not derived from the handlers: it is a promise to clients, and a property-based test
(``tests/api/test_openapi.py``, schemathesis) drives the running gateway from it so the promise and the code cannot
drift apart silently; another test checks that every ``/v1`` route the app registers is described. Change a
handler's answers and its part of this document together: ``openapi_tasks.py``, ``openapi_agents.py``,
``openapi_tools.py``, ``openapi_config.py``.
"""

from __future__ import annotations

from typing import Any

from mcp_gateway.api import openapi_agents, openapi_blocks, openapi_config, openapi_tasks, openapi_tools

_PARTS = (openapi_tasks, openapi_agents, openapi_tools, openapi_config)


def openapi_document(version: str) -> dict[str, Any]:
    """The whole document; ``version`` is the gateway's own."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = dict(openapi_blocks.SCHEMAS)
    for part in _PARTS:
        paths.update(part.PATHS)
        schemas.update(part.SCHEMAS)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mcp-gateway REST API",
            "version": version,
            "description": (
                "Task definitions and task sessions, Task Agents and their runs, the review of changed tool "
                "definitions, and live config reload. Errors are JSON {error, message[, details]}."
            ),
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API key or a JWT of an identity"}
            },
        },
    }
