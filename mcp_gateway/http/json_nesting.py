"""How deeply a JSON request nests, measured cheaply enough for every request on the hot path.

A body nested a thousand levels makes ``json.loads`` raise ``RecursionError`` and would make every later walk of the
value (policy input, audit redaction, upstream encoding) pay for it, so the front door refuses it first. Most
bodies cannot be deep at all: a value's depth is at most the number of ``[`` and ``{`` bytes in it, and counting
two bytes is a C loop. Only a body with more brackets than the limit pays for the exact measure, which runs no Python
code per byte: ``replace`` and ``translate`` cut the body down to its brackets outside strings; each ``replace`` of
``{}`` then peels one level off, which finishes a typical wide and shallow document in a few fast passes; whatever is
still left after a few passes (a document built to be deep) gets one linear ``accumulate`` of its running depth.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import accumulate
from typing import Any

_ALL_BUT_SYNTAX = bytes(b for b in range(256) if b not in b'"[]{},:')
_ONE_BRACKET_KIND = bytes.maketrans(b"[]", b"{}")
_PEELS = 8
_DEPTH_STEP = [0] * 256
_DEPTH_STEP[ord("{")] = 1
_DEPTH_STEP[ord("}")] = -1


def nesting_bound(body: bytes, cap: int) -> int:
    """How deep the JSON in ``body`` nests (``{}`` is 1 deep, ``{"a": [1]}`` 2), or ``cap + 1`` if deeper than ``cap``.

    A result up to ``cap`` is an upper bound of the depth, exact when the body has more than ``cap`` brackets.
    Malformed JSON may get any answer: the parser refuses it anyway.
    """
    brackets = body.count(b"[") + body.count(b"{")
    if brackets <= cap:
        return brackets
    # Outside strings valid JSON has no backslash; inside, once escaped backslashes are gone every backslash-quote
    # is an escaped quote, so the quotes left delimit strings.
    syntax = body.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _ALL_BUT_SYNTAX)
    # With the separators kept, two adjacent quotes can only open and close a string holding no syntax character
    # (JSON never puts two strings side by side); most strings go in this one pass, the rest are split out.
    syntax = syntax.replace(b'""', b"")
    if b'"' in syntax:
        syntax = b"".join(syntax.split(b'"')[::2])
    structure = syntax.translate(_ONE_BRACKET_KIND, b",:")
    depth = 0
    while structure and depth < _PEELS:
        if b"{" * (cap + 1 - depth) in structure:
            return cap + 1  # a run of openers this long settles it in one search: the usual shape of an attack
        structure = structure.replace(b"{}", b"")
        depth += 1
    if structure:
        depth += max(accumulate(map(_DEPTH_STEP.__getitem__, structure)), default=0)
    return min(depth, cap + 1)


def value_nests_deeper(value: Any, limit: int) -> bool:
    """Whether a parsed JSON value nests more than ``limit`` containers deep (a scalar nests 0 deep)."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, Mapping) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False
