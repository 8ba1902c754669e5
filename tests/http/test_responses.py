"""``http/responses.py`` on its own: the one error → HTTP table, and reading a request body within its limits.

Each request is one ``AsgiClient`` (``tests/support/asgi_driver.py``) against the smallest ASGI app that uses the
function under test the way the routes do, so a test sees the exact status, headers and body a client would, and
how much of a body was read before a refusal. The same checks over a real server are ``test_front_door.py``'s.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from mcp_gateway.config import ServerConfig
from mcp_gateway.errors import (
    AuthorizationServerUnavailable,
    BadRequest,
    BearerChallenge,
    Conflict,
    Forbidden,
    GatewayError,
    InsufficientScope,
    InvalidTaskToken,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    StoreUnavailable,
    TaskNotPermitted,
    TaskRequired,
    Unauthorized,
    UnsupportedMediaType,
    UpstreamUnavailable,
    ValidationFailed,
)
from mcp_gateway.http.front_door import FrontDoor
from mcp_gateway.http.responses import (
    error_response,
    http_error_response,
    internal_error_response,
    json_response,
    read_body,
    read_json_object,
)
from tests.support.asgi_driver import AsgiClient

LIMIT = 10
WAIT = 10.0
"""A bound on waits that end as soon as the awaited thing happens: a hang fails the test instead of the run."""


def challenge(params: str) -> dict[str, str]:
    return {"www-authenticate": f'Bearer realm="mcp-gateway"{params}'}


def invalid_token(description: str) -> dict[str, str]:
    return challenge(f', error="invalid_token", error_description="{description}"')


async def answer(client: AsgiClient, app: Any) -> AsgiClient:
    with anyio.fail_after(WAIT):
        await client.call(app)
    return client


def headers_of(client: AsgiClient) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in client.headers}


# The error table.


def row_id(value: object) -> str:
    if isinstance(value, GatewayError):
        return type(value).__name__
    return "+".join(value) or "no-headers" if isinstance(value, dict) else str(value)


@pytest.mark.parametrize(
    ("error", "status", "code", "headers"),
    [
        (BadRequest("no"), 400, "bad_request", {}),
        (Unauthorized("no"), 401, "unauthorized", invalid_token("the bearer credential was not accepted")),
        (Unauthorized("no", challenge=BearerChallenge(error=None)), 401, "unauthorized", challenge("")),
        (InvalidTaskToken("no"), 401, "invalid_task_token", invalid_token(InvalidTaskToken.default_description)),
        (TaskRequired("no"), 401, "task_required", invalid_token("this identity must send an X-Task-Token header")),
        (Forbidden("no"), 403, "forbidden", {}),
        (TaskNotPermitted("no"), 403, "task_not_permitted", {}),
        (
            InsufficientScope("no", challenge=BearerChallenge(error="insufficient_scope", scope="mcp:tools")), 403,
            "insufficient_scope", challenge(', error="insufficient_scope", scope="mcp:tools"'),
        ),
        (NotFound("no"), 404, "not_found", {}),
        (RequestTimeout("no"), 408, "request_timeout", {"connection": "close"}),
        (Conflict("no"), 409, "conflict", {}),
        (PayloadTooLarge("no"), 413, "payload_too_large", {}),
        (UnsupportedMediaType("no"), 415, "unsupported_media_type", {}),
        (ValidationFailed("no"), 422, "validation_failed", {}),
        (RateLimited("no", retry_after_ms=1), 429, "rate_limited", {"retry-after": "1"}),
        (RateLimited("no", retry_after_ms=1000), 429, "rate_limited", {"retry-after": "1"}),
        (RateLimited("no", retry_after_ms=1001), 429, "rate_limited", {"retry-after": "2"}),
        (RateLimited("no", retry_after_ms=0), 429, "rate_limited", {"retry-after": "1"}),
        (UpstreamUnavailable("no"), 502, "upstream_unavailable", {}),
        (AuthorizationServerUnavailable("no"), 503, "authorization_server_unavailable", {}),
        (GatewayError("no"), 500, "internal_error", {}),
    ],
    ids=lambda value: row_id(value),
)  # fmt: skip
async def test_each_error_answers_its_status_code_and_headers(
    error: GatewayError, status: int, code: str, headers: dict[str, str]
) -> None:
    client = await answer(AsgiClient(), error_response(error))
    assert client.status == status
    sent = headers_of(client)
    assert sent["content-type"] == "application/json"
    assert {name: sent.get(name) for name in headers} == headers
    extra = {"www-authenticate", "retry-after", "connection"} - set(headers)
    assert not extra & set(sent), f"unexpected headers {extra & set(sent)}"
    body = client.json()
    assert body["error"] == code and body["message"] == "no"
    assert set(body) == ({"error", "message", "details"} if error.details is not None else {"error", "message"})


async def test_details_are_part_of_the_body() -> None:
    violations = [{"pointer": "/ticket_id", "message": "'ticket_id' is a required property"}]
    client = await answer(
        AsgiClient(), error_response(ValidationFailed("context fails the schema", details=violations))
    )
    assert client.json() == {"error": "validation_failed", "message": "context fails the schema", "details": violations}
    limited = await answer(AsgiClient(), error_response(RateLimited("slow down", retry_after_ms=2500)))
    assert limited.json()["details"] == {"retryAfterMs": 2500}


async def test_a_store_outage_answers_the_fact_without_naming_the_store() -> None:
    error = StoreUnavailable("store redis://10.0.0.7:6379/0 is unavailable (last PING unanswered)")
    client = await answer(AsgiClient(), error_response(error))
    assert client.status == 503
    assert client.json() == {
        "error": "store_unavailable",
        "message": "the session store is unreachable; the request was refused",
    }


# Routing's refusals and our own failures, in the same JSON shape.


async def listed(request: Request) -> Response:
    return json_response({"items": []})


async def broken(request: Request) -> Response:
    raise RuntimeError("secret detail of a bug")


def routes() -> Starlette:
    return Starlette(
        routes=[Route("/v1/things", listed, methods=["GET"]), Route("/v1/broken", broken)],
        exception_handlers={HTTPException: http_error_response, Exception: internal_error_response},
    )


async def test_an_unknown_path_is_a_json_404() -> None:
    client = await answer(AsgiClient(method="GET", path="/v1/nothing"), routes())
    assert client.status == 404
    assert client.json() == {"error": "not_found", "message": "no route for /v1/nothing"}


async def test_a_method_not_allowed_is_a_json_405_naming_the_allowed_ones() -> None:
    client = await answer(AsgiClient(method="DELETE", path="/v1/things"), routes())
    assert client.status == 405
    allow = headers_of(client)["allow"]
    assert set(allow.split(", ")) == {"GET", "HEAD"}  # in Starlette's set order
    assert client.json() == {
        "error": "method_not_allowed",
        "message": f"DELETE is not allowed on /v1/things; allowed: {allow}",
    }


async def test_a_bug_of_ours_is_a_json_500_without_its_details() -> None:
    client = AsgiClient(method="GET", path="/v1/broken")
    with pytest.raises(RuntimeError):  # Starlette re-raises for the server's log, after the answer went out
        await answer(client, routes())
    assert client.status == 500
    assert client.json() == {"error": "internal_error", "message": "the gateway failed to handle the request"}


# Reading a body within its limits.


async def body_size(scope: Scope, receive: Receive, send: Send) -> None:
    """A route that reads its body as ``/mcp`` does: at most ``LIMIT`` bytes."""
    try:
        response = json_response({"size": len(await read_body(Request(scope, receive), LIMIT))})
    except GatewayError as exc:
        response = error_response(exc)
    await response(scope, receive, send)


async def json_object(scope: Scope, receive: Receive, send: Send) -> None:
    """A route that reads a JSON object as ``/v1`` does: at most 100 bytes nesting at most 3 levels."""
    try:
        response = json_response(await read_json_object(Request(scope, receive), 100, 3, "a thing"))
    except GatewayError as exc:
        response = error_response(exc)
    await response(scope, receive, send)


async def test_a_body_within_the_limit_is_read_whole_from_its_chunks() -> None:
    client = await answer(AsgiClient([b"12345", b"", b"67890"]), body_size)
    assert (client.status, client.json()) == (200, {"size": LIMIT})


async def test_a_declared_length_over_the_limit_is_refused_before_any_of_the_body_is_read() -> None:
    client = await answer(AsgiClient(b"x" * 11, headers={"content-length": "11"}), body_size)
    assert client.status == 413 and client.json()["error"] == "payload_too_large"
    assert client.reads == 0


async def test_a_body_growing_over_the_limit_is_refused_at_the_chunk_that_crosses_it() -> None:
    client = await answer(AsgiClient([b"123456", b"789012", b"345678"]), body_size)
    assert client.status == 413 and client.json()["error"] == "payload_too_large"
    assert client.reads == 2


async def test_a_length_that_is_not_a_number_is_not_trusted_and_the_body_is_counted() -> None:
    client = await answer(AsgiClient([b"123456", b"789012"], headers={"content-length": "+5"}), body_size)
    assert client.status == 413


async def test_a_client_gone_mid_body_is_a_bad_request() -> None:
    client = AsgiClient([b"12345"], complete=False)
    client.disconnect()
    await answer(client, body_size)
    assert client.status == 400
    assert client.json() == {
        "error": "bad_request",
        "message": "the client closed the connection before sending the whole body",
    }


async def test_a_body_that_stalls_past_the_front_doors_deadline_is_408_and_closes_the_connection() -> None:
    client = AsgiClient([b"12345"], headers={"content-type": "application/json"}, complete=False)
    await answer(client, FrontDoor(body_size, ServerConfig(body_read_timeout=0.01)))
    assert client.status == 408 and headers_of(client)["connection"] == "close"
    assert client.json()["error"] == "request_timeout"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        pytest.param(b'{"a": [[[1]]]}', "nests deeper than 3 levels", id="too-deep"),
        pytest.param(b'{"a": ', "not valid JSON", id="not-json"),
        pytest.param(b"[1, 2]", "must be a JSON object (a thing)", id="not-an-object"),
        pytest.param(b'{"a": "\\ud800"}', "lone surrogate", id="escaped-lone-surrogate"),
        pytest.param(b'{"a": "\\udfff x"}', "lone surrogate", id="escaped-lone-low-surrogate"),
        pytest.param(b'{"a": "' + b"x" * 100 + b'"}', "exceeds the limit", id="too-large"),
    ],
)  # fmt: skip
async def test_a_json_body_that_is_not_a_shallow_object_is_a_bad_request(body: bytes, words: str) -> None:
    client = await answer(AsgiClient(body), json_object)
    assert client.status in (400, 413) and words in client.json()["message"]
    assert client.json()["error"] == ("payload_too_large" if client.status == 413 else "bad_request")


async def test_a_shallow_json_object_is_read_with_escapes_and_surrogate_pairs_intact() -> None:
    body = b'{"a": {"b": [1]}, "emoji": "\\ud83d\\ude00", "q": "[[[\\""}'
    client = await answer(AsgiClient(body), json_object)
    assert client.status == 200
    assert client.json() == json.loads(body)
