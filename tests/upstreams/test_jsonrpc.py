"""JSON-RPC towards upstreams (``upstreams/jsonrpc.py``) as pure functions: the per-hop envelope both ways, the bodies
the gateway sends, and what an upstream's answer becomes. The same functions on the wire, over a real HTTP upstream,
are ``test_http_calls.py``'s and ``test_verbatim_results.py``'s subject; over an SDK session, ``test_upstreams.py``'s.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, PARSE_ERROR

from mcp_gateway import json_codec
from mcp_gateway.errors import RpcError
from mcp_gateway.upstreams.jsonrpc import (
    answer_result,
    cancelled_body,
    error_in,
    forwarded_params,
    inbound_result,
    outbound_params,
    reply_body,
    request_body,
    stamp_progress_token,
    stream_event,
    upstream_error,
)
from mcp_gateway.upstreams.transports.encoding import UnforwardableRequest

ENVELOPE = "io.modelcontextprotocol/clientCapabilities"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def answer(request_id: Any, **members: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, **members}).encode()


# Outbound: the envelope.


def test_the_previous_hops_envelope_and_progress_token_are_dropped_and_the_rest_of_meta_kept() -> None:
    params: dict[str, Any] = {
        "name": "echo",
        "_meta": {ENVELOPE: {"sampling": {}}, "progressToken": 7, "traceparent": TRACEPARENT, "app/key": [1]},
    }
    out = outbound_params(params)
    assert out == {"name": "echo", "_meta": {"traceparent": TRACEPARENT, "app/key": [1]}}
    assert params["_meta"]["progressToken"] == 7, "the client's params are not changed"


def test_meta_holding_only_the_hops_envelope_goes_away_entirely() -> None:
    assert outbound_params({"uri": "a://b", "_meta": {ENVELOPE: {}, "progressToken": "t"}}) == {"uri": "a://b"}
    assert outbound_params(None) == {}


def test_forwarded_params_swap_names_back_without_touching_the_clients_params() -> None:
    params = {"name": "ns__echo", "arguments": {"a": 1}}
    assert forwarded_params(params, name="echo") == {"name": "echo", "arguments": {"a": 1}}
    assert params["name"] == "ns__echo"


def test_the_hops_own_progress_token_joins_meta_and_replaces_any_other() -> None:
    params: dict[str, Any] = {"_meta": {"traceparent": TRACEPARENT, "progressToken": "client"}}
    stamp_progress_token(params, "gw-3")
    assert params == {"_meta": {"traceparent": TRACEPARENT, "progressToken": "gw-3"}}
    bare: dict[str, Any] = {"name": "echo"}
    stamp_progress_token(bare, "gw-4")
    assert bare == {"name": "echo", "_meta": {"progressToken": "gw-4"}}


# Outbound: bodies.


def test_a_request_body_is_compact_json_rpc_with_the_hops_id() -> None:
    assert request_body("gw-0", "tools/call", {"name": "echo"}) == (
        b'{"jsonrpc":"2.0","id":"gw-0","method":"tools/call","params":{"name":"echo"}}'
    )


def test_a_lone_surrogate_is_escaped_and_an_unencodable_value_refused_alone() -> None:
    assert (
        request_body("gw-1", "m", {"t": "\ud800"})
        == b'{"jsonrpc":"2.0","id":"gw-1","method":"m","params":{"t":"\\ud800"}}'
    )
    with pytest.raises(UnforwardableRequest) as refused:
        request_body("gw-2", "m", {"t": object()})
    assert refused.value.code == INVALID_PARAMS


def test_a_reply_carries_the_clients_result_or_its_error_with_data_only_when_there_is_some() -> None:
    assert reply_body(5, {"action": "accept"}) == b'{"jsonrpc":"2.0","id":5,"result":{"action":"accept"}}'
    assert (
        reply_body("s", RpcError(-32602, "no")) == b'{"jsonrpc":"2.0","id":"s","error":{"code":-32602,"message":"no"}}'
    )
    assert reply_body("s", RpcError(-1, "x", {"k": 1})) == (
        b'{"jsonrpc":"2.0","id":"s","error":{"code":-1,"message":"x","data":{"k":1}}}'
    )


def test_a_clients_answer_that_cannot_be_encoded_becomes_an_error_the_upstream_still_gets() -> None:
    reply = json.loads(reply_body(9, {"bad": object()}))
    assert reply["id"] == 9 and "result" not in reply
    assert reply["error"]["code"] == INTERNAL_ERROR
    assert reply["error"]["message"].startswith("the client's answer cannot be relayed:")


def test_a_cancellation_names_the_request() -> None:
    assert json.loads(cancelled_body("gw-8", "gone")) == {
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": {"requestId": "gw-8", "reason": "gone"},
    }


# Inbound: the envelope.


def test_the_upstreams_envelope_keys_are_dropped_from_a_result_and_its_other_meta_kept() -> None:
    result = {"content": [], "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "up"}, "app/key": 1}}
    assert inbound_result(result) == {"content": [], "_meta": {"app/key": 1}}
    assert inbound_result({"x": 1, "_meta": {"io.modelcontextprotocol/serverInfo": {}}}) == {"x": 1}


def test_a_result_without_envelope_keys_is_returned_as_it_came_not_copied() -> None:
    result = {"content": [], "_meta": {"app/key": 1}}
    assert inbound_result(result) is result
    plain: dict[str, Any] = {"content": []}
    assert inbound_result(plain) is plain


# Inbound: answers.


def test_an_answer_with_a_result_gives_the_result() -> None:
    assert answer_result("gw-0", answer("gw-0", result={"content": [1]}), verbatim=False) == {"content": [1]}


@pytest.mark.parametrize("verbatim", [False, True])
def test_an_error_answer_is_raised_with_its_code_message_and_data(verbatim: bool) -> None:
    raw = answer("gw-0", error={"code": -32602, "message": "no", "data": {"why": [1]}})
    with pytest.raises(RpcError) as caught:
        answer_result("gw-0", raw, verbatim=verbatim)
    assert (caught.value.code, caught.value.message, caught.value.data) == (-32602, "no", {"why": [1]})


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        pytest.param(b"<html>oops</html>", "not JSON", id="not-json"),
        pytest.param(b"[1, 2]", "not a JSON-RPC message", id="not-an-object"),
        pytest.param(b'{"jsonrpc": "2.0", "id": "gw-0"}', "has no result object", id="no-result"),
        pytest.param(b'{"jsonrpc": "2.0", "id": "gw-0", "result": [1]}', "no result object", id="not-an-object-result"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("verbatim", [False, True])
def test_a_malformed_answer_is_a_parse_error(raw: bytes, words: str, verbatim: bool) -> None:
    with pytest.raises(RpcError) as caught:
        answer_result("gw-0", raw, verbatim=verbatim)
    assert caught.value.code == PARSE_ERROR and words in caught.value.message


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param({"code": "x", "message": "m"}, (INTERNAL_ERROR, "m", None), id="code-not-an-integer"),
        pytest.param({"code": True, "message": "m"}, (INTERNAL_ERROR, "m", None), id="code-a-boolean"),
        pytest.param({"code": 7, "message": None, "data": 1}, (7, "upstream error", 1), id="message-not-text"),
        pytest.param({}, (INTERNAL_ERROR, "upstream error", None), id="empty"),
    ],
)  # fmt: skip
def test_a_malformed_error_keeps_what_it_can(error: dict[str, Any], expected: tuple[Any, ...]) -> None:
    with pytest.raises(RpcError) as caught:
        answer_result("gw-0", answer("gw-0", error=error), verbatim=False)
    assert (caught.value.code, caught.value.message, caught.value.data) == expected


def test_the_sdks_error_becomes_the_same_rpc_error_as_a_json_one() -> None:
    sdk = MCPError(-32002, "gone", {"uri": "a://b"})
    converted = upstream_error(sdk.code, sdk.message, sdk.data)
    with pytest.raises(RpcError) as caught:
        answer_result(
            "gw-0", answer("gw-0", error={"code": -32002, "message": "gone", "data": {"uri": "a://b"}}), verbatim=False
        )
    assert (converted.code, converted.message, converted.data) == (
        caught.value.code,
        caught.value.message,
        caught.value.data,
    )


def test_a_json_answer_is_the_only_message_of_its_response_so_its_id_is_not_compared() -> None:
    assert answer_result("gw-0", answer("other", result={"a": 1}), verbatim=False) == {"a": 1}


def test_a_verbatim_result_keeps_the_upstreams_bytes_for_what_the_gateway_does_not_read() -> None:
    raw = b'{"jsonrpc":"2.0","id":"gw-0","result":{"content":[ 1.0 ],"isError":false,"_meta":{"k":1}}}'
    result = answer_result("gw-0", raw, verbatim=True)
    assert isinstance(result["content"], json_codec.Verbatim) and bytes(result["content"]) == b"[ 1.0 ]"
    assert result["isError"] is False and result["_meta"] == {"k": 1}


@pytest.mark.parametrize("verbatim", [False, True])
def test_a_stream_event_answering_the_call_gives_its_result(verbatim: bool) -> None:
    result, message = stream_event("gw-0", answer("gw-0", result={"isError": True}), verbatim=verbatim)
    assert (result, message) == ({"isError": True}, None)


@pytest.mark.parametrize("verbatim", [False, True])
def test_a_stream_event_answering_another_id_is_passed_over(verbatim: bool) -> None:
    assert stream_event("gw-0", answer("gw-1", result={}), verbatim=verbatim) == (None, None)
    assert stream_event("gw-0", answer("gw-1", error={"code": 1, "message": "m"}), verbatim=verbatim) == (None, None)


def test_a_stream_event_with_an_error_for_the_call_is_raised() -> None:
    with pytest.raises(RpcError) as caught:
        stream_event("gw-0", answer("gw-0", error={"code": -32603, "message": "boom"}), verbatim=True)
    assert (caught.value.code, caught.value.message) == (-32603, "boom")


def test_a_request_or_notification_on_the_stream_is_handed_back() -> None:
    request = {"jsonrpc": "2.0", "id": "gw-0", "method": "sampling/createMessage", "params": {}}
    assert stream_event("gw-0", json.dumps(request).encode(), verbatim=True) == (None, request)
    note = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}}
    assert stream_event("gw-0", json.dumps(note).encode(), verbatim=False) == (None, note)


def test_a_malformed_stream_event_is_a_parse_error() -> None:
    with pytest.raises(RpcError) as caught:
        stream_event("gw-0", b"{not json", verbatim=False)
    assert caught.value.code == PARSE_ERROR


def test_the_json_rpc_error_in_an_error_status_body_is_found_and_anything_else_is_none() -> None:
    found = error_in(answer(None, error={"code": -32600, "message": "bad", "data": 2}))
    assert found is not None and (found.code, found.message, found.data) == (-32600, "bad", 2)
    assert error_in(b"not json") is None
    assert error_in(b'{"jsonrpc": "2.0", "id": 1, "result": {}}') is None
    assert error_in(b'{"error": "text"}') is None
