"""``http_hop._sse_events``: an upstream's SSE stream parsed as the SSE spec says, fed through aiohttp's own reader."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp.base_protocol import BaseProtocol

from mcp_gateway.upstreams.transports.http_calls import _sse_events


async def events(body: bytes) -> list[tuple[str | None, int | None, str]]:
    loop = asyncio.get_running_loop()
    reader = aiohttp.StreamReader(BaseProtocol(loop), 2**16, loop=loop)
    reader.feed_data(body)
    reader.feed_eof()
    return [event async for event in _sse_events(reader)]


async def test_ids_retries_and_data_lines_make_events() -> None:
    body = b'id: 7\r\nretry: 1500\r\ndata: {"a":\r\ndata: 1}\r\n\r\n: keepalive\r\n\r\ndata: x\n\n'
    assert await events(body) == [("7", 1500, '{"a":\n1}'), (None, None, "x")]


async def test_a_retry_that_is_not_ascii_digits_is_ignored_not_a_crash() -> None:
    """``"²".isdigit()`` is true, but ``int("²")`` raises: such a field is ignored, as the SSE spec says."""
    body = "retry: ²\ndata: x\n\nretry: 12a\ndata: y\n\n".encode()
    assert await events(body) == [(None, None, "x"), (None, None, "y")]
