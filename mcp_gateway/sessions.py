"""Task sessions: short-lived tokens that bind one identity to one task and a validated context.

The raw token is shown to the caller once and never stored: the store holds the record under the SHA-256 of the
token, so a leaked store dump (or ``MONITOR`` output) yields no usable token. A second key, under the public
``tokenId``, holds that digest so the owner can inspect or revoke a session without presenting the token. Both keys
carry the session's lifetime as their store TTL, and the recorded ``expiresAt`` is checked as well, so a session
never outlives its promise even if a TTL was reset by hand.

Key layout (before the store's own prefix)::

    tasksession:{sha256hex(token)}  ->  JSON record (tokenId, taskId, taskName, identityId, context, ...)
    tasksession-id:{tokenId}        ->  sha256hex(token)

Every store failure propagates as ``StoreUnavailable``: no answer from the store is never read as "allowed".
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from jsonschema import validators
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

from mcp_gateway.config import DEFAULT_SESSION_TTL, MAX_SESSION_TTL, Identity, TaskDefinition
from mcp_gateway.errors import (
    Forbidden,
    InvalidTaskToken,
    NotFound,
    StoreUnavailable,
    TaskNotPermitted,
    ValidationFailed,
)
from mcp_gateway.scopes import may_start
from mcp_gateway.store.base import Store

TOKEN_PREFIX = "mgt_"
TOKEN_ID_PREFIX = "ts_"
# 32 random bytes = 256 bits; token_urlsafe encodes them in 43 characters.
_TOKEN_BYTES = 32
_MAX_TOKEN_LENGTH = 256
_RECORD_KEY = "tasksession:"
_INDEX_KEY = "tasksession-id:"
_INVALID_TOKEN = "task token is unknown, expired or revoked"
CACHED_KEY_PREFIXES = (_RECORD_KEY,)
"""Read on every bound request, so worth a coherent local copy (``Store.get_cached``)."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _timestamp(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def token_digest(token: str) -> str:
    """The only form in which a task token is ever stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TaskSession:
    token_id: str
    task_id: str
    task_name: str
    identity_id: str
    context: Mapping[str, Any]
    created_at: datetime
    expires_at: datetime

    def remaining_seconds(self, now: datetime) -> int:
        """Whole seconds left, rounded up so a live session never reports 0."""
        return max(0, math.ceil((self.expires_at - now).total_seconds()))

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at

    def to_public_dict(self, now: datetime | None = None) -> dict[str, Any]:
        """The API's description of the session; the token itself is never part of it."""
        return {
            "tokenId": self.token_id,
            "taskId": self.task_id,
            "taskName": self.task_name,
            "identityId": self.identity_id,
            "context": dict(self.context),
            "createdAt": _timestamp(self.created_at),
            "expiresAt": _timestamp(self.expires_at),
            "ttl": self.remaining_seconds(now or _utcnow()),
        }

    def _to_record(self) -> bytes:
        record = {
            "tokenId": self.token_id,
            "taskId": self.task_id,
            "taskName": self.task_name,
            "identityId": self.identity_id,
            "context": self.context,
            "createdAt": self.created_at.isoformat(),
            "expiresAt": self.expires_at.isoformat(),
        }
        return json.dumps(record, separators=(",", ":"), allow_nan=False).encode("utf-8")

    @classmethod
    def _from_record(cls, raw: bytes) -> TaskSession:
        try:
            record = json.loads(raw)
            return cls(
                token_id=str(record["tokenId"]),
                task_id=str(record["taskId"]),
                task_name=str(record["taskName"]),
                identity_id=str(record["identityId"]),
                context=dict(record["context"]),
                created_at=datetime.fromisoformat(record["createdAt"]),
                expires_at=datetime.fromisoformat(record["expiresAt"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            # Unreadable is not "absent": refuse, rather than guess what the record meant.
            raise StoreUnavailable(f"a task session record in the store is unreadable: {exc}") from exc


def _pointer(path: Sequence[str | int]) -> str:
    """RFC 6901 JSON pointer; the root is the empty string."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def _violation(error: ValidationError) -> dict[str, str]:
    """One schema violation; a missing required property points at where it should be, not at its parent."""
    path: list[str | int] = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.validator_value, list):
        # jsonschema reports which property is missing only in its message.
        missing = [name for name in error.validator_value if error.message == f"{name!r} is a required property"]
        if missing:
            path.append(str(missing[0]))
    return {"pointer": _pointer(path), "message": error.message}


def _validated_ttl(ttl: object) -> int:
    if ttl is None:
        return DEFAULT_SESSION_TTL
    # JSON has one number type: 60.0 is the integer 60, as JSON Schema's "integer" also has it; true is not.
    if isinstance(ttl, float) and ttl.is_integer():
        ttl = int(ttl)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_SESSION_TTL:
        raise ValidationFailed(f"ttl must be an integer number of seconds from 1 to {MAX_SESSION_TTL}, got {ttl!r}")
    return ttl


class TaskSessions:
    """Create, resolve and revoke task sessions held in a ``Store`` shared by every replica."""

    def __init__(
        self, store: Store, tasks: Sequence[TaskDefinition], *, clock: Callable[[], datetime] = _utcnow
    ) -> None:
        self._store = store
        self._clock = clock
        self._tasks = {task.id: task for task in tasks}
        # Built once: checking a schema and resolving its $refs per request would cost more than the validation.
        self._validators: dict[str, Validator] = {}
        for task in tasks:
            cls = validators.validator_for(task.context_schema)
            self._validators[task.id] = cls(task.context_schema, format_checker=cls.FORMAT_CHECKER)
        self._start_permits: dict[tuple[str, str], tuple[Identity, bool]] = {}

    async def create(
        self, identity: Identity, task_id: str, context: object, ttl: object = None
    ) -> tuple[str, TaskSession]:
        """A new session and its token; the token is returned here and nowhere else, ever."""
        task = self._tasks.get(task_id)
        if task is None:
            raise NotFound(f"unknown task {task_id!r}")
        if not self._may_start(identity, task):
            # Before the context is read: an identity that may not start the task learns nothing about its schema.
            raise TaskNotPermitted(f"this identity may not start task {task.id!r}")
        lifetime = _validated_ttl(ttl)
        checked = self._validated_context(task_id, context)
        token = TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)
        created_at = self._clock()
        session = TaskSession(
            token_id=TOKEN_ID_PREFIX + secrets.token_hex(16),
            task_id=task.id,
            task_name=task.name,
            identity_id=identity.id,
            context=checked,
            created_at=created_at,
            expires_at=created_at + timedelta(seconds=lifetime),
        )
        digest = token_digest(token)
        await self._store.set_many(
            {_RECORD_KEY + digest: session._to_record(), _INDEX_KEY + session.token_id: digest.encode("ascii")},
            lifetime,
        )
        return token, session

    def _may_start(self, identity: Identity, task: TaskDefinition) -> bool:
        """``scopes.may_start``, once per (identity, task): long pattern lists make it O(len x len) glob matches.

        Keyed by id but trusted only for the very Identity it was computed for, so an identity rebuilt with other
        lists is judged afresh.
        """
        key = (identity.id, task.id)
        known = self._start_permits.get(key)
        if known is None or known[0] is not identity:
            known = (identity, may_start(identity, task))
            self._start_permits[key] = known
        return known[1]

    def _validated_context(self, task_id: str, context: object) -> dict[str, Any]:
        if not isinstance(context, dict):
            raise ValidationFailed(
                "context must be a JSON object",
                details=[{"pointer": "", "message": f"expected an object, got {type(context).__name__}"}],
            )
        violations = (_violation(error) for error in self._validators[task_id].iter_errors(context))
        details = sorted(violations, key=lambda v: (v["pointer"], v["message"]))
        if details:
            noun = "violation" if len(details) == 1 else "violations"
            raise ValidationFailed(
                f"context does not match the contextSchema of task {task_id!r} ({len(details)} {noun})",
                details=details,
            )
        try:
            # A round trip through JSON: the session holds exactly what the store will hand back later.
            copy: dict[str, Any] = json.loads(json.dumps(context, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise ValidationFailed(f"context must be plain JSON: {exc}") from exc
        return copy

    async def resolve(self, token: str, identity_id: str) -> TaskSession:
        """The live session a token names, for its owner only (``X-Task-Token`` on every request)."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > _MAX_TOKEN_LENGTH:
            # Cannot be one of ours: answer without a store round trip.
            raise InvalidTaskToken(_INVALID_TOKEN)
        raw = await self._store.get_cached(_RECORD_KEY + token_digest(token))
        if raw is None:
            raise InvalidTaskToken(_INVALID_TOKEN)
        session = TaskSession._from_record(raw)
        if session.is_expired(self._clock()):
            raise InvalidTaskToken(_INVALID_TOKEN)
        self._check_owner(session, identity_id)
        if session.task_id not in self._tasks:
            # The task was removed from config: without its allowedTools the session would widen, not narrow, access.
            raise InvalidTaskToken(f"task {session.task_id!r} of this task session is no longer configured")
        return session

    async def get(self, token_id: str, identity_id: str) -> TaskSession:
        """Inspect a session by its public id, for its owner only."""
        _, session = await self._lookup(token_id, identity_id)
        return session

    async def revoke(self, token_id: str, identity_id: str) -> None:
        """Delete a session by its public id; its token is rejected from the next request on, on every replica."""
        digest, session = await self._lookup(token_id, identity_id)
        await self._store.delete(_RECORD_KEY + digest, _INDEX_KEY + session.token_id)

    async def revoke_current(self, token: str, identity_id: str) -> None:
        """Delete the session a token names (``DELETE /v1/tasks/sessions/current``)."""
        session = await self.resolve(token, identity_id)
        await self._store.delete(_RECORD_KEY + token_digest(token), _INDEX_KEY + session.token_id)

    async def _lookup(self, token_id: str, identity_id: str) -> tuple[str, TaskSession]:
        not_found = NotFound(f"task session {token_id!r} not found")
        if not token_id.startswith(TOKEN_ID_PREFIX) or len(token_id) > _MAX_TOKEN_LENGTH:
            raise not_found
        digest_raw = await self._store.get(_INDEX_KEY + token_id)
        if digest_raw is None:
            raise not_found
        digest = digest_raw.decode("ascii", errors="replace")
        raw = await self._store.get(_RECORD_KEY + digest)
        if raw is None:
            raise not_found
        session = TaskSession._from_record(raw)
        # The index is only a pointer: trust it only if the record it leads to names the same session.
        if session.token_id != token_id:
            raise not_found
        if session.is_expired(self._clock()):
            raise not_found
        self._check_owner(session, identity_id)
        return digest, session

    @staticmethod
    def _check_owner(session: TaskSession, identity_id: str) -> None:
        if session.identity_id != identity_id:
            raise Forbidden(f"task session {session.token_id!r} belongs to another identity")
