"""The models agents talk to: one official ``openai`` client per configured model, and the fallback rule.

Any OpenAI-compatible chat-completions endpoint works (OpenAI, Azure, vLLM, Ollama, LM Studio, ...). The fallback
model is asked only when the primary could not answer at all (connection error, timeout, 5xx, or 429 once the
client's own retries are spent); a 4xx about the request itself would fail the same way on any model. The API key
never leaves the client object: errors are reported by status and message, never with request headers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion

from mcp_gateway.config import ModelConfig

# Local endpoints (Ollama, vLLM) take no key, but the client refuses to start without one.
_NO_API_KEY = "no-api-key"


class ModelFailure(Exception):
    """No model could answer this turn."""


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


def _fallback_reason(exc: openai.OpenAIError) -> str | None:
    """Why the primary's failure lets the fallback try, or None when it must not."""
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection error"
    if isinstance(exc, openai.APIStatusError) and (exc.status_code >= 500 or exc.status_code == 429):
        return f"HTTP {exc.status_code}"
    return None


def _describe(exc: openai.OpenAIError) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


class ModelClients:
    def __init__(self, models: Sequence[ModelConfig]) -> None:
        self._configs = {model.id: model for model in models}
        self._clients = {
            model.id: AsyncOpenAI(
                api_key=model.api_key or _NO_API_KEY,
                base_url=model.base_url,
                timeout=model.timeout,
                max_retries=model.max_retries,
            )
            for model in models
        }

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
        try:
            return await self._ask(primary, messages, tools, force)
        except openai.OpenAIError as exc:
            reason = _fallback_reason(exc)
            if fallback is None or reason is None:
                raise ModelFailure(f"model {primary!r} failed: {_describe(exc)}") from exc
        try:
            answer = await self._ask(fallback, messages, tools, force)
        except openai.OpenAIError as exc:
            raise ModelFailure(
                f"model {primary!r} failed ({reason}) and fallback model {fallback!r} failed: {_describe(exc)}"
            ) from exc
        return replace(answer, fallback_from=primary, fallback_reason=reason)

    async def _ask(
        self, model_id: str, messages: Sequence[Mapping[str, Any]], tools: Sequence[Any], force: str | None
    ) -> Completion:
        config = self._configs[model_id]
        options: dict[str, Any] = {}
        if tools:
            options["tools"] = list(tools)
        if force is not None:
            options["tool_choice"] = {"type": "function", "function": {"name": force}}
        if config.max_tokens is not None:
            options["max_tokens"] = config.max_tokens
        started = time.perf_counter()
        response: ChatCompletion = await self._clients[model_id].chat.completions.create(
            model=config.model, messages=cast(Any, list(messages)), **options
        )
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        if not response.choices:
            raise ModelFailure(f"model {model_id!r} answered without a choice")
        choice = response.choices[0]
        calls = tuple(
            (call.id, call.function.name, call.function.arguments)
            for call in choice.message.tool_calls or ()
            if call.type == "function"
        )
        message: dict[str, Any] = {"role": "assistant", "content": choice.message.content}
        if calls:
            message["tool_calls"] = [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
                for call_id, name, arguments in calls
            ]
        usage = response.usage
        return Completion(
            model_id=model_id,
            message=message,
            tool_calls=calls,
            content=choice.message.content,
            finish_reason=choice.finish_reason,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            latency_ms=latency_ms,
        )

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
