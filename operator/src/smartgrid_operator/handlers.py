"""Every kopf registration of the operator, in one place.

Handlers are short: read Kafka, build manifests with the pure builders, adopt and apply them
(only where the object is absent or already ours), write the status. All of them funnel into
``reconcile`` so a spec change, an operator restart and the periodic resync do exactly the same
thing.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from typing import Any

import kopf

from smartgrid_operator import builders, kafka, kube
from smartgrid_operator.builders import GROUP, PLURAL, VERSION

# How often the timer re-reads the partition count and the lag, and re-applies the workloads.
RESYNC_SECONDS = float(os.environ.get("SMARTGRID_OPERATOR_RESYNC_SECONDS", "15"))
# Timeout of one Kafka admin request.
KAFKA_TIMEOUT_SECONDS = float(os.environ.get("SMARTGRID_OPERATOR_KAFKA_TIMEOUT", "5"))


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Operator-wide settings; each says why it differs from kopf's default."""
    # Named after our API group, so `kubectl get sgc -o yaml` tells who holds a deleting object.
    settings.persistence.finalizer = builders.FINALIZER
    # Our status has a schema (kopf's own status.kopf field would be pruned): keep kopf's
    # bookkeeping in annotations under our group instead.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # A stuck API connection must not freeze the operator: fail and retry instead of waiting.
    settings.networking.connect_timeout = 10
    settings.networking.request_timeout = 60
    # Re-list every 5 minutes, which heals a watch that silently missed events.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # Handlers are synchronous (Kafka admin calls block): give them enough threads.
    settings.execution.max_workers = 16
    # Post our own Events (Rescaled, Applied, ...), not one per handler run.
    settings.posting.level = logging.WARNING


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def reconcile(body: kopf.Body, patch: kopf.Patch, logger: logging.Logger, trigger: str) -> None:
    """Read Kafka, apply the objects the consumer owns (or that do not exist yet), write the status."""
    meta = body["metadata"]
    spec, namespace, name, uid = body["spec"], meta["namespace"], meta["name"], meta["uid"]
    status = body.get("status") or {}
    kafka_spec = spec["kafka"]

    lag = None
    partitions = kafka_spec.get("partitions")
    kafka_reason = "TopicFound"
    try:
        config = kafka.client_config(namespace, kafka_spec, KAFKA_TIMEOUT_SECONDS)
        topic = kafka.read_topic(config, kafka_spec["topic"], kafka_spec["groupId"], KAFKA_TIMEOUT_SECONDS)
        reachable, lag = True, topic.consumer_lag
        message = f"topic {kafka_spec['topic']} has {topic.partitions} partitions"
        partitions = partitions or topic.partitions
    except kafka.CredentialsMissing as error:
        # Not a crash: the workloads are still applied (their pods wait for the Secret too) and
        # the next resync reads the Secret again.
        reachable, kafka_reason, message = False, "CredentialsMissing", str(error)
        partitions = partitions or status.get("partitions")
        if _condition(status, "KafkaReachable").get("message") != message:
            _warning(body, builders.KAFKA_READY_REASONS[kafka_reason], message)
    except kafka.KafkaUnavailable as error:
        reachable, kafka_reason, message = False, "Unreachable", str(error)
        partitions = partitions or status.get("partitions")
        if _was_reachable(status):
            _warning(body, builders.KAFKA_READY_REASONS[kafka_reason], message)
    if not partitions:
        # Nothing to plan with yet: say so in the status, retry on the next resync.
        ready_reason = builders.KAFKA_READY_REASONS[kafka_reason]
        patch.setdefault("status", {})["conditions"] = [
            builders.build_condition(
                "Ready", False, ready_reason, message, meta["generation"], _now(), status.get("conditions")
            ),
            builders.build_condition(
                "KafkaReachable", False, kafka_reason, message, meta["generation"], _now(), status.get("conditions")
            ),
        ]
        raise kopf.TemporaryError(f"{message}; set spec.kafka.partitions to plan without Kafka", delay=RESYNC_SECONDS)

    manifests = builders.build_all(name, namespace, spec, partitions)
    kopf.append_owner_reference(manifests, owner=body)
    applied, foreign = _apply_owned(manifests, uid)
    _delete_disabled(spec, namespace, name, uid, logger)
    for ref in sorted(set(foreign) - set(status.get("foreignObjects") or [])):
        _warning(body, "ForeignObject", builders.foreign_object_message(name, namespace, ref))

    statefulset = applied.get(f"StatefulSet/{builders.component_name(name, 'ingest')}")
    deployments = {
        component: applied.get(f"Deployment/{builders.component_name(name, component)}")
        for component in ("aggregator", "writer")
        if spec[component]["enabled"]
    }
    new_status = builders.build_status(
        spec=spec,
        generation=meta["generation"],
        partitions=partitions,
        kafka_reachable=reachable,
        kafka_message=message,
        kafka_reason=kafka_reason,
        consumer_lag=lag,
        statefulset=statefulset,
        deployments=deployments,
        foreign_objects=foreign,
        previous_conditions=status.get("conditions"),
        now=_now(),
    )
    _post_events(body, status, new_status, trigger)
    patch.setdefault("status", {}).update(new_status)
    logger.debug("reconciled (%s): %s partitions, %s replicas", trigger, partitions, new_status["replicas"])


def _apply_owned(manifests: list[dict[str, Any]], owner_uid: str) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Apply each manifest whose object is absent or owned by the consumer.

    Returns the applied objects by ``Kind/name`` (status included) and the ``Kind/name`` of the
    foreign ones: objects of the same name without our owner reference, which a forced
    server-side apply would silently take over.
    """
    applied: dict[str, dict[str, Any]] = {}
    foreign: list[str] = []
    for manifest in manifests:
        ref, meta = builders.object_ref(manifest), manifest["metadata"]
        existing = kube.get(manifest["kind"], meta["namespace"], meta["name"])
        if existing is not None and not builders.is_owned_by(existing, owner_uid):
            foreign.append(ref)
            continue
        applied[ref] = kube.apply(manifest)
    return applied, foreign


def _delete_disabled(
    spec: builders.Spec, namespace: str, name: str, owner_uid: str, logger: logging.Logger
) -> None:
    """Delete the Deployment and Service of switched-off components, when they are ours."""
    for component in builders.stale_components(spec):
        object_name = builders.component_name(name, component)
        for kind in ("Deployment", "Service"):
            existing = kube.get(kind, namespace, object_name)
            if existing is None:
                continue
            if not builders.is_owned_by(existing, owner_uid):
                # Someone else's object that happens to have the name: not ours to remove.
                logger.debug("%s/%s is not owned by this consumer: left alone", kind, object_name)
            elif kube.delete(kind, namespace, object_name, existing["metadata"]["uid"]):
                logger.info("deleted %s/%s: spec.%s.enabled is false", kind, object_name, component)


def _normal(body: kopf.Body, reason: str, message: str) -> None:
    # kopf.event, not kopf.info: the latter obeys settings.posting.level, which mutes it here.
    kopf.event(body, type="Normal", reason=reason, message=message)


def _warning(body: kopf.Body, reason: str, message: str) -> None:
    kopf.event(body, type="Warning", reason=reason, message=message)


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), {})


def _was_reachable(status: dict[str, Any]) -> bool:
    return _condition(status, "KafkaReachable").get("status") == "True"


def _post_events(body: kopf.Body, old: dict[str, Any], new: dict[str, Any], trigger: str) -> None:
    """Kubernetes Events for what a person watching `kubectl describe sgc` wants to know."""
    if old.get("partitions") and old.get("partitions") != new["partitions"]:
        _normal(
            body,
            "Rescaled",
            f"topic partitions {old['partitions']} -> {new['partitions']}: "
            f"ingest replicas {old.get('replicas')} -> {new['replicas']}",
        )
    if old.get("observedGeneration") != new["observedGeneration"]:
        _normal(
            body,
            "Applied",
            f"generation {new['observedGeneration']} applied ({trigger}): "
            f"{new['replicas']} ingest replicas for {new['partitions']} partitions",
        )
    ready_before = _condition(old, "Ready")
    ready_now = _condition(new, "Ready")
    # Foreign objects and missing credentials have Events of their own, posted where found.
    own_events = ("ForeignObject", builders.KAFKA_READY_REASONS["CredentialsMissing"])
    if ready_before.get("reason") != ready_now["reason"] and ready_before and ready_now["reason"] not in own_events:
        post = _normal if ready_now["status"] == "True" else _warning
        post(body, ready_now["reason"], ready_now["message"])


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def apply_spec(body: kopf.Body, patch: kopf.Patch, logger: logging.Logger, reason: str, **_: Any) -> None:
    """A new or changed spec (or the operator restarting): bring the owned objects in line."""
    reconcile(body, patch, logger, trigger=str(reason))


@kopf.timer(GROUP, VERSION, PLURAL, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
def resync(body: kopf.Body, patch: kopf.Patch, logger: logging.Logger, **_: Any) -> None:
    """Periodic: follow the topic's partition count, refresh lag and readiness, heal drift."""
    try:
        reconcile(body, patch, logger, trigger="resync")
    except kopf.TemporaryError as error:
        # The timer runs again anyway; a retry loop on top of it would only add noise.
        logger.warning("resync skipped: %s", error)


@kopf.on.delete(GROUP, VERSION, PLURAL)
def delete_owned(body: kopf.Body, logger: logging.Logger, **_: Any) -> None:
    """Remove what the consumer owned now, rather than waiting for the garbage collector."""
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    deleted = kube.delete_owned(namespace, builders.owned_selector(name), body["metadata"]["uid"])
    logger.info("deleted %s", ", ".join(deleted) or "nothing (already gone)")


@kopf.on.probe(id="settings")
def report_settings(**_: Any) -> dict[str, float]:
    """Shown on the liveness endpoint next to kopf's own health."""
    return {"resyncSeconds": RESYNC_SECONDS, "kafkaTimeoutSeconds": KAFKA_TIMEOUT_SECONDS}
