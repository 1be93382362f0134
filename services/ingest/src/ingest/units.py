"""The InfluxDB path's write units: lines written together, finished in order, committed together.

A unit gathers the lines of several reads (``INFLUXDB_BATCH_SIZE`` points, or
``INFLUXDB_BATCH_TIMEOUT`` old) and is written by a pool of ``SMARTGRID_INFLUXDB_CONCURRENCY``
threads, so network time overlaps reading. The finishing thread takes units IN ORDER once their
write is acknowledged AND the live path has published summaries through their offsets,
dead-letters the points InfluxDB refused, confirms the dead-letter deliveries and hands them
back; the worker thread then commits their offsets.

A unit's offsets are committed only after InfluxDB acknowledged its points, its summaries are in
Redis and its dead letters are delivered.
"""

from __future__ import annotations

import collections
import logging
import queue
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from smartgrid_common.influx import InfluxClient, Rejected

from ._hotpath import Lines
from .deadletters import DeadLetters
from .priority import name_os_thread
from .settings import IngestSettings
from .stats import WorkerStats

log = logging.getLogger(__name__)

POSITION = struct.Struct("<iq")  # one line's (partition, offset) in Lines.positions


@dataclass
class Unit:
    """Lines written to InfluxDB together and committed together."""

    created: float = field(default_factory=time.monotonic)
    bodies: list[bytes] = field(default_factory=list)
    points: int = 0
    positions: list[bytes] = field(default_factory=list)  # Lines.positions, in body order
    next_offsets: dict[int, int] = field(default_factory=dict)  # partition -> offset to commit
    dead_letters: int = 0
    per_partition: collections.Counter = field(default_factory=collections.Counter)  # records
    write: Future | None = None

    @property
    def records(self) -> int:
        """Records in the unit (valid or not)."""
        return sum(self.per_partition.values())


class WriteUnits:
    """Open unit, units in flight, the writer pool and the finishing thread of one worker."""

    def __init__(
        self,
        settings: IngestSettings,
        stats: WorkerStats,
        dead_letters: DeadLetters,
        wait_published: Callable[[dict[int, int], threading.Event], bool] | None,
        read_records: Callable[[list[tuple[int, int]]], dict],
        hard_stop: threading.Event,
    ) -> None:
        self.settings = settings
        self.stats = stats
        self.dead_letters = dead_letters
        self._wait_published = wait_published
        self._read_records = read_records
        self._hard_stop = hard_stop
        self.influx = InfluxClient(settings)
        self.writes = ThreadPoolExecutor(settings.influxdb_concurrency, thread_name_prefix="influx-write",
                                         initializer=name_os_thread)
        self.open = Unit()
        self.pending: collections.deque[Unit] = collections.deque()  # submitted, in order
        self._finishing: queue.Queue[Unit | None] = queue.Queue()
        self._finished: queue.Queue[Unit] = queue.Queue()
        self.in_flight: collections.Counter[int] = collections.Counter()  # partition -> records
        self.write_failures = 0
        self.finisher = threading.Thread(target=self._finish_loop, name="finisher", daemon=True)

    def add(self, lines: Lines) -> None:
        """Put one read's lines in the open unit (its invalid records are dead-lettered)."""
        unit = self.open
        topic = self.settings.kafka_topic
        for invalid in lines.invalid:
            self.dead_letters.send((topic, invalid.partition, invalid.offset), invalid.value, invalid.key, invalid.headers, invalid.reason)
        unit.dead_letters += len(lines.invalid)
        if lines.valid:
            unit.bodies.append(lines.body)
            unit.positions.append(lines.positions)
            unit.points += lines.valid
        for partition, _first, last, records in lines.ranges:
            unit.next_offsets[partition] = last + 1
            unit.per_partition[partition] += records
            self.in_flight[partition] += records
        self.stats.in_flight = dict(self.in_flight)

    def maybe_submit(self, force: bool = False) -> None:
        """Hand the open unit to the writers when it is full, old enough or ``force``d."""
        unit = self.open
        if not unit.records:
            return
        full = unit.points >= self.settings.influxdb_batch_size
        old = time.monotonic() - unit.created >= self.settings.influxdb_batch_timeout
        if not (full or old or force):
            return
        body = b"".join(unit.bodies)
        unit.bodies = []
        unit.write = self.writes.submit(self._write, body)
        self.pending.append(unit)
        self._finishing.put(unit)
        self.open = Unit()

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

    def _finish_loop(self) -> None:
        name_os_thread()
        while True:
            unit = self._finishing.get()
            if unit is None:
                return
            rejected = unit.write.result()
            if rejected is None:
                return  # hard stop: leave the unit uncommitted, a restart replays it
            if self._wait_published is not None and not self._wait_published(unit.next_offsets, self._hard_stop):
                return
            unit.write = None
            if rejected:
                self._dead_letter_rejected(unit, rejected)
            if unit.dead_letters and not self.dead_letters.confirm(self._hard_stop):
                return
            self.stats.count("written", unit.points - len(rejected))
            self._finished.put(unit)

    def _dead_letter_rejected(self, unit: Unit, rejected: list[Rejected]) -> None:
        """Points InfluxDB refused go to the DLQ with InfluxDB's reason; the rest was written."""
        positions = b"".join(unit.positions)
        where = [POSITION.unpack_from(positions, POSITION.size * item.index) for item in rejected]
        records = self._read_records(where)
        topic = self.settings.kafka_topic
        for item, (partition, offset) in zip(rejected, where, strict=True):
            value, key, headers = records[(partition, offset)]
            self.dead_letters.send((topic, partition, offset), value, key, headers, f"rejected by InfluxDB: {item.reason}")
        self.stats.count("influx_rejected", len(rejected))
        unit.dead_letters += len(rejected)

    def take_finished(self) -> list[Unit]:
        """Units finished since the last call, in order (removed from the pending ones)."""
        done = []
        while True:
            try:
                unit = self._finished.get_nowait()
            except queue.Empty:
                break
            assert self.pending[0] is unit
            self.pending.popleft()
            self.in_flight.subtract(unit.per_partition)
            done.append(unit)
        if done:
            self.stats.in_flight = dict(+self.in_flight)
        return done

    @property
    def records(self) -> int:
        """Records read and not yet committed."""
        return sum(self.in_flight.values())

    def wait_finished(self, commit: Callable[[bool], None]) -> None:
        """Submit what is open, wait for every unit to finish, ``commit(synchronous=True)``."""
        self.maybe_submit(force=True)
        while self.pending and not self._hard_stop.is_set() and self.finisher.is_alive():
            time.sleep(0.05)
            if not self._finished.empty():
                commit(True)
        if self.pending:
            log.warning("stopped with uncommitted records; they will be replayed", extra={"in_flight": self.records})

    def close(self) -> None:
        """End the finishing thread and the writers (after :meth:`wait_finished`)."""
        self._finishing.put(None)
        self.writes.shutdown(wait=True)
        self.influx.close()
