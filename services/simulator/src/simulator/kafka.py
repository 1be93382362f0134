"""The Kafka side of the simulator: a producer tuned for throughput, and a one-shot helper."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from smartgrid_common.contracts import DEFAULT_TOPIC
from smartgrid_common.logs import KAFKA_CLIENT_LOG

log = logging.getLogger(__name__)

DEFAULT_BROKERS = "127.0.0.1:9092"

_THROUGHPUT_CONFIG: dict[str, Any] = {
    # Let batches fill: 20 ms of latency buys large, well-compressed requests.
    "linger.ms": 20,
    "batch.size": 1_000_000,
    "compression.type": "lz4",
    # Deep local queue, so the Python thread rarely waits for the network.
    "queue.buffering.max.messages": 2_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "acks": "all",
    # Same partition for a key as Java clients (and kafka-console-producer) choose.
    "partitioner": "murmur2_random",
    # A delivery report per message would cost a Python call each: report failures only and
    # count successes as "produced minus failed minus still queued".
    "delivery.report.only.error": True,
}


def producer_config(brokers: str, **overrides: Any) -> dict[str, Any]:
    """librdkafka configuration for a high-throughput producer to ``brokers``."""
    if not brokers.strip():
        raise ValueError("KAFKA_BROKERS is empty: set it to host:port[,host:port]")
    return {"bootstrap.servers": brokers, **_THROUGHPUT_CONFIG, **overrides}


class KafkaSink:
    """Sends batches of (key, value) to one topic and counts what failed to be delivered."""

    def __init__(self, brokers: str, topic: str, **config_overrides: Any) -> None:
        self.topic = topic
        self.delivery_errors = 0
        self.sent = 0
        self.last_error: str | None = None
        self._producer = Producer(
            producer_config(brokers, on_delivery=self._on_delivery, error_cb=self._on_error, logger=KAFKA_CLIENT_LOG,
                            **config_overrides)
        )

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.delivery_errors += 1
            if self.delivery_errors <= 5 or self.delivery_errors % 10_000 == 0:
                log.warning("delivery failed", extra={"error": str(error), "failures": self.delivery_errors})
            self.last_error = str(error)

    def _on_error(self, error: KafkaError) -> None:
        self.last_error = str(error)
        log.warning("kafka client error", extra={"error": str(error)})

    def send(self, keys: list[bytes], values: list[bytes]) -> None:
        """Queue a batch; waits (serving delivery reports) whenever the local queue is full."""
        produce = self._producer.produce
        topic = self.topic
        for key, value in zip(keys, values):
            try:
                produce(topic, value, key)
            except BufferError:
                # Queue full: let librdkafka drain, then retry this very record.
                while True:
                    self._producer.poll(0.05)
                    try:
                        produce(topic, value, key)
                        break
                    except BufferError:
                        continue
        self.sent += len(values)
        self._producer.poll(0)

    @property
    def in_flight(self) -> int:
        """Records queued or on the wire, not yet acknowledged."""
        return len(self._producer)

    @property
    def delivered(self) -> int:
        """Records the brokers acknowledged (acks=all)."""
        return self.sent - self.delivery_errors - self.in_flight

    def flush(self, timeout_s: float = 60.0) -> int:
        """Wait until every queued record is delivered or failed; returns how many are still queued."""
        return self._producer.flush(timeout_s)


@dataclass(frozen=True, slots=True)
class ProduceResult:
    """Outcome of :func:`produce`."""

    sent: int
    delivered: int
    failed: int
    undelivered: int
    """Still queued when the timeout ran out."""
    seconds: float


def produce(
    records: Iterable[tuple[bytes, bytes]],
    brokers: str = DEFAULT_BROKERS,
    topic: str = DEFAULT_TOPIC,
    *,
    timeout_s: float = 120.0,
    check: bool = True,
    **config_overrides: Any,
) -> ProduceResult:
    """Produce ``(key, value)`` records to ``topic`` and wait until all are acknowledged.

    With ``check`` (the default) a record that failed or is still queued after ``timeout_s``
    raises RuntimeError, naming the last Kafka error.
    """
    sink = KafkaSink(brokers, topic, **config_overrides)
    started = time.monotonic()
    keys: list[bytes] = []
    values: list[bytes] = []
    for key, value in records:
        keys.append(key)
        values.append(value)
        if len(keys) >= 10_000:
            sink.send(keys, values)
            keys, values = [], []
    if keys:
        sink.send(keys, values)
    undelivered = sink.flush(timeout_s)
    result = ProduceResult(
        sent=sink.sent,
        delivered=sink.sent - sink.delivery_errors - undelivered,
        failed=sink.delivery_errors,
        undelivered=undelivered,
        seconds=time.monotonic() - started,
    )
    if check and (result.failed or result.undelivered):
        raise RuntimeError(
            f"{result.failed} records failed and {result.undelivered} were still queued after {timeout_s}s "
            f"producing to {topic} at {brokers} (last error: {sink.last_error}); is Kafka up and the topic there?"
        )
    return result
