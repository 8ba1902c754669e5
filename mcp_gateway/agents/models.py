"""The models agents talk to, by config id, and the fallback rule.

The fallback model is asked only when the primary could not answer at all (``ModelUnavailable``: connection error,
timeout, 5xx, or 429 once the client's own retries are spent); a refusal of the request itself would fail the same
way on any model. The ``openai`` client (``openai_chat.py``) is loaded only when ``models:`` is configured: it costs
seconds of start-up that a gateway without agents should not pay.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from mcp_gateway.config import ModelConfig

if TYPE_CHECKING:
    from mcp_gateway.agents.openai_chat import OpenAIChat


class ModelFailure(Exception):
    """No model could answer this turn."""


class ModelUnavailable(Exception):
    """The model could not answer at all; another model may."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Completion:
    model_id: str
    message: Mapping[str, Any]
    """The assistant message, as it goes back into the conversation."""
    tool_calls: tuple[tuple[str, str, str], ...]
    """``(call id, function name, raw JSON arguments)`` for each tool call the model asked for."""
    content: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    fallback_from: str | None = None
    fallback_reason: str | None = None


class ModelClients:
    def __init__(self, models: Sequence[ModelConfig]) -> None:
        self._chat: OpenAIChat | None = None
        if models:
            from mcp_gateway.agents.openai_chat import OpenAIChat

            self._chat = OpenAIChat(models)

    async def complete(
        self,
        primary: str,
        fallback: str | None,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Any],
        *,
        force: str | None = None,
    ) -> Completion:
        """One turn; ``force`` names the function the model must call (OpenAI ``tool_choice``)."""
        if self._chat is None:
            raise ModelFailure(f"model {primary!r} is not configured")
        try:
            return await self._chat.ask(primary, messages, tools, force)
        except ModelUnavailable as exc:
            if fallback is None:
                raise ModelFailure(exc.message) from exc
            reason = exc.reason
        try:
            answer = await self._chat.ask(fallback, messages, tools, force)
        except (ModelUnavailable, ModelFailure) as exc:
            raise ModelFailure(
                f"model {primary!r} failed ({reason}) and fallback model {fallback!r} failed: {exc}"
            ) from exc
        return replace(answer, fallback_from=primary, fallback_reason=reason)

    async def close(self) -> None:
        if self._chat is not None:
            await self._chat.close()
