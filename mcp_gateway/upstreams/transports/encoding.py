"""Encode what goes upstream before any transport sees it, so a message that cannot be encoded fails alone.

Client input reaches upstreams nearly verbatim, and JSON encoders have limits: pydantic refuses more than about 255
levels of nesting and lone surrogates (``"\\ud800"`` is valid JSON text), the standard library's encoder raises
``RecursionError`` near the interpreter's recursion limit. Inside an SDK transport's writer task such a failure is
fatal to the transport: one caller's odd arguments would drop the shared upstream connection for every caller and
make it reconnect. So each message is encoded on the sender's side first, and a failure is raised to that sender
alone as ``UnforwardableRequest`` (-32602), while the connection carries on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from mcp.client import Transport
from mcp.shared.message import SessionMessage
from mcp_types import INVALID_PARAMS

from mcp_gateway import json_codec
from mcp_gateway.errors import RpcError

if TYPE_CHECKING:
    from mcp.client._transport import TransportStreams, WriteStream

# What the encoders raise on input they cannot encode: pydantic's PydanticSerializationError is a ValueError, so are
# UnicodeEncodeError and the int-to-text digit limit; TypeError for values JSON has no form for.
_ENCODING_ERRORS = (ValueError, TypeError, RecursionError)


class UnforwardableRequest(RpcError):
    """A request the gateway cannot encode for the upstream; it was not sent, and nothing else is affected."""

    def __init__(self, cause: BaseException) -> None:
        if isinstance(cause, RecursionError) or "depth" in str(cause):
            message = "request params nest too deeply to forward upstream"
        else:
            message = f"request params cannot be encoded for the upstream: {cause}"
        super().__init__(INVALID_PARAMS, message)


def encode_json(message: Mapping[str, Any]) -> bytes:
    """One JSON-RPC message as the HTTP hop sends it; raises ``UnforwardableRequest`` instead of encoder errors."""
    try:
        return json_codec.dumps(message)
    except UnicodeEncodeError:
        # A lone surrogate is valid JSON text but not UTF-8: escaped, it still reaches the upstream as sent.
        return json_codec.dumps(message, ascii_only=True)
    except _ENCODING_ERRORS as exc:
        raise UnforwardableRequest(exc) from exc


class _EncodedFirstWriteStream:
    """A write stream that encodes each message as the transport will before handing it over.

    The SDK's stdio writer calls ``model_dump_json(by_alias=True, exclude_unset=True)``; the same call here surfaces
    any encoding failure in the sender's task (the dispatcher then drops the request's waiter and re-raises) rather
    than in the transport's.
    """

    def __init__(self, inner: WriteStream[SessionMessage]) -> None:
        self._inner = inner

    async def send(self, item: SessionMessage, /) -> None:
        try:
            item.message.model_dump_json(by_alias=True, exclude_unset=True)
        except _ENCODING_ERRORS as exc:
            raise UnforwardableRequest(exc) from exc
        await self._inner.send(item)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc_val: BaseException | None, exc_tb: TracebackType | None
    ) -> None:
        await self.aclose()


@asynccontextmanager
async def encoded_first(transport: Transport) -> AsyncIterator[TransportStreams]:
    """``transport`` whose write stream refuses, to the sender, a message it could not encode."""
    async with transport as (read_stream, write_stream):
        yield read_stream, _EncodedFirstWriteStream(write_stream)
