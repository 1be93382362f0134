"""One worker's InfluxDB path: Kafka -> hot path -> InfluxDB -> offset commit.

Threads, each doing one kind of I/O:

* the consume thread (the caller of :meth:`Worker.run`) takes batches from Kafka, runs the hot
  path on each (one native call), sends invalid records to the dead-letter topic, groups batches
  into write units of ``INFLUXDB_BATCH_SIZE`` points and commits offsets of finished units;
* a pool of ``SMARTGRID_INFLUXDB_CONCURRENCY`` threads writes unit bodies to InfluxDB, so network
  time overlaps with decoding the next batches;
* the live path (:mod:`ingest.live`, when aggregations are on) reads the same partitions with a
  consumer of its own and publishes summaries to Redis as it reads: the dashboard never waits for
  InfluxDB, and never for this path's backpressure;
* the finishing thread takes units IN ORDER once their write is acknowledged AND the live path
  has published summaries through their offsets, dead-letters the points InfluxDB refused,
  confirms the dead-letter deliveries, and hands the units back for commit.

A unit's offsets are committed only after InfluxDB acknowledged its points, its summaries are in
Redis and its dead letters are delivered. When anything downstream is slow or down, records in
flight grow to ``PROCESSOR_QUEUE_SIZE``; then fetching pauses until they drain. Nothing is dropped.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, OFFSET_INVALID, Consumer, KafkaException, Producer, TopicPartition
from smartgrid_common.contracts import DLQ_REASON_HEADER, DLQ_SOURCE_HEADER
from smartgrid_common.influx import InfluxClient, Rejected

from . import records
from .live import LivePath
from .records import readable
from .settings import IngestSettings
from .stats import WorkerStats

log = logging.getLogger(__name__)


def _thread_ids() -> set[int]:
    """Kernel ids of this process's threads (Linux; empty elsewhere)."""
    try:
        return {int(tid) for tid in os.listdir("/proc/self/task")}
    except OSError:
        return set()


def lower_priority(thread_ids: set[int], increment: int) -> None:
    """Raise these threads' nice value by ``increment`` (per thread on Linux; no privilege needed).

    The InfluxDB path is throughput work with a backlog to absorb; the live path is latency work.
    When the host is short of CPU (InfluxDB catching up on the same nodes), the scheduler then
    gives the live path's threads the CPU first and the InfluxDB path the rest.
    """
    if increment <= 0:
        return
    for tid in thread_ids:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
        except ProcessLookupError:
            continue  # a short-lived thread that has ended
        except OSError as error:
            log.warning("could not lower the InfluxDB path's priority", extra={"tid": tid, "error": str(error)})
            return


@dataclass
class Unit:
    """Consumed batches written to InfluxDB together and committed together."""

    created: float = field(default_factory=time.monotonic)
    bodies: list[bytes] = field(default_factory=list)
    points: int = 0
    # Each batch's Kafka messages with the batch positions of its valid records (body order),
    # kept only to dead-letter, with the original message, what InfluxDB rejects.
    batches: list[tuple[list, list[int]]] = field(default_factory=list)
    next_offsets: dict[int, int] = field(default_factory=dict)
    dead_letters: int = 0
    per_partition: collections.Counter = field(default_factory=collections.Counter)
    write: Future | None = None

    @property
    def messages(self) -> int:
        """Records in the unit (valid or not)."""
        return sum(self.per_partition.values())


class DeadLetters:
    """Sends invalid records, with their original bytes, key and a reason, to the DLQ topic."""

    def __init__(self, producer: Producer, topic: str, stats: WorkerStats) -> None:
        self.producer = producer
        self.topic = topic
        self.stats = stats
        self._failed: collections.deque = collections.deque()

    def send(self, message, reason: str) -> None:
        """Queue one record for the dead-letter topic (delivery confirmed by :meth:`confirm`)."""
        headers = list(message.headers() or [])
        headers.append((DLQ_REASON_HEADER, reason.encode()))
        source = f"{message.topic()}/{message.partition()}/{message.offset()}"
        headers.append((DLQ_SOURCE_HEADER, source.encode()))
        self._produce(message.value(), message.key(), headers)
        self.stats.count("dead_lettered")
        log.warning("record dead-lettered", extra={"reason": reason, "source": source})

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
        self._hard_stop = hard_stop
        self.partitions = partitions
        self.stats = stats
        self.stop = stop
        self.topic = settings.kafka_topic
        # Summaries come from the live path; this processor only validates and builds lines.
        self.processor = records.processor(settings, live=False)
        common = {"bootstrap.servers": settings.kafka_brokers, **settings.kafka_security()}
        threads_before = _thread_ids()
        self.consumer = Consumer(
            common
            | {
                "group.id": settings.kafka_group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
                "fetch.max.bytes": 52428800,
                "queued.max.messages.kbytes": 32768,
                "partition.assignment.strategy": "range",
            }
        )
        self.producer = Producer(
            common | {"enable.idempotence": True, "acks": "all", "linger.ms": 20, "compression.type": "lz4"}
        )
        # librdkafka's threads of this path's clients (threads they start later inherit the nice).
        self.client_threads = _thread_ids() - threads_before
        self.dead_letters = DeadLetters(self.producer, settings.dead_letter_topic, stats)
        self.influx = InfluxClient(settings)
        self.writes = ThreadPoolExecutor(settings.influxdb_concurrency, thread_name_prefix="influx-write")
        self.live: LivePath | None = None
        if settings.processor_enable_aggregations:
            self.live = LivePath(settings, stats, hard_stop)
        self.pending: collections.deque[Unit] = collections.deque()
        self.finishing: queue.Queue[Unit | None] = queue.Queue()
        self.finished: queue.Queue[Unit] = queue.Queue()
        self.open_unit = Unit()
        self.in_flight_by_partition: collections.Counter[int] = collections.Counter()
        self.assigned: list[TopicPartition] = []
        self.paused = False
        self.write_failures = 0
        self.committed_offsets: dict[int, int] = {}
        self.last_health = 0.0
        self.last_report = (time.monotonic(), dict(stats.counters))

    # ---- start-up -------------------------------------------------------------------------

    def _resume_positions(self, partitions: list[int]) -> list[TopicPartition]:
        """Where each partition resumes: its committed offset (only a commit says InfluxDB has the
        points), else the beginning. The live path resumes on its own, from what Redis holds."""
        committed = {
            tp.partition: tp.offset
            for tp in self.consumer.committed([TopicPartition(self.topic, p) for p in partitions], timeout=30)
        }
        positions = [
            TopicPartition(self.topic, p, committed[p] if committed.get(p, OFFSET_INVALID) >= 0 else OFFSET_BEGINNING)
            for p in partitions
        ]
        self.committed_offsets.update({p: o for p, o in committed.items() if o >= 0})  # for the lag
        if self.live is not None:
            self.live.assign(self.live.resume_points(partitions, committed))
        log.info("partitions resumed", extra={"positions": {tp.partition: tp.offset for tp in positions}})
        return positions

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        positions = self._resume_positions([tp.partition for tp in partitions])
        consumer.assign(positions)
        self.assigned = positions

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._drain()
        # The live path publishes and checkpoints BEFORE unassign(): librdkafka rejoins the group
        # as soon as the assignment is gone, and the next owner reads what this one published.
        if self.live is not None:
            self.live.release([tp.partition for tp in partitions])
        consumer.unassign()
        self.assigned = []

    # ---- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        """Consume until stopped; on stop, finish and commit everything in flight."""
        self.finisher = threading.Thread(target=self._finish_loop, name="finisher", daemon=True)
        self.finisher.start()
        if self.live is not None:
            self.live.start()
            # After the live thread started (threads inherit their creator's nice): this thread
            # and those it starts from now on (InfluxDB writes), the finisher, the Kafka clients.
            lower_priority(
                {threading.get_native_id(), self.finisher.native_id, *self.client_threads},
                self.settings.influxdb_path_nice,
            )
        if self.partitions is None:
            self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        else:
            self.assigned = self._resume_positions(self.partitions)
            self.consumer.assign(self.assigned)
        self.stats.ready, self.stats.reason = True, "consuming"
        batch_size = self.settings.kafka_batch_size
        timeout = self.settings.kafka_batch_timeout
        try:
            while not self.stop.is_set():
                if self.live is not None and self.live.error is not None:
                    raise RuntimeError("live path failed") from self.live.error
                self._commit_finished()
                self._apply_backpressure()
                messages = self.consumer.consume(num_messages=batch_size, timeout=0.1 if self.paused else timeout)
                if messages:
                    self._process(messages)
                self._maybe_submit()
                self._update_health()
        finally:
            self._drain()
            self.finishing.put(None)
            # Every step runs even when one before it fails: an unclosed consumer holds its
            # partitions until the session times out, an unflushed producer loses dead letters.
            steps = [
                ("live path", self.live.finish if self.live is not None else None),
                ("kafka consumer", self.consumer.close),
                ("dead-letter producer", lambda: self.producer.flush(5)),
                ("influxdb writes", lambda: self.writes.shutdown(wait=True)),
                ("influxdb client", self.influx.close),
            ]
            for name, step in steps:
                if step is None:
                    continue
                try:
                    step()
                except Exception:
                    log.exception("stop step failed", extra={"step": name, "worker": self.stats.worker})
            log.info("worker stopped", extra={"worker": self.stats.worker, "committed": self.stats.counters["committed"]})

    def _process(self, messages: list) -> None:
        started = time.monotonic()
        good, values, partitions, offsets = readable(messages, "influxdb")
        if not good:
            return
        result = self.processor.process(values, partitions, offsets)
        unit = self.open_unit
        for index, reason in result.rejected:
            self.dead_letters.send(good[index], reason)
        unit.dead_letters += len(result.rejected)
        if result.valid:
            unit.bodies.append(result.body)
            valid_positions = _valid_positions(len(good), result.rejected)
            unit.batches.append((good, valid_positions))
        unit.points += result.valid
        for partition, _first, last in result.ranges:
            unit.next_offsets[partition] = last + 1
        counts = collections.Counter(partitions)  # counted in C, not per message in Python
        unit.per_partition.update(counts)
        self.in_flight_by_partition.update(counts)
        self.stats.in_flight = dict(self.in_flight_by_partition)
        self.stats.count("consumed", len(good))
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "batch processed",
                extra={"messages": len(good), "valid": result.valid, "seconds": time.monotonic() - started},
            )

    def _maybe_submit(self, force: bool = False) -> None:
        unit = self.open_unit
        if not unit.messages:
            return
        full = unit.points >= self.settings.influxdb_batch_size
        old = time.monotonic() - unit.created >= self.settings.influxdb_batch_timeout
        if not (full or old or force):
            return
        body = b"".join(unit.bodies)
        unit.bodies = []
        unit.write = self.writes.submit(self._write, body)
        self.pending.append(unit)
        self.finishing.put(unit)
        self.open_unit = Unit()

    def _write(self, body: bytes) -> list[Rejected] | None:
        def on_retry(attempt: int, error: Exception) -> None:
            self.stats.count("influx_retries")
            self.write_failures = attempt
            if attempt >= self.settings.influxdb_max_retries:
                self.stats.ready, self.stats.reason = False, f"InfluxDB unavailable: {error}"

        # Writes keep retrying through a graceful stop; only a hard stop (the shutdown timeout
        # passed) ends them, leaving the unit uncommitted for the next start to replay.
        rejected = self.influx.write_until_done(
            body, self.settings.influxdb_retention_policy, self._hard_stop, on_retry=on_retry
        )
        self.write_failures = 0
        return rejected

    # ---- finishing (in order) -------------------------------------------------------------

    def _finish_loop(self) -> None:
        while True:
            unit = self.finishing.get()
            if unit is None:
                return
            rejected = unit.write.result()
            if rejected is None:
                return  # hard stop: leave the unit uncommitted, a restart replays it
            if self.live is not None and not self.live.wait_published(unit.next_offsets, self._hard_stop):
                return
            unit.write = None
            if rejected:
                self._dead_letter_rejected(unit, rejected)
            if unit.dead_letters and not self.dead_letters.confirm(self._hard_stop):
                return
            self.stats.count("written", unit.points - len(rejected))
            self.finished.put(unit)

    def _dead_letter_rejected(self, unit: Unit, rejected: list[Rejected]) -> None:
        """Points InfluxDB refused go to the DLQ with InfluxDB's reason; the rest was written."""
        by_line: list[tuple[list, int]] = [(messages, position) for messages, positions in unit.batches for position in positions]
        for item in rejected:
            messages, position = by_line[item.index]
            self.dead_letters.send(messages[position], f"rejected by InfluxDB: {item.reason}")
        self.stats.count("influx_rejected", len(rejected))
        unit.dead_letters += len(rejected)

    def _commit_finished(self, synchronous: bool = False) -> None:
        offsets: dict[int, int] = {}
        while True:
            try:
                unit = self.finished.get_nowait()
            except queue.Empty:
                break
            assert self.pending[0] is unit
            self.pending.popleft()
            offsets.update(unit.next_offsets)
            self.in_flight_by_partition.subtract(unit.per_partition)
            self.stats.in_flight = dict(self.in_flight_by_partition)
            self.stats.count("committed", unit.messages)
            self.stats.observe_latency(time.monotonic() - unit.created)
        if offsets:
            self.committed_offsets.update(offsets)
            self.consumer.commit(
                offsets=[TopicPartition(self.topic, p, o) for p, o in offsets.items()],
                asynchronous=not synchronous,
            )

    @property
    def in_flight(self) -> int:
        """Records consumed and not yet committed."""
        return sum(self.in_flight_by_partition.values())

    def _apply_backpressure(self) -> None:
        limit = self.settings.processor_queue_size
        if not self.paused and self.in_flight >= limit:
            self.consumer.pause(self.assigned)
            self.paused = True
            self.stats.count("backpressure_pauses")
            log.warning("backpressure: fetching paused", extra={"in_flight": self.in_flight, "limit": limit})
            self._maybe_submit(force=True)
        elif self.paused and self.in_flight <= limit // 2:
            self.consumer.resume(self.assigned)
            self.paused = False
            log.info("backpressure released: fetching resumed", extra={"in_flight": self.in_flight})
        self.stats.paused = self.paused

    def _update_health(self) -> None:
        now = time.monotonic()
        if now - self.last_health < 1.0:
            return
        self.last_health = now
        redis_failures = self.live.redis_failures if self.live is not None else 0
        if self.write_failures == 0 and redis_failures == 0 and not self.stats.ready:
            self.stats.ready, self.stats.reason = True, "consuming"
        self._log_statistics(now)
        for tp in self.assigned:
            try:
                low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high >= 0:
                self.stats.lag[tp.partition] = max(0, high - self.committed_offsets.get(tp.partition, low))

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
                "in_flight": self.in_flight,
                "paused": self.paused,
                "lag": sum(self.stats.lag.values()),
                "influx_retries": counters["influx_retries"] - before["influx_retries"],
            },
        )
        self.last_report = (now, dict(counters))

    def _drain(self) -> None:
        """Submit what is open, wait for every unit to finish, commit synchronously."""
        self._maybe_submit(force=True)
        while self.pending and not self._hard_stop.is_set() and self.finisher.is_alive():
            time.sleep(0.05)
            if not self.finished.empty():
                self._commit_finished(synchronous=True)
        if self.pending:
            log.warning("stopped with uncommitted records; they will be replayed", extra={"in_flight": self.in_flight})


def _valid_positions(count: int, rejected: list[tuple[int, str]]) -> list[int]:
    """Batch positions of the valid records, in body order."""
    if not rejected:
        return range(count)  # type: ignore[return-value]
    bad = {index for index, _ in rejected}
    return [index for index in range(count) if index not in bad]
