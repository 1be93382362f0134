"""The chart's alerting and access parts, rendered by `helm template` (and the consumer it makes,
defaulted by the real API server and built by the operator's builders): the PrometheusRule uses
only metrics the services export, the ServiceMonitor scrapes the metrics port, the NetworkPolicies
open the metrics port to Prometheus alone and the dashboard port to oauth2-proxy alone when it is
on, oauth2-proxy forwards to the aggregator, and the token and webhook Secrets reach the
aggregator's pods."""

from __future__ import annotations

import json
import re
import tempfile
from typing import Any

import pytest
import yaml
from aggregator.alerts import region_counts
from aggregator.notifier import RegionStatusCollector
from ingest.stats import WorkersCollector, WorkerStats
from k8s_helpers import CHART, Cluster
from prometheus_client import CollectorRegistry, generate_latest
from smartgrid_operator import builders

pytestmark = pytest.mark.k8s

CONSUMER = {"consumer.enabled": "true", "consumer.spec.kafka.bootstrapServers": "kafka:9092",
            "consumer.spec.influxdb.url": "http://influxdb:8086", "consumer.spec.redis.url": "redis://redis:6379/0"}


def render(cluster: Cluster, *sets: dict[str, str], release: str = "grid", namespace: str = "power") -> list[dict[str, Any]]:
    """``helm template`` with dotted keys set to YAML values (in a values file: ``--set`` would make
    ``0.3`` a string)."""
    values: dict[str, Any] = {}
    for overrides in sets:
        for dotted, raw in overrides.items():
            *path, last = dotted.split(".")
            node = values
            for part in path:
                node = node.setdefault(part, {})
            node[last] = yaml.safe_load(raw)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        yaml.safe_dump(values, file)
        file.flush()
        rendered = cluster.helm("template", release, str(CHART), "-n", namespace, "-f", file.name).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def exported_metric_names() -> set[str]:
    """Every sample name the aggregator's region collector and ingest's collector export, from
    the services' own code (one worker with a lagging partition, one region)."""
    registry = CollectorRegistry()
    region = RegionStatusCollector()
    region.counts = region_counts({"north": 10}, {"north": 2}, {("fault", "north"): 2})
    registry.register(region)
    workers = WorkersCollector()
    stats = WorkerStats(worker=0)
    stats.lag[0] = 5
    workers.update(stats.snapshot())
    registry.register(workers)
    text = generate_latest(registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_the_prometheus_rule_is_off_by_default(cluster: Cluster):
    assert not by_kind(render(cluster), "PrometheusRule")
    assert not by_kind(render(cluster), "ServiceMonitor")


def test_the_prometheus_rule_alerts_on_metrics_the_services_export_with_the_values_thresholds(cluster: Cluster):
    docs = render(cluster, {"alerts.prometheusRule.enabled": "true", "alerts.regionShare.offline": "0.35",
                            "alerts.regionShare.clockSkew": "0", "alerts.prometheusRule.ingestLagRecords": "5000",
                            "alerts.prometheusRule.labels.release": "kube-prometheus-stack"})
    (rule,) = by_kind(docs, "PrometheusRule").values()
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rules = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert set(rules) == {"SmartGridRegionMetersFault", "SmartGridRegionMetersOffline",
                          "SmartGridIngestLagging", "SmartGridDeadLetters"}  # clock_skew's threshold is 0: off
    offline = rules["SmartGridRegionMetersOffline"]
    assert offline["expr"] == ('max by (region) (smartgrid_region_meters_share{namespace="power", status="offline"}) '
                               ">= 0.35")
    assert offline["for"] == "5m" and offline["labels"] == {"severity": "warning", "status": "offline"}
    assert "{{ $labels.region }}" in offline["annotations"]["summary"]
    assert rules["SmartGridIngestLagging"]["expr"].endswith("> 5000")
    used = {name for r in rules.values() for name in re.findall(r"\b(smartgrid_[a-z_]+)\b", r["expr"])}
    assert used == {"smartgrid_region_meters_share", "smartgrid_ingest_partition_lag", "smartgrid_ingest_dead_lettered_total"}
    missing = used - exported_metric_names()
    assert not missing, f"the rule uses metrics no service exports: {missing}"


def test_the_service_monitor_scrapes_the_metrics_port_of_the_operators_services(cluster: Cluster):
    (monitor,) = by_kind(render(cluster, {"metrics.serviceMonitor.enabled": "true"}), "ServiceMonitor").values()
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    service = builders.build_service("grid", "power", "aggregator")
    assert "metrics" in {port["name"] for port in service["spec"]["ports"]}
    assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels / In expressions) selects ``labels``."""
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def ingress_to(policies: dict[str, dict[str, Any]], labels: dict[str, str], port: int) -> list[list[dict] | None]:
    """The ``from`` lists of every rule that lets traffic reach ``port`` of a pod with ``labels``
    (None: from anywhere)."""
    found = []
    for policy in policies.values():
        if not selects(policy["spec"]["podSelector"], labels):
            continue
        for rule in policy["spec"].get("ingress") or []:
            if any(p["port"] == port for p in rule.get("ports", [])):
                found.append(rule.get("from"))
    return found


def test_network_policies_open_the_metrics_port_to_prometheus_alone(cluster: Cluster):
    policies = by_kind(render(cluster, {"networkPolicy.enabled": "true"}, CONSUMER), "NetworkPolicy")
    prometheus = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                   "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]
    for component in ("ingest", "aggregator", "writer"):
        pod = builders.labels("grid-smartgrid", component)
        assert ingress_to(policies, pod, builders.METRICS_PORT) == [prometheus], component
    aggregator = builders.labels("grid-smartgrid", "aggregator")
    assert ingress_to(policies, aggregator, builders.HTTP_PORT) == [None]  # the dashboard, open (token optional)
    assert ingress_to(policies, builders.labels("grid-smartgrid", "ingest"), builders.HTTP_PORT) == []
    closed = by_kind(render(cluster, {"networkPolicy.enabled": "true", "metrics.allowedFrom": "null"}), "NetworkPolicy")
    assert ingress_to(closed, aggregator, builders.METRICS_PORT) == []


def test_oauth2_proxy_forwards_to_the_aggregator_and_is_the_only_way_to_the_dashboard_port(cluster: Cluster):
    proxy_values = {"auth.oauth2Proxy.enabled": "true", "auth.oauth2Proxy.issuerUrl": "https://login.example.com/realms/grid",
                    "auth.oauth2Proxy.existingSecret": "dashboard-oidc", "networkPolicy.enabled": "true"}
    docs = render(cluster, proxy_values, CONSUMER)
    (consumer,) = by_kind(docs, "SmartGridConsumer")  # its name
    deployment = by_kind(docs, "Deployment")["grid-smartgrid-oauth2-proxy"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("quay.io/oauth2-proxy/oauth2-proxy:")
    args = container["args"]
    # The Service the operator makes for the consumer's aggregator, on its dashboard port (80 -> http).
    aggregator_service = builders.build_service(consumer, "power", "aggregator")
    assert f"--upstream=http://{aggregator_service['metadata']['name']}.power.svc:80/" in args
    assert aggregator_service["spec"]["ports"][0] == {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    assert "--provider=oidc" in args and "--oidc-issuer-url=https://login.example.com/realms/grid" in args
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert secrets["OAUTH2_PROXY_CLIENT_SECRET"] == {"name": "dashboard-oidc", "key": "client-secret"}
    assert set(secrets) == {"OAUTH2_PROXY_CLIENT_ID", "OAUTH2_PROXY_CLIENT_SECRET", "OAUTH2_PROXY_COOKIE_SECRET"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    policies = by_kind(docs, "NetworkPolicy")
    proxy_pod = deployment["spec"]["template"]["metadata"]["labels"]
    (sources,) = ingress_to(policies, builders.labels(consumer, "aggregator"), builders.HTTP_PORT)
    assert sources is not None and len(sources) == 1 and selects(sources[0]["podSelector"], proxy_pod)
    assert not selects(sources[0]["podSelector"], builders.labels(consumer, "ingest"))
    assert ingress_to(policies, proxy_pod, 4180) == [None]
    assert by_kind(docs, "Service")["grid-smartgrid-oauth2-proxy"]["spec"]["ports"][0]["targetPort"] == "http"
    # A proxy without its issuer or Secret is refused by the values schema.
    result = cluster.helm("template", "grid", str(CHART), "--set", "auth.oauth2Proxy.enabled=true", check=False)
    assert result.returncode != 0 and "issuerUrl" in result.stderr + result.stdout


def test_the_token_and_webhook_secrets_reach_only_the_aggregators_pods(cluster: Cluster, namespace: str):
    values = {"auth.apiToken.enabled": "true", "auth.apiToken.secretName": "dashboard-token",
              "alerts.webhook.enabled": "true", "alerts.webhook.secretName": "alert-hook", "alerts.webhook.format": "slack",
              "alerts.regionShare.fault": "0.3", "alerts.for": "2m"}
    docs = render(cluster, values, CONSUMER, namespace=namespace)
    (sgc,) = [doc for doc in docs if doc["kind"] == "SmartGridConsumer"]
    # The real API server validates and defaults the spec from the CRD, as for a real install.
    stored = json.loads(cluster.kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-",
                                        stdin=yaml.safe_dump(sgc)).stdout)
    spec = stored["spec"]
    assert spec["aggregator"]["apiTokenSecret"] == {"name": "dashboard-token", "key": "token"}
    assert spec["aggregator"]["alerts"]["clearRatio"] == 0.8  # defaulted by the CRD
    manifests = {(m["kind"], m["metadata"]["name"]): m for m in builders.build_all(sgc["metadata"]["name"], namespace, spec, 8)}
    name = sgc["metadata"]["name"]
    env = {e["name"]: e for e in manifests[("Deployment", f"{name}-aggregator")]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SMARTGRID_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "dashboard-token", "key": "token"}
    assert env["SMARTGRID_ALERT_WEBHOOK_URL"]["valueFrom"]["secretKeyRef"] == {"name": "alert-hook", "key": "url"}
    assert env["SMARTGRID_ALERT_FORMAT"]["value"] == "slack" and env["SMARTGRID_ALERT_FAULT_SHARE"]["value"] == "0.3"
    assert env["SMARTGRID_ALERT_FOR"]["value"] == "2m"
    writer = manifests[("Deployment", f"{name}-writer")]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert not [e["name"] for e in writer if e["name"].startswith(("SMARTGRID_API_", "SMARTGRID_ALERT_"))]
    result = cluster.helm("template", "grid", str(CHART), "--set", "auth.apiToken.enabled=true", check=False)
    assert result.returncode != 0 and "secretName" in result.stderr + result.stdout
