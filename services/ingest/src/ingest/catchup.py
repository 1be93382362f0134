"""The InfluxDB path reading Kafka itself: without a live path, or to fill a gap behind it.

With aggregations on, the InfluxDB path normally reads nothing: the live thread hands it lines
(:mod:`ingest.handoff`). It reads Kafka itself, with a native :class:`ingest._hotpath.Reader` of
its own (no summaries, lines only), in three cases:

* aggregations are off (there is no live path): always, unbounded;
* at an assignment whose live path resumes after the InfluxDB path's commit (its checkpoint is
  ahead of InfluxDB): the gap, bounded by where the hand-off starts;
* after the live thread detached (InfluxDB fell behind by more than ``PROCESSOR_QUEUE_SIZE``):
  unbounded until it is close behind the live thread, then bounded by where the new hand-off
  starts.

A bounded partition is done when its last record before the bound was read (or one past it seen).
"""

from __future__ import annotations

import logging

from ._hotpath import Polled, Reader
from .records import processor, reader_config
from .settings import IngestSettings

log = logging.getLogger(__name__)


class OwnReader:
    """The InfluxDB path's own reader over ``positions`` (partition -> next offset needed)."""

    def __init__(self, settings: IngestSettings, positions: dict[int, int]) -> None:
        self.settings = settings
        self.processor = processor(settings, live=False)
        self.reader = Reader(reader_config(settings, "raw"), settings.kafka_topic)
        self.partitions = set(positions)
        self.pending: set[int] | None = None  # bounded partitions not done yet (None: unbounded)
        for partition in positions:
            self.reader.hand_off(partition, -1)
        self.reader.assign(list(positions.items()))
        log.info("reading Kafka for InfluxDB", extra={"positions": positions})

    def bound(self, until: dict[int, int], next_needed: dict[int, int]) -> None:
        """Read each partition only up to ``until`` (exclusive), where the hand-off starts."""
        self.pending = set()
        for partition in self.partitions:
            offset = until.get(partition, -1)
            if offset < 0 or next_needed.get(partition, -1) >= offset:
                self.reader.unassign([partition])  # nothing left to read below the bound
            else:
                self.reader.bound(partition, offset)
                self.pending.add(partition)

    def poll(self, timeout: float) -> Polled:
        polled = self.reader.poll(self.processor, self.settings.kafka_batch_size, timeout)
        if self.pending is not None:
            self.pending.difference_update(polled.reached)
        return polled

    @property
    def done(self) -> bool:
        """Every bounded partition is read up to its bound."""
        return self.pending is not None and not self.pending

    def high_watermark(self, partition: int) -> int | None:
        return self.reader.high_watermark(partition)

    def close(self) -> None:
        self.reader.close()


def records_behind(next_needed: dict[int, int], live_next: dict[int, int]) -> int:
    """How many records the InfluxDB path's own reads are behind the live thread, over all
    partitions (per partition: the offsets the live thread will read next and this path needs
    next). A negative offset is logical (the beginning: nothing read yet). A partition neither has
    read is not behind (an empty partition never holds an attachment back); one only the live
    thread has read counts from offset 0 (an upper bound: the log may start later)."""
    behind = 0
    for partition, needed in next_needed.items():
        ahead = live_next.get(partition, needed)
        if ahead >= 0:
            behind += max(0, ahead - max(needed, 0))
    return behind
