"""Resource URIs between clients and upstreams: an upstream's own, or under its ``resourcePrefix``.

Tool and prompt names are namespaced per upstream; resource URIs are not, by default, because a URI is the
resource's own name and clients and models quote it. Two upstreams can then list the same URI (two instances of one
server, say): the catalog routes such a URI by a fixed rule and reports the clash (``catalog.py``). An upstream
configured with ``resourcePrefix: work`` has every URI it lists exposed as ``work+{uri}`` (``demo://note`` becomes
``work+demo://note``, still a URI: the prefix joins the scheme), and each URI a client sends under that prefix
reaches it with the prefix taken off.

Both directions of that rewrite live here, so every path that carries a URI applies the same one: lists and
templates (``catalog.py``), reads, completions and subscriptions (client to upstream), and read results, tool and
prompt results' resource links and embedded resources, and ``notifications/resources/updated`` (upstream to client).
What an upstream says in free form (text, ``structuredContent``, server→client requests) is never rewritten.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from mcp_gateway.json_codec import materialized
from mcp_gateway.upstreams.connection import UpstreamConnection

JOIN = "+"


def _prefix(upstream: UpstreamConnection) -> str | None:
    prefix = upstream.config.resource_prefix
    return f"{prefix}{JOIN}" if prefix else None


def exposed_uri(upstream: UpstreamConnection, uri: str) -> str:
    """``uri`` (or a URI template's text) as clients see it."""
    prefix = _prefix(upstream)
    return uri if prefix is None else prefix + uri


def upstream_uri(upstream: UpstreamConnection, uri: str) -> str:
    """A client's ``uri``, routed to ``upstream`` (so under its prefix, if it has one), as the upstream knows it."""
    prefix = _prefix(upstream)
    return uri[len(prefix) :] if prefix is not None and _carries(prefix, uri) else uri


def _carries(prefix: str, uri: str) -> bool:
    # Schemes compare case-insensitively (RFC 3986 §3.1), and the prefix is part of the scheme.
    return uri[: len(prefix)].lower() == prefix.lower()


def claimants(upstreams: Iterable[UpstreamConnection], uri: str) -> list[UpstreamConnection]:
    """The upstreams an unlisted ``uri`` may belong to: the one whose prefix it carries, else every unprefixed one."""
    candidates = list(upstreams)
    prefixed = [u for u in candidates if (prefix := _prefix(u)) is not None and _carries(prefix, uri)]
    return prefixed or [u for u in candidates if _prefix(u) is None]


def exposed_result(upstream: UpstreamConnection, method: str, result: dict[str, Any]) -> dict[str, Any]:
    """An upstream's result with the resource URIs it carries exposed: ``resources/read`` contents, and the resource
    links and embedded resources of ``tools/call`` content and ``prompts/get`` messages."""
    if _prefix(upstream) is None:
        return result
    # The members that carry URIs must be seen, so a result read verbatim is decoded first (``json_codec``).
    result = materialized(result)

    def content(item: Any) -> Any:
        """A content block: a ``resource_link`` carries ``uri``, an embedded ``resource`` carries ``resource.uri``."""
        if isinstance(item, Mapping) and item.get("type") == "resource_link":
            return with_uri(item)
        if isinstance(item, Mapping) and item.get("type") == "resource":
            return _replaced(item, "resource", with_uri)
        return item

    def with_uri(item: Any) -> Any:
        if isinstance(item, Mapping) and isinstance(uri := item.get("uri"), str):
            return {**item, "uri": exposed_uri(upstream, uri)}
        return item

    if method == "resources/read":
        exposed = _replaced(result, "contents", with_uri)
    elif method == "tools/call":
        exposed = _replaced(result, "content", content)
    elif method == "prompts/get":
        exposed = _replaced(result, "messages", lambda message: _replaced(message, "content", content))
    else:
        return result
    return cast(dict[str, Any], exposed)


def _replaced(container: Any, key: str, change: Callable[[Any], Any]) -> Any:
    """``container`` with ``change`` applied to ``container[key]``: to each item of a list, or to the one object."""
    if not isinstance(container, Mapping):
        return container
    value = cast(Mapping[str, Any], container).get(key)
    if isinstance(value, list):
        return {**container, key: [change(item) for item in value]}
    if isinstance(value, Mapping):
        return {**container, key: change(value)}
    return container
