"""Live config reload: ``SIGHUP`` (or, with ``server.watchConfig``, a changed file) applies the config file again to
the running gateway, without dropping a session, a stream or a call in flight.

A reload is checked whole before anything changes: the file parses (every problem, with its path), the policies
compile, the added and changed upstreams are connected and the namespace they make has no name clash. A refused reload
logs every problem and leaves the running config serving, untouched.

What a reload changes: identities (and their keys), tasks declared in config, policies, limits, and upstreams (added
ones connected, removed ones closed once their calls in flight are done, changed ones both). Everything else (the listen
address, the store, JWT/OAuth, audit, console, models, agents and the other ``server`` settings) is read once at start:
a change there is logged as "needs restart" and the running value kept.

The swap never makes a request wait: every part keeps reading its config through one reference (``Settings`` for the
config and policies, the authenticator's identity table, the config tasks, the limiter's charges, the catalog
snapshot), and the reload replaces them one after the other with no ``await`` in between (the catalog, which carries
the upstreams, just before), so no request sees half a config and the hot path takes no lock. A request already past
authentication finishes as the identity it authenticated as.

Clients are told: each open stream (a legacy GET stream, a 2026-07-28 ``subscriptions/listen`` stream) whose caller's
visible tools, prompts or resources differ afterwards gets the matching ``list_changed``; the stream of a caller the
reload removed (its identity, or the config task of its session) ends, and its next request is refused.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.abc

from mcp_gateway.config import GatewayConfig, UpstreamConfig, load_config
from mcp_gateway.core.notifications import Listener
from mcp_gateway.core.policy import PolicyEngine
from mcp_gateway.core.proxy import Caller
from mcp_gateway.errors import ConfigError
from mcp_gateway.gateway import Gateway, Settings
from mcp_gateway.upstreams.connection import UpstreamConnection

logger = logging.getLogger(__name__)

WATCH_INTERVAL = 2.0
"""How often (seconds) ``server.watchConfig`` looks at the file's modification time and size."""

_RESTART_ONLY = {
    "store_url": "store.url",
    "store_prefix": "store.prefix",
    "jwt": "jwt",
    "oauth": "oauth",
    "audit": "audit",
    "console": "console",
    "models": "models",
    "agents": "agents",
}
"""Top-level settings read once at start (``server`` is compared setting by setting)."""

_LIST_CHANGED = {
    "tools": "notifications/tools/list_changed",
    "prompts": "notifications/prompts/list_changed",
    "resources": "notifications/resources/list_changed",
}

T = TypeVar("T")


@dataclass(frozen=True)
class ReloadOutcome:
    applied: bool
    summary: str
    problems: tuple[str, ...] = ()
    needs_restart: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "summary": self.summary,
            "problems": list(self.problems),
            "needsRestart": list(self.needs_restart),
        }


@dataclass(frozen=True)
class _Changes:
    """What differs between two configs, by name: added, removed, changed."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    @classmethod
    def between(cls, old: Sequence[T], new: Sequence[T], name: Callable[[T], str]) -> _Changes:
        before = {name(item): item for item in old}
        after = {name(item): item for item in new}
        return cls(
            added=tuple(key for key in after if key not in before),
            removed=tuple(key for key in before if key not in after),
            changed=tuple(key for key in after if key in before and before[key] != after[key]),
        )

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def describe(self, kind: str) -> str:
        """``upstreams +new -gone ~edited``, or "" when nothing differs."""
        if not self:
            return ""
        parts = [
            *(f"+{name}" for name in self.added),
            *(f"-{name}" for name in self.removed),
            *(f"~{name}" for name in self.changed),
        ]
        return f"{kind} {' '.join(parts)}"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def kept_for_restart(running: GatewayConfig, loaded: GatewayConfig) -> tuple[GatewayConfig, tuple[str, ...]]:
    """``loaded`` with every setting that cannot change live put back to its running value, and the names of those
    that differed."""
    differing = [
        f"server.{_camel(field.name)}"
        for field in fields(running.server)
        if getattr(running.server, field.name) != getattr(loaded.server, field.name)
    ]
    kept: dict[str, Any] = {"server": running.server}
    for attribute, label in _RESTART_ONLY.items():
        if getattr(running, attribute) != getattr(loaded, attribute):
            differing.append(label)
        kept[attribute] = getattr(running, attribute)
    return replace(loaded, **kept), tuple(differing)


@dataclass(frozen=True)
class _View:
    """What one caller would list."""

    tools: list[dict[str, Any]]
    prompts: list[dict[str, Any]]
    resources: tuple[list[dict[str, Any]], list[dict[str, Any]]]

    def changed_kinds(self, other: _View) -> list[str]:
        return [kind for kind in _LIST_CHANGED if getattr(self, kind) != getattr(other, kind)]


class Reloader:
    """Applies the config file at ``path`` to ``gateway``; one reload at a time."""

    def __init__(self, gateway: Gateway, path: str | Path) -> None:
        self._gateway = gateway
        self._path = Path(path)
        self._lock = anyio.Lock()

    async def watch(self, *, poll: bool, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled: reload on every SIGHUP and, with ``poll``, whenever the file changes.

        Started (``task_status``) once SIGHUP is caught: until then it would end the process, its default action.
        """
        async with anyio.create_task_group() as tg:
            if poll:
                tg.start_soon(self._poll)
            with anyio.open_signal_receiver(signal.SIGHUP) as signals:
                task_status.started()
                async for _ in signals:
                    logger.info("SIGHUP: reloading %s", self._path)
                    await self._reload_unattended()

    async def _poll(self) -> None:
        seen = self._stamp()
        while True:
            await anyio.sleep(WATCH_INTERVAL)
            stamp = self._stamp()
            if stamp != seen:
                seen = stamp
                logger.info("%s changed: reloading", self._path)
                await self._reload_unattended()

    async def _reload_unattended(self) -> None:
        """A reload nobody waits on (a signal, the file watch): a bug in it is logged, never ends the gateway."""
        try:
            await self.reload()
        except Exception:
            logger.exception("config reload failed unexpectedly")

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = self._path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    async def reload(self) -> ReloadOutcome:
        """Apply the file again, or refuse it whole (every problem logged) and keep the running config."""
        async with self._lock:
            try:
                outcome = await self._apply()
            except ConfigError as exc:
                outcome = ReloadOutcome(
                    False, f"config reload refused: {len(exc.problems)} problem(s)", tuple(exc.problems)
                )
                logger.error("%s; the running config stays in force", outcome.summary)
                for problem in exc.problems:
                    logger.error("  - %s", problem)
                return outcome
        logger.info("%s", outcome.summary)
        return outcome

    async def _apply(self) -> ReloadOutcome:
        gateway = self._gateway
        running = gateway.config
        config, needs_restart = kept_for_restart(running, load_config(self._path))
        policies = PolicyEngine.compile(config.policies)
        upstreams = _Changes.between(running.upstreams, config.upstreams, lambda u: u.name)
        opened = await self._open(config.upstreams, upstreams)
        kept = {connection.name: connection for connection in gateway.connections}
        connections = tuple(opened.get(u.name) or kept[u.name] for u in config.upstreams)
        listeners = gateway.notifier.listeners()
        configured = frozenset(identity.id for identity in running.identities)
        before = await self._views(self._resolved(listeners, configured))
        try:
            await gateway.catalog.replace_connections(connections)
        except BaseException:  # a name clash (ConfigError), or anything else: nothing was swapped
            for connection in opened.values():
                gateway.upstreams.close(connection)
            raise
        self._swap(config, policies)
        told = await self._tell(listeners, before, configured)
        for name in (*upstreams.removed, *upstreams.changed):
            gateway.upstreams.close_soon(kept[name])
        changes = [
            _Changes.between(running.identities, config.identities, lambda i: i.id).describe("identities"),
            _Changes.between(running.tasks, config.tasks, lambda t: t.id).describe("tasks"),
            _Changes.between(running.policies, config.policies, lambda p: p.name).describe("policies"),
            upstreams.describe("upstreams"),
            "limits changed" if running.limits != config.limits else "",
        ]
        summary = ", ".join(change for change in changes if change) or "nothing changed"
        tail = f"; needs restart (running value kept): {', '.join(needs_restart)}" if needs_restart else ""
        return ReloadOutcome(True, f"config reloaded: {summary}; {told} stream(s) told{tail}", (), needs_restart)

    async def _open(self, wanted: Sequence[UpstreamConfig], changes: _Changes) -> dict[str, UpstreamConnection]:
        """Connect the added and changed upstreams beside the running ones, all at once (first attempt only, as at
        start-up: one that is not up yet keeps trying in the background)."""
        opened = {
            upstream.name: UpstreamConnection(upstream)
            for upstream in wanted
            if upstream.name in changes.added or upstream.name in changes.changed
        }
        async with anyio.create_task_group() as tg:
            for connection in opened.values():
                connection.add_resource_listener(self._gateway.subscriptions.updated)
                tg.start_soon(self._gateway.upstreams.open, connection)
        for connection in opened.values():
            if not connection.ready:
                logger.warning("upstream %r is not connected yet: %s", connection.name, connection.last_error)
        return opened

    def _swap(self, config: GatewayConfig, policies: PolicyEngine) -> None:
        """Everything the new config decides, in one synchronous step: no request runs in between."""
        gateway = self._gateway
        gateway.authenticator.set_identities(config.identities)
        gateway.definitions.set_configured(config.tasks)
        gateway.limiter.reconfigure(config.limits, count_sessions=policies.reads_session_anywhere)
        gateway.proxy.set_policies(policies)
        gateway.tool_pins.set_modes({u.name: u.pinning for u in config.upstreams})
        gateway.settings.current = Settings(config, policies)

    def _resolved(self, listeners: Sequence[Listener], configured: frozenset[str]) -> list[Caller | None]:
        """Each stream's caller under the config in force: its identity and config task as configured now, or None
        when the config no longer has them. ``configured``: the identity ids of the config the streams were opened
        under; any other identity was made by a token rule on first sight and stays as it was."""
        gateway = self._gateway
        resolved: list[Caller | None] = []
        for listener in listeners:
            caller = listener.caller
            if caller is None:
                resolved.append(None)
                continue
            identity = gateway.authenticator.identity(caller.identity.id)
            if identity is None and caller.identity.id not in configured:
                identity = caller.identity
            task = caller.task
            if caller.session is not None and caller.session.task_version is None:
                compiled = gateway.definitions.configured(caller.session.task_id)
                task = compiled.definition if compiled is not None else None
            if identity is None or (caller.session is not None and task is None):
                resolved.append(None)
            else:
                resolved.append(replace(caller, identity=identity, task=task))
        return resolved

    async def _views(self, callers: Sequence[Caller | None]) -> list[_View | None]:
        return [None if caller is None else await self._view(caller) for caller in callers]

    async def _view(self, caller: Caller) -> _View:
        """The lists ``caller`` would get now, as ``tools/list`` and the others answer them."""
        proxy = self._gateway.proxy
        return _View(
            tools=(await proxy.list_tools(caller, {}))["tools"],
            prompts=(await proxy.list_prompts(caller, {}))["prompts"],
            resources=(
                (await proxy.list_resources(caller, {}))["resources"],
                (await proxy.list_resource_templates(caller, {}))["resourceTemplates"],
            ),
        )

    async def _tell(
        self, listeners: Sequence[Listener], before: Sequence[_View | None], configured: frozenset[str]
    ) -> int:
        """``list_changed`` to each stream whose caller's lists changed; end the streams of removed callers. Returns
        how many streams were told or ended."""
        notifier = self._gateway.notifier
        after = await self._views(self._resolved(listeners, configured))
        told: set[tuple[Hashable, str]] = set()
        ended: set[Hashable] = set()
        for listener, old, new in zip(listeners, before, after, strict=True):
            target = listener.target
            if target is None or old is None:
                continue
            if new is None:
                if target not in ended:
                    notifier.end(target)
                    ended.add(target)
                continue
            for kind in old.changed_kinds(new):
                if (target, kind) not in told:
                    notifier.publish(_LIST_CHANGED[kind], to=target)
                    told.add((target, kind))
        return len({target for target, _ in told} | ended)
