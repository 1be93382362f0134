"""End to end on real pods: the chart with the demo values on the local control plane's real node
(`scripts/k8s up --node`: kubelet + containerd, kube-proxy, CoreDNS, the images of scripts/images
loaded into containerd). The kind suite's assertions (tests/e2e/e2e_checks.py) and what only real
containers show: the operator's pod runs, ingest pods consume from Kafka, points reach InfluxDB,
/api/live answers, the writer writes aggregates; probes pass; the containers run as uid 10001 on
a read-only root with their limits in their cgroups; `helm test` pods run on the kubelet; the
topic grows from 32 to 48 partitions and 6 replicas consume every partition, each exactly once; a
pod killed mid-stream loses nothing; a plain `helm uninstall` (its pre-delete hook deletes the
consumer while the operator runs) removes everything owned.

Skips (one line) when the control plane has no real node or the dependencies' stand-in images
(helm/smartgrid/ci/local-deps-values.yaml) are missing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import e2e_checks as checks
import pytest
from k8s_helpers import CHART, KUBECONFIG, REPO, Cluster, _binary

pytestmark = pytest.mark.e2e

NAMESPACE = os.environ.get("SMARTGRID_NODE_E2E_NAMESPACE", "smartgrid-node-e2e")
RELEASE = "e2e"
FULLNAME = f"{RELEASE}-smartgrid"
CONSUMER = "demo"
INFLUXDB = f"{FULLNAME}-influxdb"
TOPIC = "smart-grid-transactions"
DEPS_VALUES = CHART / "ci/local-deps-values.yaml"
VALUES = [CHART / "ci/demo-values.yaml", DEPS_VALUES, Path(__file__).with_name("node-values.yaml")]
PRODUCT_UID = 10001
PROBES = {
    "operator": ("livenessProbe",),
    "ingest": ("livenessProbe", "readinessProbe"),
    "aggregator": ("livenessProbe", "readinessProbe"),
    "writer": ("livenessProbe", "readinessProbe"),
}
# Log lines of the product's pods that are not failures (regular expressions).
EXPECTED_LOG_LINES = [
    # The operator's first reconciles while the release's Kafka is still starting, or before the
    # simulator's first record created the topic (kopf logs a temporary failure at ERROR and
    # retries; the consumer's Ready is checked on its own).
    r"Handler 'apply_spec' failed temporarily: cannot reach Kafka at ",
    r"Handler 'apply_spec' failed temporarily: topic '[^']+' is not available on ",
]


def _real_node(cluster: Cluster) -> str | None:
    result = cluster.kubectl("get", "nodes", "-l", "type=real", "-o", "json", check=False, timeout=20)
    if result.returncode != 0:
        return None
    for node in json.loads(result.stdout)["items"]:
        conditions = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}
        if conditions.get("Ready") == "True":
            return node["metadata"]["name"]
    return None


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    kubectl = _binary("kubectl")
    if not KUBECONFIG.exists() or not kubectl:
        pytest.skip(f"no local control plane ({KUBECONFIG} missing): run scripts/k8s up --node")
    found = Cluster(kubectl, _binary("helm"))
    if not _real_node(found):
        pytest.skip("the local control plane has no Ready real node: run scripts/k8s up --node")
    if not DEPS_VALUES.exists():
        pytest.skip(f"{DEPS_VALUES} missing (the dependencies' images of scripts/images)")
    return found


@pytest.fixture(scope="module")
def kubectl(cluster: Cluster):
    def run(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return cluster.kubectl("-n", NAMESPACE, *args, check=check, timeout=timeout)

    return run


@pytest.fixture(scope="module")
def release(cluster: Cluster, kubectl) -> Iterator[str]:
    """The demo release in a namespace whose pods run on the real node; yields the node's name."""
    # What a run that was killed left: its consumer's finalizer outlives the operator's pod.
    cluster.kubectl("-n", NAMESPACE, "patch", "sgc", CONSUMER, "--type=merge", "-p", '{"metadata":{"finalizers":null}}',
                    check=False)
    cluster.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "120s", check=False, timeout=180)
    cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false", check=False)
    checks.wait_for(
        lambda: "NotFound" in cluster.kubectl("get", "namespace", NAMESPACE, check=False).stderr,
        180, f"namespace {NAMESPACE} gone",
    )
    cluster.run(str(REPO / "scripts/k8s"), "node-namespace", NAMESPACE)
    values = [arg for path in VALUES for arg in ("-f", str(path))]
    started = time.monotonic()
    try:
        cluster.helm(
            "install", RELEASE, str(CHART), "-n", NAMESPACE, *values, "--wait", "--timeout", "10m", timeout=660
        )
        print(f"\nhelm install --wait: {time.monotonic() - started:.0f} s")
        yield _real_node(cluster)
    except AssertionError:
        print(checks.diagnostics(kubectl))
        raise
    finally:
        if os.environ.get("SMARTGRID_E2E_KEEP") != "1":
            uninstall(cluster, check=False)
            cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


@pytest.fixture(autouse=True)
def _diagnostics_on_failure(request: pytest.FixtureRequest, kubectl) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(checks.diagnostics(kubectl))


def uninstall(cluster: Cluster, check: bool = True) -> None:
    """docs/kubernetes.md, Uninstall: a plain `helm uninstall`. Its pre-delete hook deletes the
    release's consumer while the operator still runs and removes the consumer's finalizer."""
    cluster.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "180s", check=check, timeout=240)


def product_pods(kubectl) -> list[dict[str, Any]]:
    items = checks.get_json(kubectl, "pods")["items"]
    return [
        p for p in items if p["metadata"].get("labels", {}).get("app.kubernetes.io/component") in checks.PRODUCT_COMPONENTS
    ]


def ingest_pods(kubectl) -> list[dict[str, Any]]:
    return checks.pods(kubectl, f"smartgrid.io/consumer={CONSUMER},app.kubernetes.io/component=ingest")


def in_pod(kubectl, target: str, code: str, timeout: float = 120) -> str:
    """Runs Python in a product container (they all have python) and returns what it printed."""
    return kubectl("exec", target, "--", "python", "-c", code, timeout=timeout).stdout


def produce(records: list[tuple[str, int, int, float]], spread_s: float = 0.0) -> str:
    """The script that produces (meter, partition, ms, kwh) readings, keyed by meter, over
    ``spread_s`` seconds, run in the simulator's pod (its Kafka client and KAFKA_BROKERS)."""
    return f"""
import json, os, time
from confluent_kafka import Producer
records = {json.dumps(records)}
producer = Producer({{"bootstrap.servers": os.environ["KAFKA_BROKERS"], "enable.idempotence": True}})
pause = {spread_s} / max(len(records), 1)
for meter, partition, ms, kwh in records:
    value = {{"meter_id": meter, "timestamp": ms, "consumption_kwh": kwh, "region": "north", "status": "ok"}}
    producer.produce("{TOPIC}", key=meter.encode(), value=json.dumps(value).encode(), partition=partition)
    producer.poll(0)
    if pause:
        time.sleep(pause)
assert producer.flush(60) == 0, "undelivered records"
print("produced", len(records))
"""


def run_points(kubectl, run: str) -> dict[str, int]:
    query = (
        'SELECT COUNT("consumption_kwh") FROM "raw_data"."energy_consumption" '
        f"WHERE meter_id =~ /^{run}-/ GROUP BY meter_id"
    )
    return {s["tags"]["meter_id"]: int(s["values"][0][1]) for s in checks.influx_query(kubectl, INFLUXDB, query)}


def owned_partitions(kubectl, pod: str) -> set[int]:
    text = checks.proxy_get(kubectl, NAMESPACE, f"pods/{pod}:9102", "/metrics")
    return {int(p) for p in re.findall(r'^smartgrid_ingest_partition_lag\{partition="(\d+)"\}', text, re.M)}


QUANTITY = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def memory_bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", quantity).groups()
    return int(float(number) * QUANTITY[unit])


def cpu_millis(quantity: str) -> int:
    return int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)


# What the container sees of itself: its ids, whether / is writable, its cgroup's limits (v1 or v2).
SELF_REPORT = """
import json, os
def read(*paths):
    for path in paths:
        try:
            return open(path).read().split()
        except OSError:
            pass
    return None
try:
    open("/written-by-e2e", "w").close()
    root = "writable"
except OSError as error:
    root = error.strerror
mem = read("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
v2 = read("/sys/fs/cgroup/cpu.max")
cpu = [int(v2[0]), int(v2[1])] if v2 and v2[0] != "max" else None
if cpu is None and read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"):
    cpu = [int(read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")[0]), int(read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")[0])]
status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\\t" in line)
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "root": root, "memory": mem and mem[0], "cpu": cpu,
                  "no_new_privs": status.get("NoNewPrivs"), "cap_eff": status.get("CapEff")}))
"""


def test_the_consumer_becomes_ready_with_the_planned_replicas(release, kubectl):
    status = checks.consumer_ready(kubectl, CONSUMER, replicas=4)  # 32 partitions, 8 per replica
    assert status["partitions"] == 32
    assert len([p for p in ingest_pods(kubectl) if checks.ready(p)]) == 4


def test_every_pod_runs_on_the_real_node_and_its_probes_pass(release, kubectl):
    items = checks.get_json(kubectl, "pods")["items"]
    running = [p for p in items if p["status"].get("phase") != "Succeeded"]
    assert {p["spec"]["nodeName"] for p in items} == {release}
    not_ready = [p["metadata"]["name"] for p in running if not checks.ready(p)]
    assert not not_ready, f"not Ready: {not_ready}"
    components = {p["metadata"]["labels"].get("app.kubernetes.io/component") for p in running}
    assert {"operator", "ingest", "aggregator", "writer", "simulator", "kafka", "redis", "influxdb"} <= components
    for pod in product_pods(kubectl):
        component = pod["metadata"]["labels"]["app.kubernetes.io/component"]
        container = pod["spec"]["containers"][0]
        # The kubelet ran them: the pod is Ready (readiness) and still running (liveness). The
        # simulator serves nothing and has none.
        assert set(PROBES.get(component, ())) <= set(container), (component, sorted(container))
        # Started by the kubelet of the real node (kwok reports no container start).
        ids = [s.get("containerID", "") for s in pod["status"]["containerStatuses"]]
        assert all(i.startswith("containerd://") for i in ids), ids


def test_the_containers_run_as_10001_on_a_read_only_root_with_their_limits(release, kubectl):
    seen = set()
    for pod in product_pods(kubectl):
        component = pod["metadata"]["labels"]["app.kubernetes.io/component"]
        container = pod["spec"]["containers"][0]
        report = json.loads(in_pod(kubectl, pod["metadata"]["name"], SELF_REPORT))
        name = f"{pod['metadata']['name']} ({component})"
        assert report["uid"] == PRODUCT_UID and report["gid"] == PRODUCT_UID, (name, report)
        assert report["root"] == "Read-only file system", (name, report)
        assert report["no_new_privs"] == "1" and int(report["cap_eff"], 16) == 0, (name, report)
        limits = container.get("resources", {}).get("limits", {})
        assert "memory" in limits, f"{name} has no memory limit"
        assert int(report["memory"]) == memory_bytes(limits["memory"]), (name, limits, report)
        if "cpu" in limits:
            quota, period = report["cpu"]
            assert quota * 1000 // period == cpu_millis(limits["cpu"]), (name, limits, report)
        seen.add(component)
    assert seen == set(checks.PRODUCT_COMPONENTS)


def test_simulated_readings_reach_influxdb(release, kubectl):
    assert checks.raw_points_arrive(kubectl, INFLUXDB) > 0


def test_the_dashboard_api_serves_live_data(release, kubectl):
    assert checks.live_data(kubectl, NAMESPACE, f"{CONSUMER}-aggregator")["points"]


def test_the_writer_writes_aggregates(release, kubectl):
    assert checks.aggregates_arrive(kubectl, INFLUXDB) > 0


def test_helm_test_pods_run_on_the_kubelet_and_pass(release, cluster: Cluster, kubectl):
    result = cluster.helm("test", RELEASE, "-n", NAMESPACE, "--timeout", "5m", timeout=330)
    assert re.search(r"Phase:\s+Succeeded", result.stdout), result.stdout
    events = checks.get_json(kubectl, "events", "--field-selector", f"involvedObject.name={FULLNAME}-test")["items"]
    started = [e for e in events if e["reason"] == "Started"]
    assert started and all(e["source"].get("host") == release for e in started), events


def test_the_topic_grows_to_48_partitions_and_6_replicas_consume_each_partition_once(release, kubectl):
    in_pod(kubectl, f"deploy/{FULLNAME}-simulator", f"""
import os
from confluent_kafka.admin import AdminClient, NewPartitions
admin = AdminClient({{"bootstrap.servers": os.environ["KAFKA_BROKERS"]}})
admin.create_partitions([NewPartitions("{TOPIC}", 48)])["{TOPIC}"].result(30)
""")
    status = checks.consumer_ready(kubectl, CONSUMER, replicas=6, timeout=300)
    assert status["partitions"] == 48
    pods = checks.wait_for(
        lambda: (p := ingest_pods(kubectl)) and len(p) == 6 and all(checks.ready(x) for x in p) and p,
        300, "6 ingest pods Ready",
    )
    run = f"grow-{uuid.uuid4().hex[:6]}"
    now = int(time.time() * 1000)
    in_pod(kubectl, f"deploy/{FULLNAME}-simulator", produce([(f"{run}-p{p}", p, now, 1.0) for p in range(48)]))
    counts = checks.wait_for(lambda: len(c := run_points(kubectl, run)) == 48 and c, 300, "a point from every partition")
    assert set(counts.values()) == {1}
    owners: dict[int, list[str]] = {}
    for pod in pods:
        name = pod["metadata"]["name"]
        for partition in checks.wait_for(lambda n=name: owned_partitions(kubectl, n), 60, f"{name}'s partitions"):
            owners.setdefault(partition, []).append(name)
    assert sorted(owners) == list(range(48)), sorted(owners)
    assert all(len(names) == 1 for names in owners.values()), {p: n for p, n in owners.items() if len(n) > 1}


def test_a_pod_killed_mid_stream_loses_nothing(release, cluster: Cluster, kubectl):
    run = f"kill-{uuid.uuid4().hex[:6]}"
    start = int(time.time() * 1000) - 60_000
    records = [(f"{run}-p{p}", p, start + i * 1000, 1.0 + i) for i in range(20) for p in range(48)]
    script = produce(records, spread_s=20.0)
    producer = subprocess.Popen(
        [cluster.kubectl_bin, "-n", NAMESPACE, "exec", f"deploy/{FULLNAME}-simulator", "--", "python", "-c", script],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cluster.env,
    )
    try:
        time.sleep(6)
        victim = f"{CONSUMER}-ingest-2"
        kubectl("delete", "pod", victim, "--grace-period=0", "--force")
        out, _ = producer.communicate(timeout=180)
    finally:
        if producer.poll() is None:
            producer.kill()
    assert producer.returncode == 0 and f"produced {len(records)}" in out, out
    counts = checks.wait_for(
        lambda: (c := run_points(kubectl, run)) and sum(c.values()) == len(records) and c,
        300, f"all {len(records)} readings in InfluxDB",
    )
    assert counts == {f"{run}-p{p}": 20 for p in range(48)}
    checks.consumer_ready(kubectl, CONSUMER, replicas=6, timeout=300)


def test_the_product_pods_logged_no_unexpected_error(release, kubectl):
    assert checks.unexpected_log_lines(kubectl, EXPECTED_LOG_LINES) == {}


def test_a_plain_helm_uninstall_removes_everything_owned(release, cluster: Cluster, kubectl):
    uninstall(cluster)

    def left() -> list[str]:
        names = kubectl(
            "get", "all,sgc,configmaps,secrets,pvc,pdb,networkpolicies,serviceaccounts,roles,rolebindings,jobs",
            "-o", "name",
        ).stdout.split()
        return [n for n in names if n not in ("configmap/kube-root-ca.crt", "serviceaccount/default")] or None

    leftover = None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and (leftover := left()):
        time.sleep(3)
    assert not leftover, leftover
    cluster_wide = cluster.kubectl(
        "get", "clusterroles,clusterrolebindings", "-l", f"app.kubernetes.io/instance={RELEASE}", "-o", "name"
    ).stdout.split()
    assert not [n for n in cluster_wide if FULLNAME in n], cluster_wide
