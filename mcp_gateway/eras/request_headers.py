"""The headers of one ``/mcp`` request, read in one pass over the raw list.

Every step of the endpoint needs a header or two (origin, media type, credential, task token, era, session, accept,
the ``Mcp-*`` family the 2026-07-28 ladder compares with the body). Looking each up in a Starlette ``Headers`` scans
the whole list again; this reads the list once, at the start, and the steps read fields. Nothing here decides
anything: a value is kept as sent (the first occurrence, as ``Headers.get`` would give), except the ``Mcp-*`` values,
which lose the optional whitespace around them (RFC 9110 §5.5) because they are compared with the body.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

_OPTIONAL_WHITESPACE = b" \t"
_READ = frozenset(
    {
        b"origin",
        b"content-type",
        b"content-length",
        b"authorization",
        b"x-task-token",
        b"mcp-protocol-version",
        b"mcp-session-id",
        b"accept",
    }
)


@dataclass(frozen=True, slots=True)
class McpHeaders:
    mcp: list[tuple[bytes, bytes]]
    """Every ``Mcp-*`` header in order, duplicates kept, values trimmed (raw bytes, as ASGI gives them)."""
    origin: str | None = None
    content_type: str | None = None
    content_length: str | None = None
    transfer_encoding: bool = False
    authorization: str | None = None
    task_token: str | None = None
    protocol_version: str | None = None
    session_id: str | None = None
    accept: str | None = None

    @classmethod
    def read(cls, raw: Iterable[tuple[bytes, bytes]]) -> McpHeaders:
        first: dict[bytes, bytes] = {}
        mcp: list[tuple[bytes, bytes]] = []
        chunked = False
        for name, value in raw:
            if name.startswith(b"mcp-"):
                mcp.append((name, value.strip(_OPTIONAL_WHITESPACE)))
            elif name == b"transfer-encoding":
                chunked = True
            if name in _READ and name not in first:
                first[name] = value
        text = {name.decode("latin-1"): value.decode("latin-1") for name, value in first.items()}
        return cls(
            mcp,
            origin=text.get("origin"),
            content_type=text.get("content-type"),
            content_length=text.get("content-length"),
            transfer_encoding=chunked,
            authorization=text.get("authorization"),
            task_token=text.get("x-task-token"),
            protocol_version=text.get("mcp-protocol-version"),
            session_id=text.get("mcp-session-id"),
            accept=text.get("accept"),
        )

    @property
    def modern(self) -> bool:
        """A ``MCP-Protocol-Version`` naming a revision after the handshake era's selects the 2026-07-28 path."""
        version = self.protocol_version
        return version is not None and version.strip(" \t") not in HANDSHAKE_PROTOCOL_VERSIONS

    @property
    def accepts_sse(self) -> bool:
        return self.accept is not None and "text/event-stream" in self.accept
