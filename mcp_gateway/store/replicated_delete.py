"""Deleting keys so that a failover cannot bring them back: a replica has the deletion before the caller hears "done".

Redis replicates asynchronously. A master that acknowledges a ``DEL`` and dies before its replica received it leaves
the promoted replica holding the key again: a revoked task session would come back to life and its token work until
it expires. ``WAIT 1 <timeout>`` after the ``DEL``, on the same connection, blocks until at least one replica has
every write that connection sent, so once it answers 1 the deletion survives the master's death (Redis promotes the
most up-to-date replica; with one replica per master, that one).

Whether there is a replica to wait for is asked of the master itself, in the ``DEL``'s round trip (``ROLE`` lists the
replicas connected to it): the client's Cluster slot map is no guide, since ``CLUSTER SLOTS`` leaves out replicas that
have not reported an offset yet, and the map is only read again after an error. A master with no replica connected
has nothing a failover could promote: no ``WAIT`` then. One that is connected but does not acknowledge in time (hung,
far behind) makes the deletion "not known to be durable": ``NotReplicated``.

Everything runs on one connection taken from the client's pool (in Cluster mode, from the pool of the master of the
keys' slot, one slot at a time), never through a client-side pipeline or retry, which could send the ``WAIT`` on
another connection or node, where it would confirm nothing about this ``DEL``. The keys are deleted in any case;
``NotReplicated`` only says that it is not known to be durable yet, so the caller answers 503 and is retried
(deleting again is harmless).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

WAIT_TIMEOUT_MS = 1000
"""How long a deletion waits for a replica to acknowledge it before it is reported as not durable."""


class NotReplicated(Exception):
    """The keys were deleted on the master, but no replica confirmed the deletion in time."""


async def delete_replicated(
    client: Redis | RedisCluster, keys: Sequence[str], timeout_ms: int = WAIT_TIMEOUT_MS
) -> int:
    """Delete ``keys`` (one slot at a time in Cluster mode) and wait for a replica; return how many existed."""
    if not isinstance(client, RedisCluster):
        pool: Any = client.connection_pool  # redis-py leaves get_connection unannotated
        return await _delete_on(await pool.get_connection(), pool.release, keys, timeout_ms)
    await client.initialize()
    by_slot: dict[int, list[str]] = {}
    for key in keys:
        by_slot.setdefault(client.keyslot(key), []).append(key)
    deleted = 0
    for group in by_slot.values():
        # A redirect (the slot moved) is an error here; the caller's lookup of the same keys has refreshed the slot
        # map by then.
        master = client.get_node_from_key(group[0])
        if master is None:
            raise NotReplicated(f"no master serves the slot of {group[0]!r} in the client's slot map")

        async def release(connection: Any, master: Any = master) -> None:
            master.release(connection)

        deleted += await _delete_on(master.acquire_connection(), release, group, timeout_ms)
    return deleted


async def _delete_on(
    connection: Any, release: Callable[[Any], Awaitable[None]], keys: Sequence[str], timeout_ms: int
) -> int:
    """``DEL`` and ``ROLE`` in one round trip, then ``WAIT`` when the master has replicas, all on ``connection``."""
    try:
        await connection.send_packed_command(connection.pack_commands([("DEL", *keys), ("ROLE",)]))
        deleted = int(await connection.read_response())
        role = await connection.read_response()
        replicas = len(role[2]) if role and role[0] in (b"master", "master") else 0
        if replicas:
            await connection.send_packed_command(connection.pack_command("WAIT", 1, timeout_ms))
            if int(await connection.read_response()) < 1:
                raise NotReplicated(f"none of {replicas} replica(s) confirmed the deletion within {timeout_ms} ms")
    except BaseException:
        # Replies may be left unread on it; shielded, since a timeout arrives as cancellation.
        with anyio.CancelScope(shield=True):
            await connection.disconnect()
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await release(connection)
    return deleted
