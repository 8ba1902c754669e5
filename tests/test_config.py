"""Config loading: every problem reported with its path, env interpolation, the CLI's check and keygen."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from mcp_gateway.config import load_config, parse_config
from mcp_gateway.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def problems_of(raw: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    return caught.value.problems


def test_example_config_loads() -> None:
    config = load_config(REPO / "configs" / "example.yaml", env={})
    assert [u.name for u in config.upstreams] == ["demo"]
    assert config.store_url == "memory://"
    assert config.tasks[0].id == "resolve-ticket"


def test_example_config_has_a_model_at_openai_base_url_and_an_agent() -> None:
    example = REPO / "configs" / "example.yaml"
    fresh = load_config(example, env={})
    assert fresh.models[0].base_url == "https://api.openai.com/v1"
    assert [agent.fields.name for agent in fresh.agents] == ["ticket-helper"]
    local = load_config(example, env={"OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"})
    assert local.models[0].base_url == "http://127.0.0.1:11434/v1"


def test_every_problem_is_reported_with_its_path() -> None:
    problems = problems_of(
        {
            "upstreams": [{"name": "a", "transport": "carrier-pigeon"}, {"transport": "stdio", "command": "x"}],
            "identities": [{"id": "i", "credentials": [{"sha256": "not-hex"}]}, {"id": "i"}],
            "tasks": [{"name": "t", "contextSchema": {"type": "no-such-type"}}],
            "policies": [{"name": "p", "effect": "maybe", "condition": "true"}],
            "bogus": 1,
        }
    )
    joined = "\n".join(problems)
    for expected in (
        "upstreams[0].transport",
        "upstreams[1].name: is required",
        "identities[0].credentials[0].sha256",
        "identities[1]: duplicate 'i'",
        "tasks[0].contextSchema: is not a valid JSON Schema",
        "policies[0].effect",
        "config.bogus: unknown key",
    ):
        assert expected in joined
    assert len(problems) >= 7


def test_allowed_tools_absent_and_empty_mean_different_things() -> None:
    config = parse_config({"identities": [{"id": "all"}, {"id": "none", "allowedTools": []}]})
    assert config.identities[0].allowed_tools is None
    assert config.identities[1].allowed_tools == ()


def test_same_api_key_on_two_identities_is_rejected() -> None:
    digest = hashlib.sha256(b"k").hexdigest()
    problems = problems_of(
        {
            "identities": [
                {"id": "a", "credentials": [{"sha256": digest}]},
                {"id": "b", "credentials": [{"sha256": digest}]},
            ]
        }
    )
    assert any("already belongs to identity 'a'" in p for p in problems)


def test_front_door_limits_default_and_are_checked() -> None:
    server = parse_config({}).server
    assert (server.body_read_timeout, server.max_json_depth, server.max_argument_depth) == (30.0, 128, 64)
    problems = problems_of({"server": {"bodyReadTimeout": 0, "maxJsonDepth": 10, "maxArgumentDepth": 9}})
    assert sorted(problems) == [
        "server.bodyReadTimeout: must be at least 0.001",
        "server.maxArgumentDepth: must be at most maxJsonDepth - 2 (8)",
    ]
    assert problems_of({"server": {"maxJsonDepth": 513}}) == ["server.maxJsonDepth: must be at most 512"]


def test_env_interpolation_with_default_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  port: ${PORT:-9000}\n  host: ${HOST}\n")
    assert load_config(path, env={"HOST": "0.0.0.0"}).server.port == 9000
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert "environment variable HOST is not set" in caught.value.problems[0]


def test_jwt_needs_exactly_one_key_source() -> None:
    problems = problems_of({"jwt": {"secret": "s", "jwksUrl": "https://x/jwks"}})
    assert any("exactly one of secret, publicKey, jwksUrl" in p for p in problems)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcp_gateway", *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_check_command_exits_nonzero_listing_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "identities:\n  - id: x\n    credentials: [{sha256: nope}]\nupstreams: [{name: '!bad', url: ftp://x}]\n"
    )
    result = run_cli("check", "--config", str(bad), "--no-upstreams")
    assert result.returncode == 2
    assert "identities[0].credentials[0].sha256" in result.stderr
    assert "upstreams[0].url" in result.stderr
    assert "upstreams[0].name" in result.stderr


def test_check_command_accepts_example_config() -> None:
    result = run_cli("check", "--config", "configs/example.yaml")
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_keygen_prints_key_and_matching_hash() -> None:
    result = run_cli("keygen")
    lines = dict(line.split(":", 1) for line in result.stdout.strip().splitlines())
    key, digest = lines["key"].strip(), lines["sha256"].strip()
    assert len(key) > 40
    assert hashlib.sha256(key.encode()).hexdigest() == digest


def test_allowed_resources_and_prompts_absent_and_empty_mean_different_things() -> None:
    config = parse_config(
        {
            "identities": [{"id": "all"}, {"id": "some", "allowedResources": ["file:///*"], "allowedPrompts": []}],
            "tasks": [{"name": "t", "allowedResources": [], "allowedPrompts": ["triage"]}],
        }
    )
    assert (config.identities[0].allowed_resources, config.identities[0].allowed_prompts) == (None, None)
    assert (config.identities[1].allowed_resources, config.identities[1].allowed_prompts) == (("file:///*",), ())
    assert (config.tasks[0].allowed_resources, config.tasks[0].allowed_prompts) == ((), ("triage",))


def test_startable_by_takes_identity_ids_and_a_label_selector() -> None:
    config = parse_config(
        {
            "identities": [{"id": "a"}, {"id": "b"}],
            "tasks": [
                {"name": "by-id", "startableBy": {"identities": ["a", "b"]}},
                {"name": "by-label", "startableBy": {"labels": {"team": "support", "tier": 1}}},
                {"name": "nobody-named"},
            ],
        }
    )
    by_id, by_label, unnamed = config.tasks
    assert by_id.startable_by is not None and by_id.startable_by.identities == {"a", "b"}
    assert by_label.startable_by is not None and by_label.startable_by.labels == {"team": "support", "tier": "1"}
    assert unnamed.startable_by is None


def test_startable_by_naming_an_unknown_identity_is_a_problem_with_its_path() -> None:
    problems = problems_of(
        {"identities": [{"id": "a"}], "tasks": [{"name": "t", "startableBy": {"identities": ["a", "typo"]}}]}
    )
    assert problems == ["tasks[0].startableBy.identities[1]: unknown identity 'typo'"]


@pytest.mark.parametrize(
    ("startable_by", "where"),
    [
        ({}, "tasks[0].startableBy: must name at least one identity id or label"),
        ({"identities": []}, "tasks[0].startableBy: must name at least one identity id or label"),
        ({"identities": ["a"], "labels": {}}, "tasks[0].startableBy.labels: must name at least one label"),
        (["a"], "tasks[0].startableBy: must be a mapping"),
        ({"roles": ["admin"]}, "tasks[0].startableBy.roles: unknown key"),
    ],
)
def test_startable_by_that_names_nobody_or_is_malformed_is_a_problem(startable_by: object, where: str) -> None:
    problems = problems_of({"identities": [{"id": "a"}], "tasks": [{"name": "t", "startableBy": startable_by}]})
    assert any(p.startswith(where) for p in problems), problems


def test_check_warns_for_every_identity_startable_by_lets_a_task_widen(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        """
identities:
  - {id: narrow, allowedTools: ["demo__get_customer"], allowedPrompts: []}
  - {id: labelled, labels: {team: support}, allowedTools: ["demo__*"]}
  - {id: everything}
tasks:
  - name: broad
    allowedTools: ["demo__get_customer", "demo__echo"]
    allowedPrompts: ["triage"]
    startableBy: {identities: [narrow, everything], labels: {team: support}}
  - name: by-coverage
    allowedTools: ["demo__echo"]
"""
    )
    result = run_cli("check", "--config", str(path), "--no-upstreams")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: tasks[0] (broad): startableBy lets identity 'narrow' start it, and its allowedTools widen what "
        "'narrow' may use on its own",
        "warning: tasks[0] (broad): startableBy lets identity 'narrow' start it, and its allowedPrompts widen what "
        "'narrow' may use on its own",
    ]


def test_policies_take_resources_and_prompts_filters() -> None:
    config = parse_config(
        {
            "policies": [
                {"name": "p", "condition": "true", "resources": ["docs://*"], "prompts": ["crm__*"]},
                {"name": "q", "condition": "true"},
            ]
        }
    )
    p, q = config.policies
    assert (p.tools, p.resources, p.prompts) == (None, ("docs://*",), ("crm__*",))
    assert (q.resources, q.prompts) == (None, None)
    assert "policies[0].resources[0]: must be a non-empty string" in problems_of(
        {"policies": [{"name": "p", "condition": "true", "resources": [""]}]}
    )


@pytest.mark.parametrize("level", ["debug", "Info", "WARNING"])
def test_log_level_is_accepted_in_any_case(level: str) -> None:
    result = run_cli("--log-level", level, "keygen")
    assert result.returncode == 0, result.stderr


def test_identity_roles_admit_admin_and_refuse_unknown_roles() -> None:
    config = parse_config({"identities": [{"id": "ops", "roles": ["admin"]}, {"id": "bot"}]})
    assert [i.is_admin for i in config.identities] == [True, False]
    assert problems_of({"identities": [{"id": "ops", "roles": ["root"]}]}) == [
        "identities[0].roles[0]: unknown role 'root' (known: admin)"
    ]


def test_metrics_bearer_token_is_optional_long_and_kept_out_of_repr() -> None:
    token = "m" * 16
    config = parse_config({"metrics": {"bearerToken": token}})
    assert config.metrics.bearer_token == token
    assert token not in repr(config)
    assert parse_config({"metrics": {"bearerToken": ""}}).metrics.bearer_token is None
    assert problems_of({"metrics": {"bearerToken": "short", "other": 1}}) == [
        "metrics.other: unknown key (allowed: bearerToken)",
        "metrics.bearerToken: must be at least 16 characters (try `openssl rand -hex 32`)",
    ]


def test_console_secret_must_be_long_enough_to_sign_cookies() -> None:
    assert parse_config({"console": {"secret": "s" * 32}}).console.secret == "s" * 32
    assert parse_config({}).console.secret is None
    assert problems_of({"console": {"secret": "short"}}) == [
        "console.secret: must be at least 32 characters (try `openssl rand -hex 32`)"
    ]


def test_limits_take_rates_durations_and_default_bursts() -> None:
    config = parse_config(
        {
            "upstreams": [{"name": "demo", "transport": "stdio", "command": "x"}],
            "limits": {
                "perIdentity": {"rate": 100, "per": "1m", "burst": 20},
                "perIdentityTool": [{"tools": ["payments__*"], "rate": 5, "per": 60}],
                "perTaskSession": {"rate": 2, "per": "500ms"},
                "perUpstream": {"demo": {"rate": 50}},
            },
        }
    )
    limits = config.limits
    assert limits.per_identity is not None and (limits.per_identity.per, limits.per_identity.burst) == (60, 20)
    assert limits.per_identity.interval_us == 600_000
    assert limits.per_identity_tool[0].tools == ("payments__*",) and limits.per_identity_tool[0].limit.burst == 5
    assert limits.per_task_session is not None and limits.per_task_session.per == 0.5
    assert limits.per_upstream["demo"].per == 1 and limits.per_upstream["demo"].burst == 50


def test_malformed_limits_are_reported_with_their_paths() -> None:
    problems = problems_of(
        {
            "limits": {
                "perIdentity": {"rate": 0},
                "perIdentityTool": [{"rate": 1}],
                "perTaskSession": {"rate": 1, "per": "soon"},
                "perUpstream": {"nowhere": {"rate": 1}},
                "perTenant": {},
            }
        }
    )
    assert problems == [
        "limits.perTenant: unknown key (allowed: perIdentity, perIdentityTool, perTaskSession, perUpstream)",
        "limits.perIdentityTool[0].tools: must name at least one tool name or glob",
        "limits.perUpstream.nowhere: is not a configured upstream",
        "limits.perIdentity.rate: must be more than 0",
        "limits.perTaskSession.per: must be a positive number of seconds or a duration like '60s', got 'soon'",
    ]


def test_task_budgets_are_parsed_and_checked() -> None:
    task = {"name": "refund", "budgets": {"tools": {"payments__issue_refund": 1}, "totalCalls": 50}}
    budgets = parse_config({"tasks": [task]}).tasks[0].budgets
    assert budgets is not None and (dict(budgets.tools), budgets.total_calls) == ({"payments__issue_refund": 1}, 50)
    problems = problems_of({"tasks": [{"name": "t", "budgets": {"tools": {"x": -1}, "totalCalls": "many", "y": 1}}]})
    assert problems == [
        "tasks[0].budgets.y: unknown key (allowed: tools, totalCalls)",
        "tasks[0].budgets.tools.x: must be a whole number of calls (0 or more), got -1",
        "tasks[0].budgets.totalCalls: must be an integer, got str",
    ]


def test_task_instruction_and_output_schema_are_parsed_and_the_schema_checked() -> None:
    task = {"name": "lookup", "instruction": "Answer in JSON.", "outputSchema": {"type": "object"}}
    parsed = parse_config({"tasks": [task]}).tasks[0]
    assert (parsed.instruction, parsed.output_schema) == ("Answer in JSON.", {"type": "object"})
    problems = problems_of(
        {"tasks": [{"name": "t", "outputSchema": {"type": "text"}}, {"name": "u", "outputSchema": 1}]}
    )
    assert problems[0].startswith("tasks[0].outputSchema: is not a valid JSON Schema")
    assert problems[1] == "tasks[1].outputSchema: must be a JSON Schema object"
