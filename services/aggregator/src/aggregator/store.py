"""The live state in Redis: the fold and emit scripts, and the reads behind the dashboard API.

I/O only; what the data means lives in ``fold.py`` (writes) and ``views.py`` (reads).
"""

from __future__ import annotations

import time
from importlib import resources

from redis.asyncio import Redis
from smartgrid_common.contracts import Summary, rollup_stream

from aggregator.fold import FoldConfig, Outcome
from aggregator.keys import Keys
from aggregator.records import EmitCall, emit_args, fold_args, lua_preamble
from aggregator.views import unpack_buckets

Hash = dict[bytes, bytes]
WINDOW_CHUNK = 600  # buckets per window-script call


def _script(name: str) -> str:
    return resources.files("aggregator").joinpath("lua", name).read_text()


def _record_script(name: str) -> str:
    """A script that reads records (records.py): their declared fields and checks come first."""
    return lua_preamble() + _script("record.lua") + _script(name)


class LiveStore:
    """Folds summaries into Redis, emits rollups, and reads the state back."""

    def __init__(self, redis: Redis, prefix: str, config: FoldConfig) -> None:
        self.redis = redis
        self.prefix = prefix
        self.keys = Keys(prefix)
        self.config = config
        self._fold = redis.register_script(_record_script("fold.lua"))
        self._emit = redis.register_script(_record_script("emit.lua"))
        self._window = redis.register_script(_script("window.lua"))

    async def fold(self, summaries: list[Summary]) -> list[Outcome]:
        """Fold summaries in order (one EVALSHA), each at most once; one outcome per summary."""
        if not summaries:
            return []
        reply = await self._fold(args=fold_args(self.prefix, self.config, [[summary] for summary in summaries], time.time()))
        return [Outcome(int(code)) for code in reply]

    async def fold_merged(self, summaries: list[Summary]) -> bool:
        """Fold summaries as ONE merged block (one EVALSHA, far fewer Redis writes) if every one
        of them continues its partition's watermark, in order; else change nothing, return False."""
        reply = await self._fold(args=fold_args(self.prefix, self.config, [summaries], time.time()))
        return Outcome(int(reply[0])) is Outcome.APPLIED

    async def emit(self, owner: str, lock_ms: int, chunk: int, max_entries: int) -> tuple[int, int]:
        """Emit one rollup of dirty buckets (the stream capped near ``max_entries``); returns
        (seq or 0 = nothing / -1 = not our turn, dirty seconds left)."""
        call = EmitCall(
            prefix=self.prefix, stream=rollup_stream(self.prefix), owner=owner, lock_ms=lock_ms, max_seconds=chunk,
            emitted_ms=int(time.time() * 1000), max_entries=max_entries,
        )
        reply = await self._emit(args=emit_args(call))
        return int(reply[0]), int(reply[1])

    async def discard_changes(self) -> None:
        """Forget which buckets changed (no writer reads rollups: nothing is emitted)."""
        await self.redis.delete(self.keys.dirty, self.keys.dirty_status)

    async def latest_second(self) -> int | None:
        """Newest event second folded so far: the dashboard's "now", never beyond the wall clock
        plus the allowed clock skew (the fold keeps it there; this also covers a value left by a
        release without that bound)."""
        value = await self.redis.get(self.keys.latest)
        return None if value is None else min(int(value), int(time.time()) + self.config.max_clock_skew)

    async def seconds(self, first: int, last: int) -> list[Hash]:
        """Per-second totals (sum, count, min, max) of ``first..last`` (empty dicts where nothing
        was read), in a few script calls and one round trip."""
        return await self._buckets(self.keys.second_prefix, first, 1, last - first + 1)

    async def minutes(self, first: int, count: int) -> list[Hash]:
        """Per-minute totals of ``count`` minutes from minute ``first``."""
        return await self._buckets(self.keys.minute_prefix, first, 60, count)

    async def _buckets(self, key_prefix: str, first: int, step: int, count: int) -> list[Hash]:
        # Chunks of WINDOW_CHUNK buckets, pipelined: one round trip, and between two chunks Redis
        # serves the fold, which a single 3,600-bucket script would hold up for several ms.
        pipe = self.redis.pipeline(transaction=False)
        for start in range(0, count, WINDOW_CHUNK):
            size = min(WINDOW_CHUNK, count - start)
            await self._window(args=[key_prefix, first + start * step, step, size], client=pipe)  # queued
        rows: list[Hash] = []
        for packed in await pipe.execute():
            rows += unpack_buckets(packed)
        return rows

    async def region_seconds(self, first: int, last: int) -> list[Hash]:
        """Per-(second, region) hashes of ``first..last``."""
        pipe = self.redis.pipeline(transaction=False)
        for second in range(first, last + 1):
            pipe.hgetall(self.keys.region_second(second))
        return await pipe.execute()

    async def region_facts(self) -> tuple[Hash, Hash]:
        """(centroid sums by region, known meters by region)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.geo)
        pipe.hgetall(self.keys.region_meters)
        geo, meters = await pipe.execute()
        return geo, meters

    async def status_counts(self) -> Hash:
        """Effective status -> number of meters."""
        return await self.redis.hgetall(self.keys.status)

    async def alert_counts(self, regions: list[str]) -> list[int]:
        """Number of non-ok meters in each region."""
        pipe = self.redis.pipeline(transaction=False)
        for region in regions:
            pipe.zcard(self.keys.alerts_index(region=region))
        return await pipe.execute()

    async def alerts(
        self, status: str | None, region: str | None, offset: int, limit: int
    ) -> tuple[int, list[tuple[bytes, bytes | None]]]:
        """(total matching, page of (meter id, alert JSON)), newest ``since`` first."""
        index = self.keys.alerts_index(status, region)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(index)
        pipe.zrevrange(index, offset, offset + limit - 1)
        total, meter_ids = await pipe.execute()
        records = await self.redis.hmget(self.keys.alerts, meter_ids) if meter_ids else []
        return int(total), list(zip(meter_ids, records, strict=True))

    async def region_status_counts(self, statuses: tuple[str, ...]) -> tuple[dict[str, int], dict[str, int], dict[tuple[str, str], int]]:
        """(known meters by region, non-ok meters by region, meters by (status, region) for
        ``statuses``): one HGETALL and one pipeline of ZCARDs (regions x (statuses + 1))."""
        known = {key.decode(): int(value) for key, value in (await self.redis.hgetall(self.keys.region_meters)).items()}
        regions = sorted(known)
        if not regions:
            return known, {}, {}
        pipe = self.redis.pipeline(transaction=False)
        for region in regions:
            pipe.zcard(self.keys.alerts_index(region=region))
            for status in statuses:
                pipe.zcard(self.keys.alerts_index(status, region))
        replies = iter(await pipe.execute())
        non_ok: dict[str, int] = {}
        by_status: dict[tuple[str, str], int] = {}
        for region in regions:
            non_ok[region] = int(next(replies))
            for status in statuses:
                by_status[(status, region)] = int(next(replies))
        return known, non_ok, by_status

    async def stats(self) -> Hash:
        """Fold counters (applied, duplicates, overlaps, too late)."""
        return await self.redis.hgetall(self.keys.stats)
