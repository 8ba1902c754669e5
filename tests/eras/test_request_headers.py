"""``McpHeaders``: one pass over the raw headers gives every step the value ``Headers.get`` would have given it."""

from __future__ import annotations

from starlette.datastructures import Headers

from mcp_gateway.eras.request_headers import McpHeaders

RAW = [
    (b"authorization", b"Bearer k1"),
    (b"authorization", b"Bearer k2"),
    (b"mcp-protocol-version", b" 2026-07-28 "),
    (b"mcp-method", b"  tools/call\t"),
    (b"mcp-param-region", b"eu"),
    (b"content-type", b"application/json"),
    (b"content-length", b"12"),
    (b"x-task-token", b"tt"),
    (b"accept", b"text/event-stream"),
    (b"origin", b"http://localhost:1"),
    (b"mcp-session-id", b"s1"),
    (b"x-other", b"ignored"),
]


def test_every_field_is_the_first_value_as_sent() -> None:
    headers = McpHeaders.read(RAW)
    plain = Headers(raw=RAW)
    for field, name in [
        ("authorization", "authorization"),
        ("protocol_version", "mcp-protocol-version"),
        ("content_type", "content-type"),
        ("content_length", "content-length"),
        ("task_token", "x-task-token"),
        ("accept", "accept"),
        ("origin", "origin"),
        ("session_id", "mcp-session-id"),
    ]:
        assert getattr(headers, field) == plain.get(name), field
    assert headers.modern
    assert headers.accepts_sse
    assert not headers.transfer_encoding


def test_the_mcp_family_keeps_order_and_duplicates_and_loses_surrounding_whitespace() -> None:
    headers = McpHeaders.read([*RAW, (b"mcp-method", b"x")])
    assert headers.mcp == [
        (b"mcp-protocol-version", b"2026-07-28"),
        (b"mcp-method", b"tools/call"),
        (b"mcp-param-region", b"eu"),
        (b"mcp-session-id", b"s1"),
        (b"mcp-method", b"x"),
    ]


def test_absent_headers_and_the_handshake_era() -> None:
    headers = McpHeaders.read([(b"mcp-protocol-version", b"2025-11-25"), (b"transfer-encoding", b"chunked")])
    assert (headers.authorization, headers.accept, headers.task_token) == (None, None, None)
    assert not headers.modern
    assert not headers.accepts_sse
    assert headers.transfer_encoding
    assert not McpHeaders.read([]).modern
