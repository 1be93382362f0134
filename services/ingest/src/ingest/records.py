"""A consumed Kafka batch as the hot path takes it, and the hot path's processor (shared by the
InfluxDB path and the live path)."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException

from ._hotpath import Processor
from .settings import IngestSettings

log = logging.getLogger(__name__)


def processor(settings: IngestSettings, live: bool) -> Processor:
    """The hot path for one of a worker's two paths. The live path validates and summarises (no
    line protocol); the InfluxDB path validates and builds lines (its summaries come from the live
    path). Both judge event time by the same rules, so they refuse the same records."""
    return Processor(
        settings.kafka_topic,
        settings.timestamp_unit,
        aggregations=live,
        offline_after_ms=int(settings.offline_after * 1000),
        lines=not live,
        max_clock_skew_ms=int(settings.max_clock_skew * 1000),
        late_window_ms=int(settings.late_window * 1000),
    )


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
