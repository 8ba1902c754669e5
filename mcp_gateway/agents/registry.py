"""Agent definitions in the shared store, so every replica sees a change at once.

Key layout (before the store's own prefix)::

    agent:{agentId}                 ->  the agent's record (name, visibility, active and latest revision, ...)
    agent-revision:{agentId}:{n}    ->  revision n, written once and never changed
    agent-name:{name}               ->  the agentId holding that name (claimed with SET NX: unique across replicas)
    agents                          ->  a stream of created agentIds, the listing index
    agents-generation               ->  a random token, replaced whenever an agent is created or deleted

Revision numbers are claimed with ``set_if_absent`` too, so two replicas adding a revision at once get 2 and 3,
never two revision 2s. ``latestRevision`` on the agent record is only a hint: readers probe past it. The agent
record itself is read-modify-write (last writer wins on activate/delete); it holds nothing a lost update could
corrupt beyond which revision is active.

The generation token is what lets every replica serve the agents' MCP tools (``tools/list``) without reading every
agent per request: it is read through the store's coherent local copy, and the list is rebuilt only when it changed.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from mcp_gateway.agents.definitions import Agent, Revision, RuntimeSpec
from mcp_gateway.agents.validation import AgentFields, DeclaredAgent
from mcp_gateway.errors import Conflict, NotFound, StoreUnavailable
from mcp_gateway.store.base import Store

# Definitions are kept until deleted; the store contract has lifetimes only, so "kept" is ten years.
KEEP_SECONDS = 10 * 365 * 86400
AGENT_ID_PREFIX = "ag_"
_AGENT_KEY = "agent:"
_REVISION_KEY = "agent-revision:"
_NAME_KEY = "agent-name:"
_INDEX_STREAM = "agents"
_INDEX_MAXLEN = 1_000_000
_INDEX_PAGE = 500
GENERATION_KEY = "agents-generation"
CACHED_KEY_PREFIXES = (GENERATION_KEY,)
"""Read by every ``tools/list``: worth a coherent local copy (``Store.get_cached``)."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _decode(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise StoreUnavailable(f"{what} in the store is unreadable: {exc}") from exc
    if not isinstance(value, dict):
        raise StoreUnavailable(f"{what} in the store is unreadable: not an object")
    return value


class AgentRegistry:
    def __init__(
        self, store: Store, declared: Sequence[DeclaredAgent] = (), *, clock: Callable[[], datetime] = _utcnow
    ) -> None:
        self._store = store
        self._clock = clock
        loaded = clock()
        self._declared: dict[str, tuple[Agent, Revision]] = {}
        for entry in declared:
            agent = Agent(
                id=entry.id,
                name=entry.fields.name,
                description=entry.fields.description,
                run_visibility="all" if entry.fields.run_visibility == "all" else "owner_only",
                created=loaded,
                modified=loaded,
                active_revision=1,
                latest_revision=1,
                read_only=True,
            )
            self._declared[entry.id] = (agent, Revision(entry.id, 1, loaded, entry.spec))
        self._declared_names = {agent.name: agent.id for agent, _ in self._declared.values()}

    def _writable(self, agent_id: str) -> None:
        if agent_id in self._declared:
            raise Conflict(f"agent {agent_id!r} is declared in the gateway config and read-only")

    async def create(self, fields: AgentFields, spec: RuntimeSpec) -> tuple[Agent, Revision]:
        """A new agent with revision 1 active; 409 when the name is taken."""
        if fields.name in self._declared_names:
            raise Conflict(f"an agent named {fields.name!r} is declared in the gateway config")
        agent_id = AGENT_ID_PREFIX + secrets.token_hex(8)
        if not await self._store.set_if_absent(_NAME_KEY + fields.name, agent_id.encode(), KEEP_SECONDS):
            raise Conflict(f"an agent named {fields.name!r} already exists")
        now = self._clock()
        revision = Revision(agent_id=agent_id, number=1, created=now, spec=spec)
        agent = Agent(
            id=agent_id,
            name=fields.name,
            description=fields.description,
            run_visibility="all" if fields.run_visibility == "all" else "owner_only",
            created=now,
            modified=now,
            active_revision=1,
            latest_revision=1,
        )
        try:
            await self._store.set_many(
                {
                    _revision_key(agent_id, 1): _encode(revision.to_record()),
                    _AGENT_KEY + agent_id: _encode(agent.to_record()),
                },
                KEEP_SECONDS,
            )
            await self._store.append_stream(_INDEX_STREAM, {"id": agent_id}, _INDEX_MAXLEN)
        except BaseException:
            await self._store.delete(_NAME_KEY + fields.name)
            raise
        await self._new_generation()
        return agent, revision

    async def get(self, agent_id: str) -> Agent:
        if agent_id in self._declared:
            return self._declared[agent_id][0]
        raw = await self._store.get(_AGENT_KEY + agent_id) if agent_id.startswith(AGENT_ID_PREFIX) else None
        if raw is None:
            raise NotFound(f"agent {agent_id!r} not found")
        try:
            return Agent.from_record(_decode(raw, f"agent {agent_id!r}"))
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreUnavailable(f"agent {agent_id!r} in the store is unreadable: {exc}") from exc

    async def get_live(self, agent_id: str) -> Agent:
        """The agent, unless it was deleted (a deleted agent can be read, not changed or run)."""
        agent = await self.get(agent_id)
        if agent.is_deleted:
            raise NotFound(f"agent {agent_id!r} was deleted")
        return agent

    async def id_for_name(self, name: str) -> str | None:
        if name in self._declared_names:
            return self._declared_names[name]
        raw = await self._store.get(_NAME_KEY + name)
        return raw.decode("utf-8", errors="replace") if raw is not None else None

    async def list(self, *, include_deleted: bool = False) -> list[Agent]:
        """Every agent: those declared in config, then the stored ones oldest first."""
        agents = [agent for agent, _ in self._declared.values()]
        after = "0"
        while True:
            entries = await self._store.read_stream(_INDEX_STREAM, _INDEX_PAGE, after=after)
            for entry in entries:
                try:
                    agent = await self.get(entry.fields.get("id", ""))
                except NotFound:
                    continue
                if include_deleted or not agent.is_deleted:
                    agents.append(agent)
            if len(entries) < _INDEX_PAGE:
                return agents
            after = entries[-1].id

    async def revision(self, agent_id: str, number: int) -> Revision:
        if agent_id in self._declared and number == 1:
            return self._declared[agent_id][1]
        raw = await self._store.get(_revision_key(agent_id, number))
        if raw is None:
            raise NotFound(f"agent {agent_id!r} has no revision {number}")
        try:
            return Revision.from_record(_decode(raw, f"revision {number} of agent {agent_id!r}"))
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreUnavailable(f"revision {number} of agent {agent_id!r} is unreadable: {exc}") from exc

    async def revisions(self, agent: Agent) -> tuple[Revision, ...]:
        """Every revision, 1 first, including any a replica added after this agent record was read."""
        if agent.id in self._declared:
            return (self._declared[agent.id][1],)
        found = [await self.revision(agent.id, n) for n in range(1, agent.latest_revision + 1)]
        while (raw := await self._store.get(_revision_key(agent.id, len(found) + 1))) is not None:
            found.append(Revision.from_record(_decode(raw, f"a revision of agent {agent.id!r}")))
        return tuple(found)

    async def add_revision(self, agent_id: str, spec: RuntimeSpec, *, activate: bool) -> Revision:
        self._writable(agent_id)
        agent = await self.get_live(agent_id)
        number = agent.latest_revision + 1
        while True:
            revision = Revision(agent_id=agent_id, number=number, created=self._clock(), spec=spec)
            if await self._store.set_if_absent(
                _revision_key(agent_id, number), _encode(revision.to_record()), KEEP_SECONDS
            ):
                break
            number += 1
        # Re-read: another replica may have changed the record while the number was being claimed.
        agent = await self.get_live(agent_id)
        await self._save(
            replace(
                agent,
                latest_revision=max(agent.latest_revision, number),
                active_revision=number if activate else agent.active_revision,
                modified=revision.created,
            )
        )
        return revision

    async def activate(self, agent_id: str, number: int) -> Agent:
        self._writable(agent_id)
        agent = await self.get_live(agent_id)
        await self.revision(agent_id, number)
        updated = replace(agent, active_revision=number, modified=self._clock())
        await self._save(updated)
        return updated

    async def delete(self, agent_id: str) -> None:
        """Soft delete: the record stays readable (``isDeleted``), the name is free for a new agent."""
        self._writable(agent_id)
        agent = await self.get_live(agent_id)
        await self._save(replace(agent, is_deleted=True, modified=self._clock()))
        await self._store.delete(_NAME_KEY + agent.name)
        await self._new_generation()

    async def generation(self) -> bytes:
        """A token that changes whenever the set of live agents does (on any replica)."""
        raw = await self._store.get_cached(GENERATION_KEY)
        if raw is None:
            # A miss is never kept locally, so a store without a token gets one.
            await self._store.set_if_absent(GENERATION_KEY, secrets.token_bytes(12), KEEP_SECONDS)
            raw = await self._store.get(GENERATION_KEY)
        return raw or b""

    async def _new_generation(self) -> None:
        await self._store.set(GENERATION_KEY, secrets.token_bytes(12), KEEP_SECONDS)

    async def _save(self, agent: Agent) -> None:
        await self._store.set(_AGENT_KEY + agent.id, _encode(agent.to_record()), KEEP_SECONDS)


def _revision_key(agent_id: str, number: int) -> str:
    return f"{_REVISION_KEY}{agent_id}:{number}"
