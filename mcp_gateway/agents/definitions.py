"""What an agent is: frozen values inside, camelCase JSON on the wire and in the store.

A revision is immutable once written: a run records the revision it started on, and a new revision never changes
what that run does. The agent itself holds only identity, bookkeeping and which revision is active.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Mode = Literal["agentic", "sequential"]
MemoryStrategy = Literal["sliding_window", "token_budget"]
RunVisibility = Literal["owner_only", "all"]


def timestamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class McpServerGrant:
    """Which tools of one upstream the agent may call directly, by the upstream's own tool names."""

    upstream: str
    allowed_tool_ids: tuple[str, ...]

    def to_wire(self) -> dict[str, Any]:
        return {"upstream": self.upstream, "allowedToolIds": list(self.allowed_tool_ids)}


@dataclass(frozen=True)
class Skill:
    name: str
    description: str
    instruction: str

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "instruction": self.instruction}


@dataclass(frozen=True)
class RuntimeSpec:
    """The runtime fields of a revision, as validated from a request body."""

    instruction: str
    llm_model_id: str
    fallback_llm_model_id: str | None = None
    mode: Mode = "agentic"
    task_tools: tuple[str, ...] = ()
    mcp_servers: tuple[McpServerGrant, ...] = ()
    skills: tuple[Skill, ...] = ()
    memory_strategy: MemoryStrategy | None = None
    memory_config: Mapping[str, Any] | None = None
    max_turns: int | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "instruction": self.instruction,
            "llmModelId": self.llm_model_id,
            "fallbackLlmModelId": self.fallback_llm_model_id,
            "mode": self.mode,
            "taskTools": list(self.task_tools),
            "mcpServers": [grant.to_wire() for grant in self.mcp_servers],
            "skills": [skill.to_wire() for skill in self.skills],
            "memoryStrategy": self.memory_strategy,
            "memoryConfig": dict(self.memory_config) if self.memory_config is not None else None,
            "maxTurns": self.max_turns,
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> RuntimeSpec:
        """Read back what ``to_wire`` wrote (the store's own records, already validated when written)."""
        return cls(
            instruction=data["instruction"],
            llm_model_id=data["llmModelId"],
            fallback_llm_model_id=data.get("fallbackLlmModelId"),
            mode=data.get("mode", "agentic"),
            task_tools=tuple(data.get("taskTools", ())),
            mcp_servers=tuple(
                McpServerGrant(grant["upstream"], tuple(grant["allowedToolIds"]))
                for grant in data.get("mcpServers", ())
            ),
            skills=tuple(Skill(s["name"], s["description"], s["instruction"]) for s in data.get("skills", ())),
            memory_strategy=data.get("memoryStrategy"),
            memory_config=data.get("memoryConfig"),
            max_turns=data.get("maxTurns"),
        )


@dataclass(frozen=True)
class Revision:
    agent_id: str
    number: int
    created: datetime
    spec: RuntimeSpec

    def to_wire(self) -> dict[str, Any]:
        return {"revision": self.number, "created": timestamp(self.created), **self.spec.to_wire()}

    def summary(self) -> dict[str, Any]:
        return {"revision": self.number, "created": timestamp(self.created)}

    def to_record(self) -> dict[str, Any]:
        return {"agentId": self.agent_id, **self.to_wire()}

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> Revision:
        return cls(
            agent_id=data["agentId"],
            number=data["revision"],
            created=parse_timestamp(data["created"]),
            spec=RuntimeSpec.from_wire(data),
        )


@dataclass(frozen=True)
class Agent:
    """The agent's own record; its revisions are stored beside it, one key each."""

    id: str
    name: str
    created: datetime
    modified: datetime
    active_revision: int
    latest_revision: int
    description: str = ""
    run_visibility: RunVisibility = "owner_only"
    is_deleted: bool = False
    # Declared under ``agents:`` in config: served from there, never changed over the API.
    read_only: bool = False

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "taskAgentRunVisibility": self.run_visibility,
            "isDeleted": self.is_deleted,
            "created": timestamp(self.created),
            "modified": timestamp(self.modified),
            "activeRevision": self.active_revision,
            "latestRevision": self.latest_revision,
        }

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> Agent:
        return cls(
            id=data["id"],
            name=data["name"],
            description=data.get("description", ""),
            run_visibility=data.get("taskAgentRunVisibility", "owner_only"),
            is_deleted=bool(data.get("isDeleted", False)),
            created=parse_timestamp(data["created"]),
            modified=parse_timestamp(data["modified"]),
            active_revision=int(data["activeRevision"]),
            latest_revision=int(data["latestRevision"]),
        )

    def to_wire(self, active: Revision, revisions: tuple[Revision, ...]) -> dict[str, Any]:
        """The API's view: the active revision in full, every revision as a summary."""
        record = self.to_record()
        del record["latestRevision"]
        record["readOnly"] = self.read_only
        record["activeRevision"] = active.to_wire()
        record["revisions"] = [revision.summary() for revision in revisions]
        return record
