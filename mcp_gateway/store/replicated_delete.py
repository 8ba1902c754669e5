"""Deleting keys so that a failover cannot bring them back: a replica has the deletion before the caller hears "done".

Redis replicates asynchronously. A master that acknowledges a ``DEL`` and dies before its replica received it leaves
the promoted replica holding the key again: a revoked task session would come back to life and its token work until
it expires. ``WAIT 1 <timeout>`` after the ``DEL``, on the same connection, blocks until at least one replica has
every write that connection sent, so once it answers 1 the deletion survives the master's death (Redis promotes the
most up-to-date replica; with one replica per master, that one).

When is there a replica to wait for? In Cluster mode the slot map the client already holds lists each slot's replicas
(no round trip); a replica listed there but disconnected makes ``WAIT`` time out, and the deletion is reported as not
durable: it may still be promoted. A standalone Redis says how many replicas are connected in ``INFO replication``,
asked in the ``DEL``'s own round trip. With none, there is nothing a failover could promote, and no ``WAIT``.

The keys are deleted in any case; ``NotReplicated`` only says that it is not known to be durable yet, so the caller
can answer 503 and be retried (deleting again is harmless).
"""

from __future__ import annotations

from collections.abc import Sequence
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
    if isinstance(client, RedisCluster):
        return await _delete_in_cluster(client, keys, timeout_ms)
    return await _delete_standalone(client, keys, timeout_ms)


async def _delete_standalone(client: Redis, keys: Sequence[str], timeout_ms: int) -> int:
    # One connection for all of it: WAIT counts only the writes of the connection it is sent on.
    async with client.client() as connection:
        pipe = connection.pipeline(transaction=False)
        pipe.delete(*keys)
        pipe.info("replication")
        deleted, info = await pipe.execute()
        replicas = int(info.get("connected_slaves", 0))
        if replicas and int(await connection.wait(1, timeout_ms)) < 1:
            raise NotReplicated(f"none of {replicas} replica(s) confirmed the deletion within {timeout_ms} ms")
    return int(deleted)


async def _delete_in_cluster(client: RedisCluster, keys: Sequence[str], timeout_ms: int) -> int:
    await client.initialize()
    by_slot: dict[int, list[str]] = {}
    for key in keys:
        by_slot.setdefault(client.keyslot(key), []).append(key)
    deleted = 0
    for slot, group in by_slot.items():
        nodes = client.nodes_manager.slots_cache.get(slot)
        if not nodes:
            raise NotReplicated(f"no node serves hash slot {slot} in the client's slot map")
        primary, replicas = nodes[0], len(nodes) - 1
        commands: list[tuple[Any, ...]] = [("DEL", *group)]
        if replicas:
            commands.append(("WAIT", 1, timeout_ms))
        # Straight to the slot's master on one of its connections: a client-side pipeline could retry the WAIT on
        # another node after an error, where it would confirm nothing about this DEL. A redirect (the slot moved)
        # is an error here; the caller's lookup of the same keys has already refreshed the slot map by then.
        connection = primary.acquire_connection()
        try:
            await connection.send_packed_command(connection.pack_commands(commands))
            answers = [await primary.parse_response(connection, command[0]) for command in commands]
        except BaseException:
            # Replies may be left unread on it; shielded, since a timeout arrives as cancellation.
            with anyio.CancelScope(shield=True):
                await connection.disconnect()
            raise
        finally:
            primary.release(connection)
        deleted += int(answers[0])
        if replicas and int(answers[1]) < 1:
            # The listed replica may be down for good: read the topology afresh, so a retry waits only for the
            # replicas the cluster still counts (a failed one is no longer listed, and cannot be promoted).
            await client.nodes_manager.initialize()
            raise NotReplicated(
                f"no replica of {primary.name} confirmed the deletion within {timeout_ms} ms ({replicas} listed)"
            )
    return deleted
