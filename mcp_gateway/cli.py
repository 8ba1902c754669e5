"""``mcp-gateway``: serve / stdio / check / keygen / explain / audit tail / tools diff / tools approve."""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from mcp_gateway.config import GatewayConfig, load_config
from mcp_gateway.errors import ConfigError
from mcp_gateway.identity.authenticator import hash_api_key
from mcp_gateway.serving import configure_logging
from mcp_gateway.workers import worker_count

logger = logging.getLogger("mcp_gateway")


def _print_problems(path: str, exc: ConfigError) -> None:
    print(f"{path}: {len(exc.problems)} problem(s):", file=sys.stderr)
    for problem in exc.problems:
        print(f"  - {problem}", file=sys.stderr)


def _load(path: str) -> GatewayConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        _print_problems(path, exc)
        raise SystemExit(2) from exc


def cmd_serve(args: argparse.Namespace) -> int:
    from mcp_gateway.app import create_app, end_streams
    from mcp_gateway.core.policy import PolicyEngine
    from mcp_gateway.serving import serve, server_config
    from mcp_gateway.workers import WorkerSpec, run_workers

    config = _load(args.config)
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    if args.workers > 1 and config.store_url.startswith("memory://"):
        print(
            f"error: --workers {args.workers} needs a store the workers share: {config.store_url} lives in one "
            "process, so a task session or legacy MCP session created through one worker would be unknown to the "
            "others. Set store.url to redis://... (or redis+cluster://...), or serve with --workers 1.",
            file=sys.stderr,
        )
        return 2
    try:
        # Compiled again by the app; doing it here first turns a bad policy into a clean exit 2 before any socket.
        PolicyEngine.compile(config.policies)
        if args.workers > 1:
            spec = WorkerSpec(config_path=args.config, log_level=args.log_level, access_log=args.access_log)
            return run_workers(spec, args.workers, host, port)
        app = create_app(config, args.config)
        uvicorn_config = server_config(
            app,
            host=host,
            port=port,
            log_level=args.log_level,
            access_log=args.access_log,
            shutdown_grace=config.server.shutdown_grace,
        )
        return serve(uvicorn_config, lambda: end_streams(app))
    except ConfigError as exc:
        _print_problems(args.config, exc)
        return 2


def cmd_stdio(args: argparse.Namespace) -> int:
    import os

    from mcp_gateway.core.policy import PolicyEngine
    from mcp_gateway.eras.stdio import StdioCaller, serve_stdio

    credential = os.environ.get(args.credential_env, "").strip()
    if not credential:
        print(
            f"error: set {args.credential_env} to the credential (API key or token) of the identity this client acts "
            "as; the stdio gateway reads it from the environment, never from a command line",
            file=sys.stderr,
        )
        return 2
    config = _load(args.config)
    try:
        PolicyEngine.compile(config.policies)
    except ConfigError as exc:
        _print_problems(args.config, exc)
        return 2
    task_token = os.environ.get(args.task_token_env, "").strip() or None
    return anyio.run(serve_stdio, config, StdioCaller(credential, task_token))


def cmd_check(args: argparse.Namespace) -> int:
    from mcp_gateway.ops.checks import check_config

    config = _load(args.config)
    problems, warnings = anyio.run(check_config, config, not args.no_upstreams)
    for warning in warnings:
        print(f"warning: {warning}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 2
    print(
        f"{args.config}: ok ({len(config.upstreams)} upstreams, {len(config.identities)} identities, "
        f"{len(config.tasks)} tasks, {len(config.policies)} policies)"
    )
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    key = f"{args.prefix}{secrets.token_urlsafe(32)}"
    print(f"key:    {key}")
    print(f"sha256: {hash_api_key(key)}")
    print("Give the key to the agent; put only the sha256 under the identity's credentials.", file=sys.stderr)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from mcp_gateway.ops.explain import explain

    config = _load(args.config)
    try:
        tool_args: Any = json.loads(args.args)
        context: Any = json.loads(args.context) if args.context else None
    except json.JSONDecodeError as exc:
        print(f"error: --args/--context must be JSON: {exc}", file=sys.stderr)
        return 2
    report, allowed = explain(
        config, identity_id=args.identity, task_id=args.task, context=context, tool=args.tool, args=tool_args
    )
    print(report)
    return 0 if allowed else 1


def cmd_audit_tail(args: argparse.Namespace) -> int:
    from mcp_gateway.core.audit import tail

    config = _load(args.config)
    return anyio.run(tail, config, args.count, args.follow)


def cmd_tools_diff(args: argparse.Namespace) -> int:
    from mcp_gateway.ops.pin_commands import diff

    config = _load(args.config)
    return anyio.run(diff, config, args.upstream)


def cmd_tools_approve(args: argparse.Namespace) -> int:
    from mcp_gateway.ops.pin_commands import approve

    if bool(args.tools) == args.all:
        print("error: name the tools to approve, or pass --all", file=sys.stderr)
        return 2
    if args.sha256 is not None and len(args.tools) != 1:
        print("error: --sha256 approves one tool: name exactly one", file=sys.stderr)
        return 2
    config = _load(args.config)
    return anyio.run(approve, config, args.tools, args.all, args.sha256)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcp-gateway", description="An MCP-native gateway.")
    parser.add_argument(
        "--log-level", default="INFO", type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="any case"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", required=True)
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=int, help="override server.port")
    serve.add_argument("--access-log", action="store_true", help="log every HTTP request")
    serve.add_argument(
        "--workers",
        type=worker_count,
        default=1,
        metavar="N|auto",
        help="processes serving the one port (auto: one per core); more than 1 needs a redis:// store",
    )
    serve.set_defaults(func=cmd_serve)

    stdio = sub.add_parser(
        "stdio", help="serve one MCP client over stdin/stdout (a sidecar for clients that launch local servers)"
    )
    stdio.add_argument("--config", required=True)
    stdio.add_argument(
        "--credential-env",
        default="MCP_GATEWAY_API_KEY",
        metavar="NAME",
        help="environment variable holding the identity's credential (default: %(default)s)",
    )
    stdio.add_argument(
        "--task-token-env",
        default="MCP_GATEWAY_TASK_TOKEN",
        metavar="NAME",
        help="environment variable holding a task token to bind every request to (default: %(default)s)",
    )
    stdio.set_defaults(func=cmd_stdio)

    check = sub.add_parser("check", help="validate a config and report every problem")
    check.add_argument("--config", required=True)
    check.add_argument("--no-upstreams", action="store_true", help="do not connect to upstreams to list tools")
    check.set_defaults(func=cmd_check)

    keygen = sub.add_parser("keygen", help="print a new API key and the SHA-256 to put in config")
    keygen.add_argument("--prefix", default="mgw_")
    keygen.set_defaults(func=cmd_keygen)

    explain = sub.add_parser("explain", help="show which policies apply to a call and the decision")
    explain.add_argument("--config", required=True)
    explain.add_argument("--identity", required=True)
    explain.add_argument("--task", help="task id to bind")
    explain.add_argument("--context", help="task context as JSON")
    explain.add_argument("--tool", required=True, help="exposed tool name, e.g. demo__get_customer")
    explain.add_argument("--args", default="{}", help="tool arguments as JSON")
    explain.set_defaults(func=cmd_explain)

    audit = sub.add_parser("audit", help="read the audit stream")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    tail = audit_sub.add_parser("tail", help="print recent audit records (Redis store only)")
    tail.add_argument("--config", required=True)
    tail.add_argument("-n", "--count", type=int, default=20)
    tail.add_argument("-f", "--follow", action="store_true")
    tail.set_defaults(func=cmd_audit_tail)

    tools = sub.add_parser("tools", help="review and approve changed tool definitions (pinning)")
    tools_sub = tools.add_subparsers(dest="tools_command", required=True)
    diff = tools_sub.add_parser("diff", help="show pinned vs changed definitions (exit 1 when any changed)")
    diff.add_argument("--config", required=True)
    diff.add_argument("--upstream", help="only this upstream's tools")
    diff.set_defaults(func=cmd_tools_diff)
    approve = tools_sub.add_parser("approve", help="pin the changed definitions of tools (Redis store only)")
    approve.add_argument("--config", required=True)
    approve.add_argument("tools", nargs="*", metavar="TOOL", help="exposed tool name, e.g. demo__echo")
    approve.add_argument("--all", action="store_true", help="approve every changed definition")
    approve.add_argument("--sha256", help="approve only if the changed definition has this hash (the one reviewed)")
    approve.set_defaults(func=cmd_tools_approve)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    raise SystemExit(args.func(args))


if __name__ == "__main__":
    main()
