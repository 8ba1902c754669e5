"""Who is asking and how their client can be reached: the two values every method of the core is handed.

They are plain frozen values, built at the edge (``eras/``, ``eras/stdio.py``, an agent run) and read by the core; they
carry no behaviour of their own beyond what follows from the caller's identity and task session.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mcp.shared.dispatcher import ProgressFnT

from mcp_gateway.config import Identity, TaskDefinition
from mcp_gateway.core.audit import RunTag
from mcp_gateway.core.policy import TaskContext
from mcp_gateway.core.visibility import Visibility
from mcp_gateway.tasks.sessions import TaskSession
from mcp_gateway.upstreams.client_requests import Downstream

ProgressSink = ProgressFnT


@dataclass(frozen=True)
class Caller:
    """Who is asking: the identity, and the task session the request is bound to (if any)."""

    identity: Identity
    session: TaskSession | None = None
    task: TaskDefinition | None = None
    run: RunTag | None = None
    """The Task Agent run making the call (its audit records name it); None for a client's own call."""

    @property
    def patterns(self) -> tuple[str, ...] | None:
        return Visibility.patterns(self.identity, self.task)

    @property
    def resource_patterns(self) -> tuple[str, ...] | None:
        return Visibility.resource_patterns(self.identity, self.task)

    @property
    def prompt_patterns(self) -> tuple[str, ...] | None:
        return Visibility.prompt_patterns(self.identity, self.task)

    @property
    def owner(self) -> str:
        """Whose work this is, for state that must only be resumed by the same caller: identity and task session."""
        return f"{self.identity.id}\x00{self.session.token_id if self.session else ''}"

    def task_context(self) -> TaskContext | None:
        if self.session is None or self.task is None:
            return None
        return TaskContext(
            session_id=self.session.token_id,
            task_id=self.task.id,
            task_name=self.task.name,
            labels=self.task.labels,
            context=self.session.context,
        )


@dataclass(frozen=True)
class ClientLink:
    """How a forwarded call can reach its client while it runs."""

    progress: ProgressSink | None = None
    downstream: Downstream | None = None
    """Relays what the upstream asks or tells the client mid-call (handshake era: live server→client requests)."""
    answers_input_required: bool = False
    """The client resolves ``input_required`` results itself (2026-07-28)."""
    capabilities: Mapping[str, Any] = field(default_factory=dict)
    """What the client declared it can be asked (2026-07-28 ``_meta``; the handshake era's live in ``downstream``)."""
    log_level: str | None = None
    """The least severe log message the client takes during this call; None: none (a 2026-07-28 upstream sends none)."""
    answers_verbatim: bool = False
    """The answer is encoded by ``json_codec`` (the HTTP edge), so a result's members the gateway does not read may stay
    the upstream's bytes (``json_codec.Verbatim``). False (agents, stdio): every result is plain Python values."""


NO_LINK = ClientLink()
