"""Memory strategies trim what is sent, never the instruction or the first user message, never half a tool call."""

from __future__ import annotations

from typing import Any

from mcp_gateway.agents.memory import trimmed

HEAD: list[dict[str, Any]] = [{"role": "system", "content": "rules"}, {"role": "user", "content": "task"}]
CALL = {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]}
RESULT = {"role": "tool", "tool_call_id": "c1", "content": "x" * 400}
FINAL = {"role": "assistant", "content": "done"}


def test_no_strategy_sends_everything() -> None:
    assert trimmed([*HEAD, CALL, RESULT, FINAL], None, None) == [*HEAD, CALL, RESULT, FINAL]


def test_sliding_window_keeps_the_head_and_the_latest_messages() -> None:
    assert trimmed([*HEAD, FINAL, CALL, RESULT], "sliding_window", {"maxMessages": 2}) == [*HEAD, CALL, RESULT]


def test_window_never_starts_with_a_tool_result_without_its_call() -> None:
    assert trimmed([*HEAD, CALL, RESULT, FINAL], "sliding_window", {"maxMessages": 2}) == [*HEAD, FINAL]


def test_token_budget_drops_the_oldest_messages_first() -> None:
    messages = [*HEAD, CALL, RESULT, FINAL]
    assert trimmed(messages, "token_budget", {"maxTokens": 10_000}) == messages
    assert trimmed(messages, "token_budget", {"maxTokens": 60}) == [*HEAD, FINAL]
