"""``resources/read``, ``prompts/get`` and ``completion/complete``: what the catalog names, judged, then forwarded.

Each is the same short chain as a tool call, without limits: find the owner (a hidden resource or prompt is reported
exactly like a missing one) → the resource or prompt policies → an audit record → the shared forward step
(``core/forwarding.py``), which refuses a denied request with ``POLICY_DENIED`` (these methods have no result that
can carry an error) → the resource URIs the result carries exposed under the upstream's ``resourcePrefix``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from mcp_types import INVALID_PARAMS

from mcp_gateway.core.callers import NO_LINK, Caller, ClientLink
from mcp_gateway.core.forwarding import Forwarder, audit_record
from mcp_gateway.core.policy import PolicyEngine
from mcp_gateway.core.visibility import Visibility
from mcp_gateway.errors import RpcError
from mcp_gateway.upstreams.catalog import Catalog
from mcp_gateway.upstreams.jsonrpc import forwarded_params
from mcp_gateway.upstreams.resource_uris import exposed_result, upstream_uri


def _completion_arguments(params: Mapping[str, Any], argument: Mapping[str, Any]) -> dict[str, Any]:
    """A prompt's arguments as a ``completion/complete`` shows them: those filled in so far, plus the partial one."""
    context = params.get("context")
    filled = context.get("arguments") if isinstance(context, Mapping) else None
    arguments = dict(cast(Mapping[str, Any], filled)) if isinstance(filled, Mapping) else {}
    if isinstance(argument.get("name"), str):
        arguments[argument["name"]] = argument.get("value")
    return arguments


def _require_str(params: Mapping[str, Any], key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value:
        raise RpcError(INVALID_PARAMS, f"params.{key} must be a non-empty string")
    return value


def unknown_resource(uri: str) -> RpcError:
    """The one answer for a resource that does not exist or that the caller may not see."""
    return RpcError(INVALID_PARAMS, f"Unknown resource: {uri}", {"uri": uri})


def _unknown_prompt(name: str) -> RpcError:
    return RpcError(INVALID_PARAMS, f"Unknown prompt: {name}")


def resource_visible(visibility: Visibility, caller: Caller, uri: str) -> bool:
    """Whether ``uri`` (or the ``uriTemplate`` text of a template) matches the caller's ``allowedResources``."""
    return visibility.allows(caller.resource_patterns, uri)


async def read_resource(
    catalog: Catalog,
    visibility: Visibility,
    policies: PolicyEngine,
    forwarder: Forwarder,
    caller: Caller,
    params: Mapping[str, Any],
    link: ClientLink,
) -> dict[str, Any]:
    uri = _require_str(params, "uri")
    connection = catalog.resource_owner(uri) if resource_visible(visibility, caller, uri) else None
    if connection is None:
        raise unknown_resource(uri)
    decision = policies.evaluate_resource(
        identity=caller.identity, task=caller.task_context(), uri=uri, upstream=connection.name
    )
    record = audit_record(caller, "resources/read", connection.name, decision, {}, resource=uri)
    params = forwarded_params(params, uri=upstream_uri(connection, uri))
    result = await forwarder.forward(caller, connection, params, link, decision, record)
    return exposed_result(connection, "resources/read", result)


async def get_prompt(
    catalog: Catalog,
    visibility: Visibility,
    policies: PolicyEngine,
    forwarder: Forwarder,
    caller: Caller,
    params: Mapping[str, Any],
    link: ClientLink,
) -> dict[str, Any]:
    name = _require_str(params, "name")
    arguments = params.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise RpcError(INVALID_PARAMS, "params.arguments must be an object")
    entry = catalog.prompt(name)
    if entry is None or not visibility.allows(caller.prompt_patterns, name):
        raise _unknown_prompt(name)
    args = cast(dict[str, Any], arguments)
    decision = policies.evaluate_prompt(
        identity=caller.identity,
        task=caller.task_context(),
        prompt_name=name,
        upstream=entry.upstream_name,
        arguments=args,
    )
    record = audit_record(caller, "prompts/get", entry.upstream_name, decision, args, prompt=name)
    params = forwarded_params(params, name=entry.original_name)
    result = await forwarder.forward(caller, entry.connection, params, link, decision, record)
    return exposed_result(entry.connection, "prompts/get", result)


async def complete(
    catalog: Catalog,
    visibility: Visibility,
    policies: PolicyEngine,
    forwarder: Forwarder,
    caller: Caller,
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """A completion is judged like a use of what it completes: visibility and the prompt or resource policies.

    A ``ref/prompt`` completion shows policies the prompt's arguments so far (``context.arguments``) with the
    argument being completed set to its partial value.
    """
    ref = params.get("ref")
    if not isinstance(ref, dict):
        raise RpcError(INVALID_PARAMS, "params.ref must be an object")
    ref = cast(dict[str, Any], ref)
    argument = params.get("argument")
    argument = cast(dict[str, Any], argument) if isinstance(argument, dict) else {}
    task = caller.task_context()
    if ref.get("type") == "ref/prompt" and isinstance(ref.get("name"), str):
        name: str = ref["name"]
        entry = catalog.prompt(name)
        if entry is None or not visibility.allows(caller.prompt_patterns, name):
            raise _unknown_prompt(name)
        decision = policies.evaluate_prompt(
            identity=caller.identity,
            task=task,
            prompt_name=name,
            upstream=entry.upstream_name,
            arguments=_completion_arguments(params, argument),
            method="completion/complete",
        )
        record = audit_record(caller, "completion/complete", entry.upstream_name, decision, argument, prompt=name)
        params = forwarded_params(params, ref={**ref, "name": entry.original_name})
        return await forwarder.forward(caller, entry.connection, params, NO_LINK, decision, record)
    if ref.get("type") == "ref/resource" and isinstance(ref.get("uri"), str):
        uri: str = ref["uri"]
        connection = catalog.resource_owner(uri) if resource_visible(visibility, caller, uri) else None
        if connection is None:
            raise unknown_resource(uri)
        decision = policies.evaluate_resource(
            identity=caller.identity, task=task, uri=uri, upstream=connection.name, method="completion/complete"
        )
        record = audit_record(caller, "completion/complete", connection.name, decision, argument, resource=uri)
        params = forwarded_params(params, ref={**ref, "uri": upstream_uri(connection, uri)})
        return await forwarder.forward(caller, connection, params, NO_LINK, decision, record)
    raise RpcError(INVALID_PARAMS, "params.ref must be a ref/prompt with a name or a ref/resource with a uri")
