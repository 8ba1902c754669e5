"""Pinned tool definitions: what each upstream tool looked like when it was first seen or last approved.

An upstream can change a tool's description or schema at any time, and a client's model reads the new text as
instructions (tool poisoning, a "rug pull" after review). The gateway therefore keeps, in the shared store, the
definition it first saw of every tool (trust on first use) and compares what each upstream lists against it.

What is pinned is the part of a definition a model or a client acts on: ``name`` (the upstream's own), ``title``
(clients show it, and models read it as part of the tool), ``description``, ``inputSchema``, ``outputSchema`` and
``annotations`` (hints such as ``destructiveHint`` that clients use to decide whether to ask the user). ``_meta``,
``icons`` and ``execution`` are left out: they carry implementation data that changes with releases, not
instructions, and pinning them would make every upgrade look like an attack.

Keys (one per upstream and tool, so replicas never rewrite each other's records):
``pin:{upstream}:{tool}`` the approved definition, ``pin-pending:{upstream}:{tool}`` the changed one some replica
saw, and the sorted index ``pin-changed`` of ``{upstream}:{tool}`` awaiting approval (upstream names cannot hold
``:``). None of them expires: a pin is a decision, not a cache entry.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

from mcp_gateway.store.base import Store

PinMode = Literal["off", "warn", "enforce"]

PINNED_FIELDS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")
CHANGED_INDEX = "pin-changed"


def pinned_definition(tool: Mapping[str, Any], original_name: str) -> dict[str, Any]:
    """The pinned fields of a listed tool, under the upstream's own name (so a new separator breaks no pin)."""
    definition = {key: tool[key] for key in PINNED_FIELDS if key in tool}
    definition["name"] = original_name
    return definition


def canonical_json(definition: Mapping[str, Any]) -> str:
    """One text per definition, whatever the key order or spacing the upstream sent."""
    return json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def definition_hash(definition: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(definition).encode("utf-8", "surrogatepass")).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class PinnedDefinition:
    """A definition and its hash, when it was pinned or seen, and who approved it (None: first sight, or unapproved)."""

    sha256: str
    definition: Mapping[str, Any]
    at: str
    approved_by: str | None = None

    @classmethod
    def of(cls, definition: Mapping[str, Any], approved_by: str | None = None) -> PinnedDefinition:
        return cls(definition_hash(definition), definition, _now(), approved_by)

    def to_bytes(self) -> bytes:
        record = {"sha256": self.sha256, "definition": self.definition, "at": self.at, "approvedBy": self.approved_by}
        return json.dumps(record, ensure_ascii=False).encode("utf-8", "surrogatepass")

    @classmethod
    def from_bytes(cls, raw: bytes) -> PinnedDefinition:
        """Parse a stored record; anything else in its place is a ``ValueError``."""
        try:
            data = json.loads(raw)
            definition = data["definition"]
            if not isinstance(definition, dict):
                raise TypeError("definition is not an object")
            return cls(str(data["sha256"]), cast(dict[str, Any], definition), str(data["at"]), data.get("approvedBy"))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"malformed pin record: {exc!r}") from None

    def to_public(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "definition": self.definition, "at": self.at, "approvedBy": self.approved_by}


@dataclass(frozen=True)
class PinChange:
    """A tool whose current definition differs from its pinned one."""

    upstream: str
    tool: str
    pinned: PinnedDefinition
    current: PinnedDefinition

    def diff(self) -> str:
        """A unified diff of the two canonical definitions, pretty-printed so each schema property is a line."""
        before = json.dumps(self.pinned.definition, sort_keys=True, indent=2, ensure_ascii=False).splitlines()
        after = json.dumps(self.current.definition, sort_keys=True, indent=2, ensure_ascii=False).splitlines()
        label = f"{self.upstream}/{self.tool}"
        lines = difflib.unified_diff(
            before,
            after,
            f"{label} pinned {self.pinned.sha256[:12]}",
            f"{label} current {self.current.sha256[:12]}",
            lineterm="",
        )
        return "\n".join(lines) + "\n"


class NothingToApprove(Exception):
    """No changed definition of that tool awaits approval, or not the one the approver reviewed."""


class PinStore:
    """The pin records in the store; every method raises ``StoreUnavailable`` when the store cannot be reached."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def available(self) -> bool:
        """Whether the store answered lately (no round trip): a check known to fail need not wait for a timeout."""
        return self._store.available

    async def pinned(self, upstream: str, tool: str) -> PinnedDefinition | None:
        raw = await self._store.get(f"pin:{upstream}:{tool}")
        return None if raw is None else PinnedDefinition.from_bytes(raw)

    async def pin_first_sight(self, upstream: str, tool: str, seen: PinnedDefinition) -> PinnedDefinition:
        """Pin ``seen`` unless a pin exists (another replica may have just written one); return the pin in force."""
        if await self._store.put(f"pin:{upstream}:{tool}", seen.to_bytes(), only_if_absent=True):
            return seen
        return await self.pinned(upstream, tool) or seen

    async def awaiting(self) -> frozenset[tuple[str, str]]:
        """(upstream, tool) of every change awaiting approval."""
        return frozenset(_split(member) for member, _ in await self._store.index_range(CHANGED_INDEX))

    async def record_change(self, upstream: str, tool: str, current: PinnedDefinition) -> None:
        await self._store.put(f"pin-pending:{upstream}:{tool}", current.to_bytes())
        await self._store.index_add(CHANGED_INDEX, f"{upstream}:{tool}", datetime.now(UTC).timestamp())

    async def clear_change(self, upstream: str, tool: str) -> None:
        await self._store.index_remove(CHANGED_INDEX, f"{upstream}:{tool}")
        await self._store.delete(f"pin-pending:{upstream}:{tool}")

    async def changes(self) -> list[PinChange]:
        """Every change awaiting approval, oldest first."""
        result: list[PinChange] = []
        for member, _ in await self._store.index_range(CHANGED_INDEX):
            upstream, tool = _split(member)
            pinned = await self.pinned(upstream, tool)
            raw = await self._store.get(f"pin-pending:{upstream}:{tool}")
            if pinned is not None and raw is not None:
                result.append(PinChange(upstream, tool, pinned, PinnedDefinition.from_bytes(raw)))
        return result

    async def approve(self, upstream: str, tool: str, by: str, sha256: str | None = None) -> PinnedDefinition:
        """Pin the changed definition awaiting approval; with ``sha256``, only if it is that one (the one reviewed).

        Raises ``NothingToApprove`` otherwise.
        """
        raw = await self._store.get(f"pin-pending:{upstream}:{tool}")
        if raw is None:
            raise NothingToApprove(f"no changed definition of {upstream}/{tool} awaits approval")
        pending = PinnedDefinition.from_bytes(raw)
        if sha256 is not None and pending.sha256 != sha256:
            raise NothingToApprove(
                f"the changed definition of {upstream}/{tool} awaiting approval is {pending.sha256}, not {sha256}: "
                "review it again"
            )
        approved = PinnedDefinition(pending.sha256, pending.definition, _now(), by)
        await self._store.put(f"pin:{upstream}:{tool}", approved.to_bytes())
        await self.clear_change(upstream, tool)
        return approved


def _split(member: str) -> tuple[str, str]:
    upstream, _, tool = member.partition(":")
    return upstream, tool


def exposed_tool_name(upstream: str, tool: str, prefixed: bool, separator: str) -> str:
    return f"{upstream}{separator}{tool}" if prefixed else tool


def changes_for(changes: Sequence[PinChange], upstream: str | None) -> list[PinChange]:
    return [change for change in changes if upstream is None or change.upstream == upstream]
