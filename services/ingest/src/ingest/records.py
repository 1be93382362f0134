"""A consumed Kafka batch as the hot path takes it (shared by the InfluxDB path and the live path)."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException

log = logging.getLogger(__name__)


def readable(messages: list, path: str) -> tuple[list, list, list[int], list[int]]:
    """``(messages, values, partitions, offsets)`` of the batch's records; Kafka error events are
    logged (a fatal one raises). Errors are rare: the batch is checked once, then split."""
    good = [m for m in messages if m.error() is None]
    if len(good) != len(messages):
        for message in messages:
            error = message.error()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                if error.fatal():
                    raise KafkaException(error)
                log.warning("kafka error", extra={"error": str(error), "path": path})
    return good, [m.value() for m in good], [m.partition() for m in good], [m.offset() for m in good]
