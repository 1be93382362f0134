"""Kafka shell: the topic's partition count and the group's lag, through the AdminClient.

The client authenticates as the SmartGridConsumer says: its ``spec.kafka.security`` and, for SASL,
the Secret it names in its own namespace, read at check time. Never with credentials of the
operator's own: otherwise any namespace could make the operator present them to any broker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from smartgrid_common.logs import KAFKA_CLIENT_LOG

from smartgrid_operator import kube

# Offsets below zero are librdkafka's "no committed offset" markers.
_NO_OFFSET = 0


class KafkaUnavailable(RuntimeError):
    """Kafka did not answer, or the topic does not exist; the message says which."""


class CredentialsMissing(ValueError):
    """The consumer's SASL credentials cannot be read; the message says what to create."""


@dataclass(frozen=True)
class TopicState:
    """What the operator needs to know about a topic on one resync."""

    partitions: int
    consumer_lag: int | None


@dataclass(frozen=True)
class SaslCredentials:
    """A SASL user and password, read from the consumer's Secret for one check."""

    username: str
    # Kept out of repr so that no log line or traceback shows it.
    password: str = field(repr=False)


def sasl_secret_ref(security: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The Secret reference to read for ``spec.kafka.security``; None when no SASL is used.

    Raises CredentialsMissing when a SASL protocol names no Secret.
    """
    if not security["protocol"].startswith("SASL"):
        return None
    ref = security.get("credentialsSecret")
    if not ref:
        raise CredentialsMissing(
            f"spec.kafka.security.protocol is {security['protocol']} but spec.kafka.security.credentialsSecret "
            "is not set: name a Secret (in this namespace) with the SASL username and password"
        )
    return ref


def sasl_credentials(namespace: str, ref: Mapping[str, Any], data: Mapping[str, bytes] | None) -> SaslCredentials:
    """The user and password from a Secret's ``data`` (None: the Secret does not exist).

    Raises CredentialsMissing, naming what to create, when the Secret or a key is missing or empty.
    """
    name = ref["name"]
    user_key, password_key = ref.get("usernameKey", "username"), ref.get("passwordKey", "password")
    create = (
        f"kubectl -n {namespace} create secret generic {name} "
        f"--from-literal={user_key}=USER --from-literal={password_key}=PASSWORD"
    )
    if data is None:
        raise CredentialsMissing(
            f"Secret {namespace}/{name} (spec.kafka.security.credentialsSecret) not found: "
            f"create it with the keys {user_key} and {password_key}: {create}"
        )
    missing = [key for key in (user_key, password_key) if not data.get(key)]
    if missing:
        raise CredentialsMissing(
            f"Secret {namespace}/{name} has no (or an empty) {' and '.join(missing)}: "
            f"add {'them' if len(missing) > 1 else 'it'}, or set usernameKey/passwordKey of "
            "spec.kafka.security.credentialsSecret to the keys it has"
        )
    try:
        return SaslCredentials(data[user_key].decode(), data[password_key].decode())
    except UnicodeDecodeError:
        raise CredentialsMissing(f"Secret {namespace}/{name}: {user_key} and {password_key} must be UTF-8") from None


def admin_config(
    bootstrap_servers: str,
    timeout_s: float,
    security: Mapping[str, Any] | None = None,
    credentials: SaslCredentials | None = None,
) -> dict[str, object]:
    """AdminClient settings: the spec's brokers, security protocol and, for SASL, credentials."""
    config: dict[str, object] = {
        "bootstrap.servers": bootstrap_servers,
        "socket.timeout.ms": int(timeout_s * 1000),
        "client.id": "smartgrid-operator",
        # Connection failures reach the status and Events through KafkaUnavailable; librdkafka's
        # own per-retry error lines would only flood the operator log.
        "log_level": 2,
    }
    if security:
        config["security.protocol"] = security["protocol"]
        if security.get("saslMechanism"):
            config["sasl.mechanism"] = security["saslMechanism"]
    if credentials:
        config["sasl.username"] = credentials.username
        config["sasl.password"] = credentials.password
    return config


def client_config(namespace: str, kafka_spec: Mapping[str, Any], timeout_s: float) -> dict[str, object]:
    """AdminClient settings for a consumer, reading its SASL Secret now (no cache: a rotated
    password is used on the next check).

    Raises CredentialsMissing when the Secret or a key is missing, or the operator may not read it.
    """
    security = kafka_spec["security"]
    ref = sasl_secret_ref(security)
    credentials = None
    if ref is not None:
        try:
            data = kube.read_secret(namespace, ref["name"])
        except kube.KubeError as error:
            if error.status != 403:
                raise
            raise CredentialsMissing(
                f"the operator may not read Secret {namespace}/{ref['name']} (HTTP 403): its RBAC needs get on "
                "secrets here: upgrade the chart, whose operator role grants it"
            ) from None
        credentials = sasl_credentials(namespace, ref, data)
    return admin_config(kafka_spec["bootstrapServers"], timeout_s, security, credentials)


def consumer_lag(high: dict[int, int], low: dict[int, int], committed: dict[int, int]) -> int:
    """Records not yet consumed, summed over partitions.

    A partition without a committed offset counts from its earliest retained record.
    """
    lag = 0
    for partition, high_watermark in high.items():
        position = committed.get(partition, -1)
        if position < _NO_OFFSET:
            position = low.get(partition, 0)
        lag += max(0, high_watermark - position)
    return lag


def read_topic(config: Mapping[str, object], topic: str, group_id: str, timeout_s: float = 5.0) -> TopicState:
    """Partition count of ``topic`` and the lag of ``group_id`` on it, with AdminClient ``config``.

    Raises KafkaUnavailable when the brokers or the topic cannot be reached; lag is None when
    only the lag could not be read (the partition count is what scaling needs).
    """
    bootstrap_servers = config["bootstrap.servers"]
    admin = AdminClient({**config, "logger": KAFKA_CLIENT_LOG})
    try:
        try:
            metadata = admin.list_topics(topic=topic, timeout=timeout_s)
        except KafkaException as error:
            raise KafkaUnavailable(f"cannot reach Kafka at {bootstrap_servers}: {error}") from None
        described = metadata.topics.get(topic)
        if described is None or described.error is not None or not described.partitions:
            reason = described.error if described is not None else "not in metadata"
            raise KafkaUnavailable(f"topic {topic!r} is not available on {bootstrap_servers}: {reason}")
        partitions = sorted(described.partitions)
        try:
            lag = _group_lag(admin, topic, group_id, partitions, timeout_s)
        except (KafkaException, TimeoutError, ValueError):
            lag = None
        return TopicState(partitions=len(partitions), consumer_lag=lag)
    finally:
        admin.poll(0)  # its log lines


def _group_lag(admin: AdminClient, topic: str, group_id: str, partitions: list[int], timeout_s: float) -> int:
    def watermarks(spec: OffsetSpec) -> dict[int, int]:
        request = {TopicPartition(topic, p): spec for p in partitions}
        futures = admin.list_offsets(request, request_timeout=timeout_s)
        return {tp.partition: f.result(timeout=timeout_s).offset for tp, f in futures.items()}

    high = watermarks(OffsetSpec.latest())
    low = watermarks(OffsetSpec.earliest())
    request = [ConsumerGroupTopicPartitions(group_id, [TopicPartition(topic, p) for p in partitions])]
    futures = admin.list_consumer_group_offsets(request, request_timeout=timeout_s)
    result = futures[group_id].result(timeout=timeout_s)
    committed = {tp.partition: tp.offset for tp in result.topic_partitions if tp.error is None}
    return consumer_lag(high, low, committed)
