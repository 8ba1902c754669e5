"""The running upstream connections, each in its own cancel scope, so a config reload can open and close them one by
one while the others keep serving.

Closing is gentle: the connection is already out of the namespace (no new call can reach it), so it waits for the
calls in flight to finish, for at most the upstream's ``callTimeout`` (no call can outlast it anyway), and only then
ends its session. A call still running after that fails cleanly, with the JSON-RPC error of a lost upstream.
"""

from __future__ import annotations

import logging

import anyio
import anyio.abc

from mcp_gateway.upstreams.connection import UpstreamConnection

logger = logging.getLogger(__name__)


class RunningUpstreams:
    def __init__(self, task_group: anyio.abc.TaskGroup) -> None:
        self._task_group = task_group
        self._scopes: dict[UpstreamConnection, anyio.CancelScope] = {}

    async def open(self, connection: UpstreamConnection) -> None:
        """Start ``connection``; returns once its first connect attempt has finished, whether or not it succeeded."""
        await self._task_group.start(self._run, connection)

    async def _run(
        self, connection: UpstreamConnection, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        with anyio.CancelScope() as scope:
            self._scopes[connection] = scope
            try:
                await connection.run(task_status=task_status)
            finally:
                self._scopes.pop(connection, None)

    def close_soon(self, connection: UpstreamConnection) -> None:
        """Close ``connection`` in the background once its calls in flight are done (see the module docstring)."""
        self._task_group.start_soon(self._close, connection)

    def close(self, connection: UpstreamConnection) -> None:
        """Close ``connection`` at once (a reload that was refused after opening it)."""
        scope = self._scopes.get(connection)
        if scope is not None:
            scope.cancel()

    async def _close(self, connection: UpstreamConnection) -> None:
        with anyio.move_on_after(connection.config.call_timeout) as waited:
            await connection.drained()
        if waited.cancelled_caught:
            logger.warning(
                "upstream %r (removed from the config): calls still in flight after %gs are cut off",
                connection.name,
                connection.config.call_timeout,
            )
        self.close(connection)
        logger.info("upstream %r (old configuration) closed", connection.name)
