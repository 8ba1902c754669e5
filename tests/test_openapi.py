"""The /openapi.json document kept true: schemathesis drives a running gateway (real Redis, real upstream) from it.

Every operation is called with generated inputs, as an admin, and every answer must be declared: no 500s, each
status, content type and body matching the document. Examples per operation are capped so CI stays fast.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, checks
from schemathesis.schemas import BaseSchema

from tests.conftest import _delete_prefixed
from tests.harness import serve_gateway
from tests.test_task_definitions_api import ADMIN_KEY, admin_config

# What the document promises. Not positive_data_acceptance: a schema-valid body can still be refused for what JSON
# Schema cannot say (contextSchema must itself be a valid JSON Schema, startableBy must name known identities).
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


@pytest.fixture(scope="module")
def gateway_url(redis_url: str) -> Iterator[str]:
    """A gateway on its own event loop in a thread: schemathesis calls it synchronously."""
    prefix = f"test:{uuid.uuid4().hex}:"
    started: list[str] = []
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def run() -> None:
        async with serve_gateway(admin_config({"url": redis_url, "prefix": prefix})) as url:
            started.append(url)
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    assert ready.wait(60), "the gateway did not start"
    yield started[0]
    loop.call_soon_threadsafe(stop.set)
    thread.join(30)
    _delete_prefixed(redis_url, prefix)


@pytest.fixture(scope="module")
def api_schema(gateway_url: str) -> BaseSchema:
    return schemathesis.openapi.from_url(f"{gateway_url}/openapi.json")


def test_openapi_document_is_served_as_openapi_3_1(gateway_url: str) -> None:
    document = httpx.get(f"{gateway_url}/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    assert {"/v1/tasks", "/v1/tasks/{taskId}", "/v1/tasks/sessions"} <= set(document["paths"])


def test_every_answer_matches_the_openapi_document(api_schema: BaseSchema) -> None:
    # Each operation's own hypothesis run; schemathesis's pytest plugin is not used (it does not load on our pytest).
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == 12
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def answers_as_documented(case: Case) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {ADMIN_KEY}"}, checks=CHECKS)

        answers_as_documented()
