"""The gateway under uvicorn, with a shutdown that ends its long-lived streams instead of waiting on them forever.

uvicorn's graceful shutdown stops accepting, then waits for every open connection to finish before it runs the
lifespan shutdown. A legacy GET stream or a ``subscriptions/listen`` stream never finishes by itself, so on its own a
SIGTERM would wait until SIGKILL, and a rolling deploy would cut the calls still in flight. So a shutdown here first
ends those idle streams (cleanly: the client sees the stream end and reconnects, to another replica), lets calls in
flight finish for up to ``server.shutdownGrace`` seconds, cancels what is left, and exits 0.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator

import uvicorn
from starlette.types import ASGIApp

from mcp_gateway.memory_reuse import reuse_freed_memory

STARTUP_FAILURE = 3
"""uvicorn's exit status when the app never started (a lifespan error, a port in use)."""
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Every gateway process logs the same way, to stderr (stdout is the protocol's under ``mcp-gateway stdio``)."""
    logging.basicConfig(level=level, format=LOG_FORMAT)


class GatewayServer(uvicorn.Server):
    """A ``uvicorn.Server`` that calls ``end_streams`` as its shutdown begins."""

    def __init__(self, config: uvicorn.Config, *, end_streams: Callable[[], None]) -> None:
        super().__init__(config)
        self._end_streams = end_streams

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._end_streams()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's, minus raising the signal again once shut down: a gateway that stopped cleanly exits 0."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)


def server_config(
    app: ASGIApp, *, host: str, port: int, log_level: str, access_log: bool, shutdown_grace: int
) -> uvicorn.Config:
    """The one uvicorn configuration of a gateway process, whether it serves alone or as one of several workers."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        access_log=access_log,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=shutdown_grace,
    )


def serve(config: uvicorn.Config, end_streams: Callable[[], None], sockets: list[socket.socket] | None = None) -> int:
    """Run until SIGTERM/SIGINT; the exit status (0 after a clean shutdown). ``sockets``: already bound ones (a
    worker of ``serve --workers``) instead of binding ``config``'s host and port."""
    reuse_freed_memory()
    server = GatewayServer(config, end_streams=end_streams)
    server.run(sockets)
    return 0 if server.started else STARTUP_FAILURE
