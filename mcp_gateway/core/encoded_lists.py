"""Lists that are answered many times unchanged carry their own JSON encoding, made once.

A ``tools/list`` answer is the caller's visible slice of the catalog, memoised per catalog version and visibility
(``Proxy.visible_tools``); encoding it again for every request cost ~27 ms of CPU at 10,000 tools. An
:class:`EncodedList` is still a plain list to every reader (the agents, ``check``, the SDK), and the response
encoder (``http/responses.py``) splices its bytes into the answer instead of walking it again.
"""

from __future__ import annotations

import secrets
from typing import Any

from mcp_gateway import json_codec

# A string no JSON value of ours contains: it holds NUL characters and a per-process random part.
_MARK = secrets.token_hex(8)


class EncodedList(list[Any]):
    """A list that must not change after it is built; :meth:`encoded` is computed on first use and kept."""

    __slots__ = ("_encoded",)

    def __init__(self, items: list[Any]) -> None:
        super().__init__(items)
        self._encoded: bytes | None = None

    def encoded(self) -> bytes:
        if self._encoded is None:
            self._encoded = encode(list(self))
        return self._encoded


def encode(value: Any) -> bytes:
    try:
        return json_codec.dumps(value)
    except UnicodeEncodeError:
        # A lone surrogate cannot be UTF-8; escaped, it reads back as the very string the client sent.
        return json_codec.dumps(value, ascii_only=True)


def encode_answer(message: Any) -> bytes:
    """``message`` encoded, with any :class:`EncodedList` directly under its ``result`` spliced in as bytes.

    Only that one level is looked at: it is where list answers keep their items, and the look costs a few dict
    probes on every other answer.
    """
    result = message.get("result") if type(message) is dict else None
    if type(result) is not dict or not any(type(value) is EncodedList for value in result.values()):
        return encode(message)
    fragments: list[bytes] = []
    placed: dict[str, Any] = {}
    for key, value in result.items():
        if type(value) is EncodedList:
            placed[key] = f"\x00{_MARK}:{len(fragments)}\x00"
            fragments.append(value.encoded())
        else:
            placed[key] = value
    body = encode({**message, "result": placed})
    for index, fragment in enumerate(fragments):
        body = body.replace(f'"\\u0000{_MARK}:{index}\\u0000"'.encode(), fragment, 1)
    return body
