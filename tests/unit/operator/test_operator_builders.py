"""The pure builders: a defaulted spec in, manifests and status out."""

from __future__ import annotations

import pytest
from sgc_specs import defaulted_spec

from smartgrid_operator import builders
from smartgrid_operator.builders import (
    build_all,
    build_ingest_statefulset,
    build_partitions_configmap,
    build_status,
    partition_ranges,
    replica_count,
)


@pytest.mark.parametrize(
    ("partitions", "k", "replicas"),
    [(32, 8, 4), (48, 8, 6), (33, 8, 5), (1, 8, 1), (0, 8, 0), (7, 1, 7), (12, 5, 3)],
)
def test_replicas_are_the_ceiling_of_partitions_over_partitions_per_replica(partitions, k, replicas):
    assert replica_count(partitions, k) == replicas


def test_replica_count_rejects_zero_partitions_per_replica():
    with pytest.raises(ValueError, match="partitionsPerReplica"):
        replica_count(8, 0)


def test_replica_i_owns_i_times_k_up_to_the_next_and_the_last_is_cut_at_the_count():
    assert partition_ranges(20, 8) == [(0, 7), (8, 15), (16, 19)]
    assert partition_ranges(32, 8) == [(0, 7), (8, 15), (16, 23), (24, 31)]


def test_every_partition_has_exactly_one_owner():
    for partitions in range(1, 70):
        for k in (1, 3, 8, 16):
            owned = [p for first, last in partition_ranges(partitions, k) for p in range(first, last + 1)]
            assert owned == list(range(partitions))


def test_partitions_configmap_has_one_range_per_replica_in_smartgrid_partitions_syntax():
    data = build_partitions_configmap("grid", "ns", 17, 8)["data"]
    assert data == {"replica-0": "0-7", "replica-1": "8-15", "replica-2": "16"}


def test_statefulset_runs_one_replica_per_range_and_reads_its_range_by_ordinal(spec):
    sts = build_ingest_statefulset("grid", "ns", spec, 32)
    assert sts["spec"]["replicas"] == 4
    assert sts["metadata"]["annotations"][builders.PARTITIONS_ANNOTATION] == "0-7,8-15,16-23,24-31"
    container = sts["spec"]["template"]["spec"]["containers"][0]
    script = container["command"][-1]
    assert "SMARTGRID_PARTITIONS" in script and "${HOSTNAME##*-}" in script
    assert {"name": "partitions", "mountPath": builders.PARTITIONS_DIR, "readOnly": True} in container["volumeMounts"]


def test_group_assignment_lets_kafka_balance_and_mounts_no_ranges():
    spec = defaulted_spec(ingest={"assignment": "group"})
    sts = build_ingest_statefulset("grid", "ns", spec, 32)
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "ingest"]
    assert all(m["name"] != "partitions" for m in container["volumeMounts"])


def test_paused_scales_ingest_to_zero_and_keeps_the_other_services():
    spec = defaulted_spec(paused=True)
    kinds = {(m["kind"], m["metadata"]["name"]): m for m in build_all("grid", "ns", spec, 32)}
    assert kinds[("StatefulSet", "grid-ingest")]["spec"]["replicas"] == 0
    assert kinds[("Deployment", "grid-aggregator")]["spec"]["replicas"] == 1


def _template_hash(manifest):
    return manifest["spec"]["template"]["metadata"]["annotations"][builders.CONFIG_HASH_ANNOTATION]


def test_a_spec_change_changes_the_pod_template_hash_so_pods_roll(spec):
    changed = defaulted_spec(ingest={"batchSize": 5000})
    assert _template_hash(build_ingest_statefulset("g", "n", spec, 32)) != _template_hash(
        build_ingest_statefulset("g", "n", changed, 32)
    )
    assert _template_hash(builders.build_deployment("g", "n", spec, "writer")) != _template_hash(
        builders.build_deployment("g", "n", changed, "writer")
    )


def test_adding_whole_multiples_of_k_only_adds_replicas_without_restarting_the_others(spec):
    assert _template_hash(build_ingest_statefulset("g", "n", spec, 32)) == _template_hash(
        build_ingest_statefulset("g", "n", spec, 48)
    )


def test_a_partition_count_that_changes_the_last_range_restarts_the_replicas(spec):
    assert _template_hash(build_ingest_statefulset("g", "n", spec, 30)) != _template_hash(
        build_ingest_statefulset("g", "n", spec, 32)
    )


def test_pods_are_hardened(spec):
    for manifest in build_all("g", "n", spec, 8):
        if manifest["kind"] not in ("StatefulSet", "Deployment"):
            continue
        pod = manifest["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        container = pod["containers"][0]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_configmap_keeps_the_original_variable_names():
    spec = defaulted_spec(kafka={"topic": "t", "groupId": "g", "dlqTopic": "dlq"})
    data = builders.build_configmap("g", "n", spec)["data"]
    assert data["KAFKA_BROKERS"] == "kafka:9092"
    assert data["KAFKA_TOPIC"] == "t"
    assert data["KAFKA_GROUP_ID"] == "g"
    assert data["KAFKA_BATCH_TIMEOUT"] == "500ms"
    assert data["SMARTGRID_KAFKA_FETCH_WAIT"] == "200ms"
    assert data["INFLUXDB_URL"] == "http://influxdb:8086"
    assert data["PROCESSOR_ENABLE_AGGREGATIONS"] == "true"
    assert data["SMARTGRID_DLQ_TOPIC"] == "dlq"
    assert all(isinstance(value, str) for value in data.values())
    assert not any("PASSWORD" in key for key in data)


@pytest.mark.parametrize(
    ("aggregator", "writer", "summaries", "rollups"),
    [(True, True, "true", "true"), (False, True, "false", "true"), (True, False, "true", "false"), (False, False, "false", "false")],
)
def test_nothing_is_published_to_redis_that_no_component_reads(aggregator, writer, summaries, rollups):
    spec = defaulted_spec(aggregator={"enabled": aggregator}, writer={"enabled": writer})
    data = builders.build_configmap("g", "n", spec)["data"]
    assert data["PROCESSOR_ENABLE_AGGREGATIONS"] == summaries
    assert data["SMARTGRID_EMIT_ROLLUPS"] == rollups


def test_credentials_come_from_secret_key_refs_never_from_the_configmap():
    spec = defaulted_spec(
        kafka={
            "security": {
                "protocol": "SASL_SSL",
                "saslMechanism": "SCRAM-SHA-512",
                "credentialsSecret": {"name": "kafka-user"},
            }
        },
        influxdb={"credentialsSecret": {"name": "influx", "passwordKey": "pw"}},
        redis={"credentialsSecret": {"name": "redis"}},
    )
    env = build_ingest_statefulset("g", "n", spec, 8)["spec"]["template"]["spec"]["containers"][0]["env"]
    by_name = {item["name"]: item["valueFrom"]["secretKeyRef"] for item in env}
    assert by_name["SMARTGRID_KAFKA_SASL_USERNAME"] == {"name": "kafka-user", "key": "username"}
    assert by_name["SMARTGRID_KAFKA_SASL_PASSWORD"] == {"name": "kafka-user", "key": "password"}
    assert by_name["SMARTGRID_INFLUXDB_PASSWORD"] == {"name": "influx", "key": "pw"}
    assert by_name["SMARTGRID_REDIS_PASSWORD"] == {"name": "redis", "key": "password"}
    assert builders.build_config_data(spec)["SMARTGRID_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"


def test_disabled_components_are_not_built_and_are_reported_stale():
    spec = defaulted_spec(writer={"enabled": False})
    names = {m["metadata"]["name"] for m in build_all("g", "n", spec, 8)}
    assert "g-writer" not in names and "g-aggregator" in names
    assert builders.stale_components(spec) == ["writer"]


def test_every_owned_object_carries_the_selector_labels_the_delete_handler_uses(spec):
    for manifest in build_all("g", "n", spec, 8):
        labels = manifest["metadata"]["labels"]
        assert labels["smartgrid.io/consumer"] == "g"
        assert labels["app.kubernetes.io/managed-by"] == "smartgrid-operator"
        assert manifest["metadata"]["namespace"] == "n"


def _sts(replicas, ready, generation=1, observed=1):
    return {
        "metadata": {"generation": generation},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
        },
    }


def _deploy(replicas):
    return {
        "metadata": {"generation": 1},
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "availableReplicas": replicas,
        },
    }


def _status(spec, **kwargs):
    defaults = dict(
        spec=spec,
        generation=3,
        partitions=32,
        kafka_reachable=True,
        kafka_message="ok",
        consumer_lag=7,
        statefulset=_sts(4, 4),
        deployments={"aggregator": _deploy(1), "writer": _deploy(1)},
        previous_conditions=None,
        now="2025-01-01T00:00:00Z",
    )
    defaults.update(kwargs)
    return build_status(**defaults)


def _conditions(status):
    return {c["type"]: c for c in status["conditions"]}


def test_status_reports_partitions_replicas_ranges_lag_and_generation(spec):
    status = _status(spec)
    assert status["partitions"] == 32 and status["replicas"] == 4 and status["readyReplicas"] == 4
    assert status["consumerLag"] == 7 and status["observedGeneration"] == 3
    assert status["partitionRanges"][1] == {"replica": 1, "partitions": "8-15", "first": 8, "last": 15}
    conditions = _conditions(status)
    assert conditions["Ready"]["status"] == "True"
    assert conditions["KafkaReachable"]["status"] == "True"
    assert conditions["Progressing"]["status"] == "False"


def test_status_is_progressing_and_not_ready_while_replicas_start(spec):
    conditions = _conditions(_status(spec, statefulset=_sts(4, 2)))
    assert conditions["Ready"]["reason"] == "ReplicasNotReady"
    assert "ingest 2/4 ready" in conditions["Ready"]["message"]
    assert conditions["Progressing"]["status"] == "True"


def test_status_is_not_ready_when_kafka_is_unreachable(spec):
    conditions = _conditions(_status(spec, kafka_reachable=False, kafka_message="cannot reach Kafka"))
    assert conditions["Ready"]["reason"] == "KafkaUnreachable"
    assert conditions["KafkaReachable"]["status"] == "False"


def test_condition_transition_time_only_moves_when_the_status_flips(spec):
    first = _status(spec)
    later = _status(spec, previous_conditions=first["conditions"], now="2025-01-02T00:00:00Z")
    assert _conditions(later)["Ready"]["lastTransitionTime"] == "2025-01-01T00:00:00Z"
    flipped = _status(spec, statefulset=_sts(4, 1), previous_conditions=first["conditions"], now="2025-01-03T00:00:00Z")
    assert _conditions(flipped)["Ready"]["lastTransitionTime"] == "2025-01-03T00:00:00Z"


def test_missing_kafka_credentials_make_ready_false_even_while_paused():
    status = _status(
        defaulted_spec(paused=True),
        kafka_reachable=False,
        kafka_reason="CredentialsMissing",
        kafka_message="Secret grid/kafka-user (spec.kafka.security.credentialsSecret) not found: create it ...",
    )
    conditions = _conditions(status)
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == ("False", "KafkaCredentialsMissing")
    assert "Secret grid/kafka-user" in conditions["Ready"]["message"]
    assert (conditions["KafkaReachable"]["status"], conditions["KafkaReachable"]["reason"]) == (
        "False",
        "CredentialsMissing",
    )


# ----------------------------------------------------------------------------- ownership

UID = "0b6c9e3c-1111-4c5e-9d61-3b1f2c1a0001"


def _object(*owner_uids, labels=None):
    return {
        "metadata": {
            "name": "grid-writer",
            "labels": labels or {},
            "ownerReferences": [{"kind": "SmartGridConsumer", "name": "grid", "uid": uid} for uid in owner_uids],
        }
    }


def test_an_object_is_owned_only_with_an_owner_reference_carrying_the_consumers_uid():
    assert builders.is_owned_by(_object(UID), UID)
    assert builders.is_owned_by(_object("some-other-owner", UID), UID)
    assert not builders.is_owned_by(_object(), UID)
    assert not builders.is_owned_by({"metadata": {"name": "grid-writer"}}, UID)


def test_our_name_and_labels_do_not_make_an_object_ours():
    copied_labels = builders.labels("grid", "writer")
    assert not builders.is_owned_by(_object(labels=copied_labels), UID)


def test_an_object_of_an_earlier_consumer_with_the_same_name_is_not_owned_by_the_new_one():
    assert not builders.is_owned_by(_object("uid-of-the-deleted-consumer"), UID)


def test_the_foreign_object_message_names_the_object_and_says_what_to_do():
    message = builders.foreign_object_message("grid", "ns", "Deployment/grid-writer")
    assert message.startswith("Deployment/grid-writer exists and is not owned by SmartGridConsumer grid")
    assert "leaves it alone" in message
    assert "kubectl -n ns delete deployment grid-writer" in message


def test_foreign_objects_make_ready_false_naming_them_before_any_other_reason():
    foreign = ["Deployment/grid-writer", "Service/grid-writer"]
    status = _status(
        defaulted_spec(paused=True), foreign_objects=foreign, kafka_reachable=False, kafka_reason="CredentialsMissing"
    )
    ready = _conditions(status)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "ForeignObject")
    assert "Deployment/grid-writer, Service/grid-writer" in ready["message"]
    assert status["foreignObjects"] == foreign


def test_without_foreign_objects_the_field_is_null_so_the_merge_patch_removes_it(spec):
    assert _status(spec)["foreignObjects"] is None


def _walk(schema, path="spec"):
    yield path, schema
    for key, sub in (schema.get("properties") or {}).items():
        yield from _walk(sub, f"{path}.{key}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")


def test_the_crd_schema_is_structural_every_field_typed_and_named_like_a_field():
    from sgc_specs import crd_schema

    for path, schema in _walk(crd_schema()):
        name = path.rsplit(".", 1)[-1].removesuffix("[]")
        assert name.isidentifier(), f"{path}: not a field name (a YAML slip?)"
        assert "type" in schema or schema.get("x-kubernetes-preserve-unknown-fields"), f"{path} has no type"


def test_an_influxdb_cluster_is_passed_as_its_data_nodes_with_consistency_and_replication():
    urls = ["http://data-0:8086", "http://data-1:8086", "http://data-2:8086"]
    spec = defaulted_spec(influxdb={"urls": urls, "consistency": "quorum", "replication": 2})
    del spec["influxdb"]["url"]  # the CRD takes url or urls, never both
    data = builders.build_configmap("g", "n", spec)["data"]
    assert data["INFLUXDB_URL"] == ",".join(urls)
    assert data["SMARTGRID_INFLUXDB_CONSISTENCY"] == "quorum"
    assert data["SMARTGRID_INFLUXDB_REPLICATION"] == "2"


def test_one_influxdb_node_gets_consistency_one_and_replication_1_by_default():
    data = builders.build_configmap("g", "n", defaulted_spec())["data"]
    assert data["INFLUXDB_URL"] == "http://influxdb:8086"
    assert data["SMARTGRID_INFLUXDB_CONSISTENCY"] == "one"
    assert data["SMARTGRID_INFLUXDB_REPLICATION"] == "1"


def test_health_and_metrics_are_on_the_metrics_port_of_every_pod_and_service(spec):
    assert builders.build_config_data(spec)["SMARTGRID_METRICS_PORT"] == "9102"
    for manifest in build_all("g", "n", spec, 8):
        if manifest["kind"] in ("StatefulSet", "Deployment"):
            container = manifest["spec"]["template"]["spec"]["containers"][0]
            ports = {port["name"]: port["containerPort"] for port in container["ports"]}
            assert ports == {"http": 8080, "metrics": 9102}
            assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
            assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        if manifest["kind"] == "Service":
            ports = {port["name"]: port["targetPort"] for port in manifest["spec"]["ports"]}
            assert ports == {"http": "http", "metrics": "metrics"}


def test_the_api_token_and_the_alerts_reach_the_aggregator_only_its_secrets_by_reference():
    spec = defaulted_spec(aggregator={
        "apiTokenSecret": {"name": "dashboard-token"},
        "alerts": {"webhookSecret": {"name": "hooks", "key": "slack"}, "format": "slack", "faultShare": 0.3},
    })
    manifests = {(m["kind"], m["metadata"]["name"]): m for m in build_all("g", "n", spec, 8)}
    aggregator = manifests[("Deployment", "g-aggregator")]["spec"]["template"]["spec"]["containers"][0]["env"]
    by_name = {item["name"]: item for item in aggregator}
    assert by_name["SMARTGRID_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "dashboard-token", "key": "token"}
    assert by_name["SMARTGRID_ALERT_WEBHOOK_URL"]["valueFrom"]["secretKeyRef"] == {"name": "hooks", "key": "slack"}
    assert by_name["SMARTGRID_ALERT_FORMAT"]["value"] == "slack"
    assert by_name["SMARTGRID_ALERT_FAULT_SHARE"]["value"] == "0.3"
    assert by_name["SMARTGRID_ALERT_FOR"]["value"] == "1m"
    for other in (manifests[("Deployment", "g-writer")], manifests[("StatefulSet", "g-ingest")]):
        names = {item["name"] for item in other["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert not {n for n in names if n.startswith(("SMARTGRID_ALERT_", "SMARTGRID_API_"))}
    assert not any(key.startswith("SMARTGRID_ALERT_") for key in builders.build_config_data(spec))
    # Alert settings roll the aggregator, never ingest.
    plain = defaulted_spec()
    assert (build_ingest_statefulset("g", "n", spec, 8)["spec"]["template"]["metadata"]["annotations"]
            == build_ingest_statefulset("g", "n", plain, 8)["spec"]["template"]["metadata"]["annotations"])


def test_region_places_reach_the_aggregator_only_as_its_setting():
    from aggregator.settings import parse_region_places

    spec = defaulted_spec(aggregator={"regionPlaces": {"region-02": "New York", "region-01": "47.6:-122.3"}})
    manifests = {(m["kind"], m["metadata"]["name"]): m for m in build_all("g", "n", spec, 8)}
    env = {item["name"]: item for item in manifests[("Deployment", "g-aggregator")]["spec"]["template"]["spec"]["containers"][0]["env"]}
    value = env["SMARTGRID_REGION_PLACES"]["value"]
    assert value == "region-01=47.6:-122.3,region-02=New York"
    assert parse_region_places(value) == {"region-01": (47.6, -122.3), "region-02": "New York"}
    ingest = manifests[("StatefulSet", "g-ingest")]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert "SMARTGRID_REGION_PLACES" not in {item["name"] for item in ingest}
    assert "SMARTGRID_REGION_PLACES" not in {item["name"] for item in builders.aggregator_env(defaulted_spec())}
