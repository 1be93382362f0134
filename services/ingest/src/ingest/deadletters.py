"""The dead-letter topic: invalid records, and points InfluxDB refused, with their original bytes.

A dead letter is the record as it was in Kafka (value, key, headers) plus two headers: the reason
(``smartgrid-error``) and where it came from (``smartgrid-source``: topic/partition/offset).
Invalid records arrive from the native reader with their bytes (:class:`ingest._hotpath.Invalid`).
A point InfluxDB refuses is known by its position only (the reader keeps no record bytes past a
poll), so its record is read again from Kafka (:func:`read_records`): a rare path.
"""

from __future__ import annotations

import collections
import logging
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from smartgrid_common.contracts import DLQ_REASON_HEADER, DLQ_SOURCE_HEADER

from .stats import WorkerStats

log = logging.getLogger(__name__)


class DeadLetters:
    """Sends records, with a reason, to the DLQ topic; :meth:`confirm` waits for their delivery."""

    def __init__(self, producer: Producer, topic: str, stats: WorkerStats) -> None:
        self.producer = producer
        self.topic = topic
        self.stats = stats
        self._failed: collections.deque = collections.deque()

    def send(self, source: tuple[str, int, int], value: bytes | None, key: bytes | None, headers: list, reason: str) -> None:
        """Queue one record (``source`` = topic, partition, offset) for the dead-letter topic."""
        where = "/".join(map(str, source))
        headers = [*headers, (DLQ_REASON_HEADER, reason.encode()), (DLQ_SOURCE_HEADER, where.encode())]
        self._produce(value, key, headers)
        self.stats.count("dead_lettered")
        log.warning("record dead-lettered", extra={"reason": reason, "source": where})

    def _produce(self, value, key, headers) -> None:
        def delivered(error, _message, record=(value, key, headers)):
            if error is not None:
                self._failed.append(record)

        while True:
            try:
                self.producer.produce(self.topic, value=value, key=key, headers=headers, on_delivery=delivered)
                return
            except BufferError:
                self.producer.poll(0.1)
            except KafkaException as error:
                # E.g. the topic is missing: never drop the record; hold the batch until it can go.
                log.error("dead-letter topic not writable, retrying", extra={"topic": self.topic, "error": str(error)})
                self.stats.ready, self.stats.reason = False, f"dead-letter topic {self.topic}: {error}"
                time.sleep(2.0)

    def confirm(self, stop: threading.Event) -> bool:
        """Block until every queued dead letter is delivered (re-sending failures)."""
        while not stop.is_set():
            remaining = self.producer.flush(1.0)
            while self._failed:
                self._produce(*self._failed.popleft())
                remaining += 1
            if remaining == 0:
                return True
        return False


def read_records(config: dict, topic: str, positions: list[tuple[int, int]], stop: threading.Event) -> dict:
    """``(partition, offset) -> (value, key, headers)`` of these records, read again from Kafka
    with a consumer of its own (assigned, never committing). Blocks until every one is read."""
    wanted = set(positions)
    found: dict = {}
    consumer = Consumer(config | {"enable.auto.commit": False, "enable.partition.eof": False})
    try:
        first = {}
        for partition, offset in wanted:
            first[partition] = min(offset, first.get(partition, offset))
        consumer.assign([TopicPartition(topic, p, o) for p, o in first.items()])
        while wanted - found.keys() and not stop.is_set():
            for message in consumer.consume(1000, 1.0):
                if message.error() is None and (message.partition(), message.offset()) in wanted:
                    found[(message.partition(), message.offset())] = (message.value(), message.key(), message.headers() or [])
    finally:
        consumer.close()
    return found
