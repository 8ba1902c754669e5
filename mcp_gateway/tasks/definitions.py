"""Task definitions from two sources: the config file (read-only) and ``/v1/tasks`` (versioned, in the store).

A task created over the API lives in the store so that every replica sees it on its next request. Each change writes
a new immutable version; a task session records the version it was created with and keeps those rules until it
ends, whatever happens to the task afterwards. That immutability is what keeps the hot path cheap: a version, once
read, never changes, so the definition a bound request needs is a local memo hit after its first read (through the
store's coherent local copy), and config tasks never touch the store at all.

Key layout (before the store's own prefix)::

    taskdef:{id}          ->  JSON {"version": n, "modified": ..., "deleted": bool}   (no expiry; the head)
    taskdef-v:{id}:{n}    ->  JSON task document of version n                          (no expiry, written once)
    taskdefs              ->  sorted index: id scored by its current version           (for listing)

Versions are written with ``only_if_absent``: two replicas changing one task at once cannot both write version n,
so the loser answers 409 instead of silently overwriting. A deleted task keeps its head (marked deleted) so version
numbers never restart and an old session's version key never names different rules; its versions are then given
the longest session lifetime, so they outlive every session created before the deletion and then disappear.

Nothing here decides who may read or write; the HTTP layer does.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from jsonschema import validators
from jsonschema.protocols import Validator

from mcp_gateway.config import MAX_SESSION_TTL, StartableBy, TaskDefinition
from mcp_gateway.errors import Conflict, NotFound, StoreUnavailable
from mcp_gateway.store.base import Store

HEAD_KEY = "taskdef:"
VERSION_KEY = "taskdef-v:"
INDEX_KEY = "taskdefs"
CACHED_KEY_PREFIXES = (VERSION_KEY,)
"""Versions are read by every bound request and never change: worth a coherent local copy."""
_MEMO_ENTRIES = 4096

Source = Literal["config", "api"]


def version_key(task_id: str, version: int) -> str:
    return f"{VERSION_KEY}{task_id}:{version}"


def _timestamp(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class CompiledTask:
    """One version of a task with its context validator, built once (checking a schema per request costs more than
    validating against it)."""

    definition: TaskDefinition
    validator: Validator
    source: Source
    version: int
    modified: datetime | None

    @classmethod
    def compile(
        cls, definition: TaskDefinition, source: Source, version: int, modified: datetime | None
    ) -> CompiledTask:
        schema_cls = validators.validator_for(definition.context_schema)
        validator = schema_cls(definition.context_schema, format_checker=schema_cls.FORMAT_CHECKER)
        return cls(definition, validator, source, version, modified)

    def to_document(self) -> dict[str, Any]:
        """The API's description of this version (the same camelCase fields as a config task)."""
        task = self.definition
        startable = task.startable_by
        return {
            "id": task.id,
            "name": task.name,
            "labels": dict(task.labels),
            "contextSchema": task.context_schema,
            "allowedTools": None if task.allowed_tools is None else list(task.allowed_tools),
            "allowedResources": None if task.allowed_resources is None else list(task.allowed_resources),
            "allowedPrompts": None if task.allowed_prompts is None else list(task.allowed_prompts),
            "startableBy": None
            if startable is None
            else {"identities": sorted(startable.identities), "labels": dict(startable.labels)},
            "instruction": task.instruction,
            "outputSchema": task.output_schema,
            "source": self.source,
            "version": self.version,
            "modified": None if self.modified is None else _timestamp(self.modified),
        }


def _optional_list(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(str(item) for item in value)


def _from_document(raw: bytes) -> CompiledTask:
    """A stored version; it was validated when written, so only its shape is checked here."""
    try:
        doc = json.loads(raw)
        startable = doc["startableBy"]
        definition = TaskDefinition(
            id=str(doc["id"]),
            name=str(doc["name"]),
            context_schema=dict(doc["contextSchema"]),
            labels={str(k): str(v) for k, v in doc["labels"].items()},
            allowed_tools=_optional_list(doc["allowedTools"]),
            allowed_resources=_optional_list(doc["allowedResources"]),
            allowed_prompts=_optional_list(doc["allowedPrompts"]),
            startable_by=None
            if startable is None
            else StartableBy(identities=frozenset(startable["identities"]), labels=dict(startable["labels"])),
            # Versions written before tasks had these read back without them.
            instruction=doc.get("instruction"),
            output_schema=doc.get("outputSchema"),
        )
        modified = datetime.fromisoformat(str(doc["modified"]).replace("Z", "+00:00"))
        return CompiledTask.compile(definition, "api", int(doc["version"]), modified)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        # Unreadable is not "absent": refuse rather than guess which rules the session was meant to have.
        raise StoreUnavailable(f"a task definition in the store is unreadable: {exc}") from exc


@dataclass(frozen=True)
class _Head:
    version: int
    deleted: bool

    def to_bytes(self, modified: datetime) -> bytes:
        record = {"version": self.version, "modified": _timestamp(modified), "deleted": self.deleted}
        return json.dumps(record, separators=(",", ":")).encode()


class TaskDefinitions:
    """Every task a session may be opened for, and every version a live session may still be bound to."""

    def __init__(self, store: Store, config_tasks: Sequence[TaskDefinition]) -> None:
        self._store = store
        self._config = {task.id: CompiledTask.compile(task, "config", 1, None) for task in config_tasks}
        self._versions: OrderedDict[tuple[str, int], CompiledTask] = OrderedDict()

    def configured(self, task_id: str) -> CompiledTask | None:
        """A config task: no store round trip, ever."""
        return self._config.get(task_id)

    def set_configured(self, config_tasks: Sequence[TaskDefinition]) -> None:
        """A config reload: from the next lookup on, these config tasks (one reference replaced).

        A config task has no versions, so its live sessions follow the new definition; one no longer configured ends
        its sessions (``TaskSessions.bind`` refuses them). An unchanged task keeps its compiled validator.
        """
        kept = self._config
        self._config = {
            task.id: known
            if (known := kept.get(task.id)) is not None and known.definition == task
            else CompiledTask.compile(task, "config", 1, None)
            for task in config_tasks
        }

    async def current(self, task_id: str) -> CompiledTask | None:
        """The task as it is now (config first: an API task can never shadow a config one)."""
        configured = self._config.get(task_id)
        if configured is not None:
            return configured
        head = await self._head(task_id)
        if head is None or head.deleted:
            return None
        return await self.version(task_id, head.version)

    async def version(self, task_id: str, version: int) -> CompiledTask | None:
        """One stored version; immutable once written, so a memo hit is as good as a read."""
        key = (task_id, version)
        compiled = self._versions.get(key)
        if compiled is not None:
            self._versions.move_to_end(key)
            return compiled
        raw = await self._store.get_cached(version_key(task_id, version))
        if raw is None:
            return None
        compiled = _from_document(raw)
        self._versions[key] = compiled
        if len(self._versions) > _MEMO_ENTRIES:
            self._versions.popitem(last=False)
        return compiled

    async def all(self) -> list[CompiledTask]:
        """Config tasks, then API tasks, each sorted by id."""
        stored: list[CompiledTask] = []
        for task_id, score in await self._store.index_range(INDEX_KEY):
            compiled = await self.version(task_id, int(score))
            if compiled is not None:
                stored.append(compiled)
        return [*sorted(self._config.values(), key=lambda t: t.definition.id), *stored]

    async def history(self, task_id: str) -> list[CompiledTask]:
        """Every version still kept, oldest first."""
        if task_id in self._config:
            return [self._config[task_id]]
        head = await self._head(task_id)
        if head is None or head.deleted:
            raise NotFound(f"unknown task {task_id!r}")
        found = [await self.version(task_id, n) for n in range(1, head.version + 1)]
        return [compiled for compiled in found if compiled is not None]

    async def write(self, definition: TaskDefinition, *, create: bool, now: datetime | None = None) -> CompiledTask:
        """Create a task (``create``) or replace it with a new version; 409 for config tasks and clashes."""
        task_id = definition.id
        if task_id in self._config:
            raise Conflict(f"task {task_id!r} is declared in the config file and cannot be changed over the API")
        head = await self._head(task_id)
        live = head is not None and not head.deleted
        if create and live:
            raise Conflict(f"task {task_id!r} already exists; change it with PUT /v1/tasks/{task_id}")
        if not create and not live:
            raise NotFound(f"unknown task {task_id!r}")
        modified = now or datetime.now(UTC)
        compiled = CompiledTask.compile(definition, "api", (head.version if head else 0) + 1, modified)
        document = json.dumps(compiled.to_document(), separators=(",", ":"), allow_nan=False).encode()
        if not await self._store.put(version_key(task_id, compiled.version), document, only_if_absent=True):
            raise Conflict(f"task {task_id!r} was changed by another request at the same time; read it and retry")
        await self._store.put(HEAD_KEY + task_id, _Head(compiled.version, False).to_bytes(modified))
        await self._store.index_add(INDEX_KEY, task_id, compiled.version)
        return compiled

    async def delete(self, task_id: str, now: datetime | None = None) -> CompiledTask:
        """Remove a task for new sessions; sessions already open keep their version until they end."""
        if task_id in self._config:
            raise Conflict(f"task {task_id!r} is declared in the config file and cannot be deleted over the API")
        head = await self._head(task_id)
        if head is None or head.deleted:
            raise NotFound(f"unknown task {task_id!r}")
        last = await self.version(task_id, head.version)
        if last is None:
            raise StoreUnavailable(f"task {task_id!r} names version {head.version}, which the store does not hold")
        await self._store.put(HEAD_KEY + task_id, _Head(head.version, True).to_bytes(now or datetime.now(UTC)))
        await self._store.index_remove(INDEX_KEY, task_id)
        for n in range(1, head.version + 1):
            key = version_key(task_id, n)
            raw = await self._store.get(key)
            if raw is not None:
                # No session outlives MAX_SESSION_TTL, and none can start on a deleted task.
                await self._store.set(key, raw, MAX_SESSION_TTL)
        return last

    async def _head(self, task_id: str) -> _Head | None:
        raw = await self._store.get(HEAD_KEY + task_id)
        if raw is None:
            return None
        try:
            record: Mapping[str, Any] = json.loads(raw)
            return _Head(int(record["version"]), bool(record["deleted"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreUnavailable(f"the head record of task {task_id!r} is unreadable: {exc}") from exc
