"""``EncodedList``: a memoised list answer is encoded once and spliced into every answer byte for byte."""

from __future__ import annotations

import json
from typing import Any

from mcp_gateway.core.encoded_lists import EncodedList, encode, encode_answer

TOOLS = [
    {"name": f"demo__tool_{i}", "description": 'Grüße \u2028 "quoted" \\ end', "inputSchema": {"type": "object"}}
    for i in range(50)
]


def answer(tools: list[Any], **extra: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 7, "result": {"tools": tools, "ttlMs": 0, **extra}}


def test_a_spliced_list_answer_is_exactly_the_plain_encoding() -> None:
    listed = EncodedList(TOOLS)
    assert encode_answer(answer(listed, _meta={"k": "v"})) == encode(answer(TOOLS, _meta={"k": "v"}))
    assert json.loads(encode_answer(answer(listed))) == answer(TOOLS)


def test_the_encoding_is_made_once_and_reused() -> None:
    listed = EncodedList(TOOLS)
    first = listed.encoded()
    encode_answer(answer(listed))
    assert listed.encoded() is first


def test_text_that_looks_like_the_splice_mark_is_left_alone() -> None:
    listed = EncodedList(TOOLS)
    lookalike = "\x00" + "0" * 16 + ":0\x00"
    body = encode_answer(answer(listed, nextCursor=lookalike))
    assert json.loads(body) == answer(TOOLS, nextCursor=lookalike)


def test_answers_without_an_encoded_list_are_encoded_as_before() -> None:
    for message in (answer(TOOLS), {"jsonrpc": "2.0", "id": 1, "error": {"code": 1, "message": "x"}}, [1, 2], "text"):
        assert encode_answer(message) == encode(message)
