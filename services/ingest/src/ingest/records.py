"""The hot path's processor and the native readers' Kafka settings, shared by a worker's paths."""

from __future__ import annotations

import logging

from ._hotpath import Polled, Processor
from .settings import IngestSettings

# The readers fetch in sizeable responses: a fetch returns when it holds FETCH_MIN_BYTES, or
# after SMARTGRID_KAFKA_FETCH_WAIT (200 ms by default). With the broker's default of 1 byte, a
# partition set read at a moderate rate is fetched in responses of a few records each, which costs
# the broker and the reader a round trip per handful of records. At 20k readings/s on 32
# partitions (`make bench-fetch`, bench/README.md): the reader's threads cost 2.68 µs per reading
# with 256 KiB and 50 ms, 2.20 with 1 MiB and 100 ms, 2.01 with 200 ms. The wait bounds what it
# adds to the live view at low rates; at 20k/s the dashboard's freshness moved by tens of ms
# (bench_freshness, p99 per event second: 539 ms at 50 ms, 565-570 at 100, 603 at 200).
FETCH_MIN_BYTES = 1024 * 1024

log = logging.getLogger("ingest.kafka")


def processor(settings: IngestSettings, live: bool) -> Processor:
    """The hot path of one of a worker's readers: the live reader's folds the summaries, the
    InfluxDB path's own reader's does not (a reader builds lines of what it hands off, either
    way). Both judge event time by the same rules, so they refuse the same records."""
    return Processor(
        settings.kafka_topic,
        settings.timestamp_unit,
        aggregations=live,
        offline_after_ms=int(settings.offline_after * 1000),
        max_clock_skew_ms=int(settings.max_clock_skew * 1000),
        late_window_ms=int(settings.late_window * 1000),
    )


def reader_config(settings: IngestSettings, suffix: str) -> dict[str, str]:
    """librdkafka settings of a worker's native readers: assigned, never committing (the group id
    only names them: ``<KAFKA_GROUP_ID>.<suffix>``)."""
    return {"bootstrap.servers": settings.kafka_brokers, **settings.kafka_security()} | {
        "group.id": f"{settings.kafka_group_id}.{suffix}",
        "enable.auto.commit": "false",
        "enable.auto.offset.store": "false",
        "auto.offset.reset": "earliest",
        "enable.partition.eof": "false",
        "fetch.wait.max.ms": str(round(settings.kafka_fetch_wait * 1000)),
        "fetch.min.bytes": str(FETCH_MIN_BYTES),
        "queued.max.messages.kbytes": "16384",
    }


def log_kafka(polled: Polled, path: str) -> None:
    """What librdkafka said during a poll: its errors and warnings (it retries them: a broker that
    went away, a failed fetch) as warnings, its notices as info."""
    for error in polled.errors:
        log.warning("kafka error", extra={"error": error, "path": path})
    for notice in polled.notices:
        log.info("kafka notice", extra={"notice": notice, "path": path})
