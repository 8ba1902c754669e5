"""Task sessions: short-lived tokens that bind one identity to one task and a validated context.

The raw token is shown to the caller once and never stored: the store holds the record under the SHA-256 of the
token, so a leaked store dump (or ``MONITOR`` output) yields no usable token. A second key, under the public
``tokenId``, holds that digest so the owner can inspect or revoke a session without presenting the token. Both keys
carry the session's lifetime as their store TTL, and the recorded ``expiresAt`` is checked as well, so a session
never outlives its promise even if a TTL was reset by hand.

A session of a task created over ``/v1/tasks`` records the task version it was opened with (``taskVersion``, the
definition under ``taskdef-v:{taskId}:{taskVersion}``) and keeps that version's rules until it ends; a session of a
config task records none and follows the config file.

Key layout (before the store's own prefix; ``<d>`` is sha256hex(token), ``<t>`` its first four hex digits)::

    tasksession:{<t>}<d>            ->  JSON record (tokenId, taskId, taskVersion, taskName, identityId, context, ...)
    tasksession-id:{<t>}<tokenId>   ->  <d>          (a tokenId is ``ts_<t>`` followed by 28 random hex digits)
    tasksessions                    ->  sorted index of <d>, scored by expiry (Unix seconds)

The ``{<t>}`` hash tag keeps a session's record and its id index in one Redis Cluster slot, so a revocation deletes
both in one command on one master and waits there for a replica to have it (``Store.delete_durably``): a failover
can neither bring the session back nor split it in half. The tag is derivable from the token (its digest) and from
the tokenId (which carries it): it tells nothing about the token, being four hex digits of a SHA-256 of 256 random
bits. Sessions opened by versions before the tag (``tasksession:<d>``, ``tasksession-id:<tokenId>``) are still read
and revoked under those keys, so an upgrade ends no session; that fallback can go once they have expired (24 h).

The index exists only to list live sessions (``GET /v1/tasks/sessions``, ``?revokeSessions=true``); it is never read
to decide whether a token is valid. Entries of expired or revoked sessions are pruned when a listing meets them.

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

import anyio
from jsonschema.exceptions import ValidationError

from mcp_gateway.config import DEFAULT_SESSION_TTL, MAX_SESSION_TTL, Identity, TaskDefinition
from mcp_gateway.errors import (
    Forbidden,
    InvalidTaskToken,
    NotFound,
    StoreUnavailable,
    TaskNotPermitted,
    ValidationFailed,
)
from mcp_gateway.ops.metrics import Metrics
from mcp_gateway.store.base import Store
from mcp_gateway.tasks.definitions import CompiledTask, TaskDefinitions
from mcp_gateway.tasks.who_may_start import may_start

TOKEN_PREFIX = "mgt_"
TOKEN_ID_PREFIX = "ts_"
# 32 random bytes = 256 bits; token_urlsafe encodes them in 43 characters.
_TOKEN_BYTES = 32
_MAX_TOKEN_LENGTH = 256
_RECORD_KEY = "tasksession:"
_INDEX_KEY = "tasksession-id:"
_TAG_HEX = 4
_LIVE_INDEX = "tasksessions"
_INVALID_TOKEN = "task token is unknown, expired or revoked"
_MAX_START_PERMITS = 10_000
CACHED_KEY_PREFIXES = (_RECORD_KEY,)
"""Read on every bound request, so worth a coherent local copy (``Store.get_cached``)."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _timestamp(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def token_digest(token: str) -> str:
    """The only form in which a task token is ever stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _tag(hex_digits: str) -> str:
    return "{" + hex_digits[:_TAG_HEX] + "}"


def _record_keys(digest: str) -> tuple[str, str]:
    """Where a session's record may be: its own slot's key first, then the untagged key of older versions."""
    return _RECORD_KEY + _tag(digest) + digest, _RECORD_KEY + digest


def _index_keys(token_id: str) -> tuple[str, str]:
    """Where a session's id index may be, in the same order as ``_record_keys``."""
    return _INDEX_KEY + _tag(token_id.removeprefix(TOKEN_ID_PREFIX)) + token_id, _INDEX_KEY + token_id


@dataclass(frozen=True)
class TaskSession:
    token_id: str
    task_id: str
    task_name: str
    identity_id: str
    context: Mapping[str, Any]
    created_at: datetime
    expires_at: datetime
    # The /v1/tasks version the session keeps until it ends; None for a config task.
    task_version: int | None = None

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
            "taskVersion": self.task_version,
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
            "taskVersion": self.task_version,
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
                task_version=None if record.get("taskVersion") is None else int(record["taskVersion"]),
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


def _validated_context(compiled: CompiledTask, context: object) -> dict[str, Any]:
    task_id = compiled.definition.id
    if not isinstance(context, dict):
        raise ValidationFailed(
            "context must be a JSON object",
            details=[{"pointer": "", "message": f"expected an object, got {type(context).__name__}"}],
        )
    violations = (_violation(error) for error in compiled.validator.iter_errors(context))
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


def _validated_ttl(ttl: object) -> int:
    if ttl is None:
        return DEFAULT_SESSION_TTL
    # JSON has one number type: 60.0 is the integer 60, as JSON Schema's "integer" also has it; true is not.
    if isinstance(ttl, float) and ttl.is_integer():
        ttl = int(ttl)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_SESSION_TTL:
        raise ValidationFailed(f"ttl must be an integer number of seconds from 1 to {MAX_SESSION_TTL}, got {ttl!r}")
    return ttl


_DECODED_LIMIT = 4096
_PRUNE_SECONDS = 30.0


class TaskSessions:
    """Create, resolve and revoke task sessions held in a ``Store`` shared by every replica."""

    def __init__(
        self,
        store: Store,
        definitions: TaskDefinitions,
        *,
        clock: Callable[[], datetime] = _utcnow,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._definitions = definitions
        self._start_permits: dict[tuple[str, str, int], tuple[Identity, TaskDefinition, bool]] = {}
        # Records decoded lately, by their bytes: a session used on every call is parsed once, and policies can
        # keep its CEL values keyed by the decoded context (``PolicyEngine``). Same bytes, same session.
        self._decoded: dict[bytes, TaskSession] = {}

    async def create(
        self, identity: Identity, task_id: str, context: object, ttl: object = None
    ) -> tuple[str, TaskSession]:
        """A new session and its token; the token is returned here and nowhere else, ever."""
        compiled = await self._definitions.current(task_id)
        if compiled is None:
            raise NotFound(f"unknown task {task_id!r}")
        task = compiled.definition
        if not self._may_start(identity, compiled):
            # Before the context is read: an identity that may not start the task learns nothing about its schema.
            raise TaskNotPermitted(f"this identity may not start task {task.id!r}")
        lifetime = _validated_ttl(ttl)
        checked = _validated_context(compiled, context)
        token = TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)
        digest = token_digest(token)
        created_at = self._clock()
        session = TaskSession(
            # The tag first, so the id index lands in the record's slot; 112 random bits keep ids unique.
            token_id=TOKEN_ID_PREFIX + digest[:_TAG_HEX] + secrets.token_hex(14),
            task_id=task.id,
            task_name=task.name,
            identity_id=identity.id,
            context=checked,
            created_at=created_at,
            expires_at=created_at + timedelta(seconds=lifetime),
            task_version=compiled.version if compiled.source == "api" else None,
        )
        await self._store.set_many(
            {_record_keys(digest)[0]: session._to_record(), _index_keys(session.token_id)[0]: digest.encode("ascii")},
            lifetime,
        )
        await self._store.index_add(_LIVE_INDEX, digest, session.expires_at.timestamp())
        self._count("created")
        return token, session

    def _count(self, event: str, sessions: int = 1) -> None:
        if self._metrics is not None and sessions:
            self._metrics.sessions[event].inc(sessions)

    def _may_start(self, identity: Identity, compiled: CompiledTask) -> bool:
        """``scopes.may_start``, once per (identity, task version): long pattern lists make it O(len x len) glob
        matches.

        Keyed by ids but trusted only for the very Identity and definition it was computed for, so an identity
        rebuilt with other lists is judged afresh.
        """
        task = compiled.definition
        key = (identity.id, task.id, compiled.version)
        known = self._start_permits.get(key)
        if known is None or known[0] is not identity or known[1] is not task:
            if len(self._start_permits) >= _MAX_START_PERMITS:
                self._start_permits.clear()
            known = (identity, task, may_start(identity, task))
            self._start_permits[key] = known
        return known[2]

    async def resolve(self, token: str, identity_id: str) -> TaskSession:
        """The live session a token names, for its owner only."""
        session, _ = await self.bind(token, identity_id)
        return session

    async def bind(self, token: str, identity_id: str) -> tuple[TaskSession, TaskDefinition]:
        """The live session a token names and the task rules it keeps, for its owner only (``X-Task-Token`` on
        every request): a config task costs no store round trip, an API task version is read once per replica."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > _MAX_TOKEN_LENGTH:
            # Cannot be one of ours: answer without a store round trip.
            raise InvalidTaskToken(_INVALID_TOKEN)
        found = await self._read_record(token_digest(token), cached=True)
        if found is None:
            raise InvalidTaskToken(_INVALID_TOKEN)
        raw = found[1]
        session = self._decoded.get(raw)
        if session is None:
            session = TaskSession._from_record(raw)
            if len(self._decoded) >= _DECODED_LIMIT:
                del self._decoded[next(iter(self._decoded))]
            self._decoded[raw] = session
        if session.is_expired(self._clock()):
            raise InvalidTaskToken(_INVALID_TOKEN)
        self._check_owner(session, identity_id)
        # Without the task's allowedTools the session would widen, not narrow, access: no task, no session.
        if session.task_version is None:
            compiled = self._definitions.configured(session.task_id)
            if compiled is None:
                raise InvalidTaskToken(f"task {session.task_id!r} of this task session is no longer configured")
        else:
            compiled = await self._definitions.version(session.task_id, session.task_version)
            if compiled is None:
                raise InvalidTaskToken(
                    f"version {session.task_version} of task {session.task_id!r} of this task session is gone"
                )
        return session, compiled.definition

    async def get(self, token_id: str, identity_id: str | None) -> TaskSession:
        """Inspect a session by its public id, for its owner only (``identity_id`` None: any owner, for admins)."""
        *_, session = await self._lookup(token_id, identity_id)
        return session

    async def revoke(self, token_id: str, identity_id: str | None) -> None:
        """Delete a session by its public id; its token is rejected from the next request on, on every replica.

        ``identity_id`` None revokes whoever owns it (admins)."""
        digest, legacy, _ = await self._lookup(token_id, identity_id)
        await self._remove(digest, token_id, legacy)

    async def _remove(self, digest: str, token_id: str, legacy: bool) -> None:
        """Delete the record and its id index, durably (answered once a replica has it): a revocation must
        survive a failover. Then the listing's entry, which decides nothing."""
        layout = 1 if legacy else 0
        await self._store.delete_durably(_record_keys(digest)[layout], _index_keys(token_id)[layout])
        await self._store.index_remove(_LIVE_INDEX, digest)
        self._count("revoked")

    async def _read_record(self, digest: str, *, cached: bool) -> tuple[bool, bytes] | None:
        """The record a digest names, and whether it is under an older version's untagged key; None when absent."""
        read = self._store.get_cached if cached else self._store.get
        for legacy, key in enumerate(_record_keys(digest)):
            raw = await read(key)
            if raw is not None:
                return bool(legacy), raw
        return None

    async def live(self, *, identity_id: str | None = None, task_id: str | None = None) -> list[TaskSession]:
        """Live sessions, soonest to expire first, optionally of one identity and one task; prunes the index."""
        now = self._clock()
        found: list[TaskSession] = []
        stale: list[str] = []
        for digest, expires in await self._store.index_range(_LIVE_INDEX):
            stored = None if expires <= now.timestamp() else await self._read_record(digest, cached=False)
            if stored is None:
                stale.append(digest)
                continue
            session = TaskSession._from_record(stored[1])
            if session.is_expired(now):
                stale.append(digest)
            elif identity_id in (None, session.identity_id) and task_id in (None, session.task_id):
                found.append(session)
        if stale:
            # Counted by what the store removed, so two replicas pruning at once count each session once.
            self._count("expired", await self._store.index_remove(_LIVE_INDEX, *stale))
        return found

    async def prune_expired(self) -> int:
        """Take the sessions past their expiry out of the live index, counted as ``expired`` (each once, whichever
        replica prunes it); the records themselves are gone already, by their own TTL."""
        pruned = await self._store.index_prune(_LIVE_INDEX, self._clock().timestamp())
        if pruned:
            self._count("expired", pruned)
        return pruned

    async def prune_while_running(self, every: float = _PRUNE_SECONDS) -> None:
        """``prune_expired`` every ``every`` seconds, so the expired count and the index keep up without a listing;
        a store that cannot answer now is asked again next time."""
        while True:
            await anyio.sleep(every)
            try:
                await self.prune_expired()
            except StoreUnavailable:
                continue

    async def revoke_all(self, task_id: str) -> int:
        """Revoke every live session of a task (``DELETE /v1/tasks/{id}?revokeSessions=true``); how many."""
        sessions = await self.live(task_id=task_id)
        for session in sessions:
            await self.revoke(session.token_id, None)
        return len(sessions)

    async def _lookup(self, token_id: str, identity_id: str | None) -> tuple[str, bool, TaskSession]:
        """The session's digest, whether it uses an older version's untagged keys, and the session."""
        not_found = NotFound(f"task session {token_id!r} not found")
        if not token_id.startswith(TOKEN_ID_PREFIX) or len(token_id) > _MAX_TOKEN_LENGTH:
            raise not_found
        index_key, legacy_index_key = _index_keys(token_id)
        digest_raw = await self._store.get(index_key)
        legacy = digest_raw is None
        if digest_raw is None:
            digest_raw = await self._store.get(legacy_index_key)
            if digest_raw is None:
                raise not_found
        digest = digest_raw.decode("ascii", errors="replace")
        raw = await self._store.get(_record_keys(digest)[1 if legacy else 0])
        if raw is None:
            raise not_found
        session = TaskSession._from_record(raw)
        # The index is only a pointer: trust it only if the record it leads to names the same session.
        if session.token_id != token_id:
            raise not_found
        if session.is_expired(self._clock()):
            raise not_found
        if identity_id is not None:
            self._check_owner(session, identity_id)
        return digest, legacy, session

    @staticmethod
    def _check_owner(session: TaskSession, identity_id: str) -> None:
        if session.identity_id != identity_id:
            raise Forbidden(f"task session {session.token_id!r} belongs to another identity")
