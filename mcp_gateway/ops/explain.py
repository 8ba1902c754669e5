"""``mcp-gateway explain``: what the gateway would decide for one call, and why, without calling anything.

It runs the same visibility rule and the same compiled policies as ``serve``; only the upstream is left out, so
it cannot tell whether the tool exists — it says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jsonschema import validators

from mcp_gateway.config import GatewayConfig
from mcp_gateway.core.policy import PolicyEngine, TaskContext
from mcp_gateway.core.visibility import Visibility
from mcp_gateway.tasks.who_may_start import may_start


def explain(
    config: GatewayConfig,
    *,
    identity_id: str,
    task_id: str | None,
    context: Any,
    tool: str,
    args: Any,
) -> tuple[str, bool]:
    """(report, allowed)."""
    identities = {i.id: i for i in config.identities}
    tasks = {t.id: t for t in config.tasks}
    identity = identities.get(identity_id)
    if identity is None:
        return f"unknown identity {identity_id!r} (known: {', '.join(sorted(identities))})", False
    if not isinstance(args, Mapping):
        return "--args must be a JSON object", False
    lines = [f"identity: {identity.id}  labels={dict(identity.labels)}"]
    task_context: TaskContext | None = None
    task = None
    if task_id is not None:
        task = tasks.get(task_id)
        if task is None:
            return f"unknown task {task_id!r} (known: {', '.join(sorted(tasks))})", False
        if not may_start(identity, task):
            lines.append(f"decision: REJECTED — this identity may not start task {task.id!r} (403 task_not_permitted)")
            return "\n".join(lines), False
        validator = validators.validator_for(task.context_schema)(task.context_schema)
        violations = [
            f"/{'/'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in validator.iter_errors(context)
        ]
        if violations:
            return "context fails the task's schema (the session could not be created):\n  " + "\n  ".join(
                violations
            ), False
        task_context = TaskContext(
            session_id="(explain)", task_id=task.id, task_name=task.name, labels=task.labels, context=context
        )
        lines.append(f"task: {task.id}  context={context}")
    elif identity.require_task:
        lines.append("decision: REJECTED — this identity requires a task session (X-Task-Token)")
        return "\n".join(lines), False
    else:
        lines.append("task: none")

    patterns = Visibility.patterns(identity, task)
    source = "task" if task is not None and task.allowed_tools is not None else "identity"
    if not Visibility().allows(patterns, tool):
        lines.append(f"visibility: HIDDEN by {source} allowedTools {list(patterns or ())} (answered as unknown tool)")
        return "\n".join(lines), False
    lines.append(f"visibility: visible ({'all tools' if patterns is None else f'{source} allowedTools'})")

    engine = PolicyEngine.compile(config.policies)
    upstream = tool.split(config.server.tool_separator, 1)[0] if config.server.tool_separator in tool else ""
    trace = engine.trace(identity=identity, task=task_context, tool_name=tool, upstream=upstream, args=args)
    if not trace:
        lines.append("policies: none apply")
    for result, denial in trace:
        value = "error" if result.holds is None else str(result.holds).lower()
        verdict = "BLOCKS" if denial is not None else "passes"
        detail = f" ({result.error})" if result.error else ""
        lines.append(f"  {result.policy.config.effect:5} {result.policy.name}: {value} -> {verdict}{detail}")
    decision = engine.evaluate(identity=identity, task=task_context, tool_name=tool, upstream=upstream, args=args)
    if decision.allowed:
        lines.append(f"decision: ALLOW ({decision.reason})")
    else:
        lines.append(f"decision: DENY — {decision.denial_text()}")
    return "\n".join(lines), decision.allowed
