"""``/v1/tasks[/{id}[/versions]]``: task definitions managed over HTTP.

Who may do what: only identities with the ``admin`` role write (403 otherwise). Reads are narrower than the contract's
default ("admins only") because agents need to discover what they may start: an admin reads every task, any other
identity reads exactly the tasks it may start (``scopes.may_start``); any other task answers 404, as if it did not
exist. Config-declared tasks are listed with ``source: config`` and are read-only (409).

A body is checked in full before anything is written: every problem comes back at once with its JSON pointer (422),
and ``contextSchema`` and ``outputSchema`` are checked against their own meta-schema so each violation points into the
schema.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Any

from jsonschema import validators
from starlette.requests import Request
from starlette.responses import Response

from mcp_gateway.config import Identity, ServerConfig, TaskDefinition, parse_task
from mcp_gateway.errors import BadRequest, ConfigError, Forbidden, NotFound, ValidationFailed
from mcp_gateway.http.responses import json_response, read_json_object
from mcp_gateway.identity.authenticator import Authenticator
from mcp_gateway.tasks.definitions import CompiledTask, TaskDefinitions
from mcp_gateway.tasks.sessions import TaskSessions
from mcp_gateway.tasks.who_may_start import may_start

MAX_BODY_BYTES = 256 * 1024
_TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# Paths under /v1/tasks/ that name an endpoint, not a task.
_RESERVED_IDS = frozenset({"sessions"})
_PROBLEM_PATH = re.compile(r"^task((?:\.[A-Za-z]+|\[\d+\])*): (.*)$", re.DOTALL)


def _pointer(path: list[str | int]) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


_SCHEMA_FIELDS = ("contextSchema", "outputSchema")


def schema_violations(schema: Any, field: str = "contextSchema") -> list[dict[str, str]]:
    """Every way ``schema`` (the body's ``field``) fails its own meta-schema, each with a pointer from the task body's
    root."""
    if not isinstance(schema, dict | bool):
        return [{"pointer": f"/{field}", "message": "must be a JSON Schema (an object)"}]
    meta_cls = validators.validator_for(schema)
    meta = meta_cls(meta_cls.META_SCHEMA)
    found = [
        {"pointer": _pointer([field, *error.absolute_path]), "message": error.message}
        for error in meta.iter_errors(schema)
    ]
    return sorted(found, key=lambda v: (v["pointer"], v["message"]))


def _problem_details(problems: list[str]) -> list[dict[str, str]]:
    """``task.allowedTools[0]: must be ...`` (the config reader's paths) as JSON pointers."""
    details = []
    for problem in problems:
        match = _PROBLEM_PATH.match(problem)
        if match is None:
            details.append({"pointer": "", "message": problem})
            continue
        parts = re.findall(r"\.([A-Za-z]+)|\[(\d+)\]", match.group(1))
        path: list[str | int] = [name or int(index) for name, index in parts]
        details.append({"pointer": _pointer(path), "message": match.group(2)})
    return details


def definition_from_body(payload: dict[str, Any], path_id: str | None, identity_ids: frozenset[str]) -> TaskDefinition:
    """A task body as a definition, or 422 listing every problem; ``path_id`` is the id a PUT names."""
    details = schema_violations(payload.get("contextSchema", {"type": "object"}))
    if payload.get("outputSchema") is not None:
        details += schema_violations(payload["outputSchema"], "outputSchema")
    if path_id is not None:
        if "id" in payload and payload["id"] != path_id:
            details.append({"pointer": "/id", "message": f"must be {path_id!r}, the id in the path, or absent"})
        payload = {**payload, "id": path_id}
    # Read-only fields a client may echo back from a GET; the gateway sets them.
    payload = {k: v for k, v in payload.items() if k not in ("source", "version", "modified", "warnings")}
    definition: TaskDefinition | None = None
    try:
        definition = parse_task(payload, identity_ids)
    except ConfigError as exc:
        # The schemas' own problems are already listed above, each with its pointer.
        details += [
            d
            for d in _problem_details(exc.problems)
            if not d["pointer"].startswith(tuple(f"/{f}" for f in _SCHEMA_FIELDS))
        ]
    if definition is not None and (not _TASK_ID.match(definition.id) or definition.id in _RESERVED_IDS):
        details.append({"pointer": "/id", "message": f"must match {_TASK_ID.pattern} and not be 'sessions'"})
    if details or definition is None:
        noun = "problem" if len(details) == 1 else "problems"
        raise ValidationFailed(f"the task definition has {len(details)} {noun}", details=details)
    return definition


def tool_pattern_warnings(task: TaskDefinition, tool_names: list[str]) -> list[dict[str, str]]:
    """allowedTools patterns that name no tool any upstream exposes right now (a typo, or an upstream down)."""
    return [
        {"pointer": f"/allowedTools/{i}", "message": f"{pattern!r} names no tool any upstream exposes now"}
        for i, pattern in enumerate(task.allowed_tools or ())
        if not any(fnmatchcase(name, pattern) for name in tool_names)
    ]


class TaskDefinitionsApi:
    def __init__(
        self,
        authenticator: Authenticator,
        definitions: TaskDefinitions,
        sessions: TaskSessions,
        tool_names: Callable[[], list[str]],
        server: ServerConfig,
    ) -> None:
        self._auth = authenticator
        self._definitions = definitions
        self._sessions = sessions
        self._tool_names = tool_names
        self._limit = min(server.max_body_bytes, MAX_BODY_BYTES)
        self._max_depth = server.max_json_depth

    async def _caller(self, request: Request) -> Identity:
        return await self._auth.authenticate(request.headers.get("authorization"))

    async def _admin(self, request: Request) -> Identity:
        identity = await self._caller(request)
        if not identity.is_admin:
            raise Forbidden("only identities with the admin role may change task definitions")
        return identity

    @staticmethod
    def _readable(identity: Identity, task: CompiledTask) -> bool:
        return identity.is_admin or may_start(identity, task.definition)

    async def listing(self, request: Request) -> Response:
        identity = await self._caller(request)
        tasks = [task.to_document() for task in await self._definitions.all() if self._readable(identity, task)]
        return json_response({"tasks": tasks})

    async def get(self, request: Request) -> Response:
        identity = await self._caller(request)
        return json_response((await self._readable_task(identity, request.path_params["task_id"])).to_document())

    async def versions(self, request: Request) -> Response:
        identity = await self._caller(request)
        task_id = request.path_params["task_id"]
        await self._readable_task(identity, task_id)
        history = await self._definitions.history(task_id)
        return json_response({"versions": [task.to_document() for task in history]})

    async def _readable_task(self, identity: Identity, task_id: str) -> CompiledTask:
        task = await self._definitions.current(task_id)
        if task is None or not self._readable(identity, task):
            raise NotFound(f"unknown task {task_id!r}")
        return task

    async def create(self, request: Request) -> Response:
        await self._admin(request)
        definition = definition_from_body(await self._body(request), None, self._auth.identity_ids())
        written = await self._definitions.write(definition, create=True)
        return self._written(written, 201)

    async def replace(self, request: Request) -> Response:
        await self._admin(request)
        body = await self._body(request)
        definition = definition_from_body(body, request.path_params["task_id"], self._auth.identity_ids())
        written = await self._definitions.write(definition, create=False)
        return self._written(written, 200)

    async def delete(self, request: Request) -> Response:
        await self._admin(request)
        revoke = request.query_params.get("revokeSessions", "false")
        if revoke not in ("true", "false"):
            raise BadRequest(f"revokeSessions must be true or false, got {revoke!r}")
        task_id = request.path_params["task_id"]
        await self._definitions.delete(task_id)
        if revoke == "true":
            await self._sessions.revoke_all(task_id)
        return Response(status_code=204)

    def _written(self, task: CompiledTask, status: int) -> Response:
        return json_response({**task.to_document(), "warnings": self._warnings(task.definition)}, status)

    def _warnings(self, task: TaskDefinition) -> list[dict[str, str]]:
        return tool_pattern_warnings(task, self._tool_names())

    async def _body(self, request: Request) -> dict[str, Any]:
        return await read_json_object(request, self._limit, self._max_depth, "a task definition")
