"""Aggregator fold rate against the real Redis (scripts/stack up): summaries/s and readings/s.

Folds pre-built chained summaries straight through the fold script (no stream, no HTTP), so the
figure is the Lua fold itself; the baseline in the same run is one summary per EVALSHA, against
groups of SMARTGRID_AGGREGATOR_FOLD_GROUP-like sizes (the one-by-one path) and merged folds of a
whole read (the path the aggregator takes when every summary continues its partition). Run on purpose:

    uv run python bench/bench_aggregator.py [--meters 2000] [--seconds 30] [--batch 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from redis.asyncio import Redis

from aggregator.fold import FoldConfig
from aggregator.store import LiveStore
from aggregator.testing import make_readings, make_summaries


async def fold_rate(redis: Redis, summaries, group: int, merged: bool = False) -> float:
    """Seconds to fold every summary, ``group`` per EVALSHA, under a fresh prefix. ``merged``: each
    group folded as one merged block, sorted by (partition, offset) like the aggregator does with
    each read (``SMARTGRID_AGGREGATOR_BATCH`` summaries)."""
    prefix = f"bench-agg-{uuid.uuid4().hex[:8]}"
    store = LiveStore(redis, prefix, FoldConfig(live_ttl=86400, region_ttl=3600, late_ttl=300))
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
    keys = [key async for key in redis.scan_iter(f"{prefix}:*", count=1000)]
    for start in range(0, len(keys), 500):
        await redis.delete(*keys[start : start + 500])
    return elapsed


GROUPS = (1, 5, 20)  # summaries per EVALSHA; 20 is SMARTGRID_AGGREGATOR_FOLD_GROUP's default
MERGED = 100  # summaries per merged fold: SMARTGRID_AGGREGATOR_BATCH's default (one read)


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
    args = parser.parse_args()
    await measure(args.meters, args.seconds, args.partitions, args.batch, args.redis)


if __name__ == "__main__":
    asyncio.run(main())
