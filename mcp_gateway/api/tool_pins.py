"""``/v1/tools/pins`` and ``/v1/tools/{name}/approve``: admins review changed tool definitions and approve them.

Only admins get past authentication here (403 for everyone else, before a tool name is even looked at, so the
answers reveal nothing about tools a caller may not see). Approving re-reviews this replica's catalog at once;
other replicas serve the tool again on their next pin check (``server.pinRecheck``).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mcp_gateway.config import GatewayConfig, Identity
from mcp_gateway.core.audit import AuditLog, AuditRecord
from mcp_gateway.core.pins import NothingToApprove, PinChange, PinStore, exposed_tool_name
from mcp_gateway.core.policy import Decision
from mcp_gateway.errors import BadRequest, Conflict, Forbidden, GatewayError, NotFound
from mcp_gateway.http.responses import error_response, json_response, read_body
from mcp_gateway.identity.authenticator import Authenticator
from mcp_gateway.upstreams.catalog import LiveCatalog

MAX_BODY_BYTES = 4096


class ToolsApi:
    def __init__(
        self, authenticator: Authenticator, config: GatewayConfig, pins: PinStore, catalog: LiveCatalog, audit: AuditLog
    ) -> None:
        self._auth = authenticator
        self._separator = config.server.tool_separator
        self._pins = pins
        self._catalog = catalog
        self._audit = audit

    async def pins(self, request: Request) -> Response:
        try:
            await self._admin(request)
            changes = await self._pins.changes()
            return json_response({"tools": [self._describe(change) for change in changes]})
        except GatewayError as exc:
            return error_response(exc)

    async def approve(self, request: Request) -> Response:
        try:
            return await self._approve(request)
        except GatewayError as exc:
            return error_response(exc)

    async def _approve(self, request: Request) -> Response:
        admin = await self._admin(request)
        name = request.path_params["name"]
        snapshot = self._catalog.snapshot()
        entry = snapshot.tool(name) or snapshot.withheld(name)
        if entry is None:
            raise NotFound(f"unknown tool {name!r}")
        sha256 = await self._expected_hash(request)
        try:
            approved = await self._pins.approve(entry.upstream_name, entry.original_name, admin.id, sha256)
        except NothingToApprove as exc:
            raise Conflict(str(exc)) from exc
        record = AuditRecord.begin(
            identity=admin.id,
            task_session_id=None,
            task_name=None,
            tool=name,
            upstream=entry.upstream_name,
            args={},
            decision=Decision(allowed=True, reason=f"approved tool definition sha256 {approved.sha256}"),
            method="tools/approve",
        )
        self._audit.record(record.finish(outcome="approved", latency_ms=None))
        await self._catalog.refresh()
        return json_response({"name": name, "upstream": entry.upstream_name, **approved.to_public()})

    async def _admin(self, request: Request) -> Identity:
        identity = await self._auth.authenticate(request.headers.get("authorization"))
        if not identity.is_admin:
            raise Forbidden("only admins may review and approve tool definitions")
        return identity

    @staticmethod
    async def _expected_hash(request: Request) -> str | None:
        """The optional ``{"sha256": ...}`` body: approve only the definition the admin reviewed."""
        body = await read_body(request, MAX_BODY_BYTES)
        if not body.strip():
            return None
        try:
            payload: Any = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise BadRequest(f"body is not valid JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise BadRequest('body must be a JSON object {"sha256"?}')
        sha256 = payload.get("sha256")
        if sha256 is not None and not isinstance(sha256, str):
            raise BadRequest("sha256 must be a string")
        return sha256

    def _describe(self, change: PinChange) -> dict[str, Any]:
        # The upstreams in force, which a config reload may have changed since start-up.
        upstreams = {connection.name: connection.config for connection in self._catalog.snapshot().connections()}
        upstream = upstreams.get(change.upstream)
        name = exposed_tool_name(change.upstream, change.tool, upstream is None or upstream.prefix, self._separator)
        return {
            "name": name,
            "upstream": change.upstream,
            "tool": change.tool,
            "mode": upstream.pinning if upstream is not None else None,
            "withheld": self._catalog.snapshot().withheld(name) is not None,
            "pinned": change.pinned.to_public(),
            "current": change.current.to_public(),
            "diff": change.diff(),
        }
