"""What an upstream offers: its tools, resources, resource templates and prompts, kept current.

Lists are fetched whole (every page) and kept as the raw dicts the upstream sent. They go stale when the upstream
says so: a ``notifications/*/list_changed`` in the legacy era, or an event on a ``subscriptions/listen`` stream at
2026-07-28, where that stream is the only channel for such news and has to be held open.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import anyio
import anyio.abc
import mcp_types as types
from mcp.client import ClientSession
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost, listen
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import find_invalid_x_mcp_header
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp_gateway.upstreams.backoff import Backoff
from mcp_gateway.upstreams.jsonrpc import send_raw

logger = logging.getLogger(__name__)

ListKind = Literal["tools", "resources", "resource_templates", "prompts"]
ALL_LISTS: frozenset[ListKind] = frozenset(("tools", "resources", "resource_templates", "prompts"))

# method, result key, and the server capability that says the method exists.
_METHODS: dict[ListKind, tuple[str, str, str]] = {
    "tools": ("tools/list", "tools", "tools"),
    "resources": ("resources/list", "resources", "resources"),
    "resource_templates": ("resources/templates/list", "resourceTemplates", "resources"),
    "prompts": ("prompts/list", "prompts", "prompts"),
}
_CHANGED_BY: dict[str, frozenset[ListKind]] = {
    "notifications/tools/list_changed": frozenset({"tools"}),
    "notifications/resources/list_changed": frozenset({"resources", "resource_templates"}),
    "notifications/prompts/list_changed": frozenset({"prompts"}),
}
# A paginator that never ends must not hang the connection.
_MAX_PAGES = 1000


@dataclass(frozen=True)
class UpstreamLists:
    """An upstream's lists, as raw dicts exactly as it sent them."""

    tools: tuple[Mapping[str, Any], ...] = ()
    resources: tuple[Mapping[str, Any], ...] = ()
    resource_templates: tuple[Mapping[str, Any], ...] = ()
    prompts: tuple[Mapping[str, Any], ...] = ()

    def of(self, kind: ListKind) -> tuple[Mapping[str, Any], ...]:
        result: tuple[Mapping[str, Any], ...] = getattr(self, kind)
        return result

    def changed_from(self, other: UpstreamLists) -> frozenset[ListKind]:
        return frozenset(kind for kind in ALL_LISTS if self.of(kind) != other.of(kind))


def changed_lists(method: str) -> frozenset[ListKind]:
    """The lists a server notification says changed (none for any other notification)."""
    return _CHANGED_BY.get(method, frozenset())


class StaleLists:
    """Lists the upstream said changed, collected until someone refetches them, so bursts coalesce."""

    def __init__(self) -> None:
        self._kinds: set[ListKind] = set()
        self._wake = anyio.Event()

    def mark(self, kinds: Iterable[ListKind]) -> None:
        self._kinds.update(kinds)
        if self._kinds:
            self._wake.set()

    async def take(self) -> frozenset[ListKind]:
        """Wait until something is stale; return it all and start collecting afresh."""
        await self._wake.wait()
        self._wake = anyio.Event()
        kinds, self._kinds = frozenset(self._kinds), set()
        return kinds


async def fetch_lists(
    session: ClientSession, kinds: Iterable[ListKind], previous: UpstreamLists, upstream: str
) -> UpstreamLists:
    """``previous`` with ``kinds`` fetched afresh: every page, and nothing the server's capabilities do not offer."""
    capabilities = session.server_capabilities or types.ServerCapabilities()
    lists = previous
    for kind in kinds:
        method, key, capability = _METHODS[kind]
        items = await _list_all(session, method, key) if getattr(capabilities, capability) is not None else ()
        if kind == "tools" and session.protocol_version in MODERN_PROTOCOL_VERSIONS:
            items = _drop_invalid_param_headers(items, upstream)
        lists = replace(lists, **{kind: items})
    return lists


async def _list_all(session: ClientSession, method: str, key: str) -> tuple[Mapping[str, Any], ...]:
    items: list[Mapping[str, Any]] = []
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(_MAX_PAGES):
        try:
            page = await send_raw(session, method, {"cursor": cursor} if cursor else None, {})
        except MCPError as exc:
            if exc.code == types.METHOD_NOT_FOUND:
                return ()
            raise
        entries = page.get(key)
        if isinstance(entries, list):
            items.extend(entry for entry in entries if isinstance(entry, dict))
        next_cursor = page.get("nextCursor")
        if not isinstance(next_cursor, str) or not next_cursor or next_cursor in seen:
            break
        seen.add(next_cursor)
        cursor = next_cursor
    return tuple(items)


def _drop_invalid_param_headers(tools: tuple[Mapping[str, Any], ...], upstream: str) -> tuple[Mapping[str, Any], ...]:
    """2026-07-28: a client MUST NOT use a tool whose ``x-mcp-header`` annotations are invalid."""
    kept: list[Mapping[str, Any]] = []
    for tool in tools:
        reason = find_invalid_x_mcp_header(tool.get("inputSchema"))
        if reason is not None:
            logger.warning(
                "upstream %r: ignoring tool %r: invalid x-mcp-header (%s)", upstream, tool.get("name"), reason
            )
            continue
        kept.append(tool)
    return tuple(kept)


async def hold_listen_stream(
    session: ClientSession,
    stale: StaleLists,
    backoff: Backoff,
    upstream: str,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Keep a 2026-07-28 ``subscriptions/listen`` stream open for the list changes the server announces.

    Signals ``task_status`` once the first stream is acknowledged (or has failed: connecting must not wait on it).
    The change notifications themselves reach the session's message handler; this drains the stream's own event
    queue and re-opens the stream when it ends, marking every list stale, since changes in the gap are not replayed.
    """
    capabilities = session.server_capabilities or types.ServerCapabilities()
    tools = bool(capabilities.tools and capabilities.tools.list_changed)
    prompts = bool(capabilities.prompts and capabilities.prompts.list_changed)
    resources = bool(capabilities.resources and capabilities.resources.list_changed)
    first = True
    failures = 0
    while tools or prompts or resources:
        try:
            async with listen(
                session, tools_list_changed=tools, prompts_list_changed=prompts, resources_list_changed=resources
            ) as subscription:
                if first:
                    task_status.started()
                else:
                    stale.mark(ALL_LISTS)
                first = False
                failures = 0
                async for _event in subscription:
                    pass
        except ListenNotSupportedError:
            break
        except MCPError as exc:
            if exc.code == types.METHOD_NOT_FOUND:
                logger.info("upstream %r has no subscriptions/listen; its lists refresh on reconnect only", upstream)
                break
            logger.debug("upstream %r: listen stream failed: %s", upstream, exc)
        except SubscriptionLost as exc:
            logger.debug("upstream %r: listen stream lost: %s", upstream, exc)
        if first:
            task_status.started()
            first = False
        await anyio.sleep(backoff.delay(failures))
        failures += 1
    if first:
        task_status.started()
