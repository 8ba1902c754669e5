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
