"""The one place that speaks to models: the official ``openai`` client, one per configured model.

Any OpenAI-compatible chat-completions endpoint works (OpenAI, Azure, vLLM, Ollama, LM Studio, ...). This module
turns the client's errors into the two kinds ``models.py`` decides on: the model could not answer at all
(``ModelUnavailable``: connection error, timeout, 5xx, 429 once the client's own retries are spent) or the request
itself was refused (``ModelFailure``). The API key never leaves the client object: errors are reported by status
and message, never with request headers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion

from mcp_gateway.agents.models import Completion, ModelFailure, ModelUnavailable
from mcp_gateway.config import ModelConfig

# Local endpoints (Ollama, vLLM) take no key, but the client refuses to start without one.
_NO_API_KEY = "no-api-key"


def _unavailable_reason(exc: openai.OpenAIError) -> str | None:
    """Why the model could not answer at all, or None when the request itself was refused."""
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


class OpenAIChat:
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

    async def ask(
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
        try:
            response: ChatCompletion = await self._clients[model_id].chat.completions.create(
                model=config.model, messages=cast(Any, list(messages)), **options
            )
        except openai.OpenAIError as exc:
            reason = _unavailable_reason(exc)
            if reason is None:
                raise ModelFailure(f"model {model_id!r} failed: {_describe(exc)}") from exc
            raise ModelUnavailable(reason, f"model {model_id!r} failed: {_describe(exc)}") from exc
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        return _completion(model_id, response, latency_ms)

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()


def _completion(model_id: str, response: ChatCompletion, latency_ms: float) -> Completion:
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
