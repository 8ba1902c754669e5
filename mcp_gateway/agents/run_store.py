"""Run records in the shared store, so any replica can answer for a run and ask for its cancellation.

Key layout (before the store's own prefix)::

    agent-run:{runId}           ->  the run record, rewritten after every turn, kept RUN_RETENTION_SECONDS
    agent-runs:{agentId}        ->  a capped stream of that agent's run ids, the listing index
    agent-run-cancel:{runId}    ->  present once someone asked to cancel; the replica running it checks each turn
"""

from __future__ import annotations

import json

from mcp_gateway.agents.records import RunRecord
from mcp_gateway.errors import StoreUnavailable
from mcp_gateway.store.base import Store

RUN_RETENTION_SECONDS = 30 * 86400
RUNS_LISTED_PER_AGENT = 10_000
_RUN_KEY = "agent-run:"
_RUNS_STREAM = "agent-runs:"
_CANCEL_KEY = "agent-run-cancel:"


class RunStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def add(self, record: RunRecord) -> None:
        await self.save(record)
        await self._store.append_stream(_RUNS_STREAM + record.agent_id, {"id": record.id}, RUNS_LISTED_PER_AGENT)

    async def save(self, record: RunRecord) -> None:
        payload = json.dumps(record.to_wire(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        await self._store.set(_RUN_KEY + record.id, payload, RUN_RETENTION_SECONDS)

    async def get(self, run_id: str) -> RunRecord | None:
        raw = await self._store.get(_RUN_KEY + run_id)
        if raw is None:
            return None
        try:
            return RunRecord.from_wire(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreUnavailable(f"run {run_id!r} in the store is unreadable: {exc}") from exc

    async def recent(self, agent_id: str, count: int) -> list[RunRecord]:
        """The agent's newest ``count`` runs, newest first (expired ones skipped)."""
        entries = await self._store.read_stream(_RUNS_STREAM + agent_id, count)
        records = [await self.get(entry.fields.get("id", "")) for entry in reversed(entries)]
        return [record for record in records if record is not None]

    async def request_cancel(self, run_id: str) -> None:
        await self._store.set(_CANCEL_KEY + run_id, b"1", RUN_RETENTION_SECONDS)

    async def cancel_requested(self, run_id: str) -> bool:
        return await self._store.get(_CANCEL_KEY + run_id) is not None
