"""Kafka shell: the topic's partition count and the group's lag, through the AdminClient."""

from __future__ import annotations

import os
from dataclasses import dataclass

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

# Offsets below zero are librdkafka's "no committed offset" markers.
_NO_OFFSET = 0


class KafkaUnavailable(RuntimeError):
    """Kafka did not answer, or the topic does not exist; the message says which."""


@dataclass(frozen=True)
class TopicState:
    """What the operator needs to know about a topic on one resync."""

    partitions: int
    consumer_lag: int | None


def admin_config(bootstrap_servers: str, timeout_s: float) -> dict[str, object]:
    """AdminClient settings: the spec's brokers plus the operator's own credentials.

    The operator authenticates with SMARTGRID_KAFKA_* from its own environment rather than the
    consumer's Secret, so it needs no permission to read Secrets.
    """
    config: dict[str, object] = {
        "bootstrap.servers": bootstrap_servers,
        "socket.timeout.ms": int(timeout_s * 1000),
        "client.id": "smartgrid-operator",
        # Connection failures reach the status and Events through KafkaUnavailable; librdkafka's
        # own per-retry error lines would only flood the operator log.
        "log_level": 2,
    }
    optional = {
        "security.protocol": "SMARTGRID_KAFKA_SECURITY_PROTOCOL",
        "sasl.mechanism": "SMARTGRID_KAFKA_SASL_MECHANISM",
        "sasl.username": "SMARTGRID_KAFKA_SASL_USERNAME",
        "sasl.password": "SMARTGRID_KAFKA_SASL_PASSWORD",
    }
    for key, variable in optional.items():
        if os.environ.get(variable):
            config[key] = os.environ[variable]
    return config


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


def read_topic(bootstrap_servers: str, topic: str, group_id: str, timeout_s: float = 5.0) -> TopicState:
    """Partition count of ``topic`` and the lag of ``group_id`` on it.

    Raises KafkaUnavailable when the brokers or the topic cannot be reached; lag is None when
    only the lag could not be read (the partition count is what scaling needs).
    """
    admin = AdminClient(admin_config(bootstrap_servers, timeout_s))
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
