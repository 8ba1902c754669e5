"""The ``/mcp`` endpoint in memory: its one pass (front door, store gate, auth, body, envelope, era) and the one table
that turns a refusal into the answer, frame by frame."""

from __future__ import annotations

from typing import Any

from tests.eras.conftest import META, in_memory_endpoint, modern_headers, post

JSON = b"application/json"


def listing(request_id: Any = 1, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/list", "params": {"_meta": META, **params}}


async def test_a_modern_list_is_answered_as_one_json_body() -> None:
    async with in_memory_endpoint() as endpoint:
        client = await post(endpoint, listing(), modern_headers("tools/list"))
        assert client.status == 200
        body = client.frames[0]
        assert client.headers == [(b"content-type", JSON), (b"content-length", str(len(body)).encode())]
        assert client.frames == [body]
        assert body.startswith(b'{"jsonrpc":"2.0","id":1,"result":{"tools":[],"ttlMs":60000,"cacheScope":"private",')


async def test_a_call_that_asked_for_progress_is_answered_over_sse() -> None:
    async with in_memory_endpoint() as endpoint:
        params = listing(2)
        params["params"]["_meta"] = {**META, "progressToken": "p"}
        client = await post(
            endpoint, params, modern_headers("tools/list", accept="application/json, text/event-stream")
        )
        assert client.status == 200
        assert client.headers[0] == (b"content-type", b"text/event-stream")
        assert len(client.frames) == 2
        assert client.frames[0].startswith(b'event: message\r\ndata: {"jsonrpc":"2.0","id":2,"result":{"tools":[]')
        assert client.frames[1] == b""


async def test_a_refusal_before_the_method_is_a_json_rpc_error_with_the_eras_status() -> None:
    async with in_memory_endpoint() as endpoint:
        modern = await post(endpoint, listing(3), modern_headers("tools/call"))
        assert modern.status == 400
        assert modern.json()["error"]["code"] == -32020
        assert modern.json()["id"] == 3
        unknown = {"jsonrpc": "2.0", "id": 4, "method": "nope/nope", "params": {"_meta": META}}
        assert (await post(endpoint, unknown, modern_headers("nope/nope"))).frames == [
            b'{"jsonrpc":"2.0","id":4,"error":{"code":-32601,"message":"Method not found: nope/nope"}}'
        ]
        parse = await post(endpoint, b"{", modern_headers("tools/list"))
        assert parse.status == 400
        assert parse.json()["error"]["code"] == -32700


async def test_a_gateway_error_is_the_contracts_json_error_with_its_challenge() -> None:
    async with in_memory_endpoint() as endpoint:
        client = await post(endpoint, listing(), modern_headers("tools/list"), key="wrong")
        assert client.status == 401
        assert client.frames == [b'{"error":"unauthorized","message":"unknown credential"}']
        assert client.headers[0] == (
            b"www-authenticate",
            b'Bearer realm="mcp-gateway", error="invalid_token", error_description="unknown credential"',
        )


async def test_the_front_door_runs_before_authentication() -> None:
    async with in_memory_endpoint() as endpoint:
        foreign = await post(
            endpoint, listing(), {**modern_headers("tools/list"), "origin": "https://evil.example"}, key=""
        )
        assert foreign.status == 403
        not_json = await post(endpoint, listing(), {"content-type": "text/plain"}, key="")
        assert not_json.status == 415
        assert not_json.frames == [
            b'{"jsonrpc":"2.0","id":null,"error":{"code":-32600,'
            b'"message":"the request body must be sent as Content-Type: application/json"}}'
        ]


async def test_an_unknown_http_method_is_405_after_the_front_door() -> None:
    async with in_memory_endpoint() as endpoint:
        client = await post(endpoint, b"", method="PUT")
        assert client.status == 405
        assert (b"allow", b"GET, HEAD, POST, DELETE") in client.headers
