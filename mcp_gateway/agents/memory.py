"""Memory strategies: which part of a growing conversation is sent to the model on each turn.

The instruction (system message) and the first user message always stay. What is dropped is dropped from the
oldest end, and never leaves a tool result without the assistant message that asked for it (the API refuses that).
The full conversation stays in the run; only what is sent shrinks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

# A rough, model-independent token estimate: about four characters of JSON per token.
_CHARS_PER_TOKEN = 4


def _estimated_tokens(message: Mapping[str, Any]) -> int:
    return len(json.dumps(message, ensure_ascii=False)) // _CHARS_PER_TOKEN + 1


def _without_orphans(tail: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    while tail and tail[0].get("role") == "tool":
        tail = tail[1:]
    return tail


def trimmed(
    messages: Sequence[Mapping[str, Any]], strategy: str | None, config: Mapping[str, Any] | None
) -> list[Mapping[str, Any]]:
    head, rest = list(messages[:2]), list(messages[2:])
    if strategy is None or config is None:
        return head + rest
    if strategy == "sliding_window":
        limit = int(config["maxMessages"])
        return head + _without_orphans(rest[-limit:] if limit < len(rest) else rest)
    budget = int(config["maxTokens"]) - sum(_estimated_tokens(m) for m in head)
    kept: list[Mapping[str, Any]] = []
    for message in reversed(rest):
        budget -= _estimated_tokens(message)
        if budget < 0:
            break
        kept.append(message)
    return head + _without_orphans(kept[::-1])
