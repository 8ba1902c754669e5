"""The fixture server of the official MCP conformance suite, written with the ``mcp`` SDK, to put behind the gateway.

``@modelcontextprotocol/conformance`` tests a server by calling fixtures it expects by name (``test_simple_text``,
``test_sampling``, ``test://static-text``, ``test_input_required_result_elicitation``, ...). This module implements
every fixture its server scenarios call, in both spec versions (2025-11-25: server→client requests during a call;
2026-07-28: ``input_required`` results the client answers on a retry), on stdio and streamable HTTP. Directly it
passes the suite; ``scripts/conformance.py`` then runs the same suite through the gateway in front of it, so any
scenario lost on the way is the gateway's fault.

It lives in the package (not under ``tests/``) because the gateway runs it as a stdio upstream by module name and
because it is a useful example of a dual-era upstream. It must never carry gateway logic: it is the reference side.

    python -m mcp_gateway.examples.conformance_server                     # stdio
    python -m mcp_gateway.examples.conformance_server --http --port 9000  # streamable HTTP on /mcp
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import warnings
from typing import Annotated, Any

import mcp_types as types
import uvicorn
from mcp.server import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer, Resolve, Sample
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.prompts.base import Message, UserMessage
from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field
from starlette.types import ASGIApp, Receive, Scope, Send

IMAGE_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
AUDIO_WAV = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="

# SEP-1613 / SEP-2106: the suite checks that every one of these keywords survives tools/list unchanged.
JSON_SCHEMA_2020_12: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}


class MemoryEventStore(EventStore):
    """Every SSE event kept in memory, so a client that lost a stream resumes it with ``Last-Event-ID`` (SEP-1699)."""

    def __init__(self) -> None:
        self._events: list[tuple[StreamId, EventId, types.JSONRPCMessage | None]] = []

    async def store_event(self, stream_id: StreamId, message: types.JSONRPCMessage | None) -> EventId:
        event_id = str(len(self._events) + 1)
        self._events.append((stream_id, event_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        stream = next((stream for stream, event_id, _ in self._events if event_id == last_event_id), None)
        if stream is None:
            return None
        for other, event_id, message in self._events:
            if other == stream and int(event_id) > int(last_event_id) and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream


def _text(text: str) -> types.TextContent:
    return types.TextContent(type="text", text=text)


def _elicit(message: str, properties: dict[str, Any], required: list[str]) -> types.ElicitRequest:
    schema = {"type": "object", "properties": properties, "required": required}
    return types.ElicitRequest(params=types.ElicitRequestFormParams(message=message, requested_schema=schema))


def _sample(text: str, max_tokens: int) -> types.CreateMessageRequest:
    message = types.SamplingMessage(role="user", content=_text(text))
    return types.CreateMessageRequest(
        params=types.CreateMessageRequestParams(messages=[message], max_tokens=max_tokens)
    )


def _modern(ctx: Context) -> bool:
    return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS


async def _ask_now(ctx: Context, request: types.InputRequest) -> types.InputResponse:
    """A handshake-era client is asked during the call, one server→client request per question.

    The request is related to the call, so over streamable HTTP it rides the call's own SSE response stream, as the
    SDK's ``ctx.elicit`` sends it (the standalone GET stream is for messages unrelated to any request). Only for a
    handshake-era caller: a 2026-07-28 caller has no back-channel and is asked with ``input_required`` (:func:`_ask`).
    """
    session, related = ctx.session, ServerMessageMetadata(related_request_id=ctx.request_id)
    answer: types.InputResponse
    if isinstance(request, types.ElicitRequest):
        answer = await session.send_request(request, types.ElicitResult, metadata=related)
    elif isinstance(request, types.CreateMessageRequest):
        answer = await session.send_request(request, types.CreateMessageResult, metadata=related)
    else:
        answer = await session.send_request(request, types.ListRootsResult, metadata=related)
    return answer


async def _gather(
    ctx: Context, questions: dict[str, types.InputRequest], state: str | None = None
) -> dict[str, types.InputResponse] | types.InputRequiredResult:
    """The answers to ``questions``, or (2026-07-28) the ``input_required`` result that asks for the missing ones.

    The keys are the suite's: a 2026-07-28 client answers under them in ``inputResponses``. Extra answers are
    ignored; a missing or malformed one is asked again rather than failing the call (SEP-2322 SHOULD).
    """
    if not _modern(ctx):
        return {key: await _ask_now(ctx, request) for key, request in questions.items()}
    answers = ctx.input_responses or {}
    missing = {key: request for key, request in questions.items() if key not in answers}
    if missing:
        return types.InputRequiredResult(input_requests=missing, request_state=state)
    return {key: answers[key] for key in questions}


async def _ask(ctx: Context, key: str, request: types.InputRequest) -> types.InputResponse | types.InputRequiredResult:
    """One question, asked the caller's era's way: pushed now (handshake era) or ``input_required`` (2026-07-28).

    The suite's 2025-11-25 scenarios (``tools-call-sampling``, ``elicitation-sep1034-defaults``, ...) call these
    tools push-style and are removed in 2026-07-28, whose ``input-required-result-*`` scenarios ask with
    ``input_required`` instead. A 2026-07-28 caller of these same tools is therefore asked the MRTR way too: pushing
    to it would find no back-channel. A gateway whose upstream is pinned to 2026-07-28 relies on exactly that to
    bridge a handshake-era client's call (its ``resolve_input_required`` asks the client and retries).
    """
    answers = await _gather(ctx, {key: request})
    return answers if isinstance(answers, types.InputRequiredResult) else answers[key]


def _elicited(answer: types.InputResponse) -> str:
    """``action=..., content=...`` of an elicitation answer, as the suite's reference server words it."""
    if not isinstance(answer, types.ElicitResult):
        raise MCPError(code=types.INVALID_PARAMS, message="the answer is not an elicitation result")
    return f"action={answer.action}, content={json.dumps(answer.content or {})}"


def _answer_text(answer: types.InputResponse) -> str:
    if isinstance(answer, types.ElicitResult):
        return json.dumps(answer.content or {}, sort_keys=True)
    if isinstance(answer, types.ListRootsResult):
        return ", ".join(str(root.uri) for root in answer.roots) or "no roots"
    content = answer.content
    return content.text if isinstance(content, types.TextContent) else f"[{type(content).__name__}]"


def _add_content_tools(server: MCPServer) -> None:
    @server.tool(description="Tests simple text content response")
    def test_simple_text() -> str:
        return "This is a simple text response for testing."

    @server.tool(description="Tests image content response")
    def test_image_content() -> list[types.ImageContent]:
        return [types.ImageContent(type="image", data=IMAGE_PNG, mime_type="image/png")]

    @server.tool(description="Tests audio content response")
    def test_audio_content() -> list[types.AudioContent]:
        return [types.AudioContent(type="audio", data=AUDIO_WAV, mime_type="audio/wav")]

    @server.tool(description="Tests embedded resource content response")
    def test_embedded_resource() -> list[types.EmbeddedResource]:
        resource = types.TextResourceContents(
            uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."
        )
        return [types.EmbeddedResource(type="resource", resource=resource)]

    @server.tool(description="Tests response with multiple content types (text, image, resource)")
    def test_multiple_content_types() -> list[types.TextContent | types.ImageContent | types.EmbeddedResource]:
        resource = types.TextResourceContents(
            uri="test://mixed-content-resource", mime_type="application/json", text='{"test":"data","value":123}'
        )
        return [
            _text("Multiple content types test:"),
            types.ImageContent(type="image", data=IMAGE_PNG, mime_type="image/png"),
            types.EmbeddedResource(type="resource", resource=resource),
        ]

    @server.tool(description="Tests error response handling")
    def test_error_handling() -> str:
        raise ToolError("This tool intentionally returns an error for testing")

    @server.tool(description="Tests tool that emits log messages during execution")
    async def test_tool_with_logging(ctx: Context) -> str:
        for step, message in enumerate(("Tool execution started", "Tool processing data", "Tool execution completed")):
            if step:
                await asyncio.sleep(0.05)
            await ctx.info(message)
        return "Tool with logging executed successfully"

    @server.tool(description="Logs one message; a 2026-07-28 caller that set no logLevel must not receive it")
    async def test_logging_tool(ctx: Context) -> str:
        await ctx.info("test_logging_tool ran")
        return "logged"

    @server.tool(description="Tests tool that reports progress notifications")
    async def test_tool_with_progress(ctx: Context) -> str:
        for progress in (0, 50, 100):
            if progress:
                await asyncio.sleep(0.05)
            await ctx.report_progress(progress, 100, f"Completed step {progress} of 100")
        meta = ctx.request_context.meta
        return str(meta.get("progressToken", 0) if meta else 0)

    @server.tool(description="Tests SSE polling by closing the stream mid-call (SEP-1699)")
    async def test_reconnection(ctx: Context) -> str:
        await ctx.info("Before disconnect")
        await ctx.close_sse_stream()
        await asyncio.sleep(0.2)  # the client reconnects with Last-Event-ID meanwhile
        await ctx.info("After reconnect")
        return "Reconnection test completed"

    def json_schema_2020_12_tool(
        name: str | None = None,
        address: dict[str, Any] | None = None,
        contactMethod: str | None = None,
        phone: str | None = None,
        email: str | None = None,
    ) -> str:
        return f"contact {name or 'anonymous'} by {contactMethod or 'any'}"

    server.add_tool(json_schema_2020_12_tool, description="Tool with JSON Schema 2020-12 features")
    # The raw schema replaces the one derived from the signature: the suite checks these exact keywords.
    tool = server._tool_manager.get_tool("json_schema_2020_12_tool")
    assert tool is not None
    tool.parameters = JSON_SCHEMA_2020_12

    @server.tool(description="Echoes a region that 2026-07-28 HTTP clients also mirror into Mcp-Param-Region")
    def test_param_header(
        region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})], ctx: Context
    ) -> str:
        return f"region {region}; header {(ctx.headers or {}).get('mcp-param-region', '(none)')}"


def _missing_capability_question() -> Sample:
    return Sample([types.SamplingMessage(role="user", content=_text("Say hello"))], max_tokens=10)


def _add_list_change_tools(server: MCPServer) -> None:
    """Tools that change the tool or prompt list, so list-changed notifications can be observed in both eras."""

    def test_dynamic_tool() -> str:
        return "dynamic"

    def test_dynamic_prompt() -> str:
        return "A prompt that comes and goes."

    @server.tool(description="Adds or removes test_dynamic_tool and announces the tool list change")
    async def test_trigger_tool_change(ctx: Context) -> str:
        if server._tool_manager.get_tool("test_dynamic_tool"):
            server.remove_tool("test_dynamic_tool")
        else:
            server.add_tool(test_dynamic_tool, description="Listed only between two test_trigger_tool_change calls")
        if _modern(ctx):
            await ctx.notify_tools_changed()
        else:
            await ctx.session.send_tool_list_changed()
        return "tool list changed"

    @server.tool(description="Adds or removes test_dynamic_prompt and announces the prompt list change")
    async def test_trigger_prompt_change(ctx: Context) -> str:
        if any(prompt.name == "test_dynamic_prompt" for prompt in await server.list_prompts()):
            server.remove_prompt("test_dynamic_prompt")
        else:
            server.prompt(description="Listed only between two test_trigger_prompt_change calls")(test_dynamic_prompt)
        if _modern(ctx):
            await ctx.notify_prompts_changed()
        else:
            await ctx.session.send_prompt_list_changed()
        return "prompt list changed"


def _add_client_tools(server: MCPServer) -> None:
    """Tools that need the client mid-call, asked the way the caller's era asks."""

    @server.tool(description="Tests server-initiated sampling (LLM completion request)")
    async def test_sampling(prompt: str, ctx: Context) -> str | types.InputRequiredResult:
        try:
            reply = await _ask(ctx, "sampling", _sample(prompt, 100))
        except MCPError as exc:
            return f"Sampling not supported or error: {exc}"
        if isinstance(reply, types.InputRequiredResult):
            return reply
        return f"LLM response: {_answer_text(reply)}"

    @server.tool(description="Tests server-initiated elicitation (user input request)")
    async def test_elicitation(message: str, ctx: Context) -> str | types.InputRequiredResult:
        properties = {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"},
        }
        answer = await _ask(ctx, "elicitation", _elicit(message, properties, ["username", "email"]))
        if isinstance(answer, types.InputRequiredResult):
            return answer
        return f"User response: {_elicited(answer)}"

    @server.tool(description="Tests elicitation with default values per SEP-1034")
    async def test_elicitation_sep1034_defaults(ctx: Context) -> str | types.InputRequiredResult:
        properties = {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active",
            },
            "verified": {"type": "boolean", "description": "Verification status", "default": True},
        }
        question = _elicit("Please review and update the form fields with defaults", properties, [])
        answer = await _ask(ctx, "defaults", question)
        if isinstance(answer, types.InputRequiredResult):
            return answer
        return f"Elicitation completed: {_elicited(answer)}"

    @server.tool(description="Tests elicitation with enum schema improvements per SEP-1330")
    async def test_elicitation_sep1330_enums(ctx: Context) -> str | types.InputRequiredResult:
        def titled(prefix: str, titles: tuple[str, ...]) -> list[dict[str, str]]:
            return [{"const": f"{prefix}{i}", "title": title} for i, title in enumerate(titles, start=1)]

        options = ["option1", "option2", "option3"]
        properties = {
            "untitledSingle": {"type": "string", "description": "Select one option", "enum": options},
            "titledSingle": {
                "type": "string",
                "description": "Select one option with titles",
                "oneOf": titled("value", ("First Option", "Second Option", "Third Option")),
            },
            "legacyEnum": {
                "type": "string",
                "description": "Select one option (legacy)",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {
                "type": "array",
                "description": "Select multiple options",
                "minItems": 1,
                "maxItems": 3,
                "items": {"type": "string", "enum": options},
            },
            "titledMulti": {
                "type": "array",
                "description": "Select multiple options with titles",
                "minItems": 1,
                "maxItems": 3,
                "items": {"anyOf": titled("value", ("First Choice", "Second Choice", "Third Choice"))},
            },
        }
        answer = await _ask(ctx, "enums", _elicit("Please select options from the enum fields", properties, []))
        if isinstance(answer, types.InputRequiredResult):
            return answer
        return f"Elicitation completed: {_elicited(answer)}"

    @server.tool(description="Needs the client's sampling capability; a client that did not declare it gets -32021")
    def test_missing_capability(
        reply: Annotated[types.CreateMessageResult, Resolve(_missing_capability_question)],
    ) -> str:
        return _answer_text(reply)


def _add_input_required_tools(server: MCPServer) -> None:
    """SEP-2322 multi-round tools with the suite's exact input keys (the SDK's ``Resolve`` picks its own keys)."""
    name_question = _elicit("What is your name?", {"name": {"type": "string"}}, ["name"])

    @server.tool(description="Asks the user's name (one elicitation input request)")
    async def test_input_required_result_elicitation(ctx: Context) -> str | types.InputRequiredResult:
        answers = await _gather(ctx, {"user_name": name_question})
        if isinstance(answers, types.InputRequiredResult):
            return answers
        answer = answers["user_name"]
        if not isinstance(answer, types.ElicitResult) or not isinstance((answer.content or {}).get("name"), str):
            raise MCPError(code=types.INVALID_PARAMS, message="inputResponses.user_name is not an elicitation answer")
        return f"Hello, {(answer.content or {})['name']}!"

    @server.tool(description="Asks the client's model a question (one sampling input request)")
    async def test_input_required_result_sampling(ctx: Context) -> str | types.InputRequiredResult:
        answers = await _gather(ctx, {"capital_question": _sample("What is the capital of France?", 100)})
        if isinstance(answers, types.InputRequiredResult):
            return answers
        return f"The model says: {_answer_text(answers['capital_question'])}"

    @server.tool(description="Asks the client's roots (one roots/list input request)")
    async def test_input_required_result_list_roots(ctx: Context) -> str | types.InputRequiredResult:
        answers = await _gather(ctx, {"client_roots": types.ListRootsRequest()})
        if isinstance(answers, types.InputRequiredResult):
            return answers
        return f"Roots: {_answer_text(answers['client_roots'])}"

    @server.tool(description="Round-trips requestState next to one elicitation")
    async def test_input_required_result_request_state(ctx: Context) -> str | types.InputRequiredResult:
        confirm = _elicit("Please confirm", {"ok": {"type": "boolean"}}, ["ok"])
        answers = await _gather(ctx, {"confirm": confirm}, state="confirm-pending")
        if isinstance(answers, types.InputRequiredResult):
            return answers
        if _modern(ctx) and ctx.request_state != "confirm-pending":
            raise MCPError(code=types.INVALID_PARAMS, message="requestState was not echoed")
        return f"state-ok: confirmed {_answer_text(answers['confirm'])}"

    @server.tool(description="Asks elicitation, sampling and roots at once")
    async def test_input_required_result_multiple_inputs(ctx: Context) -> str | types.InputRequiredResult:
        questions: dict[str, types.InputRequest] = {
            "user_name": name_question,
            "greeting": _sample("Generate a greeting", 50),
            "client_roots": types.ListRootsRequest(),
        }
        answers = await _gather(ctx, questions, state="multiple-pending")
        if isinstance(answers, types.InputRequiredResult):
            return answers
        return "; ".join(f"{key}: {_answer_text(answer)}" for key, answer in answers.items())

    @server.tool(description="Asks two questions in two rounds, the state evolving between them")
    async def test_input_required_result_multi_round(ctx: Context) -> str | types.InputRequiredResult:
        step1 = _elicit("Step 1: What is your name?", {"name": {"type": "string"}}, ["name"])
        step2 = _elicit("Step 2: What is your favorite color?", {"color": {"type": "string"}}, ["color"])
        if not _modern(ctx):
            return f"{_answer_text(await _ask_now(ctx, step1))} {_answer_text(await _ask_now(ctx, step2))}"
        answers = ctx.input_responses or {}
        if ctx.request_state == "round-2" and "step2" in answers:
            return f"Done: {_answer_text(answers['step2'])}"
        if ctx.request_state == "round-2" or (ctx.request_state == "round-1" and "step1" in answers):
            return types.InputRequiredResult(input_requests={"step2": step2}, request_state="round-2")
        return types.InputRequiredResult(input_requests={"step1": step1}, request_state="round-1")

    @server.tool(description="Integrity-protected requestState: a tampered one is rejected")
    async def test_input_required_result_tampered_state(ctx: Context) -> str | types.InputRequiredResult:
        # The SDK seals request_state (HMAC) on the way out and rejects a tampered one before this runs.
        confirm = _elicit("Please confirm", {"ok": {"type": "boolean"}}, ["ok"])
        answers = await _gather(ctx, {"confirm": confirm}, state="tamper-me")
        if isinstance(answers, types.InputRequiredResult):
            return answers
        return "state-ok"

    @server.tool(description="Asks one elicitation while the call is streamed (server-stateless diagnostic)")
    async def test_streaming_elicitation(ctx: Context) -> str | types.InputRequiredResult:
        answers = await _gather(ctx, {"user_name": name_question})
        if isinstance(answers, types.InputRequiredResult):
            return answers
        return f"Hello, {_answer_text(answers['user_name'])}"

    @server.tool(description="Asks only what the client declared it can answer")
    async def test_input_required_result_capabilities(ctx: Context) -> str | types.InputRequiredResult:
        capabilities = ctx.client_capabilities or types.ClientCapabilities()
        questions: dict[str, types.InputRequest] = {}
        if capabilities.sampling is not None:
            questions["capital_question"] = _sample("What is the capital of France?", 100)
        if capabilities.elicitation is not None:
            questions["user_name"] = name_question
        if not questions:
            return "nothing to ask: the client declared neither sampling nor elicitation"
        answers = await _gather(ctx, questions)
        if isinstance(answers, types.InputRequiredResult):
            return answers
        return "; ".join(f"{key}: {_answer_text(answer)}" for key, answer in answers.items())

    @server.prompt(description="A prompt that needs the user's context first (elicitation)")
    async def test_input_required_result_prompt(ctx: Context) -> list[Message] | types.InputRequiredResult:
        question = _elicit("What context should the prompt use?", {"context": {"type": "string"}}, ["context"])
        answers = await _gather(ctx, {"user_context": question})
        if isinstance(answers, types.InputRequiredResult):
            return answers
        return [UserMessage(f"Use this context: {_answer_text(answers['user_context'])}")]


def _add_resources(server: MCPServer) -> None:
    subscriptions: set[str] = set()

    @server.resource("test://static-text", name="static-text", mime_type="text/plain")
    def static_text() -> str:
        """A static text resource for testing"""
        return "This is the content of the static text resource."

    @server.resource("test://static-binary", name="static-binary", mime_type="image/png")
    def static_binary() -> bytes:
        """A static binary resource (image) for testing"""
        return base64.b64decode(IMAGE_PNG)

    @server.resource("test://template/{id}/data", name="template", mime_type="application/json")
    def template(id: str) -> str:
        """A resource template with parameter substitution"""
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    @server.resource("test://watched-resource", name="watched-resource", mime_type="text/plain")
    def watched() -> str:
        """A resource that can be subscribed to for updates"""
        return "Watched resource content"

    async def subscribe(ctx: ServerRequestContext[Any], params: types.SubscribeRequestParams) -> types.EmptyResult:
        subscriptions.add(str(params.uri))
        return types.EmptyResult()

    async def unsubscribe(ctx: ServerRequestContext[Any], params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        subscriptions.discard(str(params.uri))
        return types.EmptyResult()

    async def set_level(ctx: ServerRequestContext[Any], params: types.SetLevelRequestParams) -> types.EmptyResult:
        return types.EmptyResult()

    lowlevel = server._lowlevel_server
    lowlevel.add_request_handler("resources/subscribe", types.SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, unsubscribe)
    lowlevel.add_request_handler("logging/setLevel", types.SetLevelRequestParams, set_level)


def _add_prompts(server: MCPServer) -> None:
    @server.prompt(description="A simple prompt without arguments")
    def test_simple_prompt() -> str:
        return "This is a simple prompt for testing."

    @server.prompt(description="A prompt with required arguments")
    def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
        return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"

    @server.prompt(description="A prompt that includes an embedded resource")
    def test_prompt_with_embedded_resource(resourceUri: str) -> list[Message]:
        resource = types.TextResourceContents(
            uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."
        )
        return [
            UserMessage(types.EmbeddedResource(type="resource", resource=resource)),
            UserMessage("Please process the embedded resource above."),
        ]

    @server.prompt(description="A prompt that includes image content")
    def test_prompt_with_image() -> list[Message]:
        return [
            UserMessage(types.ImageContent(type="image", data=IMAGE_PNG, mime_type="image/png")),
            UserMessage("Please analyze the image above."),
        ]

    async def complete(ctx: ServerRequestContext[Any], params: types.CompleteRequestParams) -> types.CompleteResult:
        values = [value for value in ("paris", "park", "party") if value.startswith(params.argument.value)]
        return types.CompleteResult(completion=types.Completion(values=values, total=len(values), has_more=False))

    server._lowlevel_server.add_request_handler("completion/complete", types.CompleteRequestParams, complete)


def build_server() -> MCPServer:
    """A fresh server with every fixture; each test and each CLI run gets its own."""
    server = MCPServer("mcp-conformance-test-server", version="1.0.0")
    _add_content_tools(server)
    _add_list_change_tools(server)
    _add_client_tools(server)
    _add_input_required_tools(server)
    _add_resources(server)
    _add_prompts(server)
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    # The suite exercises the handshake era's logging and sampling on purpose; their deprecation is not news here.
    warnings.filterwarnings("ignore", category=MCPDeprecationWarning)
    server = build_server()
    if args.http:
        # A 100 ms retry hint keeps the SSE polling scenario (the stream closed mid-call) quick.
        app = server.streamable_http_app(event_store=MemoryEventStore(), retry_interval=100, host=args.host)
        uvicorn.run(TrimmedHeaders(app), host=args.host, port=args.port, log_level="warning")
    else:
        server.run()


class TrimmedHeaders:
    """ASGI wrapper that strips optional whitespace around header values before the SDK compares them to the body.

    RFC 9110 5.5 excludes leading and trailing whitespace from a field value, and the suite checks that a padded
    ``Mcp-Name`` is accepted; uvicorn passes the padding through and the SDK compares verbatim. The reference
    server must pass directly, so the trimming the HTTP layer owes is done here.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, "headers": [(name, value.strip(b" \t")) for name, value in scope["headers"]]}
        await self.app(scope, receive, send)


if __name__ == "__main__":
    main()
