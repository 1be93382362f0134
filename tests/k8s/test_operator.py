"""The operator, run as a process, against the real API server and the real Kafka."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest
from confluent_kafka.admin import NewPartitions
from k8s_helpers import KAFKA, Cluster, wait_for

pytestmark = pytest.mark.k8s

HASH = "smartgrid.io/config-hash"
OWNED_SELECTOR = "smartgrid.io/consumer={name},app.kubernetes.io/managed-by=smartgrid-operator"


def consumer(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    body = {
        "kafka": {"bootstrapServers": KAFKA},  # the Kafka the tests create their topics on
        "influxdb": {"url": "http://influxdb:8086"},
        "redis": {"url": "redis://redis:6379/0"},
    }
    for key, value in spec.items():
        body[key] = {**body.get(key, {}), **value} if isinstance(value, dict) else value
    return {
        "apiVersion": "smartgrid.io/v1alpha1",
        "kind": "SmartGridConsumer",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def statefulset_replicas(cluster: Cluster, name: str, namespace: str, replicas: int):
    sts = cluster.get("statefulset", f"{name}-ingest", namespace)
    return sts if sts and sts["spec"]["replicas"] == replicas else None


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), {})


def event_reasons(cluster: Cluster, namespace: str, name: str) -> set[str]:
    result = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}", "-o", "json"
    )
    return {event["reason"] for event in json.loads(result.stdout)["items"]}


def test_consumer_yields_a_statefulset_with_one_replica_per_partition_range(cluster, namespace, operator, topic):
    cluster.apply(consumer("grid", namespace, kafka={"topic": topic, "groupId": f"{topic}-group"}))

    sts = wait_for(
        lambda: statefulset_replicas(cluster, "grid", namespace, 4), 60, "4 ingest replicas for 32 partitions"
    )
    ranges = cluster.get("configmap", "grid-partitions", namespace)["data"]
    assert ranges == {"replica-0": "0-7", "replica-1": "8-15", "replica-2": "16-23", "replica-3": "24-31"}
    command = sts["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "SMARTGRID_PARTITIONS" in command[-1]
    owner = sts["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("SmartGridConsumer", "grid", True)
    # The operator applies its objects one after the other: the others may trail the StatefulSet.
    for kind in KINDS:
        for component in ("aggregator", "writer"):
            wait_for(lambda: cluster.get(kind, f"grid-{component}", namespace), 30, f"{kind} grid-{component}")
    wait_for(lambda: cluster.get("poddisruptionbudget", "grid-ingest", namespace), 30, "the ingest PDB")

    def status_filled():
        body = cluster.get("sgc", "grid", namespace)
        status = body.get("status", {})
        ready = condition(status, "Ready").get("status") == "True"
        return body if ready and status.get("readyReplicas") == 4 and "consumerLag" in status else None

    body = wait_for(status_filled, 90, "status Ready with 4 ready replicas and a consumer lag")
    status = body["status"]
    assert status["partitions"] == 32 and status["replicas"] == 4
    assert status["observedGeneration"] == body["metadata"]["generation"]
    assert [r["partitions"] for r in status["partitionRanges"]] == ["0-7", "8-15", "16-23", "24-31"]
    assert status["consumerLag"] == 0
    assert condition(status, "KafkaReachable")["status"] == "True"
    assert condition(status, "Progressing")["status"] == "False"
    assert "smartgrid.io/finalizer" in body["metadata"]["finalizers"]
    assert "Applied" in event_reasons(cluster, namespace, "grid")


def test_adding_partitions_to_the_topic_rescales_within_60_seconds(cluster, namespace, operator, topic, kafka_admin):
    cluster.apply(consumer("grid", namespace, kafka={"topic": topic}))
    before = wait_for(lambda: statefulset_replicas(cluster, "grid", namespace, 4), 60, "4 replicas for 32 partitions")

    kafka_admin.create_partitions([NewPartitions(topic, 48)])[topic].result(timeout=30)

    after = wait_for(lambda: statefulset_replicas(cluster, "grid", namespace, 6), 60, "6 replicas for 48 partitions")
    ranges = cluster.get("configmap", "grid-partitions", namespace)["data"]
    assert ranges["replica-4"] == "32-39" and ranges["replica-5"] == "40-47"
    # 16 new partitions are two whole ranges: the running replicas keep theirs and do not restart.
    template_hash = lambda sts: sts["spec"]["template"]["metadata"]["annotations"][HASH]  # noqa: E731
    assert template_hash(after) == template_hash(before)
    wait_for(
        lambda: cluster.get("sgc", "grid", namespace)["status"].get("partitions") == 48, 30, "status.partitions 48"
    )
    wait_for(lambda: "Rescaled" in event_reasons(cluster, namespace, "grid"), 30, "a Rescaled event")


def test_a_spec_change_rolls_the_workloads(cluster, namespace, operator):
    cluster.apply(consumer("pinned", namespace, kafka={"partitions": 16, "topic": "k8s-test-absent"}))
    first = wait_for(
        lambda: statefulset_replicas(cluster, "pinned", namespace, 2), 60, "2 replicas for 16 pinned partitions"
    )
    # The operator applies its objects one after the other: the writer may trail the StatefulSet.
    writer = wait_for(lambda: cluster.get("deployment", "pinned-writer", namespace), 30, "the writer Deployment")

    cluster.kubectl(
        "patch", "sgc", "pinned", "-n", namespace, "--type=merge", "-p", '{"spec":{"ingest":{"batchSize":5000}}}'
    )

    def rolled():
        sts = cluster.get("statefulset", "pinned-ingest", namespace)
        changed = (
            sts["spec"]["template"]["metadata"]["annotations"][HASH]
            != first["spec"]["template"]["metadata"]["annotations"][HASH]
        )
        return sts if changed else None

    sts = wait_for(rolled, 30, "a new pod template hash on the StatefulSet")
    assert sts["metadata"]["generation"] > first["metadata"]["generation"]
    old_hash = writer["spec"]["template"]["metadata"]["annotations"][HASH]

    def writer_rolled():
        new_writer = cluster.get("deployment", "pinned-writer", namespace)
        return new_writer and new_writer["spec"]["template"]["metadata"]["annotations"][HASH] != old_hash

    wait_for(writer_rolled, 30, "a new pod template hash on the writer Deployment")
    assert cluster.get("configmap", "pinned-config", namespace)["data"]["KAFKA_BATCH_SIZE"] == "5000"
    wait_for(
        lambda: cluster.get("statefulset", "pinned-ingest", namespace)["status"].get("updateRevision")
        != first["status"].get("updateRevision"),
        30,
        "the StatefulSet controller to start a new revision",
    )
    body = wait_for(
        lambda: (b := cluster.get("sgc", "pinned", namespace))["status"].get("observedGeneration")
        == b["metadata"]["generation"]
        and b,
        30,
        "status.observedGeneration to catch up",
    )
    # The topic does not exist: the pinned partition count still plans, and the status says why Kafka is not usable.
    assert condition(body["status"], "KafkaReachable")["status"] == "False"


def test_paused_scales_ingest_to_zero(cluster, namespace, operator):
    cluster.apply(consumer("pinned", namespace, kafka={"partitions": 8, "topic": "k8s-test-absent"}))
    wait_for(lambda: statefulset_replicas(cluster, "pinned", namespace, 1), 60, "1 replica")
    cluster.kubectl("patch", "sgc", "pinned", "-n", namespace, "--type=merge", "-p", '{"spec":{"paused":true}}')
    wait_for(lambda: statefulset_replicas(cluster, "pinned", namespace, 0), 30, "0 replicas while paused")
    wait_for(
        lambda: condition(cluster.get("sgc", "pinned", namespace)["status"], "Ready").get("reason") == "Paused",
        30,
        "Ready=False/Paused",
    )


def test_deleting_the_consumer_removes_everything_it_owned(cluster, namespace, operator):
    cluster.apply(consumer("doomed", namespace, kafka={"partitions": 8}))
    wait_for(lambda: statefulset_replicas(cluster, "doomed", namespace, 1), 60, "the StatefulSet")
    selector = OWNED_SELECTOR.format(name="doomed")
    kinds = "statefulsets,deployments,services,configmaps,poddisruptionbudgets"
    assert len(cluster.names(kinds, namespace, selector)) >= 8

    cluster.kubectl("delete", "sgc", "doomed", "-n", namespace, "--timeout=60s")

    assert cluster.get("sgc", "doomed", namespace) is None
    wait_for(lambda: cluster.names(kinds, namespace, selector) == [], 60, "owned objects to be gone")
    wait_for(lambda: cluster.names("pods", namespace, "smartgrid.io/consumer=doomed") == [], 60, "pods to be gone")


# ------------------------------------------------------------- helm uninstall's pre-delete hook


def delete_consumer_hook(cluster: Cluster, namespace: str, name: str, timeout: float) -> subprocess.CompletedProcess:
    """What the chart's pre-delete hook Job runs (its image's entrypoint is python -m smartgrid_operator)."""
    return subprocess.run(
        [sys.executable, "-m", "smartgrid_operator", "delete-consumer", namespace, name, f"--timeout={timeout}"],
        env=cluster.env, capture_output=True, text=True, timeout=timeout + 60,
    )


def hook_messages(result: subprocess.CompletedProcess) -> list[str]:
    return [json.loads(line)["msg"] for line in result.stdout.splitlines() if line.startswith("{")]


def test_the_uninstall_hook_deletes_the_consumer_while_the_operator_releases_it(cluster, namespace, operator):
    cluster.apply(consumer("grid", namespace, kafka={"partitions": 8}))
    wait_for(lambda: statefulset_replicas(cluster, "grid", namespace, 1), 60, "the StatefulSet")
    wait_for(lambda: "smartgrid.io/finalizer" in cluster.get("sgc", "grid", namespace)["metadata"].get("finalizers", []),
             30, "the operator's finalizer")

    result = delete_consumer_hook(cluster, namespace, "grid", timeout=60)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "consumer {}/grid: gone".format(namespace) in hook_messages(result)
    assert cluster.get("sgc", "grid", namespace) is None
    selector = OWNED_SELECTOR.format(name="grid")
    wait_for(lambda: cluster.names("statefulsets,deployments,services,configmaps", namespace, selector) == [], 60,
             "owned objects to be gone")
    # Run again (a retried uninstall): nothing to do, still a success.
    again = delete_consumer_hook(cluster, namespace, "grid", timeout=5)
    assert again.returncode == 0 and f"consumer {namespace}/grid: absent, nothing to delete" in hook_messages(again)


def test_without_an_operator_the_uninstall_hook_removes_the_finalizer_after_its_timeout(cluster, namespace):
    body = consumer("orphan", namespace)
    # What a stopped operator leaves: its finalizer, and another one that is not ours to remove.
    body["metadata"]["finalizers"] = ["smartgrid.io/finalizer"]
    cluster.apply(body)
    started = time.monotonic()

    result = delete_consumer_hook(cluster, namespace, "orphan", timeout=3)

    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started >= 3
    assert any("no operator removed its finalizer within 3 s" in m for m in hook_messages(result)), result.stdout
    assert cluster.get("sgc", "orphan", namespace) is None


def test_the_uninstall_hook_never_removes_a_finalizer_that_is_not_the_operators(cluster, namespace):
    body = consumer("held", namespace)
    body["metadata"]["finalizers"] = ["smartgrid.io/finalizer", "example.com/backup"]
    cluster.apply(body)
    try:
        result = delete_consumer_hook(cluster, namespace, "held", timeout=2)
        assert result.returncode == 1
        stored = cluster.get("sgc", "held", namespace)
        assert stored["metadata"]["finalizers"] == ["example.com/backup"]
        assert any("held by the finalizers ['example.com/backup']" in m for m in hook_messages(result)), result.stdout
    finally:
        cluster.kubectl("patch", "sgc", "held", "-n", namespace, "--type=merge", "-p", '{"metadata":{"finalizers":null}}',
                        check=False)


# ----------------------------------------------------------------------------- only what it owns

THEIRS = {"app": "someone-elses"}
KINDS = ("deployment", "service")


def foreign_deployment(name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    """A Deployment someone else made, with a name the operator would use."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": THEIRS},
            "template": {
                "metadata": {"labels": THEIRS},
                "spec": {"containers": [{"name": "theirs", "image": "example.org/theirs:1"}]},
            },
        },
    }


def foreign_service(name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    """A Service someone else made, with a name the operator would use."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"selector": THEIRS, "ports": [{"name": "theirs", "port": 9999, "protocol": "TCP"}]},
    }


def what_the_owner_controls(obj: dict[str, Any]) -> dict[str, Any]:
    """The parts of an object another field manager must not change: identity, labels, owners, spec."""
    meta = obj["metadata"]
    return {
        "uid": meta["uid"],
        "labels": meta.get("labels"),
        "ownerReferences": meta.get("ownerReferences"),
        "spec": obj["spec"],
    }


def managers(obj: dict[str, Any]) -> set[str]:
    return {entry["manager"] for entry in obj["metadata"].get("managedFields", [])}


def events(cluster: Cluster, namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
    """Events about the consumer ``name`` with ``reason``."""
    result = cluster.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        f"involvedObject.name={name},reason={reason}",
        "-o",
        "json",
    )
    return json.loads(result.stdout)["items"]


def wait_for_resyncs(cluster: Cluster, name: str, namespace: str, count: int = 2) -> None:
    """Wait until the operator has written the status ``count`` more times (each a full reconcile)."""
    for _ in range(count):
        before = cluster.get("sgc", name, namespace).get("status", {}).get("lastSync")
        wait_for(
            lambda: cluster.get("sgc", name, namespace).get("status", {}).get("lastSync") != before,
            30,
            "the next resync",
        )


def ready_reason(cluster: Cluster, name: str, namespace: str) -> str | None:
    return condition(cluster.get("sgc", name, namespace).get("status", {}), "Ready").get("reason")


def test_a_foreign_deployment_and_service_of_the_same_name_are_left_untouched_and_reported(
    cluster, namespace, operator
):
    cluster.apply(foreign_deployment("grid-writer", namespace, {"team": "billing"}))
    cluster.apply(foreign_service("grid-writer", namespace, {"team": "billing"}))
    before = {kind: what_the_owner_controls(cluster.get(kind, "grid-writer", namespace)) for kind in KINDS}

    cluster.apply(consumer("grid", namespace, kafka={"partitions": 8, "topic": "k8s-test-absent"}))

    wait_for(lambda: ready_reason(cluster, "grid", namespace) == "ForeignObject", 60, "Ready=False/ForeignObject")
    status = cluster.get("sgc", "grid", namespace)["status"]
    ready = condition(status, "Ready")
    assert ready["status"] == "False"
    assert "Deployment/grid-writer" in ready["message"] and "Service/grid-writer" in ready["message"]
    assert sorted(status["foreignObjects"]) == ["Deployment/grid-writer", "Service/grid-writer"]
    warnings = wait_for(
        lambda: (found := events(cluster, namespace, "grid", "ForeignObject")) and len(found) == 2 and found,
        30,
        "a ForeignObject event per foreign object",
    )
    assert {event["type"] for event in warnings} == {"Warning"}
    messages = sorted(event["message"] for event in warnings)
    assert messages[0].startswith("Deployment/grid-writer exists and is not owned by SmartGridConsumer grid")
    assert f"kubectl -n {namespace} delete deployment grid-writer" in messages[0]
    assert messages[1].startswith("Service/grid-writer exists and is not owned")

    # What the consumer owns is still made: the ingest StatefulSet and the aggregator.
    wait_for(lambda: statefulset_replicas(cluster, "grid", namespace, 1), 30, "the ingest StatefulSet")
    aggregator = wait_for(lambda: cluster.get("deployment", "grid-aggregator", namespace), 30, "the aggregator")
    owner_uid = cluster.get("sgc", "grid", namespace)["metadata"]["uid"]
    assert aggregator["metadata"]["ownerReferences"][0]["uid"] == owner_uid

    wait_for_resyncs(cluster, "grid", namespace)
    for kind in KINDS:
        after = cluster.get(kind, "grid-writer", namespace)
        assert what_the_owner_controls(after) == before[kind], f"the foreign {kind} was changed"
        assert "smartgrid-operator" not in managers(after)
    # Reported once, not on every resync.
    assert len(events(cluster, namespace, "grid", "ForeignObject")) == 2


def test_disabling_a_component_deletes_its_own_objects_but_never_a_foreign_one_of_the_same_name(
    cluster, namespace, operator
):
    # Someone else's writer, even carrying the operator's own labels: labels do not make it ours.
    copied_labels = {"smartgrid.io/consumer": "grid", "app.kubernetes.io/managed-by": "smartgrid-operator"}
    cluster.apply(foreign_deployment("grid-writer", namespace, copied_labels))
    cluster.apply(foreign_service("grid-writer", namespace, copied_labels))
    before = {kind: what_the_owner_controls(cluster.get(kind, "grid-writer", namespace)) for kind in KINDS}
    cluster.apply(consumer("grid", namespace, kafka={"partitions": 8, "topic": "k8s-test-absent"}))
    wait_for(lambda: ready_reason(cluster, "grid", namespace) == "ForeignObject", 60, "Ready=False/ForeignObject")
    for kind in KINDS:
        wait_for(lambda: cluster.get(kind, "grid-aggregator", namespace), 30, f"the aggregator {kind}")

    cluster.kubectl(
        "patch",
        "sgc",
        "grid",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"aggregator":{"enabled":false},"writer":{"enabled":false}}}',
    )

    for kind in KINDS:
        wait_for(lambda: cluster.get(kind, "grid-aggregator", namespace) is None, 30, f"aggregator {kind} deleted")
    # The writer is switched off, so its name is no longer needed: no longer a reason to be not Ready.
    wait_for(lambda: ready_reason(cluster, "grid", namespace) != "ForeignObject", 30, "Ready to leave ForeignObject")
    assert "foreignObjects" not in cluster.get("sgc", "grid", namespace)["status"]
    wait_for_resyncs(cluster, "grid", namespace)
    for kind in KINDS:
        after = cluster.get(kind, "grid-writer", namespace)
        assert after is not None, f"the foreign {kind} grid-writer was deleted"
        assert what_the_owner_controls(after) == before[kind], f"the foreign {kind} was changed"

    # Deleting the consumer removes what it owned, and still not the foreign objects with its labels.
    cluster.kubectl("delete", "sgc", "grid", "-n", namespace, "--timeout=60s")
    wait_for(lambda: cluster.get("statefulset", "grid-ingest", namespace) is None, 60, "the owned StatefulSet gone")
    for kind in KINDS:
        assert what_the_owner_controls(cluster.get(kind, "grid-writer", namespace)) == before[kind]


# ----------------------------------------------------------------------------- Kafka credentials

# Credentials in the operator's own environment, which it must never use for a consumer.
OPERATOR_ENV = {
    "SMARTGRID_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "SMARTGRID_KAFKA_SASL_MECHANISM": "PLAIN",
    "SMARTGRID_KAFKA_SASL_USERNAME": "operator-env-user",
    "SMARTGRID_KAFKA_SASL_PASSWORD": "operator-env-password",
}


def secret(name: str, namespace: str, **data: str) -> dict[str, Any]:
    meta = {"name": name, "namespace": namespace}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "stringData": data}


@pytest.fixture
def operator_kube(monkeypatch):
    """The operator's own Kubernetes client, in this process, on the local control plane."""
    from k8s_helpers import KUBECONFIG

    from smartgrid_operator import kube

    monkeypatch.setenv("KUBECONFIG", str(KUBECONFIG))
    kube.api_client.cache_clear()
    yield kube
    kube.api_client.cache_clear()


def test_the_kafka_client_config_comes_from_the_secret_the_consumer_names_and_not_the_operators_env(
    cluster, namespace, operator_kube, monkeypatch
):
    # No SASL broker runs here: this checks what the operator would connect with, resolved
    # exactly as on every resync, against the real API server.
    from smartgrid_operator import kafka

    for variable, value in OPERATOR_ENV.items():
        monkeypatch.setenv(variable, value)
    cluster.apply(secret("kafka-user", namespace, user="grid-user", **{"pass": "grid-password"}))
    security = {
        "protocol": "SASL_SSL",
        "saslMechanism": "SCRAM-SHA-512",
        "credentialsSecret": {"name": "kafka-user", "usernameKey": "user", "passwordKey": "pass"},
    }
    cluster.apply(consumer("grid", namespace, kafka={"partitions": 8, "security": security}))
    # The spec as the API server defaulted and stored it, as the operator receives it.
    kafka_spec = cluster.get("sgc", "grid", namespace)["spec"]["kafka"]

    config = kafka.client_config(namespace, kafka_spec, 5.0)

    assert config["bootstrap.servers"] == KAFKA
    assert config["security.protocol"] == "SASL_SSL" and config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (config["sasl.username"], config["sasl.password"]) == ("grid-user", "grid-password")
    assert not set(OPERATOR_ENV.values()) & {str(value) for value in config.values()}

    # Read at check time, not cached: a rotated password is used on the next check.
    cluster.apply(secret("kafka-user", namespace, user="grid-user", **{"pass": "rotated"}))
    assert kafka.client_config(namespace, kafka_spec, 5.0)["sasl.password"] == "rotated"

    # A Secret of the same name in another namespace is never read: only the consumer's own.
    other = cluster.create_namespace("sg-other")
    cluster.apply(secret("kafka-user", other, user="other-user", **{"pass": "other-password"}))
    assert kafka.client_config(namespace, kafka_spec, 5.0)["sasl.username"] == "grid-user"


@pytest.mark.parametrize("operator", [OPERATOR_ENV], ids=["operator-env-has-credentials"], indirect=True)
def test_a_missing_kafka_secret_or_key_makes_the_consumer_not_ready_with_an_event_saying_what_to_create(
    cluster, namespace, operator
):
    # Port 9 refuses connections: once credentials resolve, the check fails fast as Unreachable.
    security = {"protocol": "SASL_PLAINTEXT", "saslMechanism": "PLAIN", "credentialsSecret": {"name": "kafka-user"}}
    cluster.apply(
        consumer("grid", namespace, kafka={"bootstrapServers": "127.0.0.1:9", "partitions": 8, "security": security})
    )

    wait_for(
        lambda: ready_reason(cluster, "grid", namespace) == "KafkaCredentialsMissing",
        60,
        "Ready=False/KafkaCredentialsMissing",
    )
    status = cluster.get("sgc", "grid", namespace)["status"]
    reachable = condition(status, "KafkaReachable")
    assert (reachable["status"], reachable["reason"]) == ("False", "CredentialsMissing")
    assert f"Secret {namespace}/kafka-user" in reachable["message"] and "not found" in reachable["message"]
    warning = wait_for(lambda: events(cluster, namespace, "grid", "KafkaCredentialsMissing"), 30, "a Warning event")
    assert warning[0]["type"] == "Warning"
    assert f"kubectl -n {namespace} create secret generic kafka-user" in warning[0]["message"]
    # The operator's env credentials were not used instead, and the workloads are still applied.
    wait_for(lambda: statefulset_replicas(cluster, "grid", namespace, 1), 30, "the ingest StatefulSet")

    # No crash loop, and no new event while nothing changes.
    wait_for_resyncs(cluster, "grid", namespace)
    assert operator.process.poll() is None and operator.healthy()
    assert len(events(cluster, namespace, "grid", "KafkaCredentialsMissing")) == 1

    cluster.apply(secret("kafka-user", namespace, username="grid-user"))
    wait_for(
        lambda: "has no (or an empty) password"
        in condition(cluster.get("sgc", "grid", namespace)["status"], "KafkaReachable").get("message", ""),
        30,
        "the condition to name the missing key",
    )
    wait_for(
        lambda: len(events(cluster, namespace, "grid", "KafkaCredentialsMissing")) == 2, 30, "an event naming the key"
    )

    cluster.apply(secret("kafka-user", namespace, username="grid-user", password="grid-password"))
    # With the Secret complete the operator goes on to the broker (which refuses: no SASL here).
    wait_for(lambda: ready_reason(cluster, "grid", namespace) == "KafkaUnreachable", 60, "Ready=False/KafkaUnreachable")
    assert condition(cluster.get("sgc", "grid", namespace)["status"], "KafkaReachable")["reason"] == "Unreachable"
