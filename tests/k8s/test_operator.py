"""The operator, run as a process, against the real API server and the real Kafka."""

from __future__ import annotations

import json
from typing import Any

import pytest
from confluent_kafka.admin import NewPartitions
from k8s_helpers import Cluster, wait_for

pytestmark = pytest.mark.k8s

HASH = "smartgrid.io/config-hash"
OWNED_SELECTOR = "smartgrid.io/consumer={name},app.kubernetes.io/managed-by=smartgrid-operator"


def consumer(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    body = {
        "kafka": {"bootstrapServers": "127.0.0.1:9092"},
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
    for kind in ("deployment", "service"):
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
