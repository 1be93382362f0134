"""One worker's InfluxDB path: lines -> InfluxDB -> offset commit.

A worker reads each record once, in the live thread (:mod:`ingest.live`), which folds it into the
live summaries and hands its line to this path (:mod:`ingest.handoff`). This path, the worker's
main thread, puts lines into write units (:mod:`ingest.units`: written by a pool of threads,
finished in order by a finishing thread) and commits the offsets of finished units. It reads
Kafka itself (:mod:`ingest.catchup`) only when it has no lines to take: without a live path, in
a gap at an assignment, and after the live thread detached because InfluxDB fell behind.

A unit's offsets are committed only after InfluxDB acknowledged its points, its summaries are in
Redis and its dead letters are delivered. Lines handed off and not committed are at most
``PROCESSOR_QUEUE_SIZE`` (past it the live thread detaches), and so are the records in write
units (past it this path's own reads wait). Nothing is dropped: what is not committed is read
again after a restart.

The Kafka consumer of this class (confluent-kafka) reads no record: it holds the group (with
``SMARTGRID_ASSIGNMENT=group``), reads the committed offsets and commits.
"""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, Producer, TopicPartition

from ._hotpath import Lines
from .catchup import OwnReader, records_behind
from .deadletters import DeadLetters, read_records
from .handoff import DETACHED, HandOff
from .live import LivePath
from .priority import lower_priority, thread_ids
from .records import log_kafka
from .settings import IngestSettings
from .stats import WorkerStats
from .units import WriteUnits

log = logging.getLogger(__name__)


class Worker:
    """Consumes a set of partitions (or a group subscription) until ``stop`` is set."""

    def __init__(
        self,
        settings: IngestSettings,
        partitions: list[int] | None,
        stats: WorkerStats,
        stop: threading.Event,
        hard_stop: threading.Event,
    ) -> None:
        self.settings = settings
        self.partitions = partitions
        self.stats = stats
        self.stop = stop
        self._hard_stop = hard_stop
        self.topic = settings.kafka_topic
        common = settings.kafka_client()
        threads_before = thread_ids()
        self.consumer = Consumer(
            common
            | {
                "group.id": settings.kafka_group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "partition.assignment.strategy": "range",
            }
        )
        self.producer = Producer(
            common | {"enable.idempotence": True, "acks": "all", "linger.ms": 20, "compression.type": "lz4"}
        )
        # librdkafka's threads of this path's clients (threads they start later inherit the nice).
        self.client_threads = thread_ids() - threads_before
        self.handoff = HandOff(settings.processor_queue_size)
        self.live = LivePath(settings, stats, hard_stop, self.handoff) if settings.processor_enable_aggregations else None
        reread = common | {"group.id": f"{settings.kafka_group_id}.dead-letters"}
        self.units = WriteUnits(
            settings,
            stats,
            DeadLetters(self.producer, settings.dead_letter_topic, stats),
            self.live.wait_published if self.live is not None else None,
            lambda positions: read_records(reread, self.topic, positions, hard_stop),
            hard_stop,
        )
        # partition -> the next offset this path needs (a logical offset until one is read)
        self.next_needed: dict[int, int] = {}
        self.own: OwnReader | None = None  # this path reading Kafka itself (see ingest.catchup)
        self.committed_offsets: dict[int, int] = {}
        self.last_health = 0.0
        self.last_report = (time.monotonic(), dict(stats.counters))
        self.closing = False  # set once the loop ends: the stop steps run

    # ---- assignment -----------------------------------------------------------------------

    def _start(self, partitions: list[int]) -> None:
        """Resume ``partitions``: this path from its commits (only a commit says InfluxDB has the
        points), the live path from what Redis holds; then attach to the live path's lines."""
        committed = {
            tp.partition: tp.offset
            for tp in self.consumer.committed([TopicPartition(self.topic, p) for p in partitions], timeout=30)
        }
        self.committed_offsets.update({p: o for p, o in committed.items() if o >= 0})  # for the lag
        self.next_needed = {p: committed[p] if committed.get(p, -1) >= 0 else OFFSET_BEGINNING for p in partitions}
        log.info("partitions resumed", extra={"positions": self.next_needed})
        if self.live is None:
            self.own = OwnReader(self.settings, dict(self.next_needed))
            return
        self.live.assign(self.live.resume_points(partitions, committed))
        self._attach()

    def _attach(self) -> None:
        """Take lines from the live thread from where it is; read what lies before it here."""
        starts = self.live.hand_off(self.next_needed)
        gaps = {p: s for p, s in starts.items() if s >= 0 and self.next_needed.get(p, -1) < s}
        if gaps and self.own is None:
            self.own = OwnReader(self.settings, {p: self.next_needed[p] for p in gaps})
        if self.own is not None:
            self.own.bound(starts, self.next_needed)
            self._close_own_if_done()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.closing:
            # An assignment that reaches a closing consumer (a rebalance racing the close): there
            # is nothing to resume, and the client can no longer be asked for its commits.
            return
        self._start([tp.partition for tp in partitions])
        # The group's consumer reads nothing: assigned at the end, paused at once.
        held = [TopicPartition(self.topic, tp.partition, OFFSET_END) for tp in partitions]
        consumer.assign(held)
        consumer.pause(held)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._drain()
        # The live path publishes and checkpoints BEFORE unassign(): librdkafka rejoins the group
        # as soon as the assignment is gone, and the next owner reads what this one published.
        if self.live is not None:
            self.live.release([tp.partition for tp in partitions])
        consumer.unassign()
        self.next_needed = {}

    # ---- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        """Consume until stopped; on stop, finish and commit everything in flight."""
        self.units.finisher.start()
        if self.live is not None:
            self.live.start()
            # After the live thread started (threads inherit their creator's nice): this thread
            # and those it starts from now on (InfluxDB writes), the finisher, the Kafka clients.
            lower_priority(
                {threading.get_native_id(), self.units.finisher.native_id, *self.client_threads},
                self.settings.influxdb_path_nice,
            )
        if self.partitions is None:
            self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        else:
            self._start(self.partitions)
        self.stats.ready, self.stats.reason = True, "consuming"
        try:
            while not self.stop.is_set():
                if self.live is not None and self.live.error is not None:
                    raise RuntimeError("live path failed") from self.live.error
                self._commit_finished()
                # The group's callbacks (its partitions are paused) and both clients' log lines.
                self.consumer.poll(0)
                self.producer.poll(0)
                self._read()
                self.units.maybe_submit()
                self._update_health()
        finally:
            self.closing = True
            self._drain()
            # Every step runs even when one before it fails: an unclosed consumer holds its
            # partitions until the session times out, an unflushed producer loses dead letters.
            steps = [
                ("live path", self.live.finish if self.live is not None else None),
                ("kafka consumer", self.consumer.close),
                ("dead-letter producer", lambda: self.producer.flush(5)),
                ("influxdb writes", self.units.close),
            ]
            for name, step in steps:
                if step is None:
                    continue
                try:
                    step()
                except Exception:
                    log.exception("stop step failed", extra={"step": name, "worker": self.stats.worker})
            log.info("worker stopped", extra={"worker": self.stats.worker, "committed": self.stats.counters["committed"]})

    def _read(self) -> None:
        """Lines from the live thread, or from this path's own reader."""
        timeout = self.settings.kafka_batch_timeout
        if self.own is None:
            if not self.next_needed:
                self.stop.wait(0.05)  # nothing assigned (a group between assignments)
                return
            item = self.handoff.take(timeout)
            if item is DETACHED:
                self.own = OwnReader(self.settings, dict(self.next_needed))
            elif item is not None:
                self._take(item)
            return
        if self._backpressure():
            return
        polled = self.own.poll(timeout)
        log_kafka(polled, "influxdb")
        if polled.lines is not None:
            count = sum(r[3] for r in polled.lines.ranges)
            self.handoff.read_own(count)
            if self.live is not None:
                self.stats.count("read_again", count)
            self._take(polled.lines)
        if self._close_own_if_done():
            return
        if self.live is not None and self.own.pending is None and self._close_behind():
            self._attach()

    def _take(self, lines: Lines) -> None:
        for partition, first, last, records in lines.ranges:
            needed = self.next_needed.get(partition)
            if needed is None or 0 <= first < needed:
                raise RuntimeError(f"partition {partition}: lines from {first}, {needed} expected (handed off twice?)")
            self.next_needed[partition] = last + 1
            self.stats.count("consumed", records)
        self.units.add(lines)

    def _close_own_if_done(self) -> bool:
        if self.own is None or not self.own.done:
            return False
        self.own.close()
        self.own = None
        log.info("reading lines from the live path again")
        return True

    def _close_behind(self) -> bool:
        """This path's own reads are close behind the live thread (a quarter of the hand-off)."""
        return records_behind(self.next_needed, self.live.positions()) <= self.handoff.limit // 4

    def _backpressure(self) -> bool:
        """Past PROCESSOR_QUEUE_SIZE records in write units, this path's own reads wait (lines
        queued by the live thread do not count here: they wait for these reads)."""
        in_units, limit = self.units.records, self.handoff.limit
        if in_units >= limit:
            if not self.stats.paused:
                self.stats.count("backpressure_pauses")
                # A backlog drained at InfluxDB's pace pauses about every second: the first pause
                # since the last statistics line is a warning, the others are counted in that line.
                first = self.stats.counters["backpressure_pauses"] - self.last_report[1]["backpressure_pauses"] == 1
                log.log(logging.WARNING if first else logging.DEBUG, "backpressure: reading paused (InfluxDB is slower than Kafka)",
                        extra={"in_flight": in_units, "limit": limit})
                self.units.maybe_submit(force=True)
            self.stats.paused = True
        elif self.stats.paused and in_units <= limit // 2:
            self.stats.paused = False
            log.debug("backpressure released: reading resumed", extra={"in_flight": in_units})
        if self.stats.paused:
            time.sleep(0.05)
        return self.stats.paused

    # ---- commits --------------------------------------------------------------------------

    def _commit_finished(self, synchronous: bool = False) -> None:
        offsets: dict[int, int] = {}
        for unit in self.units.take_finished():
            offsets.update(unit.next_offsets)
            self.handoff.settle(unit.records)
            self.stats.count("committed", unit.records)
            self.stats.observe_latency(time.monotonic() - unit.created)
        if offsets:
            self.committed_offsets.update(offsets)
            self.consumer.commit(
                offsets=[TopicPartition(self.topic, p, o) for p, o in offsets.items()],
                asynchronous=not synchronous,
            )

    def _drain(self) -> None:
        """Stop taking new lines, write what was read, wait for it, commit synchronously."""
        if self.live is not None and self.live.is_alive() and self.live.error is None:
            self.live.stop_hand_off()
        while (item := self.handoff.take(0)) is not None:
            if item is not DETACHED:
                self._take(item)
        self.units.wait_finished(lambda synchronous: self._commit_finished(synchronous))
        if self.own is not None:
            self.own.close()
            self.own = None
        self.handoff.settle(self.handoff.records)  # what is left is read again by the next owner

    # ---- health ---------------------------------------------------------------------------

    def _update_health(self) -> None:
        now = time.monotonic()
        if now - self.last_health < 1.0:
            return
        self.last_health = now
        redis_failures = self.live.redis_failures if self.live is not None else 0
        if self.units.write_failures == 0 and redis_failures == 0 and not self.stats.ready:
            self.stats.ready, self.stats.reason = True, "consuming"
        influx = self.units.influx
        self.stats.degraded = influx.degraded()
        self.stats.influx_nodes = {n.url: (0 if n.is_out(now) else 1, n.failures, n.writes) for n in influx.nodes}
        self.stats.under_replicated = influx.under_replicated
        self._log_statistics(now)
        reader = self.live or self.own
        for partition in self.next_needed:
            high = reader.high_watermark(partition) if reader is not None else None
            if high is not None:
                self.stats.lag[partition] = max(0, high - self.committed_offsets.get(partition, 0))

    def _log_statistics(self, now: float, every: float = 30.0) -> None:
        """One INFO line per interval: rates since the last line, what is in flight, lag."""
        then, before = self.last_report
        if now - then < every:
            return
        counters = self.stats.counters
        rates = {name: round((counters[name] - before[name]) / (now - then), 1) for name in ("consumed", "written", "committed", "dead_lettered")}
        log.info(
            "batch statistics",
            extra={
                "per_second": rates,
                "in_flight": self.handoff.records,
                "reading_kafka": self.own is not None,
                "paused": self.stats.paused,
                "backpressure_pauses": counters["backpressure_pauses"] - before["backpressure_pauses"],
                "lag": sum(self.stats.lag.values()),
                "influx_retries": counters["influx_retries"] - before["influx_retries"],
            },
        )
        self.last_report = (now, dict(counters))
