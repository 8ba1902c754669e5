"""CEL policies: compiled once at config load, judged on every ``tools/call``, failing closed.

The rule (DESIGN.md, "Policy"): a policy applies to a tool when one of its ``tools`` globs matches the exposed tool
name, or when it names no filter at all (no ``tools``, ``resources`` or ``prompts``), as every policy written before
resources and prompts were governed did. It applies to a resource read (or a ``ref/resource`` completion) only when
one of its ``resources`` globs matches the URI, and to ``prompts/get`` (or a ``ref/prompt`` completion) only when
one of its ``prompts`` globs matches the exposed prompt name: a policy reading ``request.tool.args`` must not start
failing closed on every resource read. Any applicable ``deny`` whose condition is true blocks the call; then every
applicable ``allow`` must be true. A condition that cannot be evaluated (a missing key, a type mismatch, ``task``
read without a task session, a result that is not a bool) denies: a broken policy must never open a door.

``session`` (the task session's call counts, see ``limits.py``) costs a store read, so whether a policy reads it is
found at compile time, like ``task``, and the proxy reads the counts only for calls such a policy judges.

Compilation happens once in :meth:`PolicyEngine.compile`, which reports every broken policy at once so
``mcp-gateway check`` shows them all; the request path only builds one activation and runs the programs.
"""

from __future__ import annotations

import fnmatch
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from mcp_gateway.config import Identity, PolicyConfig
from mcp_gateway.core.cel import (
    Activation,
    Backend,
    CelCompileError,
    CelEvaluationError,
    Environment,
    Program,
    VariableType,
    to_cel,
)
from mcp_gateway.errors import ConfigError

# `task` is dyn rather than a map so that `task == null` type-checks: it is null when no task session is bound.
POLICY_VARIABLES: Mapping[str, VariableType] = {
    "identity": "map",
    "task": "dyn",
    "request": "map",
    "now": "timestamp",
    "session": "dyn",
}

# `task` as a variable, not a field or key named task (`request.tool.args.task`, `args['task']`).
_READS_TASK = re.compile(r"(?<![.\w'\"])task\b")
_READS_SESSION = re.compile(r"(?<![.\w'\"])session\b")
_READS_NOW = re.compile(r"(?<![.\w'\"])now\b")
# `session.calls["tool"]` with a literal name: such a tool reads as 0 calls before its first, not as a missing key.
_CALL_REFERENCE = re.compile(r"""session\s*\.\s*calls\s*\[\s*(?:'([^']*)'|"([^"]*)")\s*\]""")
# `request.tool.args.x` (not `request.tool.args.exists(...)`, a macro over all of them) or `request.tool.args["x"]`.
_ARG_REFERENCE = re.compile(
    r"""request\s*\.\s*tool\s*\.\s*args\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)\b(?!\s*\()|\[\s*(?:'([^']*)'|"([^"]*)")\s*\])"""
)
# What of `request` a condition may read without reading the arguments as a whole.
_REQUEST_FIELD = re.compile(r"request\s*\.\s*(?:method|tool\s*\.\s*(?:name|upstream))\b")
_READS_REQUEST = re.compile(r"(?<![.\w'\"])request\b")
_NEVER = re.compile(r"(?!)")
_APPLICABLE_CACHE_LIMIT = 4096
_K = TypeVar("_K")
_V = TypeVar("_V")


@dataclass(frozen=True)
class TaskContext:
    """The task session a call is bound to, as policies see it."""

    session_id: str
    task_id: str
    task_name: str
    labels: Mapping[str, str]
    context: Mapping[str, Any]


@dataclass(frozen=True)
class SessionUsage:
    """The calls a task session has made so far (forwarded ones), as policies see them in ``session``."""

    calls: Mapping[str, int]
    total_calls: int


@dataclass(frozen=True)
class Decision:
    """The verdict on one call; ``policy`` names the deciding policy of a deny, ``reason`` is for the audit."""

    allowed: bool
    reason: str
    policy: str | None = None
    message: str | None = None

    def denial_text(self) -> str:
        """What the caller gets instead of the upstream's answer: the text of an ``isError`` tool result, or the
        message of the JSON-RPC error answering a denied read, get or completion."""
        if self.policy is None:
            return f"Call denied: {self.message or self.reason}"
        return f"Call denied by policy '{self.policy}': {self.message or self.reason}"


@dataclass(frozen=True)
class CompiledPolicy:
    config: PolicyConfig
    program: Program
    selector: re.Pattern[str] | None
    """Tools judged; None means every tool."""
    reads_task: bool
    resource_selector: re.Pattern[str] = _NEVER
    prompt_selector: re.Pattern[str] = _NEVER
    reads_session: bool = False
    reads_now: bool = True
    """Whether the condition may read ``now``: the clock is read only for calls such a policy judges."""
    reads_arguments: frozenset[str] | None = None
    """The arguments the condition reads, by name; None when it may read any (or the arguments as a whole)."""

    @property
    def name(self) -> str:
        return self.config.name

    def applies_to(self, tool_name: str) -> bool:
        return self.selector is None or self.selector.match(tool_name) is not None

    def applies_to_resource(self, uri: str) -> bool:
        return self.resource_selector.match(uri) is not None

    def applies_to_prompt(self, prompt_name: str) -> bool:
        return self.prompt_selector.match(prompt_name) is not None

    def argument_references(self) -> tuple[str, ...]:
        """Argument names the condition reads as ``request.tool.args.x`` or ``request.tool.args["x"]``."""
        names = (a or b or c for a, b, c in _ARG_REFERENCE.findall(self.config.condition))
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class PolicyResult:
    """One policy's verdict on one call: ``holds`` is the condition's value, None when it could not be evaluated."""

    policy: CompiledPolicy
    holds: bool | None
    error: str | None = None

    @property
    def blocks(self) -> bool:
        if self.holds is None:
            return True
        return self.holds if self.policy.config.effect == "deny" else not self.holds


class PolicyEngine:
    """The compiled policies of one config; immutable apart from caches of which policies apply to which name."""

    def __init__(self, environment: Environment, policies: Sequence[CompiledPolicy]) -> None:
        self._environment = environment
        self.policies = tuple(policies)
        self._applicable: _RecentNames[tuple[CompiledPolicy, ...]] = _RecentNames()
        self._applicable_resources: _RecentNames[tuple[CompiledPolicy, ...]] = _RecentNames()
        self._applicable_prompts: _RecentNames[tuple[CompiledPolicy, ...]] = _RecentNames()
        # CEL-ready values of the identities and task sessions seen lately, and the verdict of each group of allow
        # policies that hold: built once, not on every call (see ``_Recent``).
        self._identity_values: _Recent[Identity, dict[str, Any]] = _Recent()
        self._task_values: _Recent[Mapping[str, Any], tuple[str, str, Mapping[str, str], dict[str, Any]]] = _Recent()
        self._groups: _Recent[tuple[CompiledPolicy, ...], _Group] = _Recent()
        self.reads_session_anywhere = any(p.reads_session for p in self.policies)
        """Whether any policy reads ``session``: then every call of a task session is counted (``limits.py``)."""
        # Tools named literally in `session.calls["..."]`: present, as 0, in every session's calls.
        self._counted_tools = {
            name: 0
            for p in self.policies
            for pair in _CALL_REFERENCE.findall(p.config.condition)
            for name in pair
            if name
        }

    @classmethod
    def compile(cls, policies: Sequence[PolicyConfig], backend: Backend | None = None) -> PolicyEngine:
        """Compile every policy, or raise ConfigError naming each broken one with the position of the problem."""
        environment = Environment(POLICY_VARIABLES, backend)
        compiled: list[CompiledPolicy] = []
        problems: list[str] = []
        for index, config in enumerate(policies):
            where = f"policies[{index}] (name {config.name!r})"
            try:
                program = environment.compile(config.condition)
            except CelCompileError as exc:
                problems.extend(f"{where}: {issue}" for issue in exc.issues)
                continue
            if program.result_type not in (None, "bool", "dyn"):
                problems.append(f"{where}: condition must evaluate to a bool, not {program.result_type}")
                continue
            compiled.append(
                CompiledPolicy(
                    config,
                    program,
                    _tool_selector(config),
                    bool(_READS_TASK.search(config.condition)),
                    _selector(config.resources) or _NEVER,
                    _selector(config.prompts) or _NEVER,
                    bool(_READS_SESSION.search(config.condition)),
                    bool(_READS_NOW.search(config.condition)),
                    _arguments_read(config.condition),
                )
            )
        if problems:
            raise ConfigError(problems)
        return cls(environment, compiled)

    def applicable(self, tool_name: str) -> tuple[CompiledPolicy, ...]:
        """The policies that judge calls of this exposed tool, denies first, each group in config order."""
        found = self._applicable.get(tool_name)
        if found is None:
            found = self._remember(self._applicable, tool_name, [p for p in self.policies if p.applies_to(tool_name)])
        return found

    def reads_session(self, tool_name: str) -> bool:
        """Whether judging a call of this tool reads ``session`` (then its counts are read from the store first)."""
        return self.reads_session_anywhere and any(p.reads_session for p in self.applicable(tool_name))

    def applicable_to_resource(self, uri: str) -> tuple[CompiledPolicy, ...]:
        """The policies that judge reads of this resource URI, in the same order as :meth:`applicable`."""
        found = self._applicable_resources.get(uri)
        if found is None:
            matching = [p for p in self.policies if p.applies_to_resource(uri)]
            found = self._remember(self._applicable_resources, uri, matching)
        return found

    def applicable_to_prompt(self, prompt_name: str) -> tuple[CompiledPolicy, ...]:
        """The policies that judge gets of this exposed prompt, in the same order as :meth:`applicable`."""
        found = self._applicable_prompts.get(prompt_name)
        if found is None:
            matching = [p for p in self.policies if p.applies_to_prompt(prompt_name)]
            found = self._remember(self._applicable_prompts, prompt_name, matching)
        return found

    @staticmethod
    def _remember(
        cache: _RecentNames[tuple[CompiledPolicy, ...]], key: str, matching: list[CompiledPolicy]
    ) -> tuple[CompiledPolicy, ...]:
        return cache.put(key, tuple(sorted(matching, key=lambda p: p.config.effect != "deny")))

    def evaluate(
        self,
        *,
        identity: Identity,
        task: TaskContext | None,
        tool_name: str,
        upstream: str,
        args: Mapping[str, Any],
        method: str = "tools/call",
        now: datetime | None = None,
        session: SessionUsage | None = None,
    ) -> Decision:
        policies = self.applicable(tool_name)
        if not policies:
            return Decision(allowed=True, reason="no policy applies to this tool")
        group = self._group(policies)
        # Only the arguments the policies read become CEL values: a megabyte nobody reads is not copied per call.
        if group.arguments is not None:
            args = {name: args[name] for name in group.arguments if name in args}
        request = {"method": method, "tool": {"name": tool_name, "upstream": upstream, "args": args}}
        return self._decide(policies, identity, task, request, now, session)

    def evaluate_resource(
        self,
        *,
        identity: Identity,
        task: TaskContext | None,
        uri: str,
        upstream: str,
        method: str = "resources/read",
        now: datetime | None = None,
    ) -> Decision:
        """The verdict on reading ``uri`` (or completing an argument of it): ``request.resource`` {uri, upstream}."""
        policies = self.applicable_to_resource(uri)
        if not policies:
            return Decision(allowed=True, reason="no policy applies to this resource")
        request = {"method": method, "resource": {"uri": uri, "upstream": upstream}}
        return self._decide(policies, identity, task, request, now)

    def evaluate_prompt(
        self,
        *,
        identity: Identity,
        task: TaskContext | None,
        prompt_name: str,
        upstream: str,
        arguments: Mapping[str, Any],
        method: str = "prompts/get",
        now: datetime | None = None,
    ) -> Decision:
        """The verdict on getting a prompt (or completing one of its arguments): ``request.prompt`` {name, upstream,
        arguments}."""
        policies = self.applicable_to_prompt(prompt_name)
        if not policies:
            return Decision(allowed=True, reason="no policy applies to this prompt")
        request = {"method": method, "prompt": {"name": prompt_name, "upstream": upstream, "arguments": arguments}}
        return self._decide(policies, identity, task, request, now)

    def _decide(
        self,
        policies: tuple[CompiledPolicy, ...],
        identity: Identity,
        task: TaskContext | None,
        request: Mapping[str, Any],
        now: datetime | None,
        session: SessionUsage | None = None,
    ) -> Decision:
        try:
            activation = self._activation(identity, task, request, now, session, policies)
        except RecursionError:
            # The arguments become CEL values recursively; ones nested past the interpreter's limit cannot be judged,
            # so the request is refused (fail closed) and audited like any denial.
            return Decision(allowed=False, reason="the arguments nest too deeply to evaluate policies")
        group = self._group(policies)
        if not group.all_hold(activation):
            for policy in policies:
                result = self._judge(policy, activation, task, session)
                if result.blocks:
                    return _denial(result)
        return group.allowed

    def _group(self, policies: tuple[CompiledPolicy, ...]) -> _Group:
        group = self._groups.get(policies)
        if group is None:
            group = self._groups.put(policies, _Group.of(self._environment, policies))
        return group

    def trace(
        self,
        *,
        identity: Identity,
        task: TaskContext | None,
        tool_name: str,
        upstream: str,
        args: Mapping[str, Any],
        method: str = "tools/call",
        now: datetime | None = None,
    ) -> list[tuple[PolicyResult, Decision | None]]:
        """Every applicable policy's result, not only the deciding one: for ``mcp-gateway explain``.

        Each result comes with the Decision it would cause on its own when it blocks, else None.
        """
        request = {"method": method, "tool": {"name": tool_name, "upstream": upstream, "args": args}}
        policies = self.applicable(tool_name)
        activation = self._activation(identity, task, request, now, None, policies)
        results = [self._judge(p, activation, task, None) for p in policies]
        return [(r, _denial(r) if r.blocks else None) for r in results]

    def check_argument_references(self, tools: Mapping[str, Any]) -> list[str]:
        """Warnings for conditions that read arguments no targeted tool declares, likely typos.

        ``tools`` maps exposed tool names to their ``inputSchema``. A policy whose ``tools`` globs match no tool
        at all is reported too, since it can never apply.
        """
        warnings: list[str] = []
        for policy in self.policies:
            targeted = [name for name in tools if policy.applies_to(name)]
            if not targeted:
                if policy.config.tools is not None:
                    globs = ", ".join(policy.config.tools)
                    warnings.append(f"policy {policy.name!r} applies to no tool (tools: {globs})")
                continue
            declared = set().union(*(_properties(tools[name]) for name in targeted))
            for argument in policy.argument_references():
                if argument not in declared:
                    shown = ", ".join(sorted(targeted)[:5]) + (", ..." if len(targeted) > 5 else "")
                    warnings.append(
                        f"policy {policy.name!r} reads request.tool.args.{argument}, but no tool it applies to "
                        f"declares {argument!r} in its inputSchema ({shown})"
                    )
        return warnings

    def _activation(
        self,
        identity: Identity,
        task: TaskContext | None,
        request: Mapping[str, Any],
        now: datetime | None,
        session: SessionUsage | None,
        policies: tuple[CompiledPolicy, ...],
    ) -> Activation:
        """The CEL variables of one call. The identity's and the task session's values are converted once and
        reused; only the request (and ``session``, ``now`` when a policy reads them) is new on each call."""
        identity_value = self._identity_values.get(identity)
        if identity_value is None:
            identity_value = self._identity_values.put(
                identity,
                to_cel(
                    {"id": identity.id, "name": identity.name, "labels": identity.labels, "scopes": identity.scopes}
                ),
            )
        values: dict[str, Any] = {
            "identity": identity_value,
            "task": None if task is None else self._task_value(task),
            "request": to_cel(request),
            "session": None
            if session is None
            else {"calls": {**self._counted_tools, **session.calls}, "totalCalls": session.total_calls},
        }
        if now is not None or any(p.reads_now for p in policies):
            values["now"] = to_cel(now or datetime.now(UTC))
        return self._environment.bind_converted(values)

    def _task_value(self, task: TaskContext) -> dict[str, Any]:
        # Keyed by the session's context mapping, which the task session store hands out once per decoded record;
        # the rest of the task's fields must be the very same objects too, or the value is built again.
        cached = self._task_values.get(task.context)
        if cached is not None and cached[:2] == (task.task_id, task.task_name) and cached[2] is task.labels:
            return cached[3]
        fields = {"id": task.task_id, "name": task.task_name, "labels": task.labels, "context": task.context}
        return self._task_values.put(task.context, (task.task_id, task.task_name, task.labels, to_cel(fields)))[3]

    @staticmethod
    def _judge(
        policy: CompiledPolicy, activation: Activation, task: TaskContext | None, session: SessionUsage | None
    ) -> PolicyResult:
        try:
            value = policy.program.evaluate(activation)
        except CelEvaluationError as exc:
            if task is None and policy.reads_task:
                return PolicyResult(policy, None, "it reads `task`, but the call is not bound to a task session")
            if session is None and policy.reads_session:
                return PolicyResult(policy, None, "it reads `session`, but the call is not bound to a task session")
            return PolicyResult(policy, None, f"evaluation error: {exc}")
        if not isinstance(value, bool):
            return PolicyResult(policy, None, f"condition returned {type(value).__name__}, not a bool")
        return PolicyResult(policy, value)


@dataclass(frozen=True)
class _Group:
    """The policies that judge one tool (or resource, or prompt), as two programs: ``d1 || d2 || ...`` over the
    denies and ``a1 && a2 && ...`` over the allows, so the common case (nothing blocks) costs two evaluations
    however many policies apply, and the verdict it leads to is built once.

    CEL's logical operators absorb errors only where the other side decides (``false && error`` is false,
    ``true && error`` an error), so the allow program is exactly ``true`` only when every allow condition is true,
    and the deny program exactly ``false`` only when every deny condition is false. Anything else (an error, a
    non-bool, a policy that blocks) is judged again one policy at a time, which names the deciding one.
    """

    deny: Program | None
    allow: Program | None
    allowed: Decision
    arguments: frozenset[str] | None
    """The arguments any of the policies reads (None: all of them)."""

    @classmethod
    def of(cls, environment: Environment, policies: tuple[CompiledPolicy, ...]) -> _Group:
        denies = [p for p in policies if p.config.effect == "deny"]
        allows = [p for p in policies if p.config.effect == "allow"]
        names = ", ".join(p.name for p in allows)
        allowed = (
            Decision(allowed=True, reason=f"allow policies hold: {names}")
            if allows
            else Decision(allowed=True, reason="no deny policy matched")
        )
        arguments: frozenset[str] | None = frozenset()
        for policy in policies:
            read = policy.reads_arguments
            arguments = None if arguments is None or read is None else arguments | read
        return cls(_joined(environment, denies, "||"), _joined(environment, allows, "&&"), allowed, arguments)

    def all_hold(self, activation: Activation) -> bool:
        """True when no deny matches and every allow holds; False means "judge each policy"."""
        try:
            if self.deny is not None and self.deny.evaluate(activation) is not False:
                return False
            return self.allow is None or self.allow.evaluate(activation) is True
        except CelEvaluationError:
            return False


def _joined(environment: Environment, policies: list[CompiledPolicy], operator: str) -> Program | None:
    if not policies:
        return None
    if len(policies) == 1:
        return policies[0].program
    try:
        return environment.compile(f" {operator} ".join(f"({p.config.condition})" for p in policies))
    except CelCompileError:
        # Each condition compiled on its own; should the joined one not, every call takes the one-by-one path.
        return _NEVER_HOLDS


class _NeverHolds(Program):
    """A program whose evaluation always sends the call to the one-policy-at-a-time path."""

    def __init__(self) -> None:
        super().__init__("", None, lambda _: None, lambda _: Activation(None))

    def evaluate(self, activation: Activation | Mapping[str, Any]) -> Any:
        raise CelEvaluationError("not evaluated as a group")


_NEVER_HOLDS = _NeverHolds()


class _RecentNames(Generic[_V]):
    """A bounded map keyed by name (tools, resource URIs, prompts), least recently used first out.

    Names come from callers, so the map must be bounded; but a caller sweeping through unknown names must not evict
    the names in steady use (then every call of them would match every policy's globs again), so a hit moves its
    entry to the back and the entry unused longest goes.
    """

    def __init__(self, limit: int = _APPLICABLE_CACHE_LIMIT) -> None:
        self._entries: OrderedDict[str, _V] = OrderedDict()
        self._limit = limit

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> _V | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: str, value: _V) -> _V:
        self._entries[key] = value
        if len(self._entries) > self._limit:
            self._entries.popitem(last=False)
        return value


class _Recent(Generic[_K, _V]):
    """A bounded map keyed by object identity, for values derived from objects the gateway keeps (identities,
    decoded task sessions, cached policy groups). The key object is held too, so its id cannot be reused while the
    entry lives; the oldest entry goes first."""

    def __init__(self, limit: int = _APPLICABLE_CACHE_LIMIT) -> None:
        self._entries: dict[int, tuple[_K, _V]] = {}
        self._limit = limit

    def get(self, key: _K) -> _V | None:
        entry = self._entries.get(id(key))
        return entry[1] if entry is not None and entry[0] is key else None

    def put(self, key: _K, value: _V) -> _V:
        if len(self._entries) >= self._limit:
            del self._entries[next(iter(self._entries))]
        self._entries[id(key)] = (key, value)
        return value


def _denial(result: PolicyResult) -> Decision:
    policy = result.policy
    if result.error is not None:
        reason = f"policy {policy.name!r} failed closed: {result.error}"
    elif policy.config.effect == "deny":
        reason = f"deny policy {policy.name!r} matched"
    else:
        reason = f"allow policy {policy.name!r} does not hold"
    return Decision(allowed=False, reason=reason, policy=policy.name, message=policy.config.message)


def _arguments_read(condition: str) -> frozenset[str] | None:
    """The argument names a condition reads as ``request.tool.args.x`` or ``request.tool.args["x"]``, when that is all
    it reads of ``request`` besides ``method``, ``tool.name`` and ``tool.upstream``; None (any argument) when it reads
    ``request`` any other way (``request.tool.args.exists(...)``, ``request.tool["args"]``, a macro variable named
    ``request``): a guess that is too wide costs time, one too narrow would hide arguments from the policy."""
    names = frozenset(a or b or c for a, b, c in _ARG_REFERENCE.findall(condition))
    rest = _REQUEST_FIELD.sub("", _ARG_REFERENCE.sub("", condition))
    return None if _READS_REQUEST.search(rest) else names


def _tool_selector(config: PolicyConfig) -> re.Pattern[str] | None:
    """The policy's tool filter; a policy that names only ``resources`` or ``prompts`` judges no tool."""
    if config.tools is None and (config.resources is not None or config.prompts is not None):
        return _NEVER
    return _selector(config.tools)


def _selector(globs: tuple[str, ...] | None) -> re.Pattern[str] | None:
    """One regex for all of a policy's globs (fnmatch, case-sensitive like names and URIs); None when absent."""
    if globs is None:
        return None
    if not globs:
        return _NEVER
    return re.compile("|".join(fnmatch.translate(glob) for glob in globs))


def _properties(schema: Any) -> set[str]:
    if isinstance(schema, Mapping):
        properties = schema.get("properties")
        if isinstance(properties, Mapping):
            return {str(key) for key in properties}
    return set()
