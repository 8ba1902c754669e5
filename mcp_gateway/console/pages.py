"""The console's pages: tasks, task sessions, policy playground, overview, audit, the REST API; and sign-in (agents:
``agent_pages``).

Each handler reads the signed-in admin from the cookie (or redirects to sign-in), does one thing through the
gateway's own objects, and renders one template. Errors a user can fix (bad JSON, a schema problem) are shown
inline next to the field, with ``aria-invalid`` and ``aria-describedby``; nothing here answers 500 for bad input.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from mcp_gateway.agents.service import Agents
from mcp_gateway.api.openapi import openapi_document
from mcp_gateway.api.task_definitions import definition_from_body, tool_pattern_warnings
from mcp_gateway.config import GatewayConfig, Identity
from mcp_gateway.console.agent_pages import AgentPages
from mcp_gateway.console.signin import COOKIE_NAME, AdminKeys, ConsoleSession, CookieSigner
from mcp_gateway.core.audit import AuditRecord
from mcp_gateway.errors import GatewayError, ValidationFailed
from mcp_gateway.gateway import Gateway
from mcp_gateway.http.responses import read_body
from mcp_gateway.ops.explain import explain

_HERE = Path(__file__).resolve().parent
_STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
_FORM_LIMIT = 256 * 1024
_SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
}
_AUDIT_ROWS = 200

Page = Callable[[Request, Identity, ConsoleSession], Awaitable[Response]]


class Console:
    def __init__(
        self, config: GatewayConfig, secret: str, gateway: Callable[[], Gateway], agents: Callable[[], Agents]
    ) -> None:
        self._config = config
        self._running = gateway
        self._agent_pages = AgentPages(agents, self._render)
        self._signer = CookieSigner(secret, config.console.session_seconds)
        self._admin_keys = AdminKeys(config.identities)
        self._keys_of = config.identities
        self._started = time.monotonic()
        self._templates = Environment(
            loader=FileSystemLoader(_HERE / "templates"), autoescape=select_autoescape(default=True)
        )

    @property
    def _gateway(self) -> Gateway:
        """The running gateway: pages are only served after the lifespan started it."""
        return self._running()

    @property
    def _keys(self) -> AdminKeys:
        """The keys of the identities in force: a config reload that removes a key ends the sessions it opened."""
        identities = self._gateway.config.identities
        if identities is not self._keys_of:
            self._admin_keys, self._keys_of = AdminKeys(identities), identities
        return self._admin_keys

    def routes(self) -> list[BaseRoute]:
        page = self._page
        agents = self._agent_pages
        return [
            Route("/console", page(self.overview), methods=["GET"]),
            Route("/console/login", self.login, methods=["GET", "POST"]),
            Route("/console/logout", page(self.logout), methods=["POST"]),
            Route("/console/tasks", page(self.tasks), methods=["GET"]),
            Route("/console/tasks/new", page(self.task_new), methods=["GET", "POST"]),
            Route("/console/tasks/{task_id}", page(self.task_edit), methods=["GET", "POST"]),
            Route("/console/tasks/{task_id}/delete", page(self.task_delete), methods=["POST"]),
            Route("/console/sessions", page(self.sessions), methods=["GET"]),
            Route("/console/sessions/{token_id}/revoke", page(self.revoke), methods=["POST"]),
            Route("/console/agents", page(agents.listing), methods=["GET"]),
            Route("/console/agents/{agent_id}", page(agents.agent), methods=["GET"]),
            Route("/console/runs/{run_id}", page(agents.run), methods=["GET"]),
            Route("/console/playground", page(self.playground), methods=["GET", "POST"]),
            Route("/console/audit", page(self.audit), methods=["GET"]),
            Route("/console/api", page(self.api), methods=["GET"]),
            Route("/console/static/{name}", self.static, methods=["GET"]),
        ]

    # --- plumbing: cookie, CSRF, Origin, rendering ---

    def _render(
        self, request: Request, template: str, session: ConsoleSession, status: int = 200, **values: Any
    ) -> Response:
        html = self._templates.get_template(template).render(
            csrf=session.csrf, signed_in=session.identity_id, path=request.url.path, **values
        )
        response = HTMLResponse(html, status_code=status, headers=_SECURITY_HEADERS)
        self._set_cookie(response, session)
        return response

    def _set_cookie(self, response: Response, session: ConsoleSession) -> None:
        response.set_cookie(
            COOKIE_NAME,
            self._signer.encode(session),
            max_age=self._signer.max_age,
            path="/console",
            httponly=True,
            samesite="strict",
            secure=self._config.server.host not in ("127.0.0.1", "localhost", "::1"),
        )

    def _cross_origin(self, request: Request) -> bool:
        """A POST from another site's page; SameSite=Strict and the CSRF token already stop it, this says so early."""
        origin = request.headers.get("origin")
        if origin is None or origin in self._config.server.allowed_origins:
            return False
        own = urlsplit(str(request.url))
        return origin != f"{own.scheme}://{own.netloc}"

    async def _form(self, request: Request) -> dict[str, str]:
        body = await read_body(request, _FORM_LIMIT)
        parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        return {key: values[-1] for key, values in parsed.items()}

    def _refused(self, request: Request, message: str, status: int) -> Response:
        session = ConsoleSession.anonymous()
        return self._render(request, "login.html", session, status=status, error=message)

    def _page(self, handler: Page) -> Callable[[Request], Awaitable[Response]]:
        """Signed-in admins only; POSTs need the session's CSRF token and a same-site Origin."""

        async def endpoint(request: Request) -> Response:
            session = self._signer.decode(request.cookies.get(COOKIE_NAME))
            identity = self._keys.identity(session.key_digest) if session else None
            if session is None or identity is None or identity.id != session.identity_id or not identity.is_admin:
                return RedirectResponse("/console/login", status_code=303)
            if request.method == "POST":
                if self._cross_origin(request):
                    return self._refused(request, "cross-origin form posts are refused", 403)
                form = await self._form(request)
                if not session.csrf_matches(form.get("csrf")):
                    return self._refused(request, "the form's CSRF token is missing or stale; sign in again", 403)
                request.state.form = form
            try:
                return await handler(request, identity, session)
            except GatewayError as exc:
                return self._render(request, "error.html", session, status=exc.status, error=exc.message)

        return endpoint

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            return Response("not found", status_code=404, media_type="text/plain")
        return FileResponse(_HERE / "static" / name, media_type=_STATIC[name], headers={"cache-control": "no-cache"})

    # --- sign-in ---

    async def login(self, request: Request) -> Response:
        session = self._signer.decode(request.cookies.get(COOKIE_NAME)) or ConsoleSession.anonymous()
        if request.method == "GET":
            return self._render(request, "login.html", session)
        if self._cross_origin(request):
            return self._refused(request, "cross-origin form posts are refused", 403)
        form = await self._form(request)
        if not session.csrf_matches(form.get("csrf")):
            return self._refused(request, "the form's CSRF token is missing or stale; reload and try again", 403)
        digest = AdminKeys.digest(form.get("key", "").strip())
        identity = self._keys.identity(digest)
        if identity is None:
            return self._render(request, "login.html", session, status=401, error="unknown or expired API key")
        if not identity.is_admin:
            message = f"identity {identity.id!r} does not have the admin role; the console is for admins only"
            return self._render(request, "login.html", session, status=403, error=message)
        signed_in = ConsoleSession.anonymous()
        response = RedirectResponse("/console/tasks", status_code=303)
        self._set_cookie(response, replace(signed_in, identity_id=identity.id, key_digest=digest))
        return response

    async def logout(self, request: Request, identity: Identity, session: ConsoleSession) -> Response:
        response = RedirectResponse("/console/login", status_code=303)
        response.delete_cookie(COOKIE_NAME, path="/console")
        return response

    # --- tasks ---

    async def tasks(self, request: Request, identity: Identity, session: ConsoleSession) -> Response:
        tasks = [task.to_document() for task in await self._gateway.definitions.all()]
        return self._render(request, "tasks.html", session, tasks=tasks, page="tasks")

    async def task_new(self, request: Request, identity: Identity, session: ConsoleSession) -> Response:
        blank = {"id": "", "name": "", "contextSchema": {"type": "object"}, "allowedTools": None, "startableBy": None}
        if request.method == "GET":
            return self._task_form(request, session, blank, creating=True)
        return await self._save(request, session, blank, creating=True)

    async def task_edit(self, request: Request, identity: Identity, session: ConsoleSession) -> Response:
        task_id = request.path_params["task_id"]
        current = await self._gateway.definitions.current(task_id)
        if current is None:
            return self._render(request, "error.html", session, status=404, error=f"unknown task {task_id!r}")
        if request.method == "GET":
            return self._task_form(request, session, current.to_document(), creating=False)
        return await self._save(request, session, current.to_document(), creating=False)

    def _task_form(
        self,
        request: Request,
        session: ConsoleSession,
        document: Mapping[str, Any],
        *,
        creating: bool,
        status: int = 200,
        errors: list[dict[str, str]] | None = None,
        warnings: list[dict[str, str]] | None = None,
        saved: bool = False,
        fields: Mapping[str, str] | None = None,
        history: list[dict[str, Any]] | None = None,
    ) -> Response:
        shown = dict(fields) if fields is not None else _form_fields(document)
        return self._render(
            request,
            "task_form.html",
            session,
            status=status,
            page="tasks",
            creating=creating,
            task=document,
            fields=shown,
            schema_errors=[e for e in errors or [] if e["pointer"].startswith("/contextSchema")],
            other_errors=[e for e in errors or [] if not e["pointer"].startswith("/contextSchema")],
            warnings=warnings or [],
            saved=saved,
            history=history or [],
        )

    async def _save(
        self, request: Request, session: ConsoleSession, base: Mapping[str, Any], *, creating: bool
    ) -> Response:
        form: dict[str, str] = request.state.form
        if not creating and base.get("source") == "config":
            errors = [{"pointer": "", "message": "this task is declared in the config file and is read-only"}]
            return self._task_form(request, session, base, creating=False, status=409, errors=errors)
        payload, errors = _payload(form, base)
        definitions = self._gateway.definitions
        if not errors:
            try:
                definition = definition_from_body(
                    payload, None if creating else str(base["id"]), self._gateway.authenticator.identity_ids()
                )
                written = await definitions.write(definition, create=creating)
            except ValidationFailed as exc:
                errors = list(exc.details or [])
            except GatewayError as exc:
                errors = [{"pointer": "", "message": exc.message}]
        if errors:
            return self._task_form(request, session, base, creating=creating, status=422, errors=errors, fields=form)
        names = [entry.name for entry in self._gateway.catalog.snapshot().tools()]
        history = [v.to_document() for v in await definitions.history(written.definition.id)]
        return self._task_form(
            request,
            session,
            written.to_document(),
            creating=False,
            warnings=tool_pattern_warnings(written.definition, names),
            saved=True,
            history=history,
        )

    async def task_delete(self, request: Request, identity: Identity, session: ConsoleSession) -> Response:
        task_id = request.path_params["task_id"]
        await self._gateway.definitions.delete(task_id)
        if request.state.form.get("revokeSessions") == "true":
            await self._gateway.sessions.revoke_all(task_id)
        return RedirectResponse("/console/tasks", status_code=303)

    # --- task sessions ---

    async def sessions(self, request: Request, identity: Identity, session: ConsoleSession) -> Response:
        wanted_identity = request.query_params.get("identity") or None
        wanted_task = request.query_params.get("task") or None
        live = await self._gateway.sessions.live(identity_id=wanted_identity, task_id=wanted_task)
        rows = [s.to_public_dict() for s in live]
        return self._render(
            request,
            "sessions.html",
            session,
            page="sessions",
            sessions=rows,
            identity_filter=wanted_identity or "",
            task_filter=wanted_task or "",
        )

    async def revoke(self, request: Request, identity: Identity, session: ConsoleSession) -> Response:
        await self._gateway.sessions.revoke(request.path_params["token_id"], None)
        return RedirectResponse("/console/sessions", status_code=303)

    # --- policy playground ---

    async def playground(self, request: Request, identity: Identity, session: ConsoleSession) -> Response:
        config = self._gateway.config
        tasks = await self._gateway.definitions.all()
        form: dict[str, str] = request.state.form if request.method == "POST" else {}
        fields = {
            "identity": form.get("identity", config.identities[0].id if config.identities else ""),
            "task": form.get("task", ""),
            "context": form.get("context", "{}"),
            "tool": form.get("tool", ""),
            "args": form.get("args", "{}"),
        }
        report: str | None = None
        allowed: bool | None = None
        errors: dict[str, str] = {}
        if request.method == "POST":
            context = _json_field(fields["context"], "context", errors)
            args = _json_field(fields["args"], "args", errors)
            if not fields["tool"]:
                errors["tool"] = "name the tool to call"
            if not errors:
                everything = replace(config, tasks=tuple(task.definition for task in tasks))
                report, allowed = explain(
                    everything,
                    identity_id=fields["identity"],
                    task_id=fields["task"] or None,
                    context=context,
                    tool=fields["tool"],
                    args=args,
                )
        return self._render(
            request,
            "playground.html",
            session,
            status=422 if errors else 200,
            page="playground",
            identities=[i.id for i in config.identities],
            tasks=[t.definition.id for t in tasks],
            tools=[entry.name for entry in self._gateway.catalog.snapshot().tools()],
            fields=fields,
            errors=errors,
            report=report,
            allowed=allowed,
        )

    # --- overview and audit ---

    async def overview(self, request: Request, identity: Identity, session: ConsoleSession) -> Response:
        snapshot = self._gateway.catalog.snapshot()
        counts: dict[str, int] = {}
        for entry in snapshot.tools():
            counts[entry.upstream_name] = counts.get(entry.upstream_name, 0) + 1
        upstreams = [
            {"name": c.name, "ready": c.ready, "tools": counts.get(c.name, 0), "error": c.last_error}
            for c in self._gateway.connections
        ]
        identities = [
            {
                "id": i.id,
                "name": i.name,
                "labels": dict(i.labels),
                "roles": list(i.roles),
                "allowedTools": None if i.allowed_tools is None else list(i.allowed_tools),
                "keys": len(i.api_keys),
            }
            for i in self._gateway.config.identities
        ]
        minutes = max((time.monotonic() - self._started) / 60, 1 / 60)
        metrics = self._gateway.metrics
        requests = _total(metrics.requests.collect())
        calls = _total(metrics.tool_calls.collect())
        denials = _total(metrics.tool_calls.collect(), decision="deny")
        counters = {
            "requests": requests,
            "requests_per_minute": requests / minutes,
            "tool_calls": calls,
            "denials": denials,
            "denials_per_minute": denials / minutes,
        }
        return self._render(
            request,
            "overview.html",
            session,
            page="overview",
            upstreams=upstreams,
            identities=identities,
            counters=counters,
        )

    async def audit(self, request: Request, identity: Identity, session: ConsoleSession) -> Response:
        filters = {key: request.query_params.get(key, "") for key in ("identity", "task", "tool", "decision")}
        after = request.query_params.get("after") or None
        shared = not self._config.store_url.startswith("memory://")
        rows: list[dict[str, Any]] = []
        last = after or ""
        if shared:
            entries = await self._gateway.store.read_stream(self._config.audit.stream_key, _AUDIT_ROWS, after)
            for entry in entries:
                last = entry.id
                try:
                    record = AuditRecord.from_json(entry.fields.get("record", ""))
                except ValueError:
                    continue
                if _matches(record, filters):
                    rows.append({"id": entry.id, **record.__dict__})
        rows.reverse()
        template = "audit_rows.html" if request.query_params.get("fragment") else "audit.html"
        response = self._render(
            request, template, session, page="audit", rows=rows, filters=filters, shared=shared, last=last
        )
        # Where the page's live updates continue from.
        response.headers["x-audit-last"] = last
        return response

    async def api(self, request: Request, identity: Identity, session: ConsoleSession) -> Response:
        """The ``/openapi.json`` document, one row per operation."""
        document = openapi_document(self._gateway.server_info["version"])
        operations = [
            {"method": method.upper(), "path": path, "summary": operation.get("summary", "")}
            for path, item in document["paths"].items()
            for method, operation in item.items()
            if method != "parameters"
        ]
        return self._render(request, "api.html", session, page="api", operations=operations, info=document["info"])


def _total(families: Any, **labels: str) -> int:
    total = 0.0
    for family in families:
        for sample in family.samples:
            if sample.name.endswith("_total") and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return int(total)


def _matches(record: AuditRecord, filters: Mapping[str, str]) -> bool:
    values = {
        "identity": record.identity,
        "task": record.task_name or "",
        "tool": record.tool or record.resource or record.prompt or "",
        "decision": record.decision,
    }
    return all(not wanted or wanted.lower() in values[key].lower() for key, wanted in filters.items())


def _json_field(text: str, name: str, errors: dict[str, str]) -> Any:
    try:
        return json.loads(text or "{}")
    except ValueError as exc:
        errors[name] = f"not valid JSON: {exc}"
        return None


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _form_fields(document: Mapping[str, Any]) -> dict[str, str]:
    """A task document as the edit form's text fields."""
    startable = document.get("startableBy") or {}
    tools = document.get("allowedTools")
    return {
        "id": str(document.get("id", "")),
        "name": str(document.get("name", "")),
        "allowedTools": "" if tools is None else "\n".join(tools),
        "startableBy": ", ".join(startable.get("identities", [])),
        "contextSchema": json.dumps(document.get("contextSchema", {"type": "object"}), indent=2),
    }


def _payload(form: Mapping[str, str], base: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The form over the task's current document: fields the form does not show (labels, resources) are kept."""
    payload = {k: v for k, v in base.items() if k not in ("source", "version", "modified")}
    errors: list[dict[str, str]] = []
    payload["id"] = form.get("id", "").strip() or payload.get("id", "")
    payload["name"] = form.get("name", "").strip()
    tools = _lines(form.get("allowedTools", ""))
    payload["allowedTools"] = tools or None
    startable = [s.strip() for s in form.get("startableBy", "").split(",") if s.strip()]
    payload["startableBy"] = {"identities": startable} if startable else None
    try:
        payload["contextSchema"] = json.loads(form.get("contextSchema", "") or "{}")
    except ValueError as exc:
        errors.append({"pointer": "/contextSchema", "message": f"not valid JSON: {exc}"})
    return payload, errors
