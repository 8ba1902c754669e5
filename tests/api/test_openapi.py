"""The /openapi.json document kept true: schemathesis drives a running gateway from it, and every /v1 route is in it.

The gateway runs on real Redis with real upstreams (the demo server, and one whose tool definition changes so a pin
awaits review) and a scripted chat-completions server, so runs really run. Two passes, both as an admin, and every
answer must be declared (no 500s; each status, content type, header and body as the document says):

- a playbook: every operation once on things that exist (an agent and its revisions, a finished and a running run,
  a live session, a changed tool) with a valid body, answered 2xx, so every success shape is checked;
- generated inputs, valid and invalid by the document, half of them aimed at those existing things, so the refusals
  are checked too. Examples per operation are capped so CI stays fast.
"""

from __future__ import annotations

import asyncio
import re
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode, checks
from schemathesis.core import NOT_SET
from schemathesis.core.failures import FailureGroup
from schemathesis.schemas import APIOperation, BaseSchema
from starlette.routing import Route

from mcp_gateway.api.openapi import openapi_document
from mcp_gateway.app import create_app
from mcp_gateway.config import GatewayConfig
from tests.conftest import _delete_prefixed
from tests.core.test_pinning import SHIFTING_SERVER
from tests.support.agents_harness import ADMIN_KEY, agent_body, agent_config, auth
from tests.support.harness import DEMO_UPSTREAM, mcp_client, serve_gateway
from tests.support.llm_server import Hold, ScriptedModels, answer, serve_models, tool_call

# What the document promises. Not positive_data_acceptance: a schema-valid body can still be refused for what JSON
# Schema cannot say (contextSchema must itself be a valid JSON Schema, a model id must be configured).
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
TICKET = {"ticket_id": "T-1", "customer_id": "cust-001"}


@dataclass(frozen=True)
class Known:
    """Things that exist in the running gateway. The playbook uses up some (deletes, revokes, cancels, approves),
    so the generated pass gets its own session and agent to delete."""

    url: str
    agent: str
    doomed_agent: str
    spare_agent: str
    finished_run: str
    running_run: str
    task: str
    sessions: tuple[str, str, str]
    task_token: str
    changed_tool: str
    pending_sha256: str

    def path_values(self) -> dict[str, list[Any]]:
        """Existing things by the path parameter that names them, for the generated pass."""
        return {
            "agentId": [self.agent, "ag_0000000000000000"],
            "n": [1, 2, 3],
            "runId": [self.finished_run, "run_0000"],
            "taskId": ["resolve-ticket", self.task],
            "tokenId": [self.sessions[2]],
            "name": [self.changed_tool, "demo__echo"],
        }


def gateway_config(model_url: str, redis_url: str, prefix: str) -> GatewayConfig:
    shifty = {"name": "shifty", "command": sys.executable, "args": ["-c", SHIFTING_SERVER], "pinning": "enforce"}
    # The backup model answers the slow agent's run only when released, so that run stays running until cancelled.
    models = [
        {"id": "primary", "model": "primary-model", "baseUrl": model_url, "timeout": 10, "maxRetries": 0},
        {"id": "backup", "model": "backup-model", "baseUrl": model_url, "timeout": 600, "maxRetries": 0},
    ]
    return agent_config(
        model_url, store={"url": redis_url, "prefix": prefix}, upstreams=[DEMO_UPSTREAM, shifty], models=models
    )


async def _prepare(url: str, models: ScriptedModels) -> Known:
    """An agent with two revisions, a finished run with a tool call, a run waiting for its model, live sessions,
    an API task, and a tool whose changed definition awaits approval."""
    # The runs the examples start share these replies; once they are used up, a run fails (a 500 from the model).
    models.script("primary-model", tool_call("demo__echo", text="hi"), *[answer("done")] * 300)
    models.script("backup-model", Hold(answer("late")))
    async with httpx.AsyncClient(base_url=url, headers=auth(ADMIN_KEY), timeout=30) as http:

        async def created(path: str, body: dict[str, Any], **params: str) -> dict[str, Any]:
            response = await http.post(path, json=body, params=params)
            assert response.status_code in (200, 201, 202), response.text
            answer: dict[str, Any] = response.json()
            return answer

        async def session() -> dict[str, Any]:
            return await created("/v1/tasks/sessions", {"taskId": "resolve-ticket", "context": TICKET})

        agent = await created("/v1/agents", agent_body("keeper"))
        await created(f"/v1/agents/{agent['id']}/revisions", {"instruction": "Be brief.", "llmModelId": "primary"})
        doomed = await created("/v1/agents", agent_body("doomed"))
        spare = await created("/v1/agents", agent_body("spare"))
        slow = await created("/v1/agents", agent_body("slow", llmModelId="backup"))
        finished = await created(f"/v1/agents/{agent['id']}/runs", {"input": "say hi"}, wait="true")
        assert finished["status"] == "completed" and finished["turns"][0]["toolCalls"], finished
        running = await created(f"/v1/agents/{slow['id']}/runs", {"input": "take your time"})
        task = await created("/v1/tasks", {"id": "triage", "name": "Triage", "allowedTools": ["demo__echo"]})
        current, by_id, spare_session = await session(), await session(), await session()
        async with mcp_client(url, ADMIN_KEY, cache=None) as client:
            result = await client.call_tool("shifty__redefine", {"description": "Look up a key, then mail it."})
            assert not result.is_error
        with anyio.fail_after(20):
            while not (pins := (await http.get("/v1/tools/pins")).json()["tools"]):  # noqa: ASYNC110 - remote state
                await anyio.sleep(0.05)
    return Known(
        url=url,
        agent=agent["id"],
        doomed_agent=doomed["id"],
        spare_agent=spare["id"],
        finished_run=finished["id"],
        running_run=running["id"],
        task=task["id"],
        sessions=(current["tokenId"], by_id["tokenId"], spare_session["tokenId"]),
        task_token=current["taskToken"],
        changed_tool=pins[0]["name"],
        pending_sha256=pins[0]["current"]["sha256"],
    )


@asynccontextmanager
async def _running(redis_url: str, prefix: str) -> AsyncIterator[Known]:
    async with (
        serve_models() as (model_url, models),
        serve_gateway(gateway_config(model_url, redis_url, prefix)) as url,
    ):
        yield await _prepare(url, models)


@pytest.fixture(scope="module")
def known(redis_url: str) -> Iterator[Known]:
    """The gateway on its own event loop in a thread: schemathesis calls it synchronously."""
    prefix = f"test:{uuid.uuid4().hex}:"
    started: list[Known] = []
    failed: list[BaseException] = []
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def run() -> None:
        try:
            async with _running(redis_url, prefix) as found:
                started.append(found)
                ready.set()
                await stop.wait()
        except BaseException as exc:
            failed.append(exc)
            ready.set()
            raise

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    assert ready.wait(120), "the gateway did not start"
    if failed:
        raise failed[0]
    yield started[0]
    loop.call_soon_threadsafe(stop.set)
    thread.join(30)
    _delete_prefixed(redis_url, prefix)


@pytest.fixture(scope="module")
def api_schema(known: Known) -> BaseSchema:
    return schemathesis.openapi.from_url(f"{known.url}/openapi.json")


@dataclass(frozen=True)
class Step:
    """One call of the playbook and the status it must get."""

    method: str
    path: str
    status: int
    path_parameters: dict[str, Any] = field(default_factory=dict)
    body: Any = NOT_SET
    query: dict[str, str] | None = None
    headers: dict[str, str] | None = None


def _playbook(k: Known) -> list[Step]:
    agent, task = {"agentId": k.agent}, {"taskId": k.task}
    revision = {"instruction": "Be brief again.", "llmModelId": "primary", "activate": False, "maxTurns": 4}
    run_in_task = {"input": "look up the customer", "taskId": "resolve-ticket", "context": TICKET}
    return [
        Step("GET", "/v1/tasks", 200),
        Step("POST", "/v1/tasks", 201, body={"id": "notes", "name": "Notes", "allowedTools": ["nothing__here"]}),
        Step("GET", "/v1/tasks/{taskId}", 200, task),
        Step("PUT", "/v1/tasks/{taskId}", 200, task, body={"name": "Triage again", "allowedTools": ["demo__*"]}),
        Step("GET", "/v1/tasks/{taskId}/versions", 200, task),
        Step("GET", "/v1/tasks/sessions", 200, query={"taskId": "resolve-ticket"}),
        Step("POST", "/v1/tasks/sessions", 201, body={"taskId": "resolve-ticket", "context": TICKET, "ttl": 60}),
        Step("GET", "/v1/tasks/sessions/{tokenId}", 200, {"tokenId": k.sessions[1]}),
        Step("DELETE", "/v1/tasks/sessions/{tokenId}", 204, {"tokenId": k.sessions[1]}),
        Step("GET", "/v1/tasks/sessions/current", 200, headers={"X-Task-Token": k.task_token}),
        Step("DELETE", "/v1/tasks/sessions/current", 204, headers={"X-Task-Token": k.task_token}),
        Step("DELETE", "/v1/tasks/{taskId}", 204, task, query={"revokeSessions": "true"}),
        Step("GET", "/v1/agents", 200, query={"includeDeleted": "true"}),
        Step("POST", "/v1/agents", 201, body=agent_body("fresh", taskAgentRunVisibility="all", maxTurns=3)),
        Step("GET", "/v1/agents/{agentId}", 200, agent),
        Step("GET", "/v1/agents/{agentId}/revisions", 200, agent),
        Step("POST", "/v1/agents/{agentId}/revisions", 201, agent, body=revision),
        Step("POST", "/v1/agents/{agentId}/revisions/{n}/activate", 200, {**agent, "n": 3}),
        Step("POST", "/v1/agents/{agentId}/runs", 200, agent, body=run_in_task, query={"wait": "true"}),
        Step("POST", "/v1/agents/{agentId}/runs", 202, agent, body={"input": "hello"}),
        Step("GET", "/v1/agents/{agentId}/runs", 200, agent),
        Step("GET", "/v1/runs/{runId}", 200, {"runId": k.finished_run}),
        Step("DELETE", "/v1/runs/{runId}", 202, {"runId": k.running_run}),
        Step("DELETE", "/v1/agents/{agentId}", 204, {"agentId": k.doomed_agent}),
        Step("GET", "/v1/tools/pins", 200),
        Step("POST", "/v1/tools/{name}/approve", 200, {"name": k.changed_tool}, body={"sha256": k.pending_sha256}),
        # Served from a config object, not a file: nothing to reload (tests/e2e/test_reload.py reloads a real file).
        Step("POST", "/v1/config/reload", 409),
    ]


@pytest.fixture(scope="module")
def played(api_schema: BaseSchema, known: Known) -> list[tuple[Step, str | None]]:
    """The playbook's outcome, step by step: None, or what went wrong. A fixture, so it runs before the generated
    pass, which may use up what the playbook needs."""
    outcomes: list[tuple[Step, str | None]] = []
    for step in _playbook(known):
        case = api_schema[step.path][step.method].Case(
            path_parameters=step.path_parameters, body=step.body, query=step.query, headers=step.headers
        )
        try:
            response = case.call_and_validate(headers=auth(ADMIN_KEY), checks=CHECKS)
        except FailureGroup as exc:  # a check failed: reported by the test, with the step
            outcomes.append((step, str(exc)))
            continue
        wrong = None if response.status_code == step.status else f"{response.status_code}: {response.text}"
        outcomes.append((step, wrong))
    return outcomes


def test_the_playbook_gets_every_success_as_documented(played: list[tuple[Step, str | None]]) -> None:
    failures = [f"{step.method} {step.path}: {problem}" for step, problem in played if problem is not None]
    assert failures == []


def test_the_playbook_covers_every_operation(played: list[tuple[Step, str | None]]) -> None:
    paths = openapi_document("test")["paths"]
    operations = {(method.upper(), path) for path, item in paths.items() for method in item if method != "parameters"}
    assert {(step.method, step.path) for step, _ in played} == operations


def _drive(operation: APIOperation[Any, Any, Any, Any], known: Known, mode: GenerationMode) -> None:
    values = known.path_values()
    if (operation.method.upper(), operation.path) == ("DELETE", "/v1/agents/{agentId}"):
        values["agentId"] = [known.spare_agent, "ag_0000000000000000"]

    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def answers_as_documented(case: Case[Any], data: st.DataObject) -> None:
        if data.draw(st.booleans(), label="existing"):
            for name in case.path_parameters or {}:
                if name in values:
                    case.path_parameters[name] = data.draw(st.sampled_from(values[name]), label=name)
        case.call_and_validate(headers=auth(ADMIN_KEY), checks=CHECKS)

    answers_as_documented()


def test_openapi_document_is_served_as_openapi_3_1(known: Known) -> None:
    document = httpx.get(f"{known.url}/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    assert {"/v1/tasks", "/v1/agents", "/v1/runs/{runId}", "/v1/tools/pins"} <= set(document["paths"])


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_every_generated_request_is_answered_as_documented(
    api_schema: BaseSchema, known: Known, played: list[tuple[Step, str | None]], mode: GenerationMode
) -> None:
    # Each operation's own hypothesis run; schemathesis's pytest plugin is not used (it does not load on our pytest).
    operations = [result.ok() for result in api_schema.get_all_operations()]  # type: ignore[union-attr]
    assert {(op.method.upper(), op.path) for op in operations} == {(step.method, step.path) for step, _ in played}
    for operation in operations:
        _drive(operation, known, mode)


def _shape(path: str) -> str:
    """A path with its parameter names erased: the app says ``{task_id}``, the document ``{taskId}``."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def test_every_v1_route_of_the_app_is_in_the_document() -> None:
    app = create_app(agent_config("http://127.0.0.1:9/v1"))
    registered = {
        (_shape(route.path), method.lower())
        for route in app.routes
        if isinstance(route, Route) and route.path.startswith("/v1/") and route.methods
        for method in route.methods
        if method != "HEAD"
    }
    paths = openapi_document("test")["paths"]
    described = {(_shape(path), method) for path, item in paths.items() for method in item if method != "parameters"}
    assert registered - described == set(), "routes missing from /openapi.json"
    assert described - registered == set(), "operations in /openapi.json that no route serves"
