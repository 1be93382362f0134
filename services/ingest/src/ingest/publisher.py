"""The live path's Redis side: summaries, published offsets and meter-state checkpoints.

One publisher per partition chain: a publish is a compare-and-set on the partition's published
offset (:data:`PUBLISH`). If another replica published the partition since this one last did (a
consumer that the group dropped while it still ran, or two replicas given the same static
partitions), nothing of that partition is written and it is reported *fenced*: the live path
re-resumes it from Redis, so the chain the aggregator reads never forks.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import redis
from confluent_kafka import OFFSET_BEGINNING
from smartgrid_common.backoff import redis_backoff
from smartgrid_common.contracts import summary_stream
from smartgrid_common.redisdb import LargeArgumentsUncopied

from .settings import IngestSettings
from .stats import WorkerStats

log = logging.getLogger(__name__)

# One entry of a publish, as the Lua reads it: these names, in this order, in ARGV (the Lua gets
# their offsets from this declaration, see PUBLISH). '' as expected: the key must not exist yet; as
# published: no summary; as checkpoint_offset: no checkpoint.
ENTRY_FIELDS = ("published_key", "expected", "published", "summary", "state_key", "checkpoint_offset", "snapshot")

# ARGV: stream, its MAXLEN backstop, n, then n entries of ENTRY_FIELDS. Returns the 1-based entries
# that were fenced.
PUBLISH = "local F = {%s}\n" % ", ".join(f"{name} = {index}" for index, name in enumerate(ENTRY_FIELDS)) + """
local fenced = {}
local at = 4
for k = 1, tonumber(ARGV[3]) do
  local function arg(name) return ARGV[at + F[name]] end
  if (redis.call('GET', arg('published_key')) or '') ~= arg('expected') then
    fenced[#fenced + 1] = k
  else
    if arg('published') ~= '' then
      redis.call('XADD', ARGV[1], 'MAXLEN', '~', ARGV[2], '*', 'data', arg('summary'))
      redis.call('SET', arg('published_key'), arg('published'))
    end
    if arg('checkpoint_offset') ~= '' then
      redis.call('HSET', arg('state_key'), 'offset', arg('checkpoint_offset'), 'state', arg('snapshot'))
    end
  end
  at = at + %d
end
return fenced
""" % len(ENTRY_FIELDS)


@dataclass
class Resume:
    """Where the live path resumes a partition, and with what it rebuilds its state."""

    partition: int
    offset: int
    published: int | None
    snapshot: bytes | None
    committed: int = -1  # the InfluxDB path's commit (-1: none), where a re-resume falls back to


@dataclass
class Entry:
    """One partition's share of a publish."""

    partition: int
    expected: str  # its published offset as this path last saw it ('' : none yet)
    summary: bytes | None = None
    published: int | None = None  # the offset the summary runs to
    checkpoint: tuple[int, bytes] | None = None  # (last offset folded, meter-state snapshot)


class Publisher:
    """Redis calls of one live path, each retried until it succeeds (or a hard stop)."""

    def __init__(self, settings: IngestSettings, stats: WorkerStats, hard_stop: threading.Event) -> None:
        self.settings = settings
        self.stats = stats
        self.redis = redis.Redis.from_url(
            settings.redis_url,
            password=settings.redis_password.get_secret_value() or None,
            socket_timeout=10,
            socket_connect_timeout=5,
            health_check_interval=30,
            command_packer=LargeArgumentsUncopied(),  # checkpoints are megabytes
        )
        self.failures = 0
        self._hard_stop = hard_stop
        self._script = self.redis.register_script(PUBLISH)
        self._prefix = settings.redis_prefix
        self._topic = settings.kafka_topic

    def resume_point(self, partition: int, committed: int) -> Resume:
        """Just after the partition's meter-state checkpoint, else at the InfluxDB path's
        ``committed`` offset (else the beginning). Records up to the last published summary only
        rebuild meter state."""
        # One MULTI: the published offset and the checkpoint as one publish left them.
        published_raw, state = self._retry(
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

    def publish(self, entries: list[Entry]) -> set[int]:
        """Summaries and checkpoints of ``entries``, one transaction; the partitions fenced."""
        if not entries:
            return set()
        args: list = [summary_stream(self._prefix), self.settings.stream_max_entries, len(entries)]
        for e in entries:
            offset, snapshot = e.checkpoint if e.checkpoint is not None else ("", b"")
            fields = {
                "published_key": self._published_key(e.partition),
                "expected": e.expected,
                "published": "" if e.summary is None else e.published,
                "summary": e.summary or b"",
                "state_key": self._state_key(e.partition),
                "checkpoint_offset": offset,
                "snapshot": snapshot,
            }
            args += [fields[name] for name in ENTRY_FIELDS]
        return {entries[k - 1].partition for k in self._retry(lambda: self._script(args=args))}

    def _retry(self, action):
        """Run a Redis action until it succeeds (backoff to 10 s); after INFLUXDB_MAX_RETRIES
        failures the worker reports not-ready. Only a hard stop ends the retries."""
        backoff = redis_backoff()  # 200 ms doubling to 10 s; a success ends the call (the reset)
        while True:
            try:
                result = action()
                if self.failures:
                    log.info("redis available again")
                self.failures = 0
                return result
            except redis.RedisError as error:
                self.failures += 1
                self.stats.count("redis_retries")
                if self.failures >= self.settings.influxdb_max_retries:
                    self.stats.ready, self.stats.reason = False, f"Redis unavailable: {error}"
                if self.failures == 1 or self.failures % 10 == 0:
                    log.warning("redis unavailable, retrying", extra={"error": str(error)})
                if self._hard_stop.wait(backoff.next()):
                    raise

    def _published_key(self, partition: int) -> str:
        return f"{self._prefix}:ingest:published:{self._topic}:{partition}"

    def _state_key(self, partition: int) -> str:
        return f"{self._prefix}:ingest:state:{self._topic}:{partition}"
