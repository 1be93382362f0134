"""The live path: the worker's one Kafka reader, summaries for the dashboard, lines for InfluxDB.

The live thread reads the worker's partitions with the native :class:`ingest._hotpath.Reader`
(librdkafka compiled in; the GIL released for the whole poll; no Python object per record). Each
record is decoded once: folded into the summaries and meter state, and, while the InfluxDB path
is attached, turned into a line handed to it (:mod:`ingest.handoff`). Summaries are published to
Redis at once (:mod:`ingest.publisher`), so the dashboard stays seconds-fresh while InfluxDB is
slow, down or catching up on a backlog: this thread never waits for the InfluxDB path; when its
lines do not fit in the hand-off it detaches, and the InfluxDB path reads Kafka itself.

Delivery is unchanged: the InfluxDB path commits an offset only when this path has published the
summaries through it (:meth:`LivePath.wait_published`), and the live path resumes from what Redis
says it published (with the meter-state checkpoint), never from the Kafka commit. When Redis is
down it stops reading; the InfluxDB path, whose commits then wait, stops in turn.

Only this thread touches its reader and its processor; the worker thread hands it partition
changes (assignments, releases, hand-off changes) through a queue and waits for them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

from . import records
from ._hotpath import Polled, Reader
from .handoff import HandOff
from .priority import name_os_thread
from .publisher import Entry, Publisher, Resume
from .schedule import PublishSchedule
from .settings import IngestSettings
from .stats import WorkerStats

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """What the live thread knows of one assigned partition (it alone reads and writes this)."""

    expected: str  # its published offset in Redis as this path last saw it ('': none): the next publish's compare
    fallback: int  # the InfluxDB path's commit at assignment, where a fenced re-resume falls back to
    next: int  # next offset the reader returns (a logical offset, such as -2, until one is read)
    unpublished: int | None = None  # last offset folded since the last publish (None: nothing new)
    checkpoint_due: bool = False  # meter state changed since the last checkpoint
    checkpointed: bool = False  # a checkpoint of it is in Redis


@dataclass
class _Change:
    assign: list[Resume] = field(default_factory=list)
    release: list[int] = field(default_factory=list)
    hand_off: dict[int, int] | None = None  # partition -> the InfluxDB path's next offset needed
    stop_hand_off: bool = False
    result: dict[int, int] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)


class LivePath(threading.Thread):
    """Reads, summarises, publishes and hands lines off; tracks how far each partition is published."""

    def __init__(self, settings: IngestSettings, stats: WorkerStats, hard_stop: threading.Event, handoff: HandOff) -> None:
        super().__init__(name="live-path", daemon=True)
        self.settings = settings
        self.stats = stats
        self.handoff = handoff
        self.publisher = Publisher(settings, stats, hard_stop)
        self._hard_stop = hard_stop
        self._stopping = threading.Event()  # not `_stop`: that would shadow Thread._stop(), which join() calls
        self.processor = records.processor(settings, live=True)
        self.reader = Reader(records.reader_config(settings, "live"), settings.kafka_topic)
        self.error: BaseException | None = None
        self._changes: queue.Queue[_Change] = queue.Queue()
        self._partitions: dict[int, Progress] = {}
        self._attached = False  # lines are handed off
        # partition -> last offset whose summary is in Redis; read by the finisher under _progress.
        self._published: dict[int, int] = {}
        self._progress = threading.Condition()
        self._last_checkpoint = time.monotonic()

    @property
    def redis_failures(self) -> int:
        return self.publisher.failures

    # ---- called from the worker thread ----------------------------------------------------

    def resume_points(self, partitions: list[int], committed: dict[int, int]) -> list[Resume]:
        """Where each partition resumes (see :meth:`Publisher.resume_point`)."""
        return [self.publisher.resume_point(p, committed.get(p, -1)) for p in partitions]

    def assign(self, points: list[Resume]) -> None:
        """Start reading these partitions (blocks until the live thread took them)."""
        self._apply(_Change(assign=points))

    def release(self, partitions: list[int]) -> None:
        """Publish what is summarised of these partitions and stop reading them (blocks)."""
        self._apply(_Change(release=partitions))

    def hand_off(self, next_needed: dict[int, int]) -> dict[int, int]:
        """Attach the InfluxDB path, which needs each partition from ``next_needed`` on: lines
        from now on. Returns per partition the offset where the lines start: the InfluxDB path
        reads what lies below it itself (nothing, when it is not ahead of ``next_needed``)."""
        return self._apply(_Change(hand_off=next_needed))

    def stop_hand_off(self) -> None:
        """No more lines (the InfluxDB path drains: a stop or a revocation)."""
        self._apply(_Change(stop_hand_off=True))

    def _apply(self, change: _Change) -> dict[int, int]:
        self._changes.put(change)
        while not change.done.wait(0.1):
            self._raise_if_failed()
            if self._hard_stop.is_set() or not self.is_alive():
                break
        return change.result

    def wait_published(self, next_offsets: dict[int, int], stop: threading.Event) -> bool:
        """Block until every ``partition -> next offset`` is covered by published summaries."""
        with self._progress:
            while not all(self._published.get(p, -1) >= o - 1 for p, o in next_offsets.items()):
                self._raise_if_failed()
                if stop.is_set():
                    return False
                self._progress.wait(0.1)
        return True

    def positions(self) -> dict[int, int]:
        """Next offset the reader reads, per partition (a snapshot; for the InfluxDB path's lag)."""
        return {p: progress.next for p, progress in list(self._partitions.items())}

    def high_watermark(self, partition: int) -> int | None:
        return self.reader.high_watermark(partition)

    def finish(self) -> None:
        """Publish what is summarised and end the thread."""
        self._stopping.set()
        self.join(timeout=max(5.0, self.settings.shutdown_timeout))

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"live path failed: {self.error}") from self.error

    # ---- the live thread ------------------------------------------------------------------

    def run(self) -> None:
        name_os_thread()
        try:
            self._loop()
        except BaseException as error:  # noqa: BLE001 - reported to the worker, which exits
            log.exception("live path failed")
            self.error = error
            with self._progress:
                self._progress.notify_all()
        finally:
            self.reader.close()

    def _loop(self) -> None:
        # A poll's lines go to the hand-off whole: a quarter of it per poll lets several fit.
        batch_size = max(1, min(self.settings.kafka_batch_size, self.handoff.limit // 4))
        interval = self.settings.summary_interval
        schedule = PublishSchedule(interval, self.settings.second_close_grace, time.monotonic())
        while not self._stopping.is_set():
            self._take_changes()
            timeout = max(0.005, min(interval, schedule.due() - time.monotonic()))
            if self._partitions:
                polled = self.reader.poll(self.processor, batch_size, timeout, schedule.watch_after())
                self._read(polled)
                schedule.saw(polled.newest_second, time.monotonic())
            else:
                self._stopping.wait(0.05)
            if time.monotonic() >= schedule.due():
                self._publish()
                schedule.published(time.monotonic())
        self._take_changes()
        self._publish(checkpoint=list(self._partitions))  # a restart resumes from here

    def _take_changes(self) -> None:
        while True:
            try:
                change = self._changes.get_nowait()
            except queue.Empty:
                return
            if change.release:
                # The next owner resumes from this checkpoint: meter state goes with the partition.
                self._publish(checkpoint=change.release)
                released = [p for p in change.release if p in self._partitions]
                self.reader.stop_hand_off(released)
                self.reader.unassign(released)
                for partition in released:
                    del self._partitions[partition]
            if change.assign:
                positions = [self._resume(point) for point in change.assign]
                self.reader.assign(positions)
                log.info("live path resumed", extra={"positions": dict(positions)})
            if change.hand_off is not None:
                change.result = self._attach(change.hand_off)
            if change.stop_hand_off:
                self.reader.stop_hand_off(list(self._partitions))
                self._attached = False
            change.done.set()

    def _attach(self, next_needed: dict[int, int]) -> dict[int, int]:
        starts = {}
        for partition, progress in self._partitions.items():
            needed = next_needed.get(partition, -1)
            # Below what the reader reads next, the InfluxDB path reads itself (logical offsets,
            # such as the beginning, are negative: the reader's next record is then the start).
            start = max(needed, progress.next) if needed >= 0 or progress.next >= 0 else -1
            self.reader.hand_off(partition, start)
            starts[partition] = start
        self._attached = True
        log.info("InfluxDB path attached", extra={"starts": starts})
        return starts

    def _resume(self, point: Resume) -> tuple[int, int]:
        """Rebuild a partition's state from Redis; ``(partition, offset)`` to read it from."""
        partition = point.partition
        self.processor.resume(partition, point.published, point.snapshot)
        self._partitions[partition] = Progress(
            expected="" if point.published is None else str(point.published),
            fallback=point.committed,
            next=point.offset,
            checkpointed=point.snapshot is not None,
        )
        with self._progress:
            resumed = point.published if point.published is not None else (point.offset - 1 if point.offset >= 0 else -1)
            self._published[partition] = max(self._published.get(partition, -1), resumed)
        return partition, point.offset

    def _fenced(self, partition: int) -> None:
        """Another replica published this partition since this path last did: drop what was
        summarised of it here and continue from what Redis holds now."""
        self.stats.count("fenced")
        point = self.publisher.resume_point(partition, self._partitions[partition].fallback)
        log.warning(
            "partition published by another replica since; resuming from Redis",
            extra={"partition": partition, "published": point.published, "offset": point.offset},
        )
        # Re-assigned rather than seeked: a seek can fail on a partition whose fetch has not started.
        # Its hand-off stays: records re-read below it are folded, not handed off again.
        self.reader.unassign([partition])
        self.reader.assign([self._resume(point)])

    def _read(self, polled: Polled) -> None:
        records.log_kafka(polled, "live")
        for partition, _first, last in polled.ranges:
            progress = self._partitions[partition]
            progress.unpublished, progress.next = last, last + 1
            progress.checkpoint_due = True
        if polled.lines is not None and self._attached and not self.handoff.offer(polled.lines):
            # InfluxDB is behind by more than the hand-off holds: the InfluxDB path reads Kafka
            # itself from where it is, and attaches again when it is close behind.
            self.reader.stop_hand_off(list(self._partitions))
            self._attached = False
            self.handoff.detach()
            self.stats.count("detached")
            log.info("InfluxDB path detached: it reads Kafka itself until it is close behind")

    def _publish(self, checkpoint: list[int] = ()) -> None:
        """Summaries, the last published offset per partition and due checkpoints (those of
        ``checkpoint`` now, whatever the interval): one transaction."""
        every = time.monotonic() - self._last_checkpoint >= self.settings.checkpoint_interval
        if every:
            self._last_checkpoint = time.monotonic()
        entries: dict[int, Entry] = {}
        summaries = dict(self.processor.take_summaries()) if any(
            p.unpublished is not None for p in self._partitions.values()
        ) else {}
        for partition, progress in self._partitions.items():
            # Forced ones, and a partition's first: a restart then never replays from the start.
            due = progress.checkpoint_due and (every or partition in checkpoint or not progress.checkpointed)
            summary = summaries.get(partition)
            if summary is None and not due:
                continue
            entry = entries[partition] = Entry(partition, progress.expected)
            if summary is not None:
                entry.summary, entry.published = summary, progress.unpublished
            if due:
                snapshot = self.processor.snapshot(partition)
                if snapshot is not None:
                    entry.checkpoint = (progress.next - 1, snapshot)
                progress.checkpoint_due, progress.checkpointed = False, True
        fenced = self.publisher.publish(list(entries.values()))
        published = {}
        for partition, progress in self._partitions.items():
            if progress.unpublished is not None and partition not in fenced:
                published[partition] = progress.unpublished
                if partition in entries and entries[partition].summary is not None:
                    progress.expected = str(progress.unpublished)
            progress.unpublished = None
        self.stats.count("summaries", sum(1 for e in entries.values() if e.summary is not None and e.partition not in fenced))
        with self._progress:
            for partition, offset in published.items():
                self._published[partition] = max(self._published.get(partition, -1), offset)
            self._progress.notify_all()
        for partition in fenced:
            self._fenced(partition)
        self._update_lag()

    def _update_lag(self) -> None:
        for partition in self._partitions:
            high = self.reader.high_watermark(partition)
            if high is not None:
                self.stats.live_lag[partition] = max(0, high - 1 - self._published.get(partition, -1))
