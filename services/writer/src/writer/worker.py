"""The writer's loop: rollups from the consumer group -> InfluxDB, XACK only after InfluxDB's ack."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.asyncio import Redis
from smartgrid_common.backoff import influx_backoff, redis_backoff
from smartgrid_common.contracts import (
    STATUS_MEASUREMENT,
    Rollup,
    rollup_dirty_keys,
    rollup_seq_keys,
    rollup_status_seq_key,
    rollup_stream,
)
from smartgrid_common.influx import InfluxClient, InfluxUnavailable

from writer.builders import Superseded, build_body
from writer.settings import WriterSettings
from smartgrid_common.streams import GroupReader, Unreadable, ensure_group, trim_consumed

log = logging.getLogger("writer.worker")


class Metrics:
    """The writer's Prometheus metrics, in their own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.rollups = Counter("writer_rollups_written_total", "Rollup messages written and acked", registry=registry)
        self.points = Counter("writer_points_written_total", "Points written to InfluxDB", registry=registry)
        self.rejected = Counter("writer_points_rejected_total", "Points InfluxDB refused (400)", registry=registry)
        self.retries = Counter("writer_influx_retries_total", "Failed InfluxDB writes retried", registry=registry)
        self.pending = Gauge("writer_batch_in_flight", "Rollups read but not yet acknowledged", registry=registry)
        self.reemitted = Counter(
            "writer_seconds_reemitted_total",
            "Event seconds the aggregator was asked to emit again after a write of theirs went unanswered",
            registry=registry,
        )


# KEYS: the writer's due set (member: an event second, or 'status'; score: when due, epoch ms), the
# aggregator's set of seconds to emit, its status flag. ARGV[1]: now, epoch ms. Moves what is due
# from the first to the others, at most 5,000 at a time; returns {seconds moved, status moved}.
REEMIT = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 5000)
local seconds, status = 0, 0
for _, member in ipairs(due) do
  if member == 'status' then
    redis.call('SET', KEYS[3], '1')
    status = 1
  else
    redis.call('SADD', KEYS[2], member)
    seconds = seconds + 1
  end
end
if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
return {seconds, status}
"""


class Reemissions:
    """Event seconds (and status counts) to have emitted again, after a write of theirs went
    unanswered.

    A write InfluxDB did not answer in time (or answered 5xx, or stored on fewer replicas) may
    still be stored later: a cluster's data node holds it while it waits for the meta node or a
    replica. If a newer emission of the same second was written meanwhile (by this replica or
    another), the held one lands on top of it and InfluxDB keeps it. So ``after`` seconds after
    InfluxDB took such a write, the writer asks the aggregator to emit its seconds again: their
    whole current state, with a newer seq, which a writer then writes last.

    The requests wait in Redis (``<prefix>:writer:reemit``, one member per second: bounded by the
    seconds written in ``after``), so a writer that stops or dies before they are due leaves them
    to the other replicas, or to its next start.
    """

    def __init__(self, redis: Redis, prefix: str, after: float) -> None:
        self.redis = redis
        self.after = after
        self.key = f"{prefix}:writer:reemit"
        self.dirty_keys = rollup_dirty_keys(prefix)
        self._move = redis.register_script(REEMIT)

    async def written(self, lines: list[str]) -> None:
        """``lines`` were taken by InfluxDB after an attempt that went unanswered."""
        due = int((time.time() + self.after) * 1000)
        members = {
            "status" if line.startswith(STATUS_MEASUREMENT + ",") else line[line.rindex(" ") + 1 :] for line in lines
        }
        await self.redis.zadd(self.key, dict.fromkeys(members, due))

    async def move_due(self) -> tuple[int, bool]:
        """Hand what is due to the aggregator's next emission: (seconds, whether the status)."""
        seconds, status = await self._move(keys=[self.key, *self.dirty_keys], args=[int(time.time() * 1000)])
        return int(seconds), bool(status)


class Writer:
    """Reads rollups and writes them; never acknowledges what InfluxDB has not acknowledged."""

    def __init__(self, redis: Redis, influx: InfluxClient, settings: WriterSettings, metrics: Metrics) -> None:
        self.redis = redis
        self.influx = influx
        self.settings = settings
        self.metrics = metrics
        self.prefix = settings.redis_prefix
        self.stream = rollup_stream(settings.redis_prefix)
        self.reader = GroupReader(
            redis, self.stream, settings.group, settings.consumer, settings.batch,
            settings.block, settings.claim_idle,
        )
        self.stop = threading.Event()
        # Rollups this release cannot read: never acknowledged, reported in /readyz.
        self.unreadable = Unreadable("rollup", log, forget_after=3 * settings.claim_idle)
        self.failed_attempts = 0
        self.reemissions = Reemissions(redis, settings.redis_prefix, settings.reemit_after)
        self._next_reemit = 0.0
        self.redis_ok = False
        self.schema_ok = False

    def ready(self) -> tuple[bool, str]:
        """Not ready while Redis is unreachable or InfluxDB keeps refusing (INFLUXDB_MAX_RETRIES);
        ready but "degraded" while some of a cluster's nodes are left out."""
        if not self.redis_ok:
            return False, "redis unreachable"
        if problem := self.unreadable.problem():
            return False, problem
        if not self.schema_ok:
            return False, "influxdb schema not created yet"
        # As in the ingest: INFLUXDB_MAX_RETRIES failed attempts in a row make it not ready.
        if self.failed_attempts and self.failed_attempts >= self.settings.influxdb_max_retries:
            return False, f"influxdb write failing ({self.failed_attempts} attempts)"
        # Ready while some InfluxDB node takes the writes; /readyz names the nodes left out.
        degraded = self.influx.degraded()
        return True, f"writing; {degraded}" if degraded else "writing"

    def _on_retry(self, attempt: int, error: Exception) -> None:
        self.failed_attempts = attempt
        self.metrics.retries.inc()

    async def run(self) -> None:
        """Create the schema, then write rollups until stopped; Redis outages are retried."""
        schema_backoff = influx_backoff(self.settings)  # INFLUXDB_RETRY_INTERVAL doubling to 30 s
        while not self.stop.is_set() and not self.schema_ok:
            try:
                await asyncio.to_thread(self.influx.ensure_schema)
                self.schema_ok = True
            except InfluxUnavailable as error:
                delay = schema_backoff.next()
                log.warning("influxdb schema not ready; retrying", extra={"error": str(error), "retry_in_s": delay})
                await asyncio.sleep(delay)
        backoff = redis_backoff()  # 200 ms doubling to 10 s
        next_trim = time.monotonic() + 10
        while not self.stop.is_set():
            try:
                await ensure_group(self.redis, self.stream, self.settings.group)
                self.redis_ok = True
                while not self.stop.is_set():
                    await self.round()
                    await self.reemit_due()
                    if time.monotonic() >= next_trim:
                        await trim_consumed(self.redis, self.stream)
                        next_trim = time.monotonic() + 10
                    backoff.reset()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.redis_ok = False
                delay = backoff.next()
                log.exception("writer round failed; retrying", extra={"retry_in_s": delay, "attempt": backoff.attempts})
                await asyncio.sleep(delay)

    async def write(self, lines: list[str]) -> bool:
        """Write ``lines`` in ``INFLUXDB_BATCH_SIZE`` bodies until InfluxDB takes them; False when
        stopped first. The seconds of a body that went unanswered on the way are emitted again later."""
        size = self.settings.influxdb_batch_size
        for start in range(0, len(lines), size):
            chunk = lines[start : start + size]
            unsettled = self.influx.unsettled
            rejected = await asyncio.to_thread(
                self.influx.write_until_done,
                ("\n".join(chunk) + "\n").encode(),
                self.settings.influxdb_aggregate_retention_policy,
                self.stop,
                "s",
                self._on_retry,
            )
            if rejected is None:
                return False
            for item in rejected:
                log.error("influxdb rejected a rollup point", extra={"line": chunk[item.index], "reason": item.reason})
            self.metrics.rejected.inc(len(rejected))
            self.metrics.points.inc(len(chunk) - len(rejected))
            self.failed_attempts = 0
            if self.influx.unsettled != unsettled:
                await self.reemissions.written(chunk)
        return True

    async def reemit_due(self) -> None:
        """Once a second: ask the aggregator to emit again the seconds (and status counts) whose
        time has come, this replica's or another's."""
        if time.monotonic() < self._next_reemit:
            return
        self._next_reemit = time.monotonic() + 1.0
        seconds, status = await self.reemissions.move_due()
        if seconds or status:
            self.metrics.reemitted.inc(seconds)
            log.info("asked for seconds to be emitted again after an unanswered write",
                     extra={"seconds": seconds, "status": status})

    async def newest_seqs(self, rollups: list[Rollup]) -> Superseded:
        """The newest emission seq Redis holds for every bucket in ``rollups``."""
        seconds = sorted({row.second for rollup in rollups for row in rollup.seconds})
        region_seconds = sorted({row.second for rollup in rollups for row in rollup.regions})
        pipe = self.redis.pipeline(transaction=False)
        for second in seconds:
            pipe.hget(rollup_seq_keys(self.prefix, second)[0], "emit_seq")
        for second in region_seconds:
            pipe.hget(rollup_seq_keys(self.prefix, second)[1], "emit_seq")
        pipe.get(rollup_status_seq_key(self.prefix))
        replies = await pipe.execute()
        status_raw = replies.pop()
        newest = Superseded()
        for second, raw in zip(seconds, replies[: len(seconds)], strict=True):
            newest.seconds[second] = int(raw or 0)
        for second, raw in zip(region_seconds, replies[len(seconds) :], strict=True):
            newest.regions[second] = int(raw or 0)
        if status_raw:
            seq, _, second = status_raw.decode().partition(" ")
            newest.status = int(seq)
            newest.status_second = int(second) if second and second != "null" else None
        return newest

    async def round(self) -> None:
        """Read a batch of rollups, write them as one InfluxDB batch, then acknowledge them."""
        entries = await self.reader.read()
        self.redis_ok = True
        if not entries:
            return
        self.metrics.pending.set(len(entries))
        rollups: list[Rollup] = []
        done: list[bytes] = []  # entries to acknowledge once written (not the unreadable ones)
        for entry_id, fields in entries:
            if not fields:
                done.append(entry_id)  # trimmed away while pending: nothing left to write
                continue
            try:
                rollups.append(Rollup.from_json(fields[b"data"]))
                done.append(entry_id)
            except (ValueError, KeyError, TypeError) as error:
                # Not acknowledged: it stays for a release that reads it (claimed after claim_idle).
                self.unreadable.note(entry_id, str(error) or type(error).__name__)
        if not await self.write(build_body(rollups, await self.newest_seqs(rollups))):
            return  # stopping: leave the entries pending for the next run
        if self.settings.ack_delay:
            await asyncio.sleep(self.settings.ack_delay)
        await self.reader.ack(done)
        self.metrics.rollups.inc(len(rollups))
        self.metrics.pending.set(0)
