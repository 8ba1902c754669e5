"""``http/json_nesting.py`` on its own: the cheap depth measure of a request body, held to the parsed value's depth.

``nesting_bound`` never looks at a parsed value, so it is checked against one: for documents a seeded generator
writes (strings full of brackets, quotes and backslashes, keys among them, either encoder's escapes), the bound
must refuse exactly the documents deeper than the cap, and be exact whenever it does more than count brackets. The
front door's use of it over a real server is ``test_front_door.py``'s subject.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from mcp_gateway.http.json_nesting import nesting_bound, value_nests_deeper

TRICKY = '[]{}",:\\ "\\\\"[{x'
"""Characters that are JSON syntax outside a string and mere text inside one, with escapes that hide a quote."""


def depth(value: Any) -> int:
    """How deeply a parsed value nests: a scalar 0, ``[]`` 1, ``{"a": [1]}`` 2."""
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


def text(rng: random.Random) -> str:
    return "".join(rng.choice(TRICKY + "aé€😀") for _ in range(rng.randint(0, 8)))


def value(rng: random.Random, levels: int) -> Any:
    """A value nesting at most ``levels`` deep, with one deep spine and small shallow branches beside it."""
    if levels == 0 or rng.random() < 0.1:
        return rng.choice([text(rng), 1, -2.5, True, None, ""])
    children = [value(rng, levels - 1)] + [value(rng, min(levels - 1, 2)) for _ in range(rng.randint(0, 3))]
    rng.shuffle(children)
    if rng.random() < 0.5:
        return children
    return {f"{text(rng)}{i}": child for i, child in enumerate(children)}


def documents(count: int) -> list[bytes]:
    rng = random.Random(13)
    written = []
    for _ in range(count):
        document = value(rng, rng.randint(0, 24))
        ascii_only = rng.random() < 0.5
        separators = rng.choice([(",", ":"), (", ", ": ")])
        written.append(json.dumps(document, ensure_ascii=ascii_only, separators=separators).encode())
    return written


@pytest.mark.parametrize("body", documents(300))
def test_the_bound_refuses_exactly_the_documents_deeper_than_the_cap(body: bytes) -> None:
    actual = depth(json.loads(body))
    brackets = body.count(b"[") + body.count(b"{")
    for cap in sorted({0, 1, 2, actual - 1, actual, actual + 1, 5, 12, 128} - {-1}):
        bound = nesting_bound(body, cap)
        assert (bound > cap) == (actual > cap), (cap, bound, actual)
        assert bound <= cap + 1
        if actual <= cap:
            assert bound >= actual
        if brackets > cap and actual <= cap:
            assert bound == actual, (cap, bound, actual)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"1", 0),
        (b'"[[{{"', 0),
        (b"[]", 1),
        (b"{}", 1),
        (b'{"a": [1]}', 2),
        (b'["\\\\", [["\\"[[["]]]', 3),
        (b'{"[[[[[[": "]]]]]]", "k": {"\\\\\\"{{{{": []}}', 3),
        (b"[" + b"[1]," * 50 + b"[]]", 2),
    ],
)
def test_strings_and_escapes_do_not_count_once_the_brackets_outnumber_the_cap(body: bytes, expected: int) -> None:
    assert depth(json.loads(body)) == expected
    assert nesting_bound(body, 2) == min(expected, 3)


def test_a_document_built_to_be_deep_is_refused() -> None:
    assert nesting_bound(b"[" * 10_000 + b"]" * 10_000, 128) == 129
    assert nesting_bound(b'{"a":' * 200 + b"1" + b"}" * 200, 128) == 129


def test_a_document_deeper_than_the_peeling_passes_is_measured_exactly() -> None:
    """Past a few peeling passes the rest is measured by its running depth: a deep spine with branches off it."""
    body = b"[" + b"[[],".join([b""] * 40) + b"1" + b"]" * 40
    actual = depth(json.loads(body))
    assert actual > 12
    assert nesting_bound(body, actual) == actual
    assert nesting_bound(body, actual - 1) == actual


def test_few_brackets_are_counted_without_parsing() -> None:
    """Up to the cap the count of openers is the answer: an upper bound, whatever the strings hold."""
    assert nesting_bound(b'["[", "{"]', 3) == 3


@pytest.mark.parametrize(
    ("parsed", "limit", "deeper"),
    [
        ("scalar", 0, False),
        ([], 0, True),
        ([], 1, False),
        ({"a": [1]}, 1, True),
        ({"a": [1]}, 2, False),
        ([[[{}]]], 3, True),
        ([[[{}]]], 4, False),
        ([1] * 10_000, 1, False),
        ({"wide": [[] for _ in range(1000)], "deep": [[[[]]]]}, 4, True),
    ],
)
def test_a_parsed_value_nests_deeper_than_the_limit_or_not(parsed: Any, limit: int, deeper: bool) -> None:
    assert value_nests_deeper(parsed, limit) is deeper
    assert (depth(parsed) > limit) is deeper


def test_a_parsed_value_nested_past_the_interpreters_recursion_limit_is_measured() -> None:
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    assert value_nests_deeper(deep, 4999)
    assert not value_nests_deeper(deep, 5001)
