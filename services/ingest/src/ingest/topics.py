"""The topics a replica works with: its partitions of KAFKA_TOPIC, the topic's partition count,
and the dead-letter topic (created when it is missing)."""

from __future__ import annotations

import logging

from confluent_kafka import Consumer

from .assignment import parse_partition_list, partitions_per_replica, replica_range
from .settings import IngestSettings

log = logging.getLogger(__name__)


def plan_partitions(settings: IngestSettings, partition_count: int | None) -> list[int]:
    """This replica's partitions: SMARTGRID_PARTITIONS, else its static range of the topic."""
    if settings.partitions:
        return parse_partition_list(settings.partitions)
    assert partition_count is not None
    per_replica = settings.partitions_per_replica or partitions_per_replica(
        settings.kafka_consumer_count, partition_count
    )
    return replica_range(settings.replica, per_replica, partition_count)


def topic_partition_count(settings: IngestSettings, timeout: float = 10.0) -> int | None:
    """Partitions of KAFKA_TOPIC, or None when Kafka does not answer or the topic is missing."""
    consumer = Consumer(settings.kafka_client() | {"group.id": settings.kafka_group_id})
    try:
        metadata = consumer.list_topics(settings.kafka_topic, timeout=timeout)
        topic = metadata.topics.get(settings.kafka_topic)
        if topic is None or topic.error is not None or not topic.partitions:
            return None
        return len(topic.partitions)
    except Exception as error:  # noqa: BLE001 - any client error means "not reachable yet"
        log.warning("kafka metadata unavailable", extra={"error": str(error)})
        return None
    finally:
        consumer.poll(0)  # its log lines
        consumer.close()


def ensure_dead_letter_topic(settings: IngestSettings, partition_count: int | None) -> str | None:
    """Create the dead-letter topic when it is missing; returns an error message, or None when it exists."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(settings.kafka_client())
    topic = settings.dead_letter_topic
    try:
        if topic in admin.list_topics(timeout=10).topics:
            return None
        partitions = max(1, min(partition_count or 1, 8))
        future = admin.create_topics([NewTopic(topic, num_partitions=partitions)])[topic]
        future.result(timeout=30)
        log.info("dead-letter topic created", extra={"topic": topic, "partitions": partitions})
        return None
    except Exception as error:  # noqa: BLE001 - reported as not-ready with what to do
        if "TOPIC_ALREADY_EXISTS" in str(error):
            return None
        return (
            f"dead-letter topic {topic} is missing and could not be created ({error}): "
            "create it, or set SMARTGRID_DLQ_TOPIC to an existing topic"
        )
    finally:
        admin.poll(0)  # its log lines
