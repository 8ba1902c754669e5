"""The lists a caller sees: the catalog's tools, resources, templates and prompts filtered by visibility, memoised.

Every ``tools/list`` (and the reload's before/after comparison) asks for the same few filtered lists again and again;
each is built once per catalog snapshot and pattern list and handed out as the same object, so its JSON encoding is
made once too (``EncodedList``). Nothing here may be mutated by a reader.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mcp_gateway.core.callers import Caller
from mcp_gateway.core.encoded_lists import EncodedList
from mcp_gateway.core.visibility import Visibility
from mcp_gateway.upstreams.catalog import Catalog


class VisibleLists:
    def __init__(self, catalog: Callable[[], Catalog], visibility: Visibility) -> None:
        self._catalog = catalog
        self._visibility = visibility
        self._tool_lists: dict[tuple[int, tuple[str, ...] | None], list[dict[str, Any]]] = {}
        # (list kind, catalog version, pattern list) -> that list filtered for those patterns.
        self._lists: dict[tuple[str, int, tuple[str, ...] | None], list[dict[str, Any]]] = {}
        self._agent_lists: dict[
            tuple[str, ...] | None,
            tuple[Sequence[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]],
        ] = {}

    def tools(self, caller: Caller) -> list[dict[str, Any]]:
        """The caller's filtered tool list, memoised per catalog snapshot and pattern list; it keeps its JSON
        encoding once made (``EncodedList``), so a warm ``tools/list`` is not encoded again. Never mutate it."""
        catalog = self._catalog()
        key = (catalog.version, caller.patterns)
        tools = self._tool_lists.get(key)
        if tools is None:
            if len(self._tool_lists) > 1024:
                self._tool_lists.clear()
            tools = EncodedList(
                [t.definition for t in catalog.tools() if self._visibility.allows(caller.patterns, t.name)]
            )
            self._tool_lists[key] = tools
        return tools

    def listed(
        self,
        kind: str,
        patterns: tuple[str, ...] | None,
        build: Callable[[Catalog], list[dict[str, Any]]],
        key_of: Callable[[dict[str, Any]], Any],
    ) -> list[dict[str, Any]]:
        """One of the catalog's resource, template or prompt lists filtered for ``patterns``, memoised like
        :meth:`tools`; ``key_of`` gives the text of an item the patterns are matched against."""
        catalog = self._catalog()
        key = (kind, catalog.version, patterns)
        items = self._lists.get(key)
        if items is None:
            if len(self._lists) > 1024:
                self._lists.clear()
            items = [item for item in build(catalog) if self._visibility.allows(patterns, str(key_of(item)))]
            self._lists[key] = items
        return items

    def with_agent_tools(
        self, caller: Caller, tools: list[dict[str, Any]], agents: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """``tools`` and the agents' tools the caller may see, sorted by name; memoised per pattern list, kept while
        both inputs are the very same objects (``tools`` hands out one list per catalog snapshot and
        visibility, the toolset one sequence until the agents change): a catalog version alone does not say that a
        review withheld or restored a tool."""
        key = caller.patterns
        memo = self._agent_lists.get(key)
        if memo is not None and memo[0] is agents and memo[1] is tools:
            return memo[2]
        visible = [tool for tool in agents if self._visibility.allows(caller.patterns, tool["name"])]
        merged = EncodedList(sorted([*tools, *visible], key=lambda tool: str(tool["name"]))) if visible else tools
        if len(self._agent_lists) > 1024:
            self._agent_lists.clear()
        self._agent_lists[key] = (agents, tools, merged)
        return merged
