"""The one JSON-RPC framing module: every body the gateway answers a client with, and the envelope check."""

from __future__ import annotations

import pytest
from mcp_types import INVALID_REQUEST, PARSE_ERROR

from mcp_gateway.eras.jsonrpc import (
    Refused,
    error_body,
    method_not_found,
    parse_envelope,
    refused_body,
    result_body,
    rpc_error_of,
)
from mcp_gateway.errors import RpcError
from mcp_gateway.http.responses import dumps


def test_error_body_carries_data_only_when_there_is_some() -> None:
    assert dumps(error_body(3, -32602, "bad")) == b'{"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"bad"}}'
    assert dumps(error_body("a", -32020, "x", {"k": 1})) == (
        b'{"jsonrpc":"2.0","id":"a","error":{"code":-32020,"message":"x","data":{"k":1}}}'
    )


def test_result_body_wraps_the_result_under_the_request_id() -> None:
    assert dumps(result_body(None, {})) == b'{"jsonrpc":"2.0","id":null,"result":{}}'


def test_an_rpc_error_and_a_refusal_become_the_same_error_body() -> None:
    expected = error_body(9, -32004, "withheld", {"tool": "t"})
    assert rpc_error_of(9, RpcError(-32004, "withheld", {"tool": "t"})) == expected
    assert refused_body(Refused(9, -32004, "withheld", {"tool": "t"}, status=400)) == expected


def test_method_not_found_names_the_method_with_the_eras_status() -> None:
    refused = method_not_found(4, "nope/nope", 404)
    assert (refused.code, refused.message, refused.status, refused.request_id) == (
        -32601,
        "Method not found: nope/nope",
        404,
        4,
    )


@pytest.mark.parametrize(
    ("body", "code", "request_id"),
    [
        (b"{", PARSE_ERROR, None),
        (b"[]", INVALID_REQUEST, None),
        (b"1", INVALID_REQUEST, None),
        (b'{"id": 5, "method": "x"}', INVALID_REQUEST, 5),
        (b'{"jsonrpc": "2.0", "id": true, "method": "x"}', INVALID_REQUEST, None),
        (b'{"jsonrpc": "2.0", "id": 6}', INVALID_REQUEST, 6),
        (b'{"jsonrpc": "2.0", "id": 7, "method": "x", "params": []}', INVALID_REQUEST, 7),
        (b'{"jsonrpc": "2.0", "id": 8, "method": "x", "params": {"a": [[[[[]]]]]}}', INVALID_REQUEST, None),
    ],
    ids=["parse", "batch", "not-object", "no-jsonrpc", "bool-id", "no-method", "params-array", "too-deep"],
)
def test_a_message_that_is_not_one_json_rpc_request_is_refused_with_400(
    body: bytes, code: int, request_id: int
) -> None:
    with pytest.raises(Refused) as refused:
        parse_envelope(body, 5)
    assert (refused.value.code, refused.value.request_id, refused.value.status) == (code, request_id, 400)


def test_a_response_from_the_client_is_an_envelope_without_a_method() -> None:
    envelope = parse_envelope(b'{"jsonrpc": "2.0", "id": "mgw-1", "result": {}}', 5)
    assert (envelope.method, envelope.is_notification, envelope.id) == ("", True, "mgw-1")
    envelope = parse_envelope(b'{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": null}', 5)
    assert (envelope.method, envelope.params, envelope.is_notification) == ("notifications/cancelled", {}, True)
