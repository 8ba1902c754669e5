"""Store URLs to Redis clients: ``redis://``, ``rediss://``, ``unix://``, and ``redis+cluster://`` with several seeds.

A Cluster client learns the whole topology from any one node it can reach, but it must reach one: at start-up, and
again whenever it rebuilds its slot map after a node failed. With a single seed in the URL, that one node being down
leaves the client blind even though the other masters are healthy, so ``redis+cluster://h1:p1,h2:p2,…`` names as
many seeds as the operator likes; any one that answers will do. Nothing here touches the network.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
STANDALONE_SCHEMES = frozenset({"redis", "rediss", "unix"})
DEFAULT_PORT = 6379


def _split(url: str) -> tuple[str, str, list[str], str]:
    """``scheme://userinfo@host1,host2/rest`` as (scheme, userinfo, hosts, rest): rest keeps path and query."""
    scheme, _, remainder = url.partition("://")
    end = min((i for i in (remainder.find("/"), remainder.find("?")) if i >= 0), default=len(remainder))
    netloc, rest = remainder[:end], remainder[end:]
    userinfo, at, hosts = netloc.rpartition("@")
    return scheme, userinfo if at else "", hosts.split(","), rest


def _host_port(host: str) -> tuple[str, int]:
    """One ``host[:port]`` of a seed list (IPv6 in brackets); a bad port is a ``ValueError`` naming it."""
    parts = urlsplit(f"//{host}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in cluster seed {host!r}") from None
    if not parts.hostname:
        raise ValueError(f"empty cluster seed in {host!r}")
    return parts.hostname, port or DEFAULT_PORT


def redacted_url(url: str) -> str:
    """The URL without user info or query string, either of which may carry a password; every seed is kept."""
    scheme, _, hosts, rest = _split(url)
    if scheme == "unix":
        return f"unix://{urlsplit(url).path}"
    shown = []
    for host in hosts:
        parts = urlsplit(f"//{host}")
        name = parts.hostname or "localhost"
        if ":" in name:
            name = f"[{name}]"
        try:
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            port = ""
        shown.append(name + port)
    return f"{scheme}://{','.join(shown)}{urlsplit(rest).path if rest else ''}"


def open_client(url: str, options: dict[str, Any]) -> Redis | RedisCluster:
    """A client for ``url`` with ``options`` as defaults (the URL's query parameters win, as redis-py has it)."""
    scheme, userinfo, hosts, rest = _split(url)
    if scheme in CLUSTER_SCHEMES and "://" in url:
        seeds = [_host_port(host) for host in hosts]
        first, others = seeds[0], seeds[1:]
        credentials = f"{userinfo}@" if userinfo else ""
        host = f"[{first[0]}]" if ":" in first[0] else first[0]
        startup_nodes = [ClusterNode(name, port) for name, port in others]
        # redis-py reads credentials and options from the first seed's URL and applies them to every node.
        base = f"{CLUSTER_SCHEMES[scheme]}://{credentials}{host}:{first[1]}{rest}"
        return RedisCluster.from_url(base, startup_nodes=startup_nodes, **options)
    if scheme in STANDALONE_SCHEMES and "://" in url:
        if len(hosts) > 1:
            raise ValueError(f"several hosts need redis+cluster://, not {scheme}://: {redacted_url(url)!r}")
        return Redis.from_url(url, **options)
    raise ValueError(f"not a Redis URL: {redacted_url(url)!r}")
