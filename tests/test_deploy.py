"""Offline checks of everything under ``deploy/``: YAML, compose, Kubernetes, Grafana, scripts, units.

No Docker engine, cluster or network is needed. Optional tools sharpen the checks when present and are
skipped otherwise: ``jsonschema`` (compose-spec schema shipped in deploy/schemas), ``kubernetes-validate``
(Kubernetes OpenAPI schemas, offline), ``shellcheck``, ``hadolint``, ``promtool`` (PromQL syntax),
``kubectl`` (kustomize build), ``tree_sitter_powershell`` (build.ps1 syntax). The full build of
``deploy/build.sh`` runs only with ``LLM_GATEWAY_DEPLOY_BUILD_TEST=1`` (it downloads from PyPI).
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
CONFIG_PATH = "/etc/llm-gateway/gateway.yaml"
DEFAULT_DRAIN_S = 30.0

HISTOGRAMS = {"llm_gateway_request_duration_seconds", "llm_gateway_time_to_first_token_seconds"}
METRICS = HISTOGRAMS | {
    "llm_gateway_requests_total",
    "llm_gateway_tokens_total",
    "llm_gateway_upstream_errors_total",
    "llm_gateway_streams_in_flight",
    "llm_gateway_rate_limited_total",
    "llm_gateway_cache_requests_total",
}
ALLOWED_SERIES = METRICS | {h + s for h in HISTOGRAMS for s in ("_bucket", "_sum", "_count")}
K8S_KINDS = {"Deployment", "Service", "ConfigMap", "Secret", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"})


def load_docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def load_one(path: Path) -> Any:
    (doc,) = load_docs(path)
    return doc


def run(cmd: list[str], timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)


def seconds(value: Any) -> float:
    """Compose durations ("45s", "1m30s") and plain numbers, in seconds."""
    if isinstance(value, int | float):
        return float(value)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", str(value))
    assert parts, f"not a duration: {value!r}"
    return sum(float(n) * units[u] for n, u in parts)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_one(DEPLOY / "compose.yaml")


@pytest.fixture(scope="module")
def k8s() -> dict[str, list[dict[str, Any]]]:
    kustomization = load_one(K8S / "kustomization.yaml")
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for name in kustomization["resources"]:
        for doc in load_docs(K8S / name):
            by_kind.setdefault(doc["kind"], []).append(doc)
    return by_kind


@pytest.fixture(scope="module")
def pod(k8s: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    (deployment,) = k8s["Deployment"]
    return deployment["spec"]["template"]


def cluster_gateway_config(k8s: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    (configmap,) = k8s["ConfigMap"]
    return yaml.safe_load(configmap["data"]["gateway.yaml"])


# --- YAML everywhere -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses_to_mappings(path: Path) -> None:
    docs = load_docs(path)
    assert docs, f"{path} is empty"
    assert all(isinstance(d, dict) for d in docs)


# --- Docker Compose stack --------------------------------------------------------------------------


def test_compose_has_the_five_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"gateway", "otel-collector", "jaeger", "prometheus", "grafana"}
    assert "opentelemetry-collector-contrib" in compose["services"]["otel-collector"]["image"]
    assert compose["services"]["jaeger"]["image"].startswith("jaegertracing/all-in-one:")
    assert compose["services"]["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"


def test_compose_gateway_health_ports_config_and_shutdown(compose: dict[str, Any]) -> None:
    gw = compose["services"]["gateway"]
    assert "8080:8080" in gw["ports"]
    probe = gw["healthcheck"]["test"]
    assert probe[:3] == ["CMD", "python", "-c"] and "/health'" in probe[3]
    compile(probe[3], "healthcheck", "exec")
    assert f"./gateway.compose.yaml:{CONFIG_PATH}:ro" in gw["volumes"]
    assert gw["environment"]["LLM_GATEWAY_CONFIG"] == CONFIG_PATH
    drain = load_one(DEPLOY / "gateway.compose.yaml")["server"].get("drain_timeout_s", DEFAULT_DRAIN_S)
    assert gw["stop_signal"] == "SIGTERM" and seconds(gw["stop_grace_period"]) > drain
    assert (DEPLOY / gw["build"]["context"] / gw["build"]["dockerfile"]).resolve() == DEPLOY / "Dockerfile"


def test_compose_bind_mounts_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} missing"


def test_compose_matches_the_compose_spec_schema(compose: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((DEPLOY / "schemas" / "compose-spec.json").read_text(encoding="utf-8"))
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in
              jsonschema.Draft7Validator(schema).iter_errors(compose)]
    assert not errors


def test_traces_flow_gateway_to_collector_to_jaeger(compose: dict[str, Any]) -> None:
    env = compose["services"]["gateway"]["environment"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4317"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    collector = load_one(DEPLOY / "otel-collector.yaml")
    assert collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] == "0.0.0.0:4317"
    traces = collector["service"]["pipelines"]["traces"]
    for section in ("receivers", "processors", "exporters"):
        assert set(traces[section]) <= set(collector[section]), section
    assert set(collector["service"]["extensions"]) <= set(collector["extensions"])
    jaeger = [e for e in traces["exporters"] if e.startswith("otlp")]
    assert [collector["exporters"][e]["endpoint"] for e in jaeger] == ["jaeger:4317"]
    telemetry = load_one(DEPLOY / "gateway.compose.yaml").get("telemetry", {})
    assert telemetry.get("otlp_endpoint", env["OTEL_EXPORTER_OTLP_ENDPOINT"]) == env["OTEL_EXPORTER_OTLP_ENDPOINT"]


def test_prometheus_scrapes_the_gateway(compose: dict[str, Any]) -> None:
    jobs = {j["job_name"]: j for j in load_one(DEPLOY / "prometheus.yml")["scrape_configs"]}
    job = jobs["llm-gateway"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job["static_configs"][0]["targets"] == ["gateway:8080"]
    promtool = shutil.which("promtool")
    if promtool:
        result = run([promtool, "check", "config", str(DEPLOY / "prometheus.yml")])
        assert result.returncode == 0, result.stdout + result.stderr


# --- Grafana ---------------------------------------------------------------------------------------

_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NOT_METRICS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and",
                "or", "unless", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (strings, matchers, ranges, grouping and $vars dropped)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    s = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\$\{?\w+\}?", " ", s)
    s = _GROUPING.sub(" ", s)
    found = re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)\s*(\()?", s)
    return {m[1] for m in found if not m[2] and m[1].lower() not in _NOT_METRICS}


def dashboard_queries() -> list[str]:
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "llm-gateway.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        query = var.get("query")
        query = query.get("query", "") if isinstance(query, dict) else query or ""
        match = re.match(r"\s*label_values\(\s*(.+?)\s*,\s*\w+\s*\)\s*$", query)
        exprs += [match[1]] if match else []
    return exprs


def test_promql_metric_extraction_sees_through_functions_and_labels() -> None:
    expr = ('histogram_quantile(0.95, sum by (le, provider) (rate(foo_bucket{provider=~"$provider"}'
            '[$__rate_interval]))) / on (provider) group_left bar offset 5m')
    assert promql_metric_names(expr) == {"foo_bucket", "bar"}


def test_dashboard_uses_only_the_gateway_metrics_and_all_of_them() -> None:
    exprs = dashboard_queries()
    assert len(exprs) >= 10
    used: set[str] = set()
    for expr in exprs:
        names = promql_metric_names(expr)
        assert names, f"no metric in {expr!r}"
        assert names <= ALLOWED_SERIES, f"unknown metric {names - ALLOWED_SERIES} in {expr!r}"
        used |= names
    assert {re.sub(r"_(bucket|sum|count)$", "", n) if n.rsplit("_", 1)[0] in HISTOGRAMS else n
            for n in used} == METRICS


def test_dashboard_panels_and_provisioning_agree(compose: dict[str, Any]) -> None:
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "llm-gateway.json").read_text(encoding="utf-8"))
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    (sources,) = [load_one(p)["datasources"] for p in (DEPLOY / "grafana/provisioning/datasources").glob("*")]
    uids = {d["uid"] for d in sources}
    for panel in dash["panels"]:
        for ref in [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets", [])]:
            assert ref is None or ref["uid"] in uids, panel["title"]
    (provider,) = load_one(next((DEPLOY / "grafana/provisioning/dashboards").glob("*.yaml")))["providers"]
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"


def test_dashboard_promql_parses_with_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool not installed")
    rules = [{"record": f"dashboard:query_{i}", "expr": re.sub(r"\$__rate_interval", "1m",
                                                                   re.sub(r"\$provider", ".*", e))}
             for i, e in enumerate(dashboard_queries())]
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run([promtool, "check", "rules", str(tmp_path / "rules.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
