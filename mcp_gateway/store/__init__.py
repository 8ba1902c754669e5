"""Where shared state lives: ``open_store`` picks the implementation from the configured URL."""

from __future__ import annotations

from mcp_gateway.store.base import Store, StreamEntry
from mcp_gateway.store.memory import MemoryStore
from mcp_gateway.store.redis import CLUSTER_SCHEMES, STANDALONE_SCHEMES, RedisStore, redacted_url

__all__ = ["MemoryStore", "RedisStore", "Store", "StreamEntry", "open_store"]


def open_store(url: str, prefix: str, *, cached_prefixes: tuple[str, ...] = ()) -> Store:
    """``memory://`` for one process; ``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://`` for replicas.

    Keys under ``cached_prefixes`` may be served from coherent local copies (``Store.get_cached``). Opening never
    touches the network, so a gateway can start while Redis is still coming up; ``ping`` (readiness)
    and every operation report ``StoreUnavailable`` until it answers.
    """
    scheme = url.partition("://")[0]
    if scheme == "memory":
        return MemoryStore()
    if scheme in STANDALONE_SCHEMES or scheme in CLUSTER_SCHEMES:
        return RedisStore.from_url(url, prefix, cached_prefixes=cached_prefixes)
    raise ValueError(
        f"unsupported store URL {redacted_url(url)!r}: use memory://, redis://, rediss:// or redis+cluster://"
    )
