"""The live path: summaries for the dashboard, read ahead of the InfluxDB path.

A worker reads its partitions twice. The InfluxDB path (:mod:`ingest.pipeline`) holds records
until InfluxDB acknowledges them and pauses when InfluxDB is slow. The live path has a Kafka
consumer of its own on the same partitions: it validates and summarises each batch in the hot
path (no line protocol) and publishes the summaries to Redis at once, so the dashboard stays
seconds-fresh while InfluxDB is slow, down or catching up on a backlog.

Delivery is unchanged: the InfluxDB path commits an offset only when this path has published
the summaries through it (:meth:`LivePath.wait_published`), and the live path resumes from what
Redis says it published (with the meter-state checkpoint), never from the Kafka commit. Its
memory is one batch plus librdkafka's bounded prefetch: when Redis is down it simply stops
reading, and the InfluxDB path, whose commits then wait, pauses in turn.

The consumer is native (:class:`ingest._hotpath.LiveConsumer`): librdkafka's messages are decoded
and folded into the processor's summaries where they arrive, with the GIL released for the whole
poll, so this path makes no Python object per record and the worker's other threads never wait on
it for the interpreter. Python keeps the rest: when to publish, Redis, assignment changes.

Only this thread touches its consumer and its processor; the worker thread hands it partition changes (group
rebalances) through a queue and waits for them to be applied.

One publisher per partition chain: a publish is a compare-and-set on the partition's published
offset (:data:`PUBLISH`). If another replica published the partition since this one last did
(a consumer that the group dropped while it still ran, or two replicas given the same static
partitions), nothing of that partition is written; this path re-resumes it from Redis instead,
so the chain the aggregator reads never forks.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import redis
from confluent_kafka import OFFSET_BEGINNING
from smartgrid_common.backoff import redis_backoff
from smartgrid_common.contracts import summary_stream

from . import records
from ._hotpath import LiveConsumer
from .settings import IngestSettings
from .stats import WorkerStats

log = logging.getLogger(__name__)

# ARGV: stream, its MAXLEN backstop, n, then n x (published key, expected, new published, summary,
# state key, checkpoint offset, snapshot). '' as expected: the key must not exist yet; as new published: no
# summary; as checkpoint offset: no checkpoint. Returns the 1-based entries that were fenced.
PUBLISH = """
local fenced = {}
local i = 4
for k = 1, tonumber(ARGV[3]) do
  if (redis.call('GET', ARGV[i]) or '') ~= ARGV[i + 1] then
    fenced[#fenced + 1] = k
  else
    if ARGV[i + 2] ~= '' then
      redis.call('XADD', ARGV[1], 'MAXLEN', '~', ARGV[2], '*', 'data', ARGV[i + 3])
      redis.call('SET', ARGV[i], ARGV[i + 2])
    end
    if ARGV[i + 5] ~= '' then
      redis.call('HSET', ARGV[i + 4], 'offset', ARGV[i + 5], 'state', ARGV[i + 6])
    end
  end
  i = i + 7
end
return fenced
"""


class PublishSchedule:
    """When the live path publishes: every ``interval``, and early when an event second closes.

    A second on the dashboard is complete once every reading of it is published. A reading of a
    later second closes it; ``grace`` later (the last readings of it from the other partitions are
    still on their way: producer linger, fetch wait) it is published at once instead of at the
    next interval. An early publish needs half an interval since the last one, so a replay that
    crosses many seconds per read publishes at most twice per interval. At a steady load the
    interval publishes fall into step with the early ones.
    """

    def __init__(self, interval: float, grace: float, now: float) -> None:
        self.interval, self.grace = interval, grace
        self.last = now
        self.newest: int | None = None  # newest event second read so far
        self.closed_at: float | None = None  # when a second closed that is not published yet

    def watch_after(self) -> int | None:
        """Second after which a read should return at once (None: no early return wanted)."""
        return self.newest if self.grace > 0 and self.closed_at is None else None

    def saw(self, newest_second: int | None, now: float) -> None:
        if newest_second is None or (self.newest is not None and newest_second <= self.newest):
            return
        if self.newest is not None and self.grace > 0 and self.closed_at is None:
            self.closed_at = now
        self.newest = newest_second

    def due(self) -> float:
        """When the next publish is due."""
        due = self.last + self.interval
        if self.closed_at is not None:
            due = min(due, max(self.closed_at + self.grace, self.last + self.interval / 2))
        return due

    def published(self, now: float) -> None:
        self.last, self.closed_at = now, None


@dataclass
class Resume:
    """Where the live path resumes a partition, and with what it rebuilds its state."""

    partition: int
    offset: int
    published: int | None
    snapshot: bytes | None
    committed: int = -1  # the InfluxDB path's commit (-1: none), where a re-resume falls back to


@dataclass
class _Change:
    assign: list[Resume] = field(default_factory=list)
    release: list[int] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)


class LivePath(threading.Thread):
    """Consumes, summarises and publishes; tracks how far each partition is published."""

    def __init__(
        self,
        settings: IngestSettings,
        stats: WorkerStats,
        hard_stop: threading.Event,
    ) -> None:
        super().__init__(name="live-path", daemon=True)
        self.settings = settings
        self.stats = stats
        self.redis = redis.Redis.from_url(
            settings.redis_url,
            password=settings.redis_password.get_secret_value() or None,
            socket_timeout=10,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
        self.redis_failures = 0
        self._hard_stop = hard_stop
        self._stopping = threading.Event()  # not `_stop`: that would shadow Thread._stop(), which join() calls
        self.topic = settings.kafka_topic
        self.prefix = settings.redis_prefix
        self.processor = records.processor(settings, live=True)
        self.consumer = LiveConsumer(
            {"bootstrap.servers": settings.kafka_brokers, **settings.kafka_security()}
            | {
                # Assigned, never subscribed and never committing: the group id only names it.
                "group.id": f"{settings.kafka_group_id}.live",
                "enable.auto.commit": "false",
                "enable.auto.offset.store": "false",
                "auto.offset.reset": "earliest",
                "enable.partition.eof": "false",
                "fetch.wait.max.ms": "50",
                "queued.max.messages.kbytes": "16384",
            },
            settings.kafka_topic,
        )
        self.interval = settings.summary_interval
        self.error: BaseException | None = None
        self._changes: queue.Queue[_Change] = queue.Queue()
        self._published: dict[int, int] = {}  # partition -> last offset whose summary is in Redis
        self._tail: dict[int, str] = {}  # partition -> its published key as this path last saw it
        self._fallback: dict[int, int] = {}  # partition -> committed offset given at assignment
        self._publish_script = self.redis.register_script(PUBLISH)
        self._consumed: dict[int, int] = {}  # partition -> last offset folded (not yet published)
        self._position: dict[int, int] = {}  # partition -> last offset folded (meter state is there)
        self._progress = threading.Condition()
        self._assigned: set[int] = set()
        self._last_checkpoint = time.monotonic()
        self._checkpoint_due: set[int] = set()
        self._checkpointed: set[int] = set()  # partitions with a checkpoint in Redis

    # ---- called from the worker thread ----------------------------------------------------

    def resume_points(self, partitions: list[int], committed: dict[int, int]) -> list[Resume]:
        """Where each partition resumes: just after its meter-state checkpoint, else at the InfluxDB
        path's committed offset (else the beginning). Records up to the last published summary
        only rebuild meter state."""
        return [self._resume_point(partition, committed.get(partition, -1)) for partition in partitions]

    def _resume_point(self, partition: int, committed: int) -> Resume:
        # One MULTI: the published offset and the checkpoint as one publish left them.
        published_raw, state = self._redis_retry(
            lambda: self.redis.pipeline(transaction=True)
            .get(self._published_key(partition))
            .hgetall(self._state_key(partition))
            .execute()
        )
        published = int(published_raw) if published_raw is not None else None
        snapshot = None
        if state:
            offset, snapshot = int(state[b"offset"]) + 1, state[b"state"]
        else:
            offset = committed if committed >= 0 else OFFSET_BEGINNING
        return Resume(partition, offset, published, snapshot, committed)

    def assign(self, points: list[Resume]) -> None:
        """Start summarising these partitions (blocks until the live thread took them)."""
        self._apply(_Change(assign=points))

    def release(self, partitions: list[int]) -> None:
        """Publish what is summarised of these partitions and stop reading them (blocks)."""
        self._apply(_Change(release=partitions))

    def _apply(self, change: _Change) -> None:
        self._changes.put(change)
        while not change.done.wait(0.1):
            self._raise_if_failed()
            if self._hard_stop.is_set() or not self.is_alive():
                return

    def wait_published(self, next_offsets: dict[int, int], stop: threading.Event) -> bool:
        """Block until every ``partition -> next offset`` is covered by published summaries."""
        with self._progress:
            while not all(self._published.get(p, -1) >= o - 1 for p, o in next_offsets.items()):
                self._raise_if_failed()
                if stop.is_set():
                    return False
                self._progress.wait(0.1)
        return True

    def finish(self) -> None:
        """Publish what is summarised and end the thread."""
        self._stopping.set()
        self.join(timeout=max(5.0, self.settings.shutdown_timeout))

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"live path failed: {self.error}") from self.error

    # ---- the live thread ------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as error:  # noqa: BLE001 - reported to the worker, which exits
            log.exception("live path failed")
            self.error = error
            with self._progress:
                self._progress.notify_all()
        finally:
            self.consumer.close()

    def _loop(self) -> None:
        batch_size = self.settings.kafka_batch_size
        schedule = PublishSchedule(self.interval, self.settings.second_close_grace, time.monotonic())
        while not self._stopping.is_set():
            self._take_changes()
            timeout = max(0.005, min(self.interval, schedule.due() - time.monotonic()))
            if self._assigned:
                polled = self.consumer.poll(self.processor, batch_size, timeout, schedule.watch_after())
                self._fold(polled)
                schedule.saw(polled.newest_second, time.monotonic())
            else:
                self._stopping.wait(0.05)
            if time.monotonic() >= schedule.due():
                self._publish()
                schedule.published(time.monotonic())
        self._take_changes()
        self._publish(checkpoint=list(self._position))  # a restart resumes from here

    def _take_changes(self) -> None:
        while True:
            try:
                change = self._changes.get_nowait()
            except queue.Empty:
                return
            if change.release:
                # The next owner resumes from this checkpoint: meter state goes with the partition.
                self._publish(checkpoint=change.release)
                released = [p for p in change.release if p in self._assigned]
                if released:
                    self._assigned.difference_update(released)
                    self.consumer.unassign(released)
                for partition in change.release:
                    self._forget(partition)
            if change.assign:
                positions = [self._resume(point) for point in change.assign]
                self.consumer.assign(positions)
                log.info("live path resumed", extra={"positions": dict(positions)})
            change.done.set()

    def _resume(self, point: Resume) -> tuple[int, int]:
        """Rebuild a partition's state from Redis; ``(partition, offset)`` to read it from."""
        partition = point.partition
        self.processor.resume(partition, point.published, point.snapshot)
        self._forget(partition)
        if point.snapshot is not None:
            self._checkpointed.add(partition)
        self._tail[partition] = "" if point.published is None else str(point.published)
        self._fallback[partition] = point.committed
        with self._progress:
            resumed = point.published if point.published is not None else (point.offset - 1 if point.offset >= 0 else -1)
            self._published[partition] = max(self._published.get(partition, -1), resumed)
        self._assigned.add(partition)
        return partition, point.offset

    def _forget(self, partition: int) -> None:
        """Drop what this path holds of a partition's progress (released, or resumed afresh)."""
        self._consumed.pop(partition, None)
        self._position.pop(partition, None)
        self._checkpoint_due.discard(partition)
        self._checkpointed.discard(partition)

    def _fenced(self, partition: int) -> None:
        """Another replica published this partition since this path last did: drop what was
        summarised of it here and continue from what Redis holds now."""
        self.stats.count("fenced")
        point = self._resume_point(partition, self._fallback.get(partition, -1))
        log.warning(
            "partition published by another replica since; resuming from Redis",
            extra={"partition": partition, "published": point.published, "offset": point.offset},
        )
        # Re-assigned rather than seeked: a seek can fail on a partition whose fetch has not started.
        self.consumer.unassign([partition])
        self.consumer.assign([self._resume(point)])

    def _fold(self, polled) -> None:
        for error in polled.errors:
            log.warning("kafka error", extra={"error": error, "path": "live"})
        for partition, _first, last in polled.ranges:
            self._consumed[partition] = self._position[partition] = last
            self._checkpoint_due.add(partition)

    def _publish(self, checkpoint: list[int] = ()) -> None:
        """Summaries, the last published offset per partition and due checkpoints (those of
        ``checkpoint`` now, whatever the interval): one transaction."""
        # Forced ones, and a partition's first: a restart then never has to replay from the start.
        due = [p for p in self._checkpoint_due if p in checkpoint or p not in self._checkpointed]
        if time.monotonic() - self._last_checkpoint >= self.settings.checkpoint_interval:
            self._last_checkpoint = time.monotonic()
            due = list(self._checkpoint_due)
        if not self._consumed and not due:
            return
        summaries = self.processor.take_summaries() if self._consumed else []
        snapshots = {}
        for partition in due:
            snapshot = self.processor.snapshot(partition)
            if snapshot is not None:
                snapshots[partition] = (self._position[partition], snapshot)
            self._checkpoint_due.discard(partition)
            self._checkpointed.add(partition)
        consumed = dict(self._consumed)
        self._consumed.clear()
        fenced: set[int] = set()
        if summaries or snapshots:
            data = dict(summaries)
            order = sorted(data.keys() | snapshots.keys())
            args: list = [summary_stream(self.prefix), self.settings.stream_max_entries, len(order)]
            for partition in order:
                offset, snapshot = snapshots.get(partition, ("", b""))
                args += [
                    self._published_key(partition), self._tail.get(partition, ""),
                    consumed[partition] if partition in data else "", data.get(partition, b""),
                    self._state_key(partition), offset, snapshot,
                ]
            fenced = {order[k - 1] for k in self._redis_retry(lambda: self._publish_script(args=args))}
            for partition in data.keys() - fenced:
                self._tail[partition] = str(consumed[partition])
            self.stats.count("summaries", len(data.keys() - fenced))
        with self._progress:
            for partition, offset in consumed.items():
                if partition not in fenced:
                    self._published[partition] = max(self._published.get(partition, -1), offset)
            self._progress.notify_all()
        for partition in fenced:
            self._fenced(partition)
        self._update_lag()

    def _redis_retry(self, action):
        """Run a Redis action until it succeeds (backoff to 10 s); after INFLUXDB_MAX_RETRIES
        failures the worker reports not-ready. Only a hard stop ends the retries."""
        backoff = redis_backoff()  # 200 ms doubling to 10 s; a success ends the call (the reset)
        while True:
            try:
                result = action()
                if self.redis_failures:
                    log.info("redis available again")
                self.redis_failures = 0
                return result
            except redis.RedisError as error:
                self.redis_failures += 1
                self.stats.count("redis_retries")
                if self.redis_failures >= self.settings.influxdb_max_retries:
                    self.stats.ready, self.stats.reason = False, f"Redis unavailable: {error}"
                if self.redis_failures == 1 or self.redis_failures % 10 == 0:
                    log.warning("redis unavailable, retrying", extra={"error": str(error)})
                if self._hard_stop.wait(backoff.next()):
                    raise

    def _update_lag(self) -> None:
        for partition in self._assigned:
            high = self.consumer.high_watermark(partition)
            if high is not None:
                self.stats.live_lag[partition] = max(0, high - 1 - self._published.get(partition, -1))

    def _published_key(self, partition: int) -> str:
        return f"{self.prefix}:ingest:published:{self.topic}:{partition}"

    def _state_key(self, partition: int) -> str:
        return f"{self.prefix}:ingest:state:{self.topic}:{partition}"
