"""What an audit record keeps of a call's arguments: redacted by key and bounded in size, in one pass.

Arguments are the caller's and can hold anything JSON allows: a secret under a telling name, a megabyte string, an
object nested hundreds of levels deep. A record is written to the log and to the store stream on every call, so it
must stay small and must always serialise. One walk over the arguments therefore does all of it, copying only the
containers it walks:

- the value of every key matching ``audit.redactKeys`` (globs, case-insensitive, at any depth) becomes
  ``"[REDACTED]"``; values are not inspected, because secrets are named (``password``, ``api_key``);
- a string longer than ``audit.maxArgBytes`` (in UTF-8) becomes ``{"truncated": true, "length": N, "sha256": H}``,
  its length in bytes and the SHA-256 of those bytes, so an auditor can still match it against a known value;
- a list or object nested deeper than ``MAX_DEPTH`` becomes the same summary of its compact JSON text (without
  length and hash when even that cannot be encoded);
- a key longer than ``audit.maxArgBytes`` is written as ``"truncated:<length>:<sha256>"``, a value of a type JSON
  lacks as its text, bounded like any string.

Hashing is the one cost that grows with a value's size (~1.5 ms per MB), so :meth:`ArgumentFilter.deferred` leaves
the summaries of long strings unhashed (``Digests``) for the audit writer to finish off the request path; the walk
itself only copies containers and so costs the same for a megabyte string as for a short one.

The walk recurses at most ``MAX_DEPTH`` levels, so no input can exhaust the interpreter's stack here, and it stops
as soon as the containers it met hold more items than a record of ``max_record_bytes`` could show (every item takes
at least two bytes of JSON): such arguments are recorded as ``{"truncated": true}`` without a full copy.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

REDACTED = "[REDACTED]"
MAX_DEPTH = 32
"""Levels of nesting kept in a record, the arguments object being level 1."""

# Matching a key against the globs costs microseconds (a regex alternation with leading wildcards) and keys repeat
# from call to call, so the verdict is remembered per key; only short keys, and only so many, since keys come from
# callers.
_MEMO_KEYS = 4096
_MEMO_KEY_LENGTH = 128
# Decimal digits per bit of an int, to keep ints whose text would exceed the byte budget.
_DIGITS_PER_BIT = 0.302


class _OverBudget(Exception):
    """The arguments hold more items than a record could show."""


class Digests:
    """Summaries of long strings still waiting for their length and SHA-256, and the strings they summarise.

    A summary is already in place in the filtered arguments (``{"truncated": true, "length": 0, "sha256": ""}``, keys
    in their final order); :meth:`compute` fills it in. ``size`` is the characters waiting, to bound what a queue of
    unfinished records keeps alive.
    """

    __slots__ = ("pending", "size")

    def __init__(self) -> None:
        self.pending: list[tuple[str, dict[str, Any]]] = []
        self.size = 0

    def add(self, text: str) -> dict[str, Any]:
        summary: dict[str, Any] = {"truncated": True, "length": 0, "sha256": ""}
        self.pending.append((text, summary))
        self.size += len(text)
        return summary

    def compute(self) -> None:
        """Fill in every summary (hashlib releases the GIL on large inputs, so this may run in a worker thread)."""
        for text, summary in self.pending:
            data = text.encode("utf-8", "surrogatepass")
            summary["length"] = len(data)
            summary["sha256"] = hashlib.sha256(data).hexdigest()
        self.pending.clear()
        self.size = 0


class ArgumentFilter:
    """Turns a call's arguments into what its audit record holds; built once per configuration."""

    def __init__(self, redact_keys: Sequence[str], max_value_bytes: int, max_record_bytes: int) -> None:
        self._matcher = (
            re.compile("|".join(fnmatch.translate(p) for p in redact_keys), re.IGNORECASE) if redact_keys else None
        )
        self._max_bytes = max_value_bytes
        self._max_int_bits = int(max_value_bytes / _DIGITS_PER_BIT)
        self._max_items = max_record_bytes // 2
        self._items = 0
        self._digests = Digests()
        # Keys seen before that are kept as they are, and whether their values are redacted.
        self._known_keys: dict[str, bool] = {}

    def __call__(self, args: Mapping[Any, Any]) -> dict[str, Any]:
        filtered, digests = self.deferred(args)
        digests.compute()
        return filtered

    def deferred(self, args: Mapping[Any, Any]) -> tuple[dict[str, Any], Digests]:
        """The filtered arguments with the summaries of long strings not yet hashed: call ``compute`` on the
        second value before the first is written anywhere."""
        self._items = 0
        digests = self._digests = Digests()
        try:
            return self._mapping(args, 1), digests
        except _OverBudget:
            return {"truncated": True}, Digests()

    def _count(self, items: int) -> None:
        """Account for a container's items (one addition per container, not per item)."""
        self._items += items
        if self._items > self._max_items:
            raise _OverBudget

    def _mapping(self, value: Mapping[Any, Any], depth: int) -> dict[str, Any]:
        self._count(len(value))
        # The hot path: known short keys and small scalars are handled inline, without a call per item.
        known_keys = self._known_keys
        small = self._max_bytes // 4
        out: dict[str, Any] = {}
        for key, item in value.items():
            secret = known_keys.get(key)
            if secret is None:
                key, secret = self._new_key(key)
            if secret:
                out[key] = REDACTED
            elif type(item) is str and len(item) <= small:
                out[key] = item
            else:
                out[key] = self._value(item, depth)
        return out

    def _value(self, value: Any, depth: int) -> Any:
        """``value`` as recorded, found in a container at level ``depth``."""
        kind = type(value)
        if kind is str:
            return value if self._fits(value) else self._digests.add(value)
        if value is None or kind is bool or kind is float:
            return value
        if kind is int:
            return value if value.bit_length() <= self._max_int_bits else self._text(value)
        if kind is dict or kind is list or isinstance(value, Mapping | tuple):
            if depth >= MAX_DEPTH:
                return _structure_summary(value)
            if isinstance(value, Mapping):
                return self._mapping(value, depth + 1)
            self._count(len(value))
            return [self._value(item, depth + 1) for item in value]
        return self._text(value)

    def _new_key(self, key: Any) -> tuple[str, bool]:
        """A key not seen before: its recorded form and whether its value is redacted."""
        name = key if type(key) is str else str(key)
        secret = self._matcher is not None and self._matcher.match(name) is not None
        if name is key and len(name) <= _MEMO_KEY_LENGTH and self._fits(name) and len(self._known_keys) < _MEMO_KEYS:
            self._known_keys[name] = secret
        if self._fits(name):
            return name, secret
        data = name.encode("utf-8", "surrogatepass")
        return f"truncated:{len(data)}:{hashlib.sha256(data).hexdigest()}", secret

    def _fits(self, text: str) -> bool:
        """Whether ``text`` is at most the byte budget in UTF-8, encoding it only when its length cannot tell."""
        length = len(text)
        if length * 4 <= self._max_bytes:
            return True
        if length > self._max_bytes:
            return False
        return text.isascii() or len(text.encode("utf-8", "surrogatepass")) <= self._max_bytes

    def _text(self, value: Any) -> Any:
        """A value JSON has no form for (or an int too long to keep), as bounded text."""
        try:
            text = str(value)
        except Exception:
            # str() itself can fail (an int over the interpreter's digit limit, a broken __str__).
            return {"truncated": True}
        return self._value(text, 0)


def _summary(data: bytes) -> dict[str, Any]:
    return {"truncated": True, "length": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _structure_summary(value: Any) -> dict[str, Any]:
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (RecursionError, ValueError, TypeError):
        return {"truncated": True}
    return _summary(text.encode("utf-8", "surrogatepass"))
