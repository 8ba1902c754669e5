"""``/v1/tasks/sessions``: create, inspect and revoke task sessions.

Field names follow the devctrl API that agents already call. The token is returned exactly once, at creation;
every later answer describes the session without it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from mcp_gateway.auth import Authenticator
from mcp_gateway.config import ServerConfig
from mcp_gateway.errors import BadRequest, GatewayError, InvalidTaskToken
from mcp_gateway.http.json_nesting import nesting_bound
from mcp_gateway.http.mcp_context import TASK_TOKEN_HEADER
from mcp_gateway.http.responses import error_response, json_response, read_body
from mcp_gateway.limits import Limiter
from mcp_gateway.sessions import TaskSessions

MAX_BODY_BYTES = 256 * 1024


async def _guarded(handler: Callable[[Request], Awaitable[Response]], request: Request) -> Response:
    try:
        return await handler(request)
    except GatewayError as exc:
        return error_response(exc)


class TasksApi:
    def __init__(
        self, authenticator: Authenticator, sessions: TaskSessions, server: ServerConfig, limiter: Limiter
    ) -> None:
        self._auth = authenticator
        self._sessions = sessions
        self._limiter = limiter
        self._limit = min(server.max_body_bytes, MAX_BODY_BYTES)
        self._max_depth = server.max_json_depth

    async def create(self, request: Request) -> Response:
        return await _guarded(self._create, request)

    async def _create(self, request: Request) -> Response:
        identity = await self._auth.authenticate(request.headers.get("authorization"))
        await self._limiter.charge_session_start(identity)
        body = await read_body(request, self._limit)
        if nesting_bound(body, self._max_depth) > self._max_depth:
            raise BadRequest(f"body nests deeper than {self._max_depth} levels")
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise BadRequest(f"body is not valid JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise BadRequest('body must be a JSON object {"taskId", "context", "ttl"?}')
        task_id = payload.get("taskId")
        if not isinstance(task_id, str) or not task_id:
            raise BadRequest("taskId must be a non-empty string")
        context = payload.get("context", {})
        token, session = await self._sessions.create(identity, task_id, context, payload.get("ttl"))
        ttl = round((session.expires_at - session.created_at).total_seconds())
        return json_response(
            {
                "taskToken": token,
                "tokenId": session.token_id,
                "taskId": session.task_id,
                "taskName": session.task_name,
                "expiresAt": session.expires_at.isoformat().replace("+00:00", "Z"),
                "ttl": ttl,
            },
            status=201,
            headers={"cache-control": "no-store"},
        )

    async def current(self, request: Request) -> Response:
        return await _guarded(self._current, request)

    async def _current(self, request: Request) -> Response:
        identity = await self._auth.authenticate(request.headers.get("authorization"))
        token = request.headers.get(TASK_TOKEN_HEADER)
        if not token:
            raise InvalidTaskToken("missing X-Task-Token header")
        session = await self._sessions.resolve(token, identity.id)
        if request.method == "DELETE":
            await self._sessions.revoke(session.token_id, identity.id)
            return Response(status_code=204)
        return json_response(session.to_public_dict())

    async def by_id(self, request: Request) -> Response:
        return await _guarded(self._by_id, request)

    async def _by_id(self, request: Request) -> Response:
        identity = await self._auth.authenticate(request.headers.get("authorization"))
        token_id = request.path_params["token_id"]
        if request.method == "DELETE":
            await self._sessions.revoke(token_id, identity.id)
            return Response(status_code=204)
        session = await self._sessions.get(token_id, identity.id)
        return json_response(session.to_public_dict())
