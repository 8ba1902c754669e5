"""Starting, running, reading and cancelling agent runs, always as the identity that asked.

A run may start only if its caller may see the agent's tool (``agents{separator}{name}``) under its ``allowedTools``
(its task session's, when the caller is bound to one); otherwise the agent does not exist for it (404). With
``taskId`` the run opens a task session exactly as ``POST /v1/tasks/sessions`` would (same checks, same errors) and
makes its tool calls under it; the session is revoked when the run ends. A run is recorded in the store from its
first moment to its last, and its final record is written even when it is cancelled or the gateway shuts down.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import anyio
from anyio.abc import TaskGroup

from mcp_gateway.agents.conversation import Conversation, Ending
from mcp_gateway.agents.definitions import Agent, RuntimeSpec
from mcp_gateway.agents.mcp_tools import add_mcp_tools
from mcp_gateway.agents.models import ModelFailure
from mcp_gateway.agents.records import RunRecord, TurnRecord, Usage, model_calls
from mcp_gateway.agents.registry import AgentRegistry
from mcp_gateway.agents.run_store import RunStore
from mcp_gateway.agents.sequence import Sequence
from mcp_gateway.agents.task_tools import ConversationParts, add_task_tools
from mcp_gateway.agents.toolbox import ToolBox
from mcp_gateway.config import Identity
from mcp_gateway.core.audit import RunTag
from mcp_gateway.core.proxy import Caller, ProgressSink
from mcp_gateway.errors import BadRequest, Conflict, GatewayError, NotFound, TaskRequired, describe

logger = logging.getLogger(__name__)

RUN_ID_PREFIX = "run_"
RUNS_LISTED = 100
AGENT_TOOL_NAMESPACE = "agents"
# Bounds the final write of a run that is being torn down, so shutdown never hangs on a dead store.
_FINAL_SAVE_SECONDS = 5.0


@dataclass(frozen=True)
class RunRequest:
    """``{input, taskId?, context?}``: the body of ``POST /v1/agents/{id}/runs`` and the agent tool's input."""

    input: str
    task_id: str | None = None
    context: Any = None

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> RunRequest:
        unknown = sorted(set(body) - {"input", "taskId", "context"})
        if unknown:
            raise BadRequest(f"unknown fields {', '.join(unknown)} (allowed: input, taskId, context)")
        text = body.get("input")
        if not isinstance(text, str) or not text.strip():
            raise BadRequest("input must be a non-empty string")
        task_id = body.get("taskId")
        if task_id is not None and (not isinstance(task_id, str) or not task_id):
            raise BadRequest("taskId must be a non-empty string")
        if body.get("context") is not None and task_id is None:
            raise BadRequest("context is the context of a task session: give taskId with it")
        return cls(input=text, task_id=task_id, context=body.get("context"))


@dataclass(frozen=True)
class PreparedRun:
    """A run that is recorded (``running``) and ready, its task session open; ``execute`` runs it."""

    record: RunRecord
    caller: Caller
    spec: RuntimeSpec
    # The run opened the task session itself (taskId), so it revokes it at the end; a caller's own it leaves alone.
    opened_session: bool


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AgentRuns:
    def __init__(
        self,
        registry: AgentRegistry,
        runs: RunStore,
        parts: ConversationParts,
        *,
        separator: str,
        background: TaskGroup,
    ) -> None:
        self._registry = registry
        self._runs = runs
        self._parts = parts
        self._separator = separator
        self._background = background
        self._local: dict[str, tuple[anyio.CancelScope, anyio.Event]] = {}

    def tool_name(self, agent: Agent) -> str:
        return f"{AGENT_TOOL_NAMESPACE}{self._separator}{agent.name}"

    async def start(self, identity: Identity, agent_id: str, request: RunRequest) -> RunRecord:
        """Begin a run in the background; the record says ``running``."""
        prepared = await self.prepare(Caller(identity=identity), agent_id, request)
        self._background.start_soon(self.execute, prepared)
        return prepared.record

    async def wait(self, run_id: str) -> None:
        """Until a run started on this replica has finished."""
        local = self._local.get(run_id)
        if local is not None:
            await local[1].wait()

    async def get(self, identity: Identity, run_id: str) -> RunRecord:
        """The run, if it exists and this identity may read it; otherwise it does not exist for it (404)."""
        record = await self._runs.get(run_id) if run_id.startswith(RUN_ID_PREFIX) else None
        if record is None or not record.readable_by(identity.id, identity.is_admin):
            raise NotFound(f"run {run_id!r} not found")
        return record

    async def list(self, identity: Identity, agent_id: str) -> list[RunRecord]:
        agent = await self._registry.get(agent_id)
        records = await self._runs.recent(agent.id, RUNS_LISTED)
        return [record for record in records if record.readable_by(identity.id, identity.is_admin)]

    async def cancel(self, identity: Identity, run_id: str) -> RunRecord:
        """Ask the run to stop: at once on this replica, at the next turn on the one running it."""
        record = await self.get(identity, run_id)
        if record.finished:
            raise Conflict(f"run {run_id!r} already finished ({record.status})")
        await self._runs.request_cancel(run_id)
        local = self._local.get(run_id)
        if local is not None:
            local[0].cancel()
        return record

    async def runnable(self, caller: Caller, agent_id: str) -> Agent:
        """The live agent, if this caller may see its tool (its task's ``allowedTools`` when bound to a task session,
        else its identity's); otherwise it does not exist for it (404)."""
        agent = await self._registry.get_live(agent_id)
        if not self._parts.proxy.visibility.allows(caller.patterns, self.tool_name(agent)):
            raise NotFound(f"agent {agent_id!r} not found")
        return agent

    async def prepare(self, caller: Caller, agent_id: str, request: RunRequest) -> PreparedRun:
        """Record a new run on the agent's active revision, opening its task session when ``request`` names a task."""
        identity = caller.identity
        agent = await self.runnable(caller, agent_id)
        revision = await self._registry.revision(agent.id, agent.active_revision)
        if request.task_id is not None:
            token, _ = await self._parts.sessions.create(identity, request.task_id, request.context or {})
            # The rules the session keeps: its task version's, whether the task comes from config or /v1/tasks.
            session, task = await self._parts.sessions.bind(token, identity.id)
            caller = Caller(identity=identity, session=session, task=task)
        elif caller.session is None and identity.require_task:
            raise TaskRequired(f"identity {identity.id!r} must run agents with a taskId")
        run_id = RUN_ID_PREFIX + secrets.token_hex(12)
        # Every call the run makes is audited with the run and the revision it runs on.
        caller = replace(caller, run=RunTag(run_id, agent.id, revision.number))
        record = RunRecord(
            id=run_id,
            agent_id=agent.id,
            agent_name=agent.name,
            revision=revision.number,
            identity=identity.id,
            visibility=agent.run_visibility,
            status="running",
            input=request.input,
            started_at=_utcnow(),
            task_id=caller.session.task_id if caller.session else None,
            task_session_id=caller.session.token_id if caller.session else None,
        )
        await self._runs.add(record)
        self._local[record.id] = (anyio.CancelScope(), anyio.Event())
        return PreparedRun(record, caller, revision.spec, opened_session=request.task_id is not None)

    async def execute(self, prepared: PreparedRun, progress: ProgressSink | None = None) -> RunRecord:
        """Run to the end in the calling task: cancelling it cancels the run, and the record says so.

        ``progress`` hears of each finished turn (an MCP caller asked for progress on its tool call).
        """
        record = prepared.record
        scope, done = self._local[record.id]
        ending = Ending("cancelled", error="the run was cancelled")
        try:
            with scope:
                conversation = await self._conversation(prepared)
                async for turn in conversation.turns():
                    record = _with_turn(record, turn)
                    if await self._runs.cancel_requested(record.id):
                        scope.cancel()
                        break
                    await self._runs.save(record)
                    if progress is not None:
                        await progress(turn.number, prepared.spec.max_turns, _progress_message(turn))
                if conversation.ending is not None:
                    ending = conversation.ending
        except ModelFailure as exc:
            ending = Ending("failed", error=str(exc))
        except GatewayError as exc:
            ending = Ending("failed", error=exc.message)
        except Exception as exc:
            # A background run must never take the gateway down with it; the record says what happened.
            logger.exception("agent run %s failed", record.id)
            ending = Ending("failed", error=f"internal error: {describe(exc)}")
        finally:
            record = replace(record, status=ending.status, output=ending.output, error=ending.error, ended_at=_utcnow())
            with anyio.CancelScope(shield=True), anyio.move_on_after(_FINAL_SAVE_SECONDS):
                await self._finish(prepared, record)
            self._local.pop(record.id, None)
            done.set()
        return record

    async def _conversation(self, prepared: PreparedRun) -> Conversation | Sequence:
        parts, spec, caller = self._parts, prepared.spec, prepared.caller
        if spec.mode == "sequential":
            return Sequence(spec, parts, caller, prepared.record.input)
        tools = ToolBox(parts.redact_keys)
        add_mcp_tools(tools, parts.proxy, parts.catalog, caller, spec.mcp_servers)
        await add_task_tools(tools, parts, caller, spec)
        return Conversation(spec, parts.models, tools, prepared.record.input)

    async def _finish(self, prepared: PreparedRun, record: RunRecord) -> None:
        try:
            await self._runs.save(record)
            session = prepared.caller.session
            if prepared.opened_session and session is not None:
                await self._parts.sessions.revoke(session.token_id, record.identity)
        except GatewayError as exc:
            logger.warning("agent run %s: final record not written: %s", record.id, exc.message)


def _progress_message(turn: TurnRecord) -> str:
    if not turn.tool_calls:
        return f"turn {turn.number}: answered"
    return f"turn {turn.number}: called {', '.join(call.tool for call in turn.tool_calls)}"


def _with_turn(record: RunRecord, turn: TurnRecord) -> RunRecord:
    usage = dict(record.usage)
    for call in model_calls(turn):
        usage[call.model] = usage.get(call.model, Usage()).plus(call)
    return replace(record, turns=(*record.turns, turn), usage=usage)
