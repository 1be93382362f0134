"""Aggregator fold rate against the real Redis (scripts/stack up): summaries/s and readings/s.

Folds pre-built chained summaries straight through the fold script (no stream, no HTTP), so the
figure is the Lua fold itself; the baseline in the same run is one summary per EVALSHA, against
groups of SMARTGRID_AGGREGATOR_FOLD_GROUP-like sizes (the one-by-one path) and merged folds of a
whole read (the path the aggregator takes when every summary continues its partition).

``--scale`` measures the aggregator's whole path per read (JSON parse, merge, one EVALSHA) at the
shape of 1M readings/s: 32 partitions, summaries of 250 ms (7,812 readings each), 100k meters, 20
regions; today's summaries (version 2: new-meter counts per bucket) next to the previous ones
(version 1: the bucket's meter ids, a Redis set insert per reading), in one run. ``--start``: the
longest script call when 100k meters are new at once, one call against the aggregator's split.
Run on purpose:

    scripts/uv run python bench/bench_aggregator.py [--meters 2000] [--seconds 30] [--batch 1000]
    scripts/uv run python bench/bench_aggregator.py --scale
    scripts/uv run python bench/bench_aggregator.py --start
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Iterable

from redis.asyncio import Redis

from smartgrid_common.contracts import Summary

from aggregator.fold import FoldConfig, source_of
from aggregator.store import LiveStore
from aggregator.testing import make_readings, make_summaries
from aggregator.worker import fold_chunks


async def drop_prefix(redis: Redis, prefix: str) -> None:
    keys = [key async for key in redis.scan_iter(f"{prefix}:*", count=1000)]
    for start in range(0, len(keys), 500):
        await redis.delete(*keys[start : start + 500])


def fresh_store(redis: Redis) -> tuple[LiveStore, str]:
    prefix = f"bench-agg-{uuid.uuid4().hex[:8]}"
    return LiveStore(redis, prefix, FoldConfig(live_ttl=86400, region_ttl=3600, late_ttl=300)), prefix


async def fold_rate(redis: Redis, summaries, group: int, merged: bool = False) -> float:
    """Seconds to fold every summary, ``group`` per EVALSHA, under a fresh prefix. ``merged``: each
    group folded as one merged block, sorted by (partition, offset) like the aggregator does with
    each read (``SMARTGRID_AGGREGATOR_BATCH`` summaries)."""
    store, prefix = fresh_store(redis)
    began = time.perf_counter()
    for start in range(0, len(summaries), group):
        chunk = summaries[start : start + group]
        if merged:
            chunk = sorted(chunk, key=lambda s: (s.partition, s.first_offset))
            if not await store.fold_merged(chunk):
                raise RuntimeError("a merged fold was refused: the benchmark's summaries do not chain")
        else:
            await store.fold(chunk)
    elapsed = time.perf_counter() - began
    await drop_prefix(redis, prefix)
    return elapsed


async def fold_read(store: LiveStore, summaries: Iterable[Summary], read: int, most_meters: int) -> list[float]:
    """Fold one read the way the aggregator splits it (worker.fold_chunks: by summaries and by
    meter updates), each part one merged EVALSHA; the seconds each call took."""
    ordered = sorted(((b"", s) for s in summaries), key=lambda item: (source_of(item[1]), item[1].first_offset))
    calls = []
    for part in fold_chunks(ordered, read, most_meters):
        began = time.perf_counter()
        if not await store.fold_merged([summary for _, summary in part]):
            raise RuntimeError("a merged fold was refused: the benchmark's summaries do not chain")
        calls.append(time.perf_counter() - began)
    return calls


async def aggregator_path(redis: Redis, payloads: list[bytes], read: int, warmup: int = 0) -> float:
    """Seconds the aggregator's fold path takes over ``payloads`` (summary JSON as the stream holds
    it), ``read`` per read: parse, order by (partition, offset), merged EVALSHAs; fresh prefix.
    The first ``warmup`` summaries are folded first, untimed (every meter's first appearance)."""
    store, prefix = fresh_store(redis)
    if warmup:
        await fold_read(store, (Summary.from_json(data) for data in payloads[:warmup]), read, FOLD_METERS)
    began = time.perf_counter()
    for start in range(warmup, len(payloads), read):
        await fold_read(store, (Summary.from_json(data) for data in payloads[start : start + read]), read, FOLD_METERS)
    elapsed = time.perf_counter() - began
    await drop_prefix(redis, prefix)
    return elapsed


SCALE_TARGET = 5_000_000  # readings represented per second: 5x headroom for 1M readings/s


async def scale(redis_url: str, meters: int = 100_000, regions: int = 20, partitions: int = 32,
                seconds: int = 20, rate: int = 1_000_000, interval: float = 0.25, faulty: float = 0.01) -> dict:
    """Readings/s the aggregator's path represents with version 2 and version 1 summaries, in the
    steady state: every meter known (the first summary of each partition is folded untimed),
    ``faulty`` of the meters reporting fault (each re-report is a meter update, as from ingest)."""
    batch = int(rate / partitions * interval)
    readings = make_readings(meters, seconds, int(time.time()) - seconds, seed=1, regions=regions, faulty_share=faulty)
    print(f"{len(readings):,} readings, {meters:,} meters ({faulty:.0%} faulty), {regions} regions, {partitions} "
          f"partitions, summaries of {batch:,} readings ({interval * 1000:.0f} ms of a partition at {rate:,} readings/s)")
    redis = Redis.from_url(redis_url)
    out: dict = {}
    try:
        for version, label in ((1, "version 1 (meter ids, sets)"), (2, "version 2 (new-meter counts)")):
            summaries = make_summaries(readings, partitions, batch, version=version)
            payloads = [summary.to_json(version=version) for summary in summaries]
            timed = sum(sum(part.count for part in summary.seconds) for summary in summaries[partitions:])
            # The median of three runs: the box is shared, and one run takes well under a second.
            runs = sorted([await aggregator_path(redis, payloads, MERGED, warmup=partitions) for _ in range(3)])
            elapsed = runs[1]
            out[version] = timed / elapsed
            print(f"{label:<30} {len(payloads) - partitions:>5} summaries  {elapsed:6.2f} s (median of "
                  f"{', '.join(f'{run:.2f}' for run in runs)})  {out[version]:14,.0f} readings/s")
    finally:
        await redis.aclose()
    ratio = out[2] / out[1]
    verdict = "met" if out[2] >= SCALE_TARGET else "NOT met"
    print(f"version 2 / version 1: x{ratio:.1f}; target >= {SCALE_TARGET:,} readings/s on one Redis and one aggregator: {verdict}")
    return out


async def start(redis_url: str, meters: int = 100_000, partitions: int = 32, batch: int = 7_812) -> dict:
    """The longest script call when ingest starts on ``meters`` meters, every one of them new in
    the partitions' first summaries: one merged call (as before) against calls of at most
    FOLD_METERS meter updates (as the aggregator splits a read now)."""
    readings = make_readings(meters, 20, int(time.time()) - 20, seed=1, regions=20, faulty_share=0.01)
    first = make_summaries(readings, partitions, batch)[:partitions]
    print(f"the first summary of each of {partitions} partitions: {sum(len(s.meters) for s in first):,} meter updates")
    redis = Redis.from_url(redis_url)
    out: dict = {}
    try:
        for label, most_meters in (("one call", 10**12), (f"calls of <= {FOLD_METERS:,} updates", FOLD_METERS)):
            store, prefix = fresh_store(redis)
            calls = await fold_read(store, first, MERGED, most_meters)
            out[label] = max(calls)
            print(f"  {label:<30} {len(calls):>3} calls  longest {max(calls) * 1000:7.0f} ms  all {sum(calls) * 1000:7.0f} ms")
            await drop_prefix(redis, prefix)
    finally:
        await redis.aclose()
    print("  (Redis answers every other client BUSY while a script runs past lua-time-limit, 5 s)")
    return out


GROUPS = (1, 5, 20)  # summaries per EVALSHA; 20 is SMARTGRID_AGGREGATOR_FOLD_GROUP's default
MERGED = 100  # summaries per merged fold: SMARTGRID_AGGREGATOR_BATCH's default (one read)
FOLD_METERS = 10_000  # meter updates per fold at most: SMARTGRID_AGGREGATOR_FOLD_METERS's default


async def measure(meters: int = 2000, seconds: int = 30, partitions: int = 8, batch: int = 1000,
                  redis_url: str = "redis://127.0.0.1:6379/0", groups: tuple[int, ...] = GROUPS,
                  quiet: bool = False) -> dict:
    """Fold every summary once per group size; prints a line per group (unless ``quiet``) and returns
    ``{"summaries", "readings", "batch", "meters", "partitions", "groups": {group: {"summaries_per_s",
    "readings_per_s", "seconds", "ratio_to_single"}}}``."""
    readings = make_readings(meters, seconds, int(time.time()) - seconds, seed=1)
    summaries = make_summaries(readings, partitions, batch)
    redis = Redis.from_url(redis_url)
    out: dict = {"summaries": len(summaries), "readings": len(readings), "batch": batch, "meters": meters,
                 "partitions": partitions, "groups": {}}
    if not quiet:
        print(f"{len(summaries)} summaries, {len(readings)} readings, {batch} readings/summary, "
              f"{meters} meters, {partitions} partitions")
    baseline = None
    try:
        for group in groups:
            elapsed = await fold_rate(redis, summaries, group)
            rate = len(summaries) / elapsed
            baseline = baseline or rate
            out["groups"][group] = {"summaries_per_s": rate, "readings_per_s": len(readings) / elapsed,
                                    "seconds": elapsed, "ratio_to_single": rate / baseline}
            if not quiet:
                print(f"group {group:>3}: {rate:10,.0f} summaries/s  {len(readings) / elapsed:12,.0f} readings/s  "
                      f"(x{rate / baseline:.2f} vs one per EVALSHA)")
        # The service's path: each read of MERGED summaries folded as one merged block.
        elapsed = await fold_rate(redis, summaries, MERGED, merged=True)
        rate = len(summaries) / elapsed
        out["merged"] = {"group": MERGED, "summaries_per_s": rate, "readings_per_s": len(readings) / elapsed,
                         "seconds": elapsed, "ratio_to_single": rate / baseline}
        if not quiet:
            print(f"merged {MERGED}: {rate:10,.0f} summaries/s  {len(readings) / elapsed:12,.0f} readings/s  "
                  f"(x{rate / baseline:.2f} vs one per EVALSHA; the aggregator's path)")
    finally:
        await redis.aclose()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1000, help="readings per summary (one ingest batch)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--scale", action="store_true", help="the aggregator's path at the shape of 1M readings/s")
    parser.add_argument("--start", action="store_true", help="the longest script call when 100k meters are new at once")
    args = parser.parse_args()
    if args.scale:
        await scale(args.redis)
    elif args.start:
        await start(args.redis)
    else:
        await measure(args.meters, args.seconds, args.partitions, args.batch, args.redis)


if __name__ == "__main__":
    asyncio.run(main())
