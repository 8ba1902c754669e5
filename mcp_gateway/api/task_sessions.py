"""``/v1/tasks/sessions``: create, list, inspect and revoke task sessions.

Field names follow the devctrl API that agents already call. The token is returned exactly once, at creation;
every later answer describes the session without it. An identity sees and revokes its own sessions; an admin sees
and revokes every identity's (the console's live view).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from mcp_gateway.config import ServerConfig
from mcp_gateway.core.limits import Limiter
from mcp_gateway.eras.context import TASK_TOKEN_HEADER
from mcp_gateway.errors import BadRequest, Forbidden, GatewayError, InvalidTaskToken
from mcp_gateway.http.responses import error_response, json_response, read_json_object
from mcp_gateway.identity.authenticator import Authenticator
from mcp_gateway.tasks.sessions import TaskSessions

MAX_BODY_BYTES = 256 * 1024


async def guarded(handler: Callable[[Request], Awaitable[Response]], request: Request) -> Response:
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

    async def _create(self, request: Request) -> Response:
        identity = await self._auth.authenticate(request.headers.get("authorization"))
        await self._limiter.charge_session_start(identity)
        payload = await read_json_object(request, self._limit, self._max_depth, '{"taskId", "context", "ttl"?}')
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

    async def sessions(self, request: Request) -> Response:
        return await guarded(self._create if request.method == "POST" else self._list, request)

    async def _list(self, request: Request) -> Response:
        identity = await self._auth.authenticate(request.headers.get("authorization"))
        wanted = request.query_params.get("identityId")
        if not identity.is_admin:
            if wanted not in (None, identity.id):
                raise Forbidden("only admins may list the sessions of other identities")
            wanted = identity.id
        live = await self._sessions.live(identity_id=wanted, task_id=request.query_params.get("taskId"))
        return json_response({"sessions": [session.to_public_dict() for session in live]})

    async def current(self, request: Request) -> Response:
        return await guarded(self._current, request)

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
        return await guarded(self._by_id, request)

    async def _by_id(self, request: Request) -> Response:
        identity = await self._auth.authenticate(request.headers.get("authorization"))
        token_id = request.path_params["token_id"]
        owner = None if identity.is_admin else identity.id
        if request.method == "DELETE":
            await self._sessions.revoke(token_id, owner)
            return Response(status_code=204)
        session = await self._sessions.get(token_id, owner)
        return json_response(session.to_public_dict())
