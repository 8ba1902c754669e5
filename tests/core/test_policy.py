"""Policy semantics from DESIGN.md: deny beats allow, every applicable allow must hold, errors fail closed."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import pytest

from mcp_gateway.config import Identity, PolicyConfig
from mcp_gateway.core.cel import Backend
from mcp_gateway.core.policy import Decision, PolicyEngine, SessionUsage, TaskContext
from mcp_gateway.errors import ConfigError

ALICE = Identity(id="alice", name="Alice", labels={"team": "support"})
SUPPORT_TASK = TaskContext(
    session_id="sess-1",
    task_id="support-ticket",
    task_name="Support ticket",
    labels={"tier": "1"},
    context={"customer_id": "c-42"},
)
SEED = PolicyConfig(
    name="same-customer",
    effect="allow",
    condition="task.context.customer_id == request.tool.args.customer_id",
    tools=("crm__*",),
    message="only the customer of the current ticket",
)


def policy(
    name: str,
    condition: str,
    effect: Literal["allow", "deny"] = "allow",
    tools: tuple[str, ...] | None = None,
    message: str | None = None,
) -> PolicyConfig:
    return PolicyConfig(name=name, effect=effect, condition=condition, tools=tools, message=message)


def decide(
    engine: PolicyEngine,
    tool: str = "crm__get_customer",
    args: Mapping[str, Any] | None = None,
    task: TaskContext | None = SUPPORT_TASK,
    identity: Identity = ALICE,
    now: datetime | None = None,
) -> Decision:
    upstream = tool.split("__")[0]
    return engine.evaluate(identity=identity, task=task, tool_name=tool, upstream=upstream, args=args or {}, now=now)


def test_call_is_allowed_when_no_policy_applies() -> None:
    engine = PolicyEngine.compile([policy("only-files", "false", tools=("files__*",))])
    decision = decide(engine)
    assert decision.allowed
    assert decision.policy is None


def test_allow_policy_that_holds_allows_the_call() -> None:
    engine = PolicyEngine.compile([policy("support-only", "identity.labels.team == 'support'")])
    decision = decide(engine)
    assert decision.allowed
    assert "support-only" in decision.reason


def test_allow_policy_that_does_not_hold_denies_naming_the_policy() -> None:
    engine = PolicyEngine.compile([policy("sales-only", "identity.labels.team == 'sales'", message="sales only")])
    decision = decide(engine)
    assert not decision.allowed
    assert decision.policy == "sales-only"
    assert decision.message == "sales only"


def test_matching_deny_policy_blocks_even_when_every_allow_holds() -> None:
    engine = PolicyEngine.compile(
        [
            policy("anyone", "true"),
            policy("no-deletes", "request.tool.name.endsWith('delete')", effect="deny", message="no deleting"),
        ]
    )
    assert decide(engine, tool="crm__get").allowed
    decision = decide(engine, tool="crm__delete")
    assert not decision.allowed
    assert decision.policy == "no-deletes"


def test_every_applicable_allow_policy_must_hold() -> None:
    engine = PolicyEngine.compile(
        [
            policy("support-team", "identity.labels.team == 'support'"),
            policy("small-limit", "request.tool.args.limit <= 10"),
        ]
    )
    assert decide(engine, args={"limit": 5}).allowed
    decision = decide(engine, args={"limit": 50})
    assert not decision.allowed
    assert decision.policy == "small-limit"


def test_policy_applies_only_to_tools_matching_its_globs() -> None:
    engine = PolicyEngine.compile(
        [policy("no-writes", "true", effect="deny", tools=("files__write_*", "files__delete"))]
    )
    assert not decide(engine, tool="files__write_text").allowed
    assert not decide(engine, tool="files__delete").allowed
    assert decide(engine, tool="files__read").allowed
    assert decide(engine, tool="Files__write_text").allowed
    assert [p.name for p in engine.applicable("files__delete")] == ["no-writes"]
    assert engine.applicable("files__read") == ()


def test_applicable_lists_deny_policies_before_allow_policies() -> None:
    engine = PolicyEngine.compile([policy("a", "true"), policy("d", "false", effect="deny"), policy("b", "true")])
    assert [p.name for p in engine.applicable("any__tool")] == ["d", "a", "b"]


@pytest.mark.parametrize("backend", get_args(Backend))
def test_seed_example_allows_only_the_ticket_customer(backend: Backend) -> None:
    engine = PolicyEngine.compile([SEED], backend)
    assert decide(engine, args={"customer_id": "c-42"}).allowed

    other = decide(engine, args={"customer_id": "c-7"})
    assert not other.allowed
    assert other.policy == "same-customer"
    assert other.denial_text() == "Call denied by policy 'same-customer': only the customer of the current ticket"

    unbound = decide(engine, args={"customer_id": "c-42"}, task=None)
    assert not unbound.allowed
    assert unbound.policy == "same-customer"
    assert "not bound to a task session" in unbound.reason


def test_policy_may_allow_calls_without_task_by_checking_for_null() -> None:
    engine = PolicyEngine.compile([policy("task-or-admin", "task != null || identity.id == 'root'")])
    assert decide(engine, task=None, identity=Identity(id="root", name="root")).allowed
    assert not decide(engine, task=None).allowed
    assert decide(engine).allowed


def test_missing_argument_denies_with_the_evaluation_error_as_reason() -> None:
    engine = PolicyEngine.compile([SEED])
    decision = decide(engine, args={"name": "ACME"})
    assert not decision.allowed
    assert decision.policy == "same-customer"
    assert "failed closed" in decision.reason
    assert "customer_id" in decision.reason


def test_deny_policy_that_cannot_be_evaluated_also_denies() -> None:
    engine = PolicyEngine.compile([policy("big-export", "request.tool.args.rows > 1000", effect="deny")])
    assert decide(engine, args={"rows": 10}).allowed
    decision = decide(engine, args={})
    assert not decision.allowed
    assert decision.policy == "big-export"


def test_type_mismatch_at_evaluation_denies() -> None:
    engine = PolicyEngine.compile([policy("limit", "request.tool.args.limit <= 10")])
    decision = decide(engine, args={"limit": "ten"})
    assert not decision.allowed
    assert "failed closed" in decision.reason


def test_condition_with_non_bool_result_denies() -> None:
    engine = PolicyEngine.compile([policy("returns-arg", "request.tool.args.flag")])
    assert decide(engine, args={"flag": True}).allowed
    decision = decide(engine, args={"flag": "yes"})
    assert not decision.allowed
    assert "not a bool" in decision.reason


def test_now_and_identity_are_visible_to_conditions() -> None:
    engine = PolicyEngine.compile(
        [policy("office-hours", "now.getHours() >= 9 && now.getHours() < 17 && identity.name == 'Alice'")]
    )
    assert decide(engine, now=datetime(2030, 1, 1, 10, tzinfo=UTC)).allowed
    assert not decide(engine, now=datetime(2030, 1, 1, 20, tzinfo=UTC)).allowed


def test_request_method_and_upstream_are_visible_to_conditions() -> None:
    engine = PolicyEngine.compile([policy("crm", "request.method == 'tools/call' && request.tool.upstream == 'crm'")])
    assert decide(engine, tool="crm__get").allowed
    assert not decide(engine, tool="files__get").allowed


def test_denial_text_names_the_policy_and_falls_back_to_the_reason() -> None:
    engine = PolicyEngine.compile([policy("never", "false")])
    assert decide(engine).denial_text() == "Call denied by policy 'never': allow policy 'never' does not hold"


def test_syntax_error_is_reported_with_policy_name_and_position() -> None:
    with pytest.raises(ConfigError) as caught:
        PolicyEngine.compile([policy("fine", "true"), policy("broken", "identity.id ==")])
    [problem] = caught.value.problems
    assert problem.startswith("policies[1] (name 'broken'): line 1, column 15: Syntax error")


def test_type_error_is_reported_with_policy_name_and_position() -> None:
    with pytest.raises(ConfigError) as caught:
        PolicyEngine.compile([policy("typed", "identity.id == 'a' && 1 + 'x' == 2")])
    [problem] = caught.value.problems
    assert problem.startswith("policies[0] (name 'typed'): line 1, column 25: found no matching overload")


def test_every_broken_policy_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        PolicyEngine.compile(
            [
                policy("unknown-variable", "user.id == 'a'"),
                policy("fine", "true"),
                policy("not-bool", "1 + 2"),
                policy("syntax", "(("),
            ]
        )
    problems = caught.value.problems
    assert [p.split(":")[0] for p in problems] == [
        "policies[0] (name 'unknown-variable')",
        "policies[2] (name 'not-bool')",
        "policies[3] (name 'syntax')",
    ]
    assert problems[0].endswith("line 1, column 5: undeclared reference to 'user.id'")
    assert problems[1].endswith("condition must evaluate to a bool, not int")


def test_reading_an_argument_no_targeted_tool_declares_is_warned() -> None:
    engine = PolicyEngine.compile(
        [
            policy("typo", "request.tool.args.customerId == 'x'", tools=("crm__*",)),
            policy("indexed", "request.tool.args['customer_id'] != ''", tools=("crm__*",)),
        ]
    )
    schemas = {
        "crm__get_customer": {"type": "object", "properties": {"customer_id": {"type": "string"}}},
        "files__read": {"type": "object", "properties": {"customerId": {"type": "string"}}},
    }
    warnings = engine.check_argument_references(schemas)
    assert len(warnings) == 1
    assert warnings[0].startswith("policy 'typo' reads request.tool.args.customerId")
    assert "crm__get_customer" in warnings[0]


def test_policy_whose_globs_match_no_tool_is_warned() -> None:
    engine = PolicyEngine.compile([policy("stale", "true", tools=("old__*",))])
    assert engine.check_argument_references({"crm__get": {"type": "object"}}) == [
        "policy 'stale' applies to no tool (tools: old__*)"
    ]


def test_trace_reports_every_applicable_policy() -> None:
    engine = PolicyEngine.compile([SEED, policy("no-bulk", "request.tool.args.limit > 100", effect="deny")])
    trace = engine.trace(
        identity=ALICE,
        task=SUPPORT_TASK,
        tool_name="crm__get",
        upstream="crm",
        args={"customer_id": "c-7", "limit": 5},
    )
    assert [(r.policy.name, r.holds, d is not None) for r, d in trace] == [
        ("no-bulk", False, False),
        ("same-customer", False, True),
    ]


def read(engine: PolicyEngine, uri: str, task: TaskContext | None = SUPPORT_TASK) -> Decision:
    return engine.evaluate_resource(identity=ALICE, task=task, uri=uri, upstream="docs")


def get_prompt(engine: PolicyEngine, name: str, arguments: Mapping[str, Any] | None = None) -> Decision:
    upstream = name.split("__")[0]
    return engine.evaluate_prompt(
        identity=ALICE, task=SUPPORT_TASK, prompt_name=name, upstream=upstream, arguments=arguments or {}
    )


def test_a_policy_with_no_filter_judges_tools_but_no_resource_or_prompt() -> None:
    # Written when policies judged only tools: applied to a read it would fail closed on the missing request.tool.
    legacy = policy("quiet", "request.tool.args.text != 'boom'", effect="deny")
    engine = PolicyEngine.compile([legacy])
    assert [p.name for p in engine.applicable("crm__echo")] == ["quiet"]
    assert engine.applicable_to_resource("docs://anything") == ()
    assert engine.applicable_to_prompt("crm__summarize") == ()
    assert read(engine, "docs://anything").allowed
    assert get_prompt(engine, "crm__summarize").allowed


def test_a_resources_filter_judges_matching_uris_and_no_tool() -> None:
    engine = PolicyEngine.compile(
        [
            PolicyConfig(
                name="no-secrets",
                effect="deny",
                condition="request.resource.uri.contains('secret')",
                resources=("docs://*",),
                message="secret documents stay secret",
            )
        ]
    )
    denied = read(engine, "docs://team/secret-plan")
    assert not denied.allowed and denied.policy == "no-secrets"
    assert denied.denial_text() == "Call denied by policy 'no-secrets': secret documents stay secret"
    assert read(engine, "docs://team/plan").allowed
    assert engine.applicable_to_resource("wiki://secret") == ()
    assert engine.applicable("docs__read") == ()


def test_resource_globs_are_case_sensitive_and_star_crosses_slashes() -> None:
    engine = PolicyEngine.compile([PolicyConfig(name="d", effect="deny", condition="true", resources=("docs://*",))])
    assert not read(engine, "docs://a/b/c").allowed
    assert read(engine, "DOCS://a").allowed


def test_a_prompts_filter_judges_matching_prompts_with_their_arguments() -> None:
    engine = PolicyEngine.compile(
        [
            PolicyConfig(
                name="short-texts",
                effect="allow",
                condition="request.method == 'prompts/get' && request.prompt.arguments.text.size() <= 5",
                prompts=("crm__sum*",),
            )
        ]
    )
    assert get_prompt(engine, "crm__summarize", {"text": "short"}).allowed
    assert not get_prompt(engine, "crm__summarize", {"text": "far too long"}).allowed
    assert get_prompt(engine, "crm__other", {"text": "far too long"}).allowed
    assert engine.applicable("crm__summarize") == ()
    assert engine.applicable_to_resource("crm__summarize") == ()


def test_a_policy_naming_tools_and_resources_judges_both_kinds() -> None:
    both = PolicyConfig(
        name="ops-only",
        effect="allow",
        condition="identity.labels.team == 'ops'",
        tools=("crm__*",),
        resources=("docs://*",),
    )
    engine = PolicyEngine.compile([both])
    assert not decide(engine, tool="crm__get").allowed
    assert not read(engine, "docs://x").allowed
    assert get_prompt(engine, "crm__summarize").allowed


def test_a_resource_policy_that_cannot_be_evaluated_denies() -> None:
    engine = PolicyEngine.compile(
        [PolicyConfig(name="tasked", effect="allow", condition="task.labels.tier == '1'", resources=("*",))]
    )
    assert read(engine, "docs://x").allowed
    unbound = read(engine, "docs://x", task=None)
    assert not unbound.allowed and unbound.policy == "tasked" and "failed closed" in unbound.reason


def test_resource_requests_show_uri_upstream_and_method_to_conditions() -> None:
    condition = "request.resource.uri == 'docs://a' && request.resource.upstream == 'docs' && " + (
        "request.method == 'resources/read'"
    )
    engine = PolicyEngine.compile([PolicyConfig(name="exact", effect="allow", condition=condition, resources=("*",))])
    assert read(engine, "docs://a").allowed
    assert not read(engine, "docs://b").allowed
    completing = engine.evaluate_resource(
        identity=ALICE, task=None, uri="docs://a", upstream="docs", method="completion/complete"
    )
    assert not completing.allowed


def test_reading_session_is_known_per_tool_at_compile_time() -> None:
    engine = PolicyEngine.compile(
        [
            policy("one-refund", 'session.calls["crm__refund"] < 1', tools=("crm__refund",)),
            policy("reads-args", "request.tool.args.session == 'x'", tools=("crm__get_customer",)),
        ]
    )
    assert engine.reads_session_anywhere
    assert engine.reads_session("crm__refund")
    assert not engine.reads_session("crm__get_customer")
    assert not PolicyEngine.compile([SEED]).reads_session_anywhere


def test_session_counts_are_visible_and_a_named_tool_not_called_yet_counts_zero() -> None:
    engine = PolicyEngine.compile(
        [policy("one-refund", 'session.calls["crm__refund"] < 1 && session.totalCalls < 3', tools=("crm__refund",))]
    )

    def judge(calls: dict[str, int], total: int) -> bool:
        usage = SessionUsage(calls=calls, total_calls=total)
        args = {"identity": ALICE, "task": SUPPORT_TASK, "tool_name": "crm__refund", "upstream": "crm", "args": {}}
        return engine.evaluate(**args, session=usage).allowed  # type: ignore[arg-type]

    assert judge({}, 0)
    assert judge({"crm__get_customer": 2}, 2)
    assert not judge({"crm__refund": 1}, 1)
    assert not judge({}, 3)


def test_policy_reading_session_without_a_task_session_denies_saying_so() -> None:
    engine = PolicyEngine.compile([policy("one-refund", 'session.calls["crm__refund"] < 1')])
    decision = decide(engine, "crm__refund", task=None)
    assert not decision.allowed
    assert "it reads `session`, but the call is not bound to a task session" in decision.reason


# --- values reused across calls ---


def test_identities_and_task_sessions_reused_across_calls_are_judged_each_on_their_own() -> None:
    """The engine keeps CEL values per identity and per task session object: another object with other values
    (a reloaded identity, another session, a new task version) must be judged on its own values, never on cached ones.
    """
    engine = PolicyEngine.compile(
        [SEED, policy("support-only", "identity.labels.team == 'support' && task.labels.tier == '1'")]
    )
    args = {"customer_id": "c-42"}
    assert decide(engine, args=args).allowed
    other_team = Identity(id="alice", name="Alice", labels={"team": "sales"})
    assert decide(engine, args=args, identity=other_team).policy == "support-only"
    assert decide(engine, args=args).allowed
    other_customer = TaskContext("sess-2", "support-ticket", "Support ticket", {"tier": "1"}, {"customer_id": "c-7"})
    assert decide(engine, args=args, task=other_customer).policy == "same-customer"
    other_tier = TaskContext("sess-1", "support-ticket", "Support ticket", {"tier": "2"}, SUPPORT_TASK.context)
    assert decide(engine, args=args, task=other_tier).policy == "support-only"
    assert decide(engine, args=args).allowed


def test_the_clock_is_read_only_for_policies_that_read_now() -> None:
    engine = PolicyEngine.compile([policy("business-hours", "now.getHours() < 24", tools=("crm__*",))])
    assert engine.policies[0].reads_now
    assert decide(engine).allowed
    assert not PolicyEngine.compile([SEED]).policies[0].reads_now


@pytest.mark.parametrize("backend", get_args(Backend))
def test_many_policies_judged_as_a_group_still_name_the_one_that_decides(backend: Backend) -> None:
    """Policies are first judged as two joined programs; whatever blocks must still be named exactly as one by one."""
    allows = [policy(f"a{i}", f"request.tool.args.n != {i + 1000}") for i in range(50)]
    denies = [policy(f"d{i}", f"request.tool.args.n == {i + 2000}", effect="deny") for i in range(50)]
    engine = PolicyEngine.compile([*allows, *denies, policy("needs-x", "request.tool.args.x == 'y'")], backend)
    assert decide(engine, args={"n": 1, "x": "y"}).reason.startswith("allow policies hold: a0, a1")
    assert decide(engine, args={"n": 1017, "x": "y"}).policy == "a17"
    assert decide(engine, args={"n": 2031, "x": "y"}).policy == "d31"
    missing = decide(engine, args={"n": 1})
    assert (missing.allowed, missing.policy) == (False, "needs-x")
    assert "evaluation error" in missing.reason


def test_names_in_steady_use_keep_their_applicable_policies_past_the_cache_bound() -> None:
    # A caller sweeping through thousands of unknown names must not evict the names in use: the least recently used
    # names go first, so a name used between the others keeps its cached policies (the very same tuple).
    engine = PolicyEngine.compile([policy("files", "true", tools=("files__*",))])
    hot = engine.applicable("files__read")
    for n in range(10_000):
        engine.applicable(f"files__unknown{n}")
        assert engine.applicable("files__read") is hot
    assert engine.applicable("files__unknown0") == hot
    assert engine.applicable("files__unknown9999") == hot


def nested_past_the_interpreter(depth: int = 5000) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize("backend", get_args(Backend))
def test_policies_judge_the_arguments_they_read_and_never_convert_the_rest(backend: Backend) -> None:
    # An argument no policy reads is not made a CEL value: one nested past the interpreter's recursion limit would
    # otherwise fail the conversion (and deny); one a policy does read still does, failing closed.
    engine = PolicyEngine.compile([SEED], backend)
    unread = {"customer_id": "c-42", "blob": nested_past_the_interpreter()}
    assert decide(engine, args=unread).allowed
    assert not decide(engine, args={**unread, "customer_id": "c-7"}).allowed
    read = {"customer_id": nested_past_the_interpreter()}
    assert decide(engine, args=read).reason == "the arguments nest too deeply to evaluate policies"


@pytest.mark.parametrize(
    "condition",
    [
        "size(request.tool.args) == 2",
        "request.tool.args.exists(k, k == 'other')",
        "request.tool['args'].other == 'x'",
        "request.tool.args.customer_id == 'c-42' && has(request.tool.args.other)",
    ],
)
def test_policies_that_read_the_arguments_as_a_whole_see_all_of_them(condition: str) -> None:
    engine = PolicyEngine.compile([policy("whole", condition)])
    assert decide(engine, args={"customer_id": "c-42", "other": "x"}).allowed
    assert not decide(engine, args={"customer_id": "c-42"}).allowed
