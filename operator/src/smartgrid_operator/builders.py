"""Pure builders: a SmartGridConsumer spec in, Kubernetes manifests out.

Nothing here talks to the network; the handlers call these, adopt the results (owner
references) and apply them. The spec arriving here has already been defaulted by the API server
from the CRD's OpenAPI schema (helm/smartgrid/crds/), so the builders read fields directly and
only ``.get`` the ones that are optional without a default.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from smartgrid_common.settings import parse_duration

GROUP = "smartgrid.io"
VERSION = "v1alpha1"
PLURAL = "smartgridconsumers"
# The operator's finalizer on every consumer (kopf's persistence setting; the uninstall hook's too).
FINALIZER = f"{GROUP}/finalizer"
KIND = "SmartGridConsumer"

CONFIG_HASH_ANNOTATION = f"{GROUP}/config-hash"
PARTITIONS_ANNOTATION = f"{GROUP}/partitions"
HTTP_PORT = 8080
# /healthz, /readyz and /metrics answer on a port of their own (SMARTGRID_METRICS_PORT): a
# NetworkPolicy can open it to Prometheus alone while the dashboard port stays where it is.
METRICS_PORT = 9102
PARTITIONS_DIR = "/etc/smartgrid/partitions"

Spec = Mapping[str, Any]
Manifest = dict[str, Any]


# ----------------------------------------------------------------------------- partitions


def replica_count(partitions: int, partitions_per_replica: int) -> int:
    """Ingest replicas needed so every partition has an owner: ceil(partitions / k)."""
    if partitions_per_replica < 1:
        raise ValueError("partitionsPerReplica must be at least 1")
    return math.ceil(max(partitions, 0) / partitions_per_replica)


def partition_ranges(partitions: int, partitions_per_replica: int) -> list[tuple[int, int]]:
    """Replica ``i`` owns ``[i*k, (i+1)*k)``, the last one cut at the partition count.

    Returned as inclusive ``(first, last)`` pairs, one per replica.
    """
    k = partitions_per_replica
    return [(i * k, min((i + 1) * k, partitions) - 1) for i in range(replica_count(partitions, k))]


def format_range(first: int, last: int) -> str:
    """``0-7`` for a range, ``12`` for a single partition (the SMARTGRID_PARTITIONS syntax)."""
    return str(first) if first == last else f"{first}-{last}"


def partition_layout_key(partitions: int, partitions_per_replica: int) -> str:
    """What existing replicas' ranges depend on, for the pod template hash.

    Adding partitions in whole multiples of ``k`` only appends replicas: the running ones keep
    their ranges and must not restart. Only the last replica's range depends on the partition
    count, and only while the count is not a multiple of ``k``.
    """
    k = partitions_per_replica
    return f"k={k}" if partitions % k == 0 else f"k={k},p={partitions}"


# ----------------------------------------------------------------------------- names/labels


def component_name(name: str, component: str) -> str:
    """Name of an owned object: ``<consumer>-<component>``."""
    return f"{name}-{component}"


def labels(name: str, component: str) -> dict[str, str]:
    """Labels on every owned object and pod; the selector uses the ``instance``/``component`` pair."""
    return {
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "smartgrid",
        "app.kubernetes.io/managed-by": "smartgrid-operator",
        f"{GROUP}/consumer": name,
    }


def selector(name: str, component: str) -> dict[str, str]:
    """Label selector of a component's pods (immutable in StatefulSets: keep it small)."""
    return {"app.kubernetes.io/instance": name, "app.kubernetes.io/component": component}


def owned_selector(name: str) -> str:
    """Label selector string matching every object the operator creates for ``name``."""
    return f"{GROUP}/consumer={name},app.kubernetes.io/managed-by=smartgrid-operator"


def _meta(name: str, namespace: str, component: str, object_name: str) -> dict[str, Any]:
    return {"name": object_name, "namespace": namespace, "labels": labels(name, component)}


# ----------------------------------------------------------------------------- config


def build_config_data(spec: Spec) -> dict[str, str]:
    """Environment shared by the services (not secrets): the ConfigMap's data."""
    kafka, ingest, influx, redis = spec["kafka"], spec["ingest"], spec["influxdb"], spec["redis"]
    security = kafka["security"]
    data = {
        "KAFKA_BROKERS": kafka["bootstrapServers"],
        "KAFKA_TOPIC": kafka["topic"],
        "KAFKA_GROUP_ID": kafka["groupId"],
        "KAFKA_CONSUMER_COUNT": str(ingest["consumerCount"]),
        "KAFKA_BATCH_SIZE": str(ingest["batchSize"]),
        "KAFKA_BATCH_TIMEOUT": ingest["batchTimeout"],
        "SMARTGRID_KAFKA_FETCH_WAIT": ingest["fetchWait"],
        "PROCESSOR_WORKER_COUNT": str(ingest["workerCount"]),
        "PROCESSOR_QUEUE_SIZE": str(ingest["queueSize"]),
        # Nothing is published that nobody reads: no aggregator, no summaries; no writer, no
        # rollups (the Redis streams would otherwise grow up to their MAXLEN backstop).
        "PROCESSOR_ENABLE_AGGREGATIONS": str(ingest["enableAggregations"] and spec["aggregator"]["enabled"]).lower(),
        "SMARTGRID_EMIT_ROLLUPS": str(spec["writer"]["enabled"]).lower(),
        "SMARTGRID_SHUTDOWN_TIMEOUT": ingest["shutdownTimeout"],
        # One node, or a cluster's data nodes (the services spread writes over them).
        "INFLUXDB_URL": ",".join(influx["urls"]) if influx.get("urls") else influx["url"],
        "SMARTGRID_INFLUXDB_CONSISTENCY": influx["consistency"],
        "SMARTGRID_INFLUXDB_REPLICATION": str(influx["replication"]),
        "INFLUXDB_DATABASE": influx["database"],
        "INFLUXDB_RETENTION_POLICY": influx["retentionPolicy"],
        "SMARTGRID_INFLUXDB_AGGREGATE_RETENTION_POLICY": influx["aggregateRetentionPolicy"],
        "INFLUXDB_BATCH_SIZE": str(influx["batchSize"]),
        "INFLUXDB_BATCH_TIMEOUT": influx["batchTimeout"],
        "INFLUXDB_MAX_RETRIES": str(influx["maxRetries"]),
        "INFLUXDB_RETRY_INTERVAL": influx["retryInterval"],
        "SMARTGRID_REDIS_URL": redis["url"],
        "SMARTGRID_REDIS_PREFIX": redis["prefix"],
        "SMARTGRID_ASSIGNMENT": ingest["assignment"],
        "SMARTGRID_PARTITIONS_PER_REPLICA": str(ingest["partitionsPerReplica"]),
        "SMARTGRID_OFFLINE_AFTER": spec["aggregator"]["offlineAfter"],
        "SMARTGRID_KAFKA_SECURITY_PROTOCOL": security["protocol"],
        "SMARTGRID_LOG_LEVEL": spec["logLevel"],
        "SMARTGRID_HTTP_PORT": str(HTTP_PORT),
        "SMARTGRID_METRICS_PORT": str(METRICS_PORT),
    }
    if kafka.get("dlqTopic"):
        data["SMARTGRID_DLQ_TOPIC"] = kafka["dlqTopic"]
    if security.get("saslMechanism"):
        data["SMARTGRID_KAFKA_SASL_MECHANISM"] = security["saslMechanism"]
    return data


def config_hash(*parts: Any) -> str:
    """Stable short hash of JSON-able parts; a change of it rolls the pods that carry it."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def build_configmap(name: str, namespace: str, spec: Spec) -> Manifest:
    """The ConfigMap every service reads its environment from."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(name, namespace, "config", component_name(name, "config")),
        "data": build_config_data(spec),
    }


def build_partitions_configmap(name: str, namespace: str, partitions: int, partitions_per_replica: int) -> Manifest:
    """One key per ingest replica (``replica-<i>: "0-7"``), mounted into the ingest pods."""
    ranges = partition_ranges(partitions, partitions_per_replica)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(name, namespace, "ingest", component_name(name, "partitions")),
        "data": {f"replica-{i}": format_range(*r) for i, r in enumerate(ranges)},
    }


def _secret_env(env_name: str, secret: Mapping[str, Any] | None, key_field: str) -> list[dict]:
    if not secret:
        return []
    ref = {"name": secret["name"], "key": secret[key_field]}
    return [{"name": env_name, "valueFrom": {"secretKeyRef": ref}}]


def secret_env(spec: Spec) -> list[dict[str, Any]]:
    """Credentials, each read by the pod from its Secret (never copied into a manifest)."""
    kafka_secret = spec["kafka"]["security"].get("credentialsSecret")
    influx_secret = spec["influxdb"].get("credentialsSecret")
    redis_secret = spec["redis"].get("credentialsSecret")
    return [
        *_secret_env("SMARTGRID_KAFKA_SASL_USERNAME", kafka_secret, "usernameKey"),
        *_secret_env("SMARTGRID_KAFKA_SASL_PASSWORD", kafka_secret, "passwordKey"),
        *_secret_env("SMARTGRID_INFLUXDB_USERNAME", influx_secret, "usernameKey"),
        *_secret_env("SMARTGRID_INFLUXDB_PASSWORD", influx_secret, "passwordKey"),
        *_secret_env("SMARTGRID_REDIS_PASSWORD", redis_secret, "passwordKey"),
    ]


def aggregator_env(spec: Spec) -> list[dict[str, Any]]:
    """The aggregator's own environment: the dashboard's API token, the map's region places and
    the region alerts (the token and the webhook URL from their Secrets). On the aggregator's pods
    only, not in the shared ConfigMap: changing them does not restart ingest."""
    aggregator = spec["aggregator"]
    alerts = aggregator.get("alerts") or {}
    env = [
        *_secret_env("SMARTGRID_API_TOKEN", aggregator.get("apiTokenSecret"), "key"),
        *_secret_env("SMARTGRID_ALERT_WEBHOOK_URL", alerts.get("webhookSecret"), "key"),
    ]
    places = aggregator.get("regionPlaces") or {}
    if places:
        value = ",".join(f"{region}={place}" for region, place in sorted(places.items()))
        env.append({"name": "SMARTGRID_REGION_PLACES", "value": value})
    if alerts:
        values = {
            "SMARTGRID_ALERT_FORMAT": alerts["format"],
            "SMARTGRID_ALERT_FAULT_SHARE": str(alerts["faultShare"]),
            "SMARTGRID_ALERT_OFFLINE_SHARE": str(alerts["offlineShare"]),
            "SMARTGRID_ALERT_CLOCK_SKEW_SHARE": str(alerts["clockSkewShare"]),
            "SMARTGRID_ALERT_CLEAR_RATIO": str(alerts["clearRatio"]),
            "SMARTGRID_ALERT_FOR": alerts["for"],
            "SMARTGRID_ALERT_REPEAT_INTERVAL": alerts["repeatInterval"],
            "SMARTGRID_ALERT_SEVERITY": alerts["severity"],
            "SMARTGRID_ALERT_DASHBOARD_URL": alerts.get("dashboardUrl", ""),
        }
        env += [{"name": key, "value": value} for key, value in values.items()]
    return env


# ----------------------------------------------------------------------------- pods

POD_SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


# After SMARTGRID_SHUTDOWN_TIMEOUT, an ingest pod hard-stops its workers, gives them 5 s
# (ingest.supervisor.HARD_STOP_GRACE) and kills what is left; the rest covers process exit.
INGEST_STOP_MARGIN_SECONDS = 10


def ingest_termination_grace_seconds(shutdown_timeout: str) -> int:
    """terminationGracePeriodSeconds of an ingest pod: its whole SIGTERM drain
    (``shutdownTimeout``, then the hard stop) ends before the kubelet's SIGKILL."""
    return math.ceil(parse_duration(shutdown_timeout)) + INGEST_STOP_MARGIN_SECONDS


def _probe(path: str, period: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "metrics"},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": 3,
    }


def build_pod_template(
    name: str,
    spec: Spec,
    component: str,
    component_spec: Spec,
    command: list[str],
    template_hash: str,
    extra_volumes: list[dict] = (),  # type: ignore[assignment]
    extra_mounts: list[dict] = (),  # type: ignore[assignment]
    termination_grace_seconds: int = 30,
    extra_env: list[dict] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    """A hardened pod template: non-root, read-only root, no capabilities, /tmp as emptyDir."""
    container: dict[str, Any] = {
        "name": component,
        "image": component_spec["image"],
        "imagePullPolicy": spec["imagePullPolicy"],
        "command": command,
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "envFrom": [{"configMapRef": {"name": component_name(name, "config")}}],
        "env": [*secret_env(spec), *extra_env],
        "livenessProbe": _probe("/healthz", 10),
        "readinessProbe": _probe("/readyz", 5),
        "resources": dict(component_spec.get("resources") or {}),
        "securityContext": CONTAINER_SECURITY_CONTEXT,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *extra_mounts],
    }
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": POD_SECURITY_CONTEXT,
        "terminationGracePeriodSeconds": termination_grace_seconds,
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}, *extra_volumes],
    }
    for field in ("nodeSelector", "tolerations", "affinity", "imagePullSecrets"):
        if spec.get(field):
            pod_spec[field] = spec[field]
    annotations = {CONFIG_HASH_ANNOTATION: template_hash, **(spec.get("podAnnotations") or {})}
    return {
        "metadata": {"labels": labels(name, component), "annotations": annotations},
        "spec": pod_spec,
    }


# Each ingest replica reads its own range from the partitions ConfigMap by the ordinal at the
# end of its hostname; `set -e` makes a missing key (ConfigMap not yet updated) a restart.
INGEST_STATIC_COMMAND = [
    "/bin/sh",
    "-ec",
    'SMARTGRID_PARTITIONS="$(cat "' + PARTITIONS_DIR + '/replica-${HOSTNAME##*-}")"; '
    "export SMARTGRID_PARTITIONS; exec python -m ingest",
]
INGEST_GROUP_COMMAND = ["python", "-m", "ingest"]


def ingest_replicas(spec: Spec, partitions: int) -> int:
    """Desired ingest replicas: none while paused, else ceil(partitions / k)."""
    if spec["paused"]:
        return 0
    return replica_count(partitions, spec["ingest"]["partitionsPerReplica"])


def build_ingest_statefulset(name: str, namespace: str, spec: Spec, partitions: int) -> Manifest:
    """The ingest StatefulSet: replica ``i`` consumes partitions ``[i*k, (i+1)*k)``."""
    ingest = spec["ingest"]
    k = ingest["partitionsPerReplica"]
    static = ingest["assignment"] == "static"
    ranges = partition_ranges(partitions, k)
    template_hash = config_hash(
        build_config_data(spec),
        secret_env(spec),
        partition_layout_key(partitions, k) if static else "group",
    )
    volumes, mounts = [], []
    if static:
        volumes = [{"name": "partitions", "configMap": {"name": component_name(name, "partitions")}}]
        mounts = [{"name": "partitions", "mountPath": PARTITIONS_DIR, "readOnly": True}]
    template = build_pod_template(
        name,
        spec,
        "ingest",
        ingest,
        INGEST_STATIC_COMMAND if static else INGEST_GROUP_COMMAND,
        template_hash,
        volumes,
        mounts,
        ingest_termination_grace_seconds(ingest["shutdownTimeout"]),
    )
    meta = _meta(name, namespace, "ingest", component_name(name, "ingest"))
    meta["annotations"] = {PARTITIONS_ANNOTATION: ",".join(format_range(*r) for r in ranges)}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta,
        "spec": {
            "serviceName": component_name(name, "ingest"),
            "replicas": ingest_replicas(spec, partitions),
            # Replicas own disjoint partition ranges: start and stop them together, not one by one.
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate"},
            "selector": {"matchLabels": selector(name, "ingest")},
            "template": template,
        },
    }


def build_deployment(name: str, namespace: str, spec: Spec, component: str) -> Manifest:
    """The aggregator or writer Deployment (``component`` is ``aggregator`` or ``writer``)."""
    component_spec = spec[component]
    own_env = aggregator_env(spec) if component == "aggregator" else []
    template_hash = config_hash(build_config_data(spec), secret_env(spec), *([own_env] if own_env else []))
    template = build_pod_template(
        name, spec, component, component_spec, ["python", "-m", component], template_hash, extra_env=own_env
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, namespace, component, component_name(name, component)),
        "spec": {
            "replicas": component_spec["replicas"],
            "selector": {"matchLabels": selector(name, component)},
            "template": template,
        },
    }


def build_service(name: str, namespace: str, component: str, headless: bool = False) -> Manifest:
    """A Service on the component's HTTP port (headless for the ingest StatefulSet) and its
    metrics port (what a ServiceMonitor scrapes)."""
    spec: dict[str, Any] = {
        "selector": selector(name, component),
        "ports": [
            {"name": "http", "port": 80 if not headless else HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
            {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"},
        ],
    }
    if headless:
        spec["clusterIP"] = "None"
        spec["publishNotReadyAddresses"] = True
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, namespace, component, component_name(name, component)),
        "spec": spec,
    }


def build_pdb(name: str, namespace: str, spec: Spec) -> Manifest:
    """Voluntary disruptions (drains) take at most ``maxUnavailable`` ingest replicas at once."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(name, namespace, "ingest", component_name(name, "ingest")),
        "spec": {
            "maxUnavailable": spec["ingest"]["maxUnavailable"],
            "selector": {"matchLabels": selector(name, "ingest")},
        },
    }


def build_all(name: str, namespace: str, spec: Spec, partitions: int) -> list[Manifest]:
    """Every object a SmartGridConsumer owns, in apply order (config before workloads)."""
    k = spec["ingest"]["partitionsPerReplica"]
    manifests = [
        build_configmap(name, namespace, spec),
        build_partitions_configmap(name, namespace, partitions, k),
        build_service(name, namespace, "ingest", headless=True),
        build_pdb(name, namespace, spec),
        build_ingest_statefulset(name, namespace, spec, partitions),
    ]
    for component in ("aggregator", "writer"):
        if spec[component]["enabled"]:
            manifests.append(build_service(name, namespace, component))
            manifests.append(build_deployment(name, namespace, spec, component))
    return manifests


def stale_components(spec: Spec) -> list[str]:
    """Components switched off in the spec, whose Deployment and Service must go."""
    return [c for c in ("aggregator", "writer") if not spec[c]["enabled"]]


# ----------------------------------------------------------------------------- ownership


def is_owned_by(obj: Mapping[str, Any], owner_uid: str) -> bool:
    """Whether ``obj`` has an owner reference to the object whose uid is ``owner_uid``.

    Names and labels say nothing about who made an object (anyone can use them); the uid of the
    SmartGridConsumer does, and a consumer deleted and recreated under the same name gets a new one.
    """
    references = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(reference.get("uid") == owner_uid for reference in references)


def object_ref(manifest: Mapping[str, Any]) -> str:
    """``Kind/name`` of a manifest, as Events and the status name objects."""
    return f"{manifest['kind']}/{manifest['metadata']['name']}"


def foreign_object_message(consumer: str, namespace: str, ref: str) -> str:
    """What a person must do about an object that has a name the consumer needs but is not its own."""
    kind, name = ref.split("/", 1)
    return (
        f"{ref} exists and is not owned by SmartGridConsumer {consumer}: the operator leaves it alone. "
        f"Delete it (kubectl -n {namespace} delete {kind.lower()} {name}) so the operator can create its own, "
        f"or give the SmartGridConsumer another name."
    )


# ----------------------------------------------------------------------------- status

# Reason of the KafkaReachable condition -> reason of Ready, when Kafka could not be used.
KAFKA_READY_REASONS = {"Unreachable": "KafkaUnreachable", "CredentialsMissing": "KafkaCredentialsMissing"}


def build_condition(
    type_: str,
    ok: bool,
    reason: str,
    message: str,
    generation: int,
    now: str,
    previous: list[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A status condition; ``lastTransitionTime`` only moves when the status flips."""
    status = "True" if ok else "False"
    since = now
    for old in previous or []:
        if old.get("type") == type_ and old.get("status") == status:
            since = old.get("lastTransitionTime") or now
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": since,
    }


def build_partition_status(partitions: int, partitions_per_replica: int) -> list[dict[str, Any]]:
    """``status.partitionRanges``: which partitions each replica owns."""
    return [
        {"replica": i, "partitions": format_range(first, last), "first": first, "last": last}
        for i, (first, last) in enumerate(partition_ranges(partitions, partitions_per_replica))
    ]


def _workload_converged(obj: Mapping[str, Any] | None, replicas: int, ready_field: str) -> bool:
    """The controller has seen the latest spec and every replica is updated and ready."""
    if obj is None:
        return False
    status = obj.get("status") or {}
    seen = status.get("observedGeneration", 0) >= obj["metadata"].get("generation", 0)
    current = status.get("replicas", 0) == replicas
    updated = status.get("updatedReplicas", 0) == replicas
    ready = status.get(ready_field, 0) == replicas
    return seen and current and updated and ready


def build_status(
    *,
    spec: Spec,
    generation: int,
    partitions: int,
    kafka_reachable: bool,
    kafka_message: str,
    consumer_lag: int | None,
    statefulset: Mapping[str, Any] | None,
    deployments: Mapping[str, Mapping[str, Any] | None],
    previous_conditions: list[Mapping[str, Any]] | None,
    now: str,
    kafka_reason: str = "Unreachable",
    foreign_objects: Sequence[str] = (),
) -> dict[str, Any]:
    """The status subresource, from what the operator planned and what the workloads report.

    ``kafka_reason`` says why Kafka could not be used (a key of ``KAFKA_READY_REASONS``);
    ``foreign_objects`` are the ``Kind/name`` the consumer needs but someone else owns.
    Reasons that need a person come first in Ready: foreign objects, missing credentials.
    """
    k = spec["ingest"]["partitionsPerReplica"]
    replicas = ingest_replicas(spec, partitions)
    ready_replicas = ((statefulset or {}).get("status") or {}).get("readyReplicas", 0)
    waiting = []
    if not _workload_converged(statefulset, replicas, "readyReplicas"):
        waiting.append(f"ingest {ready_replicas}/{replicas} ready")
    for component, deployment in deployments.items():
        wanted = spec[component]["replicas"]
        if not _workload_converged(deployment, wanted, "availableReplicas"):
            available = ((deployment or {}).get("status") or {}).get("availableReplicas", 0)
            waiting.append(f"{component} {available}/{wanted} available")
    converged = not waiting

    if foreign_objects:
        ready = (
            False,
            "ForeignObject",
            f"{', '.join(foreign_objects)} exist(s) without an owner reference to this SmartGridConsumer and "
            "are left alone: delete them or rename the consumer (see the ForeignObject events)",
        )
    elif not kafka_reachable and kafka_reason == "CredentialsMissing":
        ready = (False, KAFKA_READY_REASONS[kafka_reason], kafka_message)
    elif spec["paused"]:
        ready = (False, "Paused", "spec.paused is true: ingest is scaled to 0")
    elif not kafka_reachable:
        ready = (False, KAFKA_READY_REASONS[kafka_reason], kafka_message)
    elif not converged:
        ready = (False, "ReplicasNotReady", "; ".join(waiting))
    else:
        ready = (True, "Ready", f"{replicas} ingest replicas consume {partitions} partitions")
    progressing = (
        (True, "Rolling", "waiting for " + "; ".join(waiting))
        if not converged
        else (False, "Converged", "every workload runs the latest spec")
    )
    reachable = (True, "TopicFound", kafka_message) if kafka_reachable else (False, kafka_reason, kafka_message)

    def condition(type_: str, value: tuple[bool, str, str]) -> dict[str, Any]:
        return build_condition(type_, *value, generation, now, previous_conditions)

    status: dict[str, Any] = {
        "observedGeneration": generation,
        "partitions": partitions,
        "replicas": replicas,
        "readyReplicas": ready_replicas,
        "partitionRanges": build_partition_status(partitions, k),
        "lastSync": now,
        "conditions": [
            condition("Ready", ready),
            condition("KafkaReachable", reachable),
            condition("Progressing", progressing),
        ],
    }
    if consumer_lag is not None:
        status["consumerLag"] = consumer_lag
    # None, not []: the status is merge-patched, and null removes the field once they are gone.
    status["foreignObjects"] = list(foreign_objects) or None
    return status
