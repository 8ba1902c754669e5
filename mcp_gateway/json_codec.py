"""JSON on the request path: msgspec's encoder and decoder, with the standard library's rules where they differ.

Every proxied call parses the client's message and the upstream's answer and encodes the message for the upstream
and the answer for the client; with the standard library that was a visible share of a call's CPU, and ~4 ms per MB
of result. msgspec does the same work several times faster. It refuses a few things Python's ``json`` accepts
(escaped lone surrogates, numbers beyond a float's range, non-UTF-8 input), so those fall back to ``json`` and keep
their old meaning; callers see the same values and the same errors (``ValueError`` for bad JSON, ``TypeError`` or
``ValueError`` for values JSON cannot carry) as before.

An upstream's result can also be read *verbatim* (``loads_answer``): the JSON-RPC answer is checked in full (JSON
syntax, strict UTF-8), but only the result members the gateway reads become Python values; every other member stays
the bytes the upstream sent (``Verbatim``), which the encoder writes back unchanged. A 1 MB tool result is then never
turned into Python objects and encoded again. Nothing here decides which members may stay verbatim: the caller names
the ones it reads, and anything that must look inside the rest (a rewrite, an agent, the stdio edge) asks for
``materialized`` values first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import msgspec

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()

Verbatim = msgspec.Raw
"""A JSON value held as the exact bytes it arrived in: checked, never decoded; the encoder writes it as is."""


def loads(data: bytes | str) -> Any:
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError:
        # Whatever msgspec refuses is judged by the standard library: same value, or the same ValueError, as before.
        return json.loads(data)


def dumps(value: Any, *, ascii_only: bool = False) -> bytes:
    """Compact UTF-8 JSON (``ascii_only``: non-ASCII escaped, so lone surrogates still encode).

    ``Verbatim`` values are written as they came; on the standard library's path (a lone surrogate elsewhere in the
    message) they are decoded and encoded like any other value.
    """
    if not ascii_only:
        try:
            return _encoder.encode(value)
        except (TypeError, ValueError, OverflowError):
            # A lone surrogate cannot be UTF-8: let the standard library raise exactly what callers expect.
            pass
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=ascii_only, default=_verbatim_value)
    return text.encode("utf-8")


def _verbatim_value(value: Any) -> Any:
    if isinstance(value, Verbatim):
        return loads(bytes(value))
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def materialized(members: Mapping[str, Any]) -> dict[str, Any]:
    """``members`` with every ``Verbatim`` value decoded: for code that reads or changes what is inside a result."""
    return {key: loads(bytes(value)) if isinstance(value, Verbatim) else value for key, value in members.items()}


class _Answer(msgspec.Struct):
    """A JSON-RPC message read for its result's members only; any other shape is left to ``loads``."""

    id: Any = None
    result: dict[str, msgspec.Raw] | None = None
    error: msgspec.Raw | None = None
    method: msgspec.Raw | None = None


_answer_decoder = msgspec.json.Decoder(_Answer)


def loads_answer(data: bytes, decoded: frozenset[str]) -> tuple[Any, dict[str, Any]] | None:
    """``(id, result)`` of the JSON-RPC result message ``data``, the result's members named in ``decoded`` as Python
    values and every other one ``Verbatim``.

    None when ``data`` is anything else (an error, a request or notification, a result that is not an object) or
    is not what JSON requires of it (strict UTF-8, no ``NaN``): ``loads`` then reads it with today's rules, and
    gives today's value or error. Lone surrogates written as escapes (``"\\ud800"``) are valid JSON that msgspec
    refuses; such an answer is split by the standard library's scanner instead, so it too passes unchanged.
    """
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        answer = _answer_decoder.decode(data)
    except msgspec.DecodeError:
        return _split_with_stdlib(data, decoded) if b"\\u" in data else None
    if answer.result is None or answer.error is not None or answer.method is not None:
        return None
    members: dict[str, Any] = answer.result
    for key in decoded & members.keys():
        members[key] = loads(bytes(members[key]))
    return answer.id, members


_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_stdlib_values = json.JSONDecoder(parse_constant=_refuse_constant)


def _split_with_stdlib(data: bytes, decoded: frozenset[str]) -> tuple[Any, dict[str, Any]] | None:
    """``loads_answer`` for what msgspec refuses: each member parsed by the standard library, kept as its own text."""
    text = data.decode("utf-8")
    try:
        start = _skip(text, 0)
        message, end = _object_members(text, start)
        if _skip(text, end) != len(text) or "error" in message or "method" in message or "result" not in message:
            return None
        result_start = message["result"][0]
        if text[result_start] != "{":
            return None
        spans, _ = _object_members(text, result_start)
    except ValueError:
        return None
    members: dict[str, Any] = {}
    for key, (first, last) in spans.items():
        value = text[first:last]
        members[key] = loads(value) if key in decoded else Verbatim(value.encode("utf-8"))
    request_id = loads(text[slice(*message["id"])]) if "id" in message else None
    return request_id, members


def _skip(text: str, position: int) -> int:
    match = _WHITESPACE.match(text, position)
    return match.end() if match else position


def _object_members(text: str, position: int) -> tuple[dict[str, tuple[int, int]], int]:
    """The span of each member value of the JSON object at ``text[position]``, and where the object ends."""
    if text[position : position + 1] != "{":
        raise ValueError("not an object")
    spans: dict[str, tuple[int, int]] = {}
    position = _skip(text, position + 1)
    if text[position : position + 1] == "}":
        return spans, position + 1
    while True:
        if text[position : position + 1] != '"':
            raise ValueError("expected a member name")
        key, position = _stdlib_values.raw_decode(text, position)
        position = _skip(text, position)
        if text[position : position + 1] != ":":
            raise ValueError("expected ':'")
        position = _skip(text, position + 1)
        _, end = _stdlib_values.raw_decode(text, position)
        spans[key] = (position, end)
        position = _skip(text, end)
        separator = text[position : position + 1]
        position = _skip(text, position + 1)
        if separator == "}":
            return spans, position
        if separator != ",":
            raise ValueError("expected ',' or '}'")
