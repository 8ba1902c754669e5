"""One namespace over every upstream's tools, prompts and resources.

Tools and prompts are exposed as ``{upstream}{separator}{name}`` (``demo__echo``), or under their own name for an
upstream configured with ``prefix: false``. Two upstreams exposing the same name is an error naming both, never a
silent shadow: which tool a name reaches must not depend on connect order. So is an unprefixed upstream exposing a
name in the gateway's own namespaces (``agents{separator}…``, the Task Agents' tools). Resource URIs are left as they
are, or exposed under an upstream's ``resourcePrefix`` (``resource_uris.py``), and routed back by a fixed rule: to the
upstream that listed the URI (the first in config order, if several did), else to the first (in config order) whose
template matches it. Two upstreams listing the same URI or template, or a listed URI that another upstream's template
also matches, are not an error (two instances of one server do that), but each such clash is named in
``resource_clashes``, which start-up logs and ``mcp-gateway check`` prints.

A ``Catalog`` is an immutable snapshot, cheap to rebuild. ``LiveCatalog`` rebuilds it whenever an upstream's lists
change and swaps it in one assignment, so a request sees either the old namespace or the new one, never a mix.

Before the swap a rebuilt snapshot may be reviewed (pinned tool definitions, ``pins.py``): the review names tools to
withhold, which leave the list and the call path and are kept aside so a call can be told why. Reviewing is the only
store work here, done once per rebuild and never per request.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
from mcp.shared.inbound import x_mcp_header_map
from mcp.shared.uri_template import InvalidUriTemplate, UriTemplate

from mcp_gateway.config import DEFAULT_SEPARATOR, RESERVED_UPSTREAM_NAMES
from mcp_gateway.errors import ConfigError
from mcp_gateway.upstreams.connection import UpstreamConnection
from mcp_gateway.upstreams.list_cache import ListKind
from mcp_gateway.upstreams.resource_uris import exposed_uri

logger = logging.getLogger(__name__)

_HINT = "; set resourcePrefix on one of them to tell them apart"

CatalogListener = Callable[["Catalog", frozenset[ListKind]], Awaitable[None]]
"""Called with the new snapshot and the kinds of list that changed (to tell clients ``list_changed``)."""


@dataclass(frozen=True)
class Review:
    """What a review of a rebuilt snapshot decided."""

    withheld: frozenset[str] = frozenset()
    """Exposed names of tools to take out of the list and refuse calls to."""
    unsettled: bool = False
    """Some definitions differ from the approved ones: review again from time to time, to see approvals given on
    other replicas (and a store that failed the review come back)."""


CatalogReview = Callable[["Catalog"], Awaitable[Review]]


class NameClashError(ConfigError):
    """Two upstreams expose the same tool or prompt name."""


@dataclass(frozen=True)
class Entry:
    """A tool or prompt as the gateway exposes it, and where calls to it go."""

    name: str
    original_name: str
    connection: UpstreamConnection
    # The upstream's own definition with ``name`` replaced by the exposed one; shared, so never mutate it.
    definition: dict[str, Any]

    @property
    def upstream_name(self) -> str:
        return self.connection.name

    @functools.cached_property
    def param_header_schema(self) -> Any:
        """The input schema when it declares ``x-mcp-header`` arguments (a 2026-07-28 call then carries them as
        ``Mcp-Param-*`` headers), else None. Most tools declare none; working that out once per entry spares every
        other call two schema walks in the SDK's header validator."""
        schema = self.definition.get("inputSchema")
        return schema if x_mcp_header_map(schema) else None


@dataclass(frozen=True)
class _TemplateRoute:
    text: str
    template: UriTemplate
    connection: UpstreamConnection


@dataclass(frozen=True)
class Catalog:
    """An immutable snapshot of the merged namespace."""

    version: int = 0
    _tools: Mapping[str, Entry] = field(default_factory=dict)
    _prompts: Mapping[str, Entry] = field(default_factory=dict)
    _resource_owners: Mapping[str, UpstreamConnection] = field(default_factory=dict)
    _templates: tuple[_TemplateRoute, ...] = ()
    _resources: tuple[dict[str, Any], ...] = ()
    _resource_templates: tuple[dict[str, Any], ...] = ()
    _unlisted: tuple[tuple[str, UpstreamConnection], ...] = ()
    """(``{upstream}{separator}``, connection) of each prefixed upstream with no tools listed: maybe never connected."""
    _withheld: Mapping[str, Entry] = field(default_factory=dict)
    """Tools a review took out of ``_tools`` (their definition changed and awaits approval)."""
    resource_clashes: tuple[str, ...] = ()
    """One sentence per resource URI or template that more than one upstream could serve, saying where it goes."""
    _connections: tuple[UpstreamConnection, ...] = ()
    """The upstreams this namespace was merged from, in config order (a config reload swaps them with it)."""

    def connections(self) -> tuple[UpstreamConnection, ...]:
        return self._connections

    def tools(self) -> tuple[Entry, ...]:
        """Every tool, sorted by exposed name."""
        return tuple(self._tools.values())

    def tool(self, name: str) -> Entry | None:
        return self._tools.get(name)

    def withheld(self, name: str) -> Entry | None:
        """A tool listed by its upstream but withheld by a review; ``tool`` answers None for it."""
        return self._withheld.get(name)

    def withheld_names(self) -> frozenset[str]:
        return frozenset(self._withheld)

    def all_tools(self) -> tuple[Entry, ...]:
        """Every tool the upstreams list, withheld ones included, sorted by exposed name."""
        return tuple(sorted((*self._tools.values(), *self._withheld.values()), key=lambda entry: entry.name))

    def withholding(self, names: frozenset[str], version: int) -> Catalog:
        """This snapshot with exactly ``names`` (of its tools, withheld or not) withheld."""
        everything = {entry.name: entry for entry in self.all_tools()}
        return replace(
            self,
            version=version,
            _tools={name: entry for name, entry in everything.items() if name not in names},
            _withheld={name: entry for name, entry in everything.items() if name in names},
        )

    def unconnected_upstream(self, name: str) -> UpstreamConnection | None:
        """The upstream a tool ``name`` would belong to, when it is not connected and has never listed a tool.

        Its tools are then unknown rather than absent, so a call deserves "not connected", not "unknown tool".
        """
        for prefix, connection in self._unlisted:
            if name.startswith(prefix) and not connection.ready:
                return connection
        return None

    def prompts(self) -> tuple[Entry, ...]:
        return tuple(self._prompts.values())

    def prompt(self, name: str) -> Entry | None:
        return self._prompts.get(name)

    def prompt_entries(self) -> list[dict[str, Any]]:
        return [entry.definition for entry in self._prompts.values()]

    def resource_entries(self) -> list[dict[str, Any]]:
        """Every listed resource, its URI as exposed, sorted by that URI."""
        return list(self._resources)

    def resource_template_entries(self) -> list[dict[str, Any]]:
        return list(self._resource_templates)

    def resource_owner(self, uri: str) -> UpstreamConnection | None:
        """The upstream that listed ``uri`` (as exposed), else the first whose template matches it; ``upstream_uri``
        gives the URI to send it."""
        owner = self._resource_owners.get(uri)
        if owner is not None:
            return owner
        for route in self._templates:
            if route.template.match(uri) is not None:
                return route.connection
        return None


def exposed_name(connection: UpstreamConnection, name: str, separator: str) -> str:
    return f"{connection.name}{separator}{name}" if connection.config.prefix else name


def build_catalog(
    connections: Sequence[UpstreamConnection], separator: str = DEFAULT_SEPARATOR, *, version: int = 0
) -> Catalog:
    """Merge the upstreams' current lists; raise ``NameClashError`` listing every clash."""
    problems: list[str] = []
    tools = _named(connections, "tool", separator, problems, lambda c: c.lists.tools)
    prompts = _named(connections, "prompt", separator, problems, lambda c: c.lists.prompts)
    if problems:
        raise NameClashError(problems)
    # URIs are not namespaced unless configured, so two instances of one server (two accounts, say) list the same
    # ones; refusing to start would make that setup impossible. Config order decides, out loud.
    clashes: list[str] = []
    owners: dict[str, UpstreamConnection] = {}
    resources: dict[str, dict[str, Any]] = {}
    for connection in connections:
        for resource in connection.lists.resources:
            uri = resource.get("uri")
            if not isinstance(uri, str):
                continue
            exposed = exposed_uri(connection, uri)
            owner = owners.setdefault(exposed, connection)
            if owner is connection:
                resources.setdefault(exposed, {**resource, "uri": exposed})
            else:
                clashes.append(
                    f"resource {exposed!r} is listed by upstreams {owner.name!r} and {connection.name!r}: it goes to "
                    f"{owner.name!r} (first in config order){_HINT}"
                )
    routes: dict[str, _TemplateRoute] = {}
    templates: dict[str, dict[str, Any]] = {}
    for connection in connections:
        for template in connection.lists.resource_templates:
            route = _template_route(connection, template.get("uriTemplate"))
            if route is None:
                continue
            first = routes.setdefault(route.text, route)
            if first.connection is connection:
                templates.setdefault(route.text, {**template, "uriTemplate": route.text})
            else:
                clashes.append(
                    f"resource template {route.text!r} is listed by upstreams {first.connection.name!r} and "
                    f"{connection.name!r}: the URIs it matches go to {first.connection.name!r} (first in config "
                    f"order){_HINT}"
                )
    for uri, owner in owners.items():
        for route in routes.values():
            if route.connection is not owner and route.template.match(uri) is not None:
                clashes.append(
                    f"resource {uri!r} of upstream {owner.name!r} also matches the template {route.text!r} of "
                    f"upstream {route.connection.name!r}: it goes to {owner.name!r} (a listed URI wins){_HINT}"
                )
    return Catalog(
        version=version,
        _tools=tools,
        _prompts=prompts,
        _resource_owners=owners,
        _templates=tuple(routes.values()),
        _resources=tuple(resources[uri] for uri in sorted(resources)),
        _resource_templates=tuple(templates[key] for key in sorted(templates)),
        _unlisted=tuple((f"{c.name}{separator}", c) for c in connections if c.config.prefix and not c.lists.tools),
        resource_clashes=tuple(dict.fromkeys(clashes)),
        _connections=tuple(connections),
    )


def _named(
    connections: Iterable[UpstreamConnection],
    kind: str,
    separator: str,
    problems: list[str],
    items_of: Callable[[UpstreamConnection], Iterable[Mapping[str, Any]]],
) -> dict[str, Entry]:
    """Expose each upstream's tools (or prompts) under their namespaced names, sorted; record clashes."""
    entries: dict[str, Entry] = {}
    for connection in connections:
        for item in items_of(connection):
            original = item.get("name")
            if not isinstance(original, str) or not original:
                continue
            name = exposed_name(connection, original, separator)
            existing = entries.get(name)
            reserved = name.split(separator, 1)[0] if separator in name else None
            if reserved in RESERVED_UPSTREAM_NAMES:
                # Only an unprefixed upstream can get here (config refuses these upstream names).
                problems.append(
                    f"{kind} name {name!r} of upstream {connection.name!r} is in the gateway's own namespace "
                    f"{reserved!r}; set prefix: true on it"
                )
            elif existing is None:
                entries[name] = Entry(name, original, connection, {**item, "name": name})
            elif existing.connection is connection:
                logger.warning("upstream %r lists %s %r twice; using the first", connection.name, kind, original)
            else:
                problems.append(
                    f"{kind} name {name!r} is exposed by both upstreams {existing.upstream_name!r} "
                    f"({existing.original_name!r}) and {connection.name!r} ({original!r}); rename an upstream or "
                    "set prefix: true on it"
                )
    return {name: entries[name] for name in sorted(entries)}


def _template_route(connection: UpstreamConnection, text: object) -> _TemplateRoute | None:
    """The route for one of the upstream's templates, matching URIs as exposed (under its prefix, if any)."""
    if not isinstance(text, str):
        return None
    exposed = exposed_uri(connection, text)
    try:
        return _TemplateRoute(exposed, UriTemplate.parse(exposed), connection)
    except InvalidUriTemplate as exc:
        logger.warning("upstream %r: ignoring resource template %r: %s", connection.name, text, exc)
        return None


class LiveCatalog:
    """The current ``Catalog``, rebuilt when any upstream's lists change.

    Building at construction raises ``NameClashError``, so a clash among the upstreams reachable at start-up stops
    the gateway. A clash that appears later (an upstream added a tool) cannot stop a running gateway: the previous
    snapshot stays in place and the clash is logged as an error until it is resolved.

    With a ``review``, the snapshot built at construction is not reviewed yet: ``refresh`` must run before requests
    are served. Rebuilds are serialised, so a slow review can never swap in an older namespace over a newer one.
    """

    def __init__(
        self,
        connections: Sequence[UpstreamConnection],
        separator: str = DEFAULT_SEPARATOR,
        *,
        on_change: CatalogListener | None = None,
        review: CatalogReview | None = None,
    ) -> None:
        self._connections = tuple(connections)
        self._separator = separator
        self._listeners: list[CatalogListener] = [on_change] if on_change is not None else []
        self._review = review
        self._unsettled = False
        self._lock = anyio.Lock()
        self._current = build_catalog(self._connections, separator, version=1)
        _warn_of_clashes(self._current, ())
        for connection in self._connections:
            connection.add_change_listener(self._upstream_changed)

    def snapshot(self) -> Catalog:
        return self._current

    def add_listener(self, listener: CatalogListener) -> None:
        self._listeners.append(listener)

    async def refresh(self) -> None:
        """Review the namespace again (after an approval, or from ``review_while_unsettled``); tell listeners only
        if the withheld tools changed."""
        await self._rebuild(frozenset(), None)

    async def review_while_unsettled(self, interval: float) -> None:
        """Run forever: every ``interval`` seconds, refresh if the last review left definitions awaiting approval."""
        while True:
            await anyio.sleep(interval)
            if self._unsettled:
                try:
                    await self.refresh()
                except Exception:
                    # A background check must never take the gateway down; the next one tries again.
                    logger.exception("reviewing the catalog again failed")

    async def replace_connections(self, connections: Sequence[UpstreamConnection]) -> Catalog:
        """A config reload: the namespace of these upstreams from now on, reviewed, and returned.

        Raises ``NameClashError`` (keeping the current namespace) when they clash. Listeners are not told: the
        reload tells each client whose visible lists changed.
        """
        async with self._lock:
            catalog = await self._reviewed(
                build_catalog(connections, self._separator, version=self._current.version + 1)
            )
            for connection in connections:
                if connection not in self._connections:
                    connection.add_change_listener(self._upstream_changed)
            self._connections = tuple(connections)
            self._current = catalog
        return catalog

    async def _reviewed(self, catalog: Catalog) -> Catalog:
        if self._review is None:
            return catalog
        review = await self._review(catalog)
        self._unsettled = review.unsettled
        return catalog.withholding(review.withheld, catalog.version)

    async def _upstream_changed(self, connection: UpstreamConnection, kinds: frozenset[ListKind]) -> None:
        if connection not in self._connections:
            return  # removed by a config reload, finishing its calls in flight: no longer part of the namespace
        await self._rebuild(kinds, connection)

    async def _rebuild(self, kinds: frozenset[ListKind], cause: UpstreamConnection | None) -> None:
        async with self._lock:
            previous = self._current
            try:
                catalog = build_catalog(self._connections, self._separator, version=previous.version + 1)
            except NameClashError as exc:
                name = cause.name if cause is not None else "an upstream"
                logger.error("upstream %r changed its lists into a clash; keeping the previous catalog: %s", name, exc)
                return
            _warn_of_clashes(catalog, previous.resource_clashes)
            catalog = await self._reviewed(catalog)
            if catalog.withheld_names() != previous.withheld_names():
                kinds = kinds | {"tools"}
            if not kinds:
                return
            self._current = catalog
        for listener in list(self._listeners):
            try:
                await listener(catalog, kinds)
            except Exception:
                logger.exception("catalog listener failed")


def _warn_of_clashes(catalog: Catalog, known: Iterable[str]) -> None:
    """Each resource clash once, when it first appears (start-up, or an upstream's lists changed)."""
    for clash in sorted(set(catalog.resource_clashes) - set(known)):
        logger.warning("%s", clash)
