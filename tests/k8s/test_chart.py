"""The Helm chart: lint, every ci/*-values.yaml installs, `helm test` objects, operator RBAC,
the Grafana dashboards' ConfigMaps."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from k8s_helpers import CHART, Cluster, _binary

pytestmark = pytest.mark.k8s

SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))


def scenario_id(path: Path) -> str:
    return path.name.removesuffix("-values.yaml")


@pytest.mark.parametrize("values", SCENARIOS, ids=scenario_id)
def test_chart_lints_clean_in_strict_mode(cluster: Cluster, values: Path):
    result = cluster.helm("lint", "--strict", str(CHART), "-f", str(values))
    assert "0 chart(s) failed" in result.stdout, result.stdout


def test_values_schema_rejects_a_typo(cluster: Cluster):
    result = cluster.helm("template", "x", str(CHART), "--set", "operater.enabled=true", check=False)
    assert result.returncode != 0
    assert "operater" in result.stderr


@pytest.mark.parametrize("values", SCENARIOS, ids=scenario_id)
def test_every_ci_scenario_installs_and_its_workloads_become_ready(cluster: Cluster, values: Path, request):
    namespace = f"smartgrid-ci-{scenario_id(values)}"
    release = f"ci-{scenario_id(values)}"
    cluster.helm("uninstall", release, "-n", namespace, "--wait", check=False)
    try:
        cluster.helm(
            "install",
            release,
            str(CHART),
            "-n",
            namespace,
            "--create-namespace",
            "-f",
            str(values),
            "--wait",
            "--timeout",
            "180s",
            timeout=240,
        )
        manifest = cluster.helm("get", "manifest", release, "-n", namespace).stdout
        objects = [doc for doc in yaml.safe_load_all(manifest) if doc]
        for obj in objects:
            meta = obj["metadata"]
            found = cluster.kubectl(
                "get", obj["kind"], meta["name"], "-n", meta.get("namespace", namespace), check=False
            )
            assert found.returncode == 0, f"{obj['kind']}/{meta['name']} not in the cluster: {found.stderr}"
        workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
        for workload in workloads:
            pod = workload["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert all(c["securityContext"]["capabilities"]["drop"] == ["ALL"] for c in pod["containers"])
        if any(o["kind"] == "SmartGridConsumer" for o in objects):
            sgc = next(o for o in objects if o["kind"] == "SmartGridConsumer")
            stored = cluster.get("sgc", sgc["metadata"]["name"], namespace)
            assert stored["spec"]["ingest"]["image"], "the chart must fill in the ingest image"
    except AssertionError:
        print(f"\n----- kubectl get events -n {namespace} -----\n{cluster.events(namespace)}")
        print(cluster.kubectl("get", "all", "-n", namespace, "-o", "wide", check=False).stdout)
        raise
    finally:
        cluster.helm("uninstall", release, "-n", namespace, "--wait", "--timeout", "120s", check=False)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_helm_test_pod_checks_the_operator_and_the_demo_backends(cluster: Cluster):
    demo = CHART / "ci/demo-values.yaml"
    rendered = cluster.helm(
        "template", "demo", str(CHART), "-f", str(demo), "--show-only", "templates/tests/test-connection.yaml"
    ).stdout
    pod = yaml.safe_load(rendered)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["command"][-1]
    assert "operator-probe" in script and "influxdb:8086/ping" in script and "demo-aggregator:9102/healthz" in script


def test_influxdb_is_configured_with_tsi1_unlimited_values_per_tag_and_its_gc_settings(cluster: Cluster):
    rendered = cluster.helm(
        "template",
        "demo",
        str(CHART),
        "-f",
        str(CHART / "ci/demo-values.yaml"),
        "--show-only",
        "templates/influxdb.yaml",
    ).stdout
    docs = {d["kind"]: d for d in yaml.safe_load_all(rendered) if d}
    config = docs["ConfigMap"]["data"]["influxdb.conf"]
    assert 'index-version = "tsi1"' in config and "max-values-per-tag = 0" in config
    assert 'cache-snapshot-memory-size = "100m"' in config
    container = docs["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e["value"] for e in container["env"]} == {"GOGC": "200", "GOMEMLIMIT": "768MiB"}
    script = docs["Job"]["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    assert 'CREATE DATABASE "smart_grid_monitoring"' in script
    assert 'CREATE RETENTION POLICY "raw_data"' in script and "DEFAULT" in script
    assert 'CREATE RETENTION POLICY "aggregated_data"' in script


def test_the_demo_redis_keeps_its_keys_durable_and_never_evicts_them(cluster: Cluster):
    rendered = cluster.helm(
        "template", "demo", str(CHART), "-f", str(CHART / "ci/demo-values.yaml"), "--show-only", "templates/redis.yaml"
    ).stdout
    docs = {d["kind"]: d for d in yaml.safe_load_all(rendered) if d}
    args = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
    options = dict(zip(args[::2], args[1::2], strict=False))
    assert options["--appendonly"] == "yes" and options["--maxmemory-policy"] == "noeviction", args


def test_the_operator_has_no_kafka_credentials_of_its_own(cluster: Cluster):
    rendered = cluster.helm(
        "template", "x", str(CHART), "--show-only", "templates/operator-deployment.yaml"
    ).stdout
    container = yaml.safe_load(rendered)["spec"]["template"]["spec"]["containers"][0]
    assert not [e["name"] for e in container.get("env", []) if e["name"].startswith("SMARTGRID_KAFKA_")]


def test_the_removed_operator_kafka_values_fail_the_install_saying_what_replaced_them(cluster: Cluster):
    result = cluster.helm(
        "template", "x", str(CHART), "--set", "operator.kafka.credentialsSecret=operator-kafka", check=False
    )
    assert result.returncode != 0
    assert "operator.kafka.* was removed" in result.stderr
    assert "spec.kafka.security.credentialsSecret" in result.stderr


# What the operator does, and a sample of what it must not be able to do.
ALLOWED = [
    ("create", "statefulsets.apps"),
    ("patch", "statefulsets.apps"),
    ("delete", "statefulsets.apps"),
    ("create", "deployments.apps"),
    ("patch", "deployments.apps"),
    ("list", "deployments.apps"),
    ("create", "configmaps"),
    ("patch", "services"),
    ("delete", "poddisruptionbudgets.policy"),
    ("watch", "smartgridconsumers.smartgrid.io"),
    ("patch", "smartgridconsumers.smartgrid.io"),
    ("patch", "smartgridconsumers.smartgrid.io/status"),
    ("create", "events"),
    ("update", "smartgridconsumers.smartgrid.io/finalizers"),
    # The SASL Secret a consumer names, read by name for the Kafka checks.
    ("get", "secrets"),
]
DENIED = [
    ("list", "secrets"),
    ("watch", "secrets"),
    ("create", "secrets"),
    ("patch", "secrets"),
    ("create", "pods"),
    ("delete", "pods"),
    ("create", "pods/exec"),
    ("delete", "namespaces"),
    ("create", "smartgridconsumers.smartgrid.io"),
    ("delete", "smartgridconsumers.smartgrid.io"),
    ("update", "customresourcedefinitions.apiextensions.k8s.io"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("create", "roles.rbac.authorization.k8s.io"),
    ("update", "smartgridconsumers.smartgrid.io/status"),
    ("create", "serviceaccounts"),
    ("create", "jobs.batch"),
    ("update", "nodes"),
]


def can_i(cluster: Cluster, subject: str, verb: str, resource: str, namespace: str | None = None) -> str:
    """`kubectl auth can-i` as ``subject``; ``resource/sub`` checks the subresource."""
    resource, _, subresource = resource.partition("/")
    args = ["auth", "can-i", verb, resource, "--as", subject]
    if subresource:
        args += ["--subresource", subresource]
    if namespace:
        args += ["-n", namespace]
    return cluster.kubectl(*args, check=False).stdout.strip()


def test_the_operator_service_account_can_do_what_it_needs_and_nothing_more(cluster: Cluster):
    namespace = cluster.create_namespace("sg-rbac")
    release = "rbac"
    cluster.helm("install", release, str(CHART), "-n", namespace, timeout=180)
    subject = f"system:serviceaccount:{namespace}:{release}-smartgrid-operator"
    try:
        wrong = []
        for verb, resource in ALLOWED:
            for where in (namespace, "default"):
                if can_i(cluster, subject, verb, resource, where) != "yes":
                    wrong.append(f"cannot {verb} {resource} in {where}")
        for verb, resource in DENIED:
            if can_i(cluster, subject, verb, resource, namespace) != "no":
                wrong.append(f"can {verb} {resource}")
        assert can_i(cluster, subject, "watch", "customresourcedefinitions.apiextensions.k8s.io") == "yes"
        assert not wrong, "operator RBAC: " + "; ".join(wrong)
    finally:
        cluster.helm("uninstall", release, "-n", namespace, check=False)


def test_a_namespaced_operator_gets_rights_only_in_its_namespaces(cluster: Cluster):
    namespace = cluster.create_namespace("sg-rbacns")
    other = cluster.create_namespace("sg-other")
    release = "nsop"
    cluster.helm(
        "install",
        release,
        str(CHART),
        "-n",
        namespace,
        "--set",
        f"operator.watchNamespaces={{{namespace}}}",
        timeout=180,
    )
    subject = f"system:serviceaccount:{namespace}:{release}-smartgrid-operator"
    try:
        assert can_i(cluster, subject, "patch", "statefulsets.apps", namespace) == "yes"
        assert can_i(cluster, subject, "patch", "statefulsets.apps", other) == "no"
        assert can_i(cluster, subject, "list", "namespaces") == "no"
    finally:
        cluster.helm("uninstall", release, "-n", namespace, check=False)


def test_the_uninstall_hook_deletes_only_the_releases_consumer_before_anything_else():
    objects = [doc for doc in yaml.safe_load_all(helm_template("--set", "consumer.enabled=true", "--set",
               "consumer.name=grid", "--set", "consumer.uninstallTimeoutSeconds=45").stdout) if doc]
    hooks = {o["kind"]: o for o in objects if o["metadata"].get("annotations", {}).get("helm.sh/hook") == "pre-delete"}
    assert set(hooks) == {"ServiceAccount", "Role", "RoleBinding", "Job"}
    weights = {kind: int(o["metadata"]["annotations"]["helm.sh/hook-weight"]) for kind, o in hooks.items()}
    assert max(weights[k] for k in ("ServiceAccount", "Role", "RoleBinding")) < weights["Job"]
    assert all("hook-succeeded" in o["metadata"]["annotations"]["helm.sh/hook-delete-policy"] for o in hooks.values())
    assert hooks["Role"]["rules"] == [{"apiGroups": ["smartgrid.io"], "resources": ["smartgridconsumers"],
                                       "resourceNames": ["grid"], "verbs": ["get", "delete", "patch"]}]
    pod = hooks["Job"]["spec"]["template"]["spec"]
    operator = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-operator"))
    assert pod["containers"][0]["image"] == operator["spec"]["template"]["spec"]["containers"][0]["image"]
    assert pod["containers"][0]["args"] == ["delete-consumer", "sg", "grid", "--timeout=45"]
    assert pod["serviceAccountName"] == hooks["ServiceAccount"]["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    # Without a consumer of its own the release has nothing to delete first.
    plain = [doc for doc in yaml.safe_load_all(helm_template().stdout) if doc]
    assert not [o for o in plain if o["metadata"].get("annotations", {}).get("helm.sh/hook") == "pre-delete"]


# ---- Grafana dashboards: ConfigMaps for the Grafana sidecar ---------------------------------------
# `helm template` needs only the helm binary, not the control plane.

DASHBOARDS = CHART / "dashboards"
DOCS_DASHBOARDS = CHART.parents[1] / "docs/grafana"


def helm_template(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    helm = _binary("helm")
    if not helm:
        pytest.skip("helm not found: run scripts/k8s install")
    result = subprocess.run([helm, "template", "x", str(CHART), "-n", "sg", *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"helm template {' '.join(args)} failed:\n{result.stderr}")
    return result


def dashboard_configmaps(*args: str) -> list[dict]:
    objects = [doc for doc in yaml.safe_load_all(helm_template(*args).stdout) if doc]
    return [o for o in objects if o["kind"] == "ConfigMap" and any(k.endswith(".json") for k in o.get("data", {}))]


def test_docs_grafana_holds_the_charts_dashboards_unchanged():
    """docs/grafana/ (for import by hand) and the chart's dashboards/ (read by the ConfigMaps;
    Helm reads no file outside the chart) are the same files: edit dashboards/, then
    `cp helm/smartgrid/dashboards/*.json docs/grafana/`."""
    chart = {p.name: p.read_bytes() for p in DASHBOARDS.glob("*.json")}
    docs = {p.name: p.read_bytes() for p in DOCS_DASHBOARDS.glob("*.json")}
    assert chart and set(chart) == set(docs), f"dashboards/ {sorted(chart)} != docs/grafana/ {sorted(docs)}"
    differ = [name for name in chart if chart[name] != docs[name]]
    assert not differ, f"docs/grafana/ differs from helm/smartgrid/dashboards/ in {differ}: cp helm/smartgrid/dashboards/*.json docs/grafana/"


def test_grafana_dashboards_render_only_when_enabled_with_the_sidecar_label():
    assert dashboard_configmaps() == [], "dashboards render although grafana.dashboards.enabled is false"
    configmaps = dashboard_configmaps("--set", "grafana.dashboards.enabled=true")
    by_file = {key: (cm, text) for cm in configmaps for key, text in cm["data"].items()}
    assert set(by_file) == {p.name for p in DOCS_DASHBOARDS.glob("*.json")}
    for name, (cm, text) in by_file.items():
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["namespace"] == "sg" and "annotations" not in cm["metadata"]
        assert len(cm["data"]) == 1
        assert text == (DOCS_DASHBOARDS / name).read_text(), f"{name}: the ConfigMap's text differs from docs/grafana"
        assert json.loads(text)["uid"].startswith("smartgrid-")
    assert len({cm["metadata"]["name"] for cm in configmaps}) == len(configmaps)


def test_grafana_dashboards_label_namespace_and_folder_are_configurable():
    configmaps = dashboard_configmaps(
        "--set", "grafana.dashboards.enabled=true",
        "--set", "grafana.dashboards.label=dashboards.example.com/grafana",
        "--set", "grafana.dashboards.labelValue=smartgrid",
        "--set", "grafana.dashboards.namespace=monitoring",
        "--set", "grafana.dashboards.annotations.grafana_folder=Smart grid",
    )
    assert configmaps
    for cm in configmaps:
        meta = cm["metadata"]
        assert meta["labels"]["dashboards.example.com/grafana"] == "smartgrid" and "grafana_dashboard" not in meta["labels"]
        assert meta["namespace"] == "monitoring"
        assert meta["annotations"] == {"grafana_folder": "Smart grid"}


def test_grafana_values_schema_rejects_a_typo():
    result = helm_template("--set", "grafana.dashboards.enable=true", check=False)
    assert result.returncode != 0 and "enable" in result.stderr
