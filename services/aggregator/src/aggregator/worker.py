"""The aggregator's loops: fold summaries from the consumer group, emit rollups on a timer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from redis.asyncio import Redis
from smartgrid_common.backoff import REDIS_MAX_DELAY, Backoff, redis_backoff
from smartgrid_common.contracts import Summary, summary_stream

from aggregator.fold import Outcome, source_of
from aggregator.settings import AggregatorSettings
from aggregator.store import LiveStore
from smartgrid_common.streams import GroupReader, Unreadable, ensure_group, trim_consumed

log = logging.getLogger("aggregator.worker")


class Metrics:
    """The aggregator's Prometheus metrics, in their own registry (one per app)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.summaries = Counter(
            "aggregator_summaries_total", "Summaries processed, by outcome", ["outcome"], registry=registry
        )
        self.readings = Counter(
            "aggregator_readings_folded_total", "Readings represented by applied summaries", registry=registry
        )
        self.fold_seconds = Histogram(
            "aggregator_fold_seconds", "Time of one fold script call", registry=registry
        )
        self.age = Histogram(
            "aggregator_summary_age_seconds",
            "From a summary entering the stream to its fold (how far the live view trails ingest)",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=registry,
        )
        self.waiting = Gauge(
            "aggregator_waiting_summaries", "Summaries held back until their predecessor is folded",
            registry=registry,
        )
        self.rollups = Counter("aggregator_rollups_emitted_total", "Rollup messages emitted", registry=registry)
        self.meters_new_again = Gauge(
            "aggregator_meters_new_again",
            "Meter updates that a partition reported as a new meter while the meter was known: readings of "
            "one meter on several partitions (not keyed by meter_id), or an ingest that lost its meter state",
            registry=registry,
        )
        self.errors = Counter("aggregator_redis_errors_total", "Failed Redis round trips", registry=registry)


def fold_chunks(items: list[tuple[bytes, Summary]], most: int, most_meters: int) -> Iterator[list[tuple[bytes, Summary]]]:
    """``items`` in order, in runs of at most ``most`` summaries and ``most_meters`` meter updates
    (a summary with more goes alone): one script call each, none holding Redis for long."""
    chunk: list[tuple[bytes, Summary]] = []
    meters = 0
    for item in items:
        count = len(item[1].meters)
        if chunk and (len(chunk) >= most or meters + count > most_meters):
            yield chunk
            chunk, meters = [], 0
        chunk.append(item)
        meters += count
    if chunk:
        yield chunk


class Aggregator:
    """Reads summaries, folds them exactly once, acknowledges, and emits rollups."""

    def __init__(self, redis: Redis, store: LiveStore, settings: AggregatorSettings, metrics: Metrics) -> None:
        self.redis = redis
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.stream = summary_stream(settings.redis_prefix)
        self.reader = GroupReader(
            redis, self.stream, settings.group, settings.consumer, settings.batch,
            settings.block, settings.claim_idle,
        )
        # Summaries whose predecessor is not folded yet (id -> summary); retried every round.
        self.waiting: dict[bytes, Summary] = {}
        # Summaries this release cannot read: never acknowledged (the partition's chain waits).
        self.unreadable = Unreadable("summary", log, forget_after=3 * settings.claim_idle)
        self.last_progress = time.monotonic()
        self.meters_new_again_seen = 0  # the fold's count when this replica last looked
        self.redis_ok = False
        self.stopping = asyncio.Event()

    def ready(self) -> tuple[bool, str]:
        """Ready when Redis answers and the fold is not stuck."""
        if not self.redis_ok:
            return False, "redis unreachable"
        if problem := self.unreadable.problem():
            return False, problem
        stalled = time.monotonic() - self.last_progress
        if self.waiting and stalled > self.settings.stall_after:
            return False, f"{len(self.waiting)} summaries wait for a predecessor for {stalled:.0f}s"
        return True, "folding"

    async def run_fold(self) -> None:
        """Fold loop; survives Redis outages by retrying with backoff (200 ms doubling to 10 s)."""
        backoff = redis_backoff()
        while not self.stopping.is_set():
            try:
                await ensure_group(self.redis, self.stream, self.settings.group)
                self.redis_ok = True
                while not self.stopping.is_set():
                    await self.round()
                    backoff.reset()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.redis_ok = False
                self.metrics.errors.inc()
                delay = backoff.next()
                log.exception("fold round failed; retrying", extra={"retry_in_s": delay, "attempt": backoff.attempts})
                await asyncio.sleep(delay)

    async def round(self) -> None:
        """Read one batch, fold it (and anything waiting), acknowledge what is settled."""
        entries = await self.reader.read()
        self.redis_ok = True
        batch: list[tuple[bytes, Summary]] = []
        trimmed: list[bytes] = []
        for entry_id, fields in entries:
            if not fields:
                trimmed.append(entry_id)  # trimmed away while pending: nothing left to read
                continue
            try:
                batch.append((entry_id, Summary.from_json(fields[b"data"])))
            except (ValueError, KeyError, TypeError) as error:
                # Not acknowledged: the summary stays for a release that reads it, and the rest of
                # its partition's chain waits for it (nothing is folded out of order).
                self.unreadable.note(entry_id, str(error) or type(error).__name__)
        await self.reader.ack(trimmed)
        await self.fold_all(batch)

    async def fold_all(self, batch: list[tuple[bytes, Summary]]) -> None:
        """Fold new and waiting summaries in (partition, offset) order.

        Normally every summary continues its partition, so the whole read is folded as one
        merged block (one script call; a merged (second, region) costs one set of Redis writes
        instead of one per partition). When one of them does not (a duplicate, a predecessor
        still missing), nothing was changed and they are folded one by one, each with its own
        outcome.
        """
        items = {**self.waiting, **dict(batch)}
        if not items:
            return
        ordered = sorted(items.items(), key=lambda kv: (source_of(kv[1]), kv[1].first_offset))
        settled: list[bytes] = []
        waiting: dict[bytes, Summary] = {}
        for chunk in fold_chunks(ordered, self.settings.batch, self.settings.fold_meters):
            if len(chunk) > 1:
                began = time.perf_counter()
                merged = await self.store.fold_merged([summary for _, summary in chunk])
                self.metrics.fold_seconds.observe(time.perf_counter() - began)
                if merged:
                    for entry_id, summary in chunk:
                        self._settle(entry_id, summary, Outcome.APPLIED, settled, waiting)
                    continue
            await self._fold_one_by_one(chunk, settled, waiting)
        # XACK only after the fold (it is atomic and durable in Redis by now).
        await self.reader.ack(settled)
        self.waiting = waiting
        self.metrics.waiting.set(len(waiting))
        # Still ours: keep other replicas from claiming them while we retry.
        await self.reader.touch(list(waiting))

    async def _fold_one_by_one(self, chunk, settled: list[bytes], waiting: dict[bytes, Summary]) -> None:
        for group in fold_chunks(chunk, self.settings.fold_group, self.settings.fold_meters):
            began = time.perf_counter()
            outcomes = await self.store.fold([summary for _, summary in group])
            self.metrics.fold_seconds.observe(time.perf_counter() - began)
            for (entry_id, summary), outcome in zip(group, outcomes, strict=True):
                self._settle(entry_id, summary, outcome, settled, waiting)

    def _settle(self, entry_id: bytes, summary: Summary, outcome: Outcome, settled: list[bytes],
                waiting: dict[bytes, Summary]) -> None:
        self.metrics.summaries.labels(outcome.name.lower()).inc()
        if outcome is Outcome.WAIT:
            waiting[entry_id] = summary
            return
        settled.append(entry_id)
        if outcome is Outcome.APPLIED:
            self.metrics.readings.inc(sum(part.count for part in summary.seconds))
            self.metrics.age.observe(max(0.0, time.time() - int(entry_id.split(b"-")[0]) / 1000))
            self.last_progress = time.monotonic()
        elif outcome is Outcome.OVERLAP:
            log.error(
                "summary straddles the applied watermark (chaining contract broken); skipped",
                extra={"source": source_of(summary), "first": summary.first_offset, "last": summary.last_offset},
            )

    async def check_meters_new_again(self) -> None:
        """Export the fold's count of meters reported new while known, and warn when it grows."""
        count = int((await self.store.stats()).get(b"meters_new_again", 0))
        if count > self.meters_new_again_seen:
            log.warning(
                "meters reported as new by a partition while known from before: readings of one meter arrive "
                "on several Kafka partitions (key the topic by meter_id), or an ingest lost its meter state; "
                "distinct-meter counts then count such a meter once per partition",
                extra={"meters_new_again": count, "since_last_check": count - self.meters_new_again_seen},
            )
        self.meters_new_again_seen = count
        self.metrics.meters_new_again.set(count)

    async def run_emit(self) -> None:
        """Every emit interval, flush the dirty buckets to the rollups stream."""
        lock_ms = max(1, int(self.settings.emit_interval * 1000) - 50)
        next_trim = time.monotonic() + 10
        # A failed emit is retried after one interval, then backs off as every Redis retry does
        # (doubling to 10 s), so an outage does not log a traceback every interval.
        interval = self.settings.emit_interval
        backoff = Backoff(interval, max(interval, REDIS_MAX_DELAY))
        while not self.stopping.is_set():
            try:
                while self.settings.emit_rollups:
                    seq, left = await self.store.emit(
                        self.settings.consumer, lock_ms, self.settings.emit_chunk, self.settings.stream_max_entries
                    )
                    if seq > 0:
                        self.metrics.rollups.inc()
                    if seq <= 0 or left == 0:
                        break
                if not self.settings.emit_rollups:
                    await self.store.discard_changes()
                if time.monotonic() >= next_trim:
                    await trim_consumed(self.redis, self.stream)
                    await self.check_meters_new_again()
                    next_trim = time.monotonic() + 10
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.metrics.errors.inc()
                delay = backoff.next()
                log.exception("emit failed; retrying", extra={"retry_in_s": delay, "attempt": backoff.attempts})
                await asyncio.sleep(delay)
                continue
            await asyncio.sleep(interval)
