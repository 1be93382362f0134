"""The aggregator against the real Redis: summaries by hand (duplicates, replays, out of order),
SIGKILL mid-stream, two replicas -> the live state equals the ground truth, exactly.

Each test uses its own SMARTGRID_REDIS_PREFIX so it shares Redis with other suites safely.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import httpx
import pytest
from redis import Redis
from smartgrid_common.contracts import summary_stream

from aggregator.testing import (
    assert_matches,
    dump_state,
    free_port,
    ground_truth,
    http_ok,
    make_readings,
    make_summaries,
    start_service,
    wait_until,
)

pytestmark = pytest.mark.integration

START = int(time.time()) - 120


def aggregator_env(prefix: str, port: int, consumer: str) -> dict[str, str]:
    return {
        "SMARTGRID_REDIS_PREFIX": prefix,
        "SMARTGRID_HTTP_PORT": str(port),
        "SMARTGRID_HTTP_HOST": "127.0.0.1",
        "SMARTGRID_AGGREGATOR_CONSUMER": consumer,
        "SMARTGRID_AGGREGATOR_BATCH": "20",
        "SMARTGRID_AGGREGATOR_FOLD_GROUP": "5",
        "SMARTGRID_AGGREGATOR_FOLD_METERS": "50",  # reads split by meter updates too
        "SMARTGRID_AGGREGATOR_CLAIM_IDLE": "2s",
        "SMARTGRID_EMIT_INTERVAL": "200ms",
    }


def drained(redis: Redis, prefix: str, group: str = "aggregator") -> bool:
    """Everything in the stream was delivered and acknowledged."""
    stream = summary_stream(prefix)
    info = {g["name"].decode(): g for g in redis.xinfo_groups(stream)}
    if group not in info or info[group]["pending"]:
        return False
    last = redis.xinfo_stream(stream)["last-generated-id"]
    return info[group]["last-delivered-id"] == last


def publish(redis: Redis, prefix: str, summaries) -> None:
    """Summaries into the stream, each in the contract version it was made for (meter ids: 1)."""
    pipe = redis.pipeline()
    for summary in summaries:
        version = 1 if any(region.meters for region in summary.regions) else 2
        pipe.xadd(summary_stream(prefix), {"data": summary.to_json(version=version)})
    pipe.execute()


def with_store(prefix: str, scenario) -> None:
    """Run ``await scenario(store)`` against a LiveStore on the real Redis (the fold, called directly)."""
    import asyncio

    from redis.asyncio import Redis as AsyncRedis

    from aggregator.fold import FoldConfig
    from aggregator.store import LiveStore

    async def run() -> None:
        client = AsyncRedis.from_url(os.environ.get("SMARTGRID_REDIS_URL", "redis://127.0.0.1:6379/0"))
        try:
            await scenario(LiveStore(client, prefix, FoldConfig(live_ttl=86400, region_ttl=3600, late_ttl=300)))
        finally:
            await client.aclose()

    asyncio.run(run())


def seconds_of(readings) -> list[int]:
    return sorted({r.second for r in readings})


def applied(redis: Redis, prefix: str) -> int:
    return int(redis.hget(f"{prefix}:agg:stats", "applied") or 0)


def run_and_check(redis, prefix, readings, summaries, tmp_path: Path, replicas: int = 1, kill_mid: bool = False):
    publish(redis, prefix, summaries)
    ports = [free_port() for _ in range(replicas)]
    procs = [
        start_service("aggregator", aggregator_env(prefix, port, f"c{index}"), str(tmp_path / f"agg{index}.log"))
        for index, port in enumerate(ports)
    ]
    try:
        if kill_mid:
            # As soon as the first fold landed: mid-stream whatever the machine's speed.
            wait_until(lambda: applied(redis, prefix) > 0, 60, interval=0.005, what="the first fold")
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait()
            assert not drained(redis, prefix), "the kill came too late to be mid-stream"
            procs[0] = start_service("aggregator", aggregator_env(prefix, ports[0], "c0"), str(tmp_path / "agg0b.log"))
        wait_until(lambda: drained(redis, prefix), 60, what="the summaries to be folded and acked")
        assert_matches(dump_state(redis, prefix, seconds_of(readings)), ground_truth(readings))
        return ports
    except AssertionError:
        for log in tmp_path.glob("agg*.log"):
            print(f"--- {log.name}\n" + log.read_text()[-3000:])
        raise
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


@pytest.mark.parametrize("version", [2, 1], ids=["counts", "v1-meter-ids"])
def test_duplicates_replays_and_out_of_order_summaries_fold_exactly_once(redis, prefix, tmp_path, version):
    """Version 2 summaries carry new-meter counts; version 1 ones (an ingest not yet upgraded)
    carry meter ids, which the aggregator still folds exactly."""
    readings = make_readings(meters=300, seconds=15, start=START, seed=1)
    summaries = make_summaries(readings, partitions=4, batch=150, version=version)
    rng = random.Random(3)
    stream = list(summaries)
    stream += rng.sample(summaries, 10)  # duplicates
    stream += summaries[:8]  # a replay of the beginning
    # Successors before their predecessors (what several replicas or a claim can produce).
    for _ in range(6):
        i = rng.randrange(len(stream) - 1)
        stream[i], stream[i + 1] = stream[i + 1], stream[i]
    ports = run_and_check(redis, prefix, readings, stream, tmp_path)
    stats = {k.decode(): int(v) for k, v in redis.hgetall(f"{prefix}:agg:stats").items()}
    assert stats["applied"] == len(summaries)
    assert stats.get("overlaps", 0) == 0
    assert stats["duplicates"] >= 18


def test_api_shows_the_folded_state(redis, prefix, tmp_path):
    readings = make_readings(meters=200, seconds=10, start=START, seed=2, late_share=0)
    summaries = make_summaries(readings, partitions=3, batch=200)
    publish(redis, prefix, summaries)
    port = free_port()
    proc = start_service("aggregator", aggregator_env(prefix, port, "api"), str(tmp_path / "agg.log"))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: drained(redis, prefix), 60, what="fold")
        truth = ground_truth(readings)
        live = httpx.get(f"{base}/api/live", params={"seconds": 10}).json()
        assert live["end"] == max(truth["seconds"])
        for point in live["points"]:
            total, count, _, _ = truth["seconds"][point["second"]]
            assert point["reading_count"] == count
            assert point["total_kwh"] == pytest.approx(total, rel=1e-9)
        status = httpx.get(f"{base}/api/status").json()
        assert {k: v for k, v in status["counts"].items() if v} == truth["status"]
        meters = httpx.get(f"{base}/api/meters", params={"status": "fault", "page_size": 500}).json()
        assert {item["meter_id"] for item in meters["items"]} == {
            m for m, s in truth["alerts"].items() if s == "fault"
        }
        regions = httpx.get(f"{base}/api/regions").json()
        assert [r["rank"] for r in regions] == list(range(1, len(regions) + 1))
        assert all(r["lat"] is not None for r in regions)
        trend = httpx.get(f"{base}/api/trend").json()
        assert sum(p["reading_count"] for p in trend["points"]) == len(readings)
        assert http_ok(f"{base}/docs") and http_ok(f"{base}/") and http_ok(f"{base}/readyz")
        with httpx.stream("GET", f"{base}/api/stream", timeout=5) as response:
            first = next(line for line in response.iter_lines() if line.startswith("data:"))
        assert '"live"' in first and '"status"' in first
    finally:
        proc.terminate()
        proc.wait(10)


def test_aggregator_killed_mid_stream_and_restarted_is_exact(redis, prefix, tmp_path):
    readings = make_readings(meters=400, seconds=40, start=START, seed=4)
    summaries = make_summaries(readings, partitions=8, batch=40)
    run_and_check(redis, prefix, readings, summaries, tmp_path, kill_mid=True)


def test_two_replicas_one_killed_the_other_claims_its_entries(redis, prefix, tmp_path):
    readings = make_readings(meters=400, seconds=40, start=START, seed=5)
    summaries = make_summaries(readings, partitions=8, batch=40)
    publish(redis, prefix, summaries)
    port_a, port_b = free_port(), free_port()
    a = start_service("aggregator", aggregator_env(prefix, port_a, "a"), str(tmp_path / "agga.log"))
    b = start_service("aggregator", aggregator_env(prefix, port_b, "b"), str(tmp_path / "aggb.log"))
    try:
        wait_until(lambda: applied(redis, prefix) > 0, 60, interval=0.005, what="the first fold")
        a.send_signal(signal.SIGKILL)
        a.wait()
        # "a" never comes back: "b" must claim what "a" held (claim idle 2 s).
        wait_until(lambda: drained(redis, prefix), 90, what="replica b to claim and fold everything")
        assert_matches(dump_state(redis, prefix, seconds_of(readings)), ground_truth(readings))
    except AssertionError:
        for log in tmp_path.glob("agg*.log"):
            print(f"--- {log.name}\n" + log.read_text()[-3000:])
        raise
    finally:
        b.terminate()
        b.wait(10)


def test_merged_fold_equals_the_ground_truth_and_a_broken_chain_changes_nothing(redis, prefix):
    """The fast path: a whole read folded as one merged block. Exact against the ground truth;
    a group with a duplicate (or a gap) in it is refused as a whole and leaves Redis untouched."""
    readings = make_readings(meters=400, seconds=12, start=START, seed=5)
    summaries = make_summaries(readings, partitions=8, batch=40)
    ordered = sorted(summaries, key=lambda s: (s.partition, s.first_offset))
    seconds = seconds_of(readings)

    async def scenario(store) -> None:
        half = len(ordered) // 2
        assert await store.fold_merged(ordered[:half])
        before = dump_state(redis, prefix, seconds)
        # Already folded + new: refused whole, nothing moves.
        assert not await store.fold_merged(ordered[half - 1 :])
        # A gap (a predecessor missing): refused whole too.
        rest = ordered[half:]
        hole = next(k for k in range(1, len(rest) - 1) if rest[k - 1].partition == rest[k].partition == rest[k + 1].partition)
        assert not await store.fold_merged(rest[:hole] + rest[hole + 1 :])
        assert dump_state(redis, prefix, seconds) == before
        assert await store.fold_merged(ordered[half:])

    with_store(prefix, scenario)
    assert_matches(dump_state(redis, prefix, seconds), ground_truth(readings))
    stats = {k.decode(): int(v) for k, v in redis.hgetall(f"{prefix}:agg:stats").items()}
    assert stats["applied"] == len(summaries)
    assert stats.get("duplicates", 0) == 0 and stats.get("overlaps", 0) == 0


def test_a_chained_summary_never_starts_a_watermark(redis, prefix):
    """Two replicas: one may read a partition's second summary while the first is still pending
    at the other (or at a dead one, until it is claimed). Folding the second one first would make
    the first a "duplicate" and lose it; it must wait instead, alone or in a merged read."""
    from aggregator.fold import Outcome

    readings = make_readings(meters=200, seconds=6, start=START, seed=11)
    summaries = make_summaries(readings, partitions=2, batch=60)
    by_partition = {p: [s for s in summaries if s.partition == p] for p in (0, 1)}
    seconds = seconds_of(readings)

    async def scenario(store) -> None:
        later = [chain[1] for chain in by_partition.values()]
        assert all(s.chained for s in later)
        assert await store.fold(later) == [Outcome.WAIT, Outcome.WAIT]
        assert not await store.fold_merged(later)
        assert dump_state(redis, prefix, seconds)["seconds"] == {}
        # The chain starts arrive: everything applies, in any grouping.
        firsts = [chain[0] for chain in by_partition.values()]
        assert await store.fold(firsts) == [Outcome.APPLIED, Outcome.APPLIED]
        rest = sorted((s for chain in by_partition.values() for s in chain[1:]), key=lambda s: (s.partition, s.first_offset))
        assert await store.fold_merged(rest)

    with_store(prefix, scenario)
    assert_matches(dump_state(redis, prefix, seconds), ground_truth(readings))


def test_an_event_second_beyond_the_wall_clock_plus_the_skew_is_not_folded(redis, prefix):
    """A summary from an ingest that did not refuse a far-future reading (an older version, or a
    clock-skew setting larger than the aggregator's): its second is counted and dropped, the
    newest second stays on the present, and the rest of the summary is folded."""
    from smartgrid_common.contracts import SecondPartial, Summary

    now = int(time.time())
    year_2100 = 4_102_444_800
    summary = Summary("t", 0, 0, 9, now * 1000, [SecondPartial(now - 1, 2.0, 2, 1.0, 1.0), SecondPartial(year_2100, 5.0, 1, 5.0, 5.0)])

    async def scenario(store) -> None:
        await store.redis.set(f"{prefix}:agg:latest", year_2100)  # left by a version without the bound
        assert await store.latest_second() <= time.time() + store.config.max_clock_skew
        assert await store.fold([summary]) == [1]
        assert await store.latest_second() == now - 1

    with_store(prefix, scenario)
    stats = {k.decode(): int(v) for k, v in redis.hgetall(f"{prefix}:agg:stats").items()}
    assert stats["future_seconds"] == 1 and stats["applied"] == 1
    assert redis.hget(f"{prefix}:sec:{now - 1}", "count") == b"2"
    assert not redis.exists(f"{prefix}:sec:{year_2100}")


@pytest.mark.expected_log_errors(r"summary cannot be read")
def test_a_summary_of_a_newer_contract_version_is_never_acknowledged_and_its_partition_waits(redis, prefix, tmp_path):
    """A newer ingest's summary (mid rolling upgrade) is not skipped: it stays pending for an
    aggregator that reads it, its partition folds up to it and no further, /readyz says why, and
    the other partitions fold on."""
    import orjson

    readings = make_readings(meters=200, seconds=6, start=START, seed=13)
    summaries = make_summaries(readings, partitions=2, batch=60)
    chain = [s for s in summaries if s.partition == 0]
    newer = chain[2]
    entries = [
        {"data": orjson.dumps(orjson.loads(s.to_json()) | {"v": 99}) if s is newer else s.to_json()} for s in summaries
    ]
    pipe = redis.pipeline()
    for fields in entries:
        pipe.xadd(summary_stream(prefix), fields)
    pipe.execute()
    port = free_port()
    proc = start_service("aggregator", aggregator_env(prefix, port, "c0"), str(tmp_path / "agg.log"))
    try:
        def partition_one_folded() -> bool:
            marks = redis.hgetall(f"{prefix}:agg:wm")
            return int(marks.get(b"t:1", -1) or -1) == max(s.last_offset for s in summaries if s.partition == 1)

        wait_until(partition_one_folded, 60, what="partition 1 to be folded")
        assert int(redis.hget(f"{prefix}:agg:wm", "t:0")) == chain[1].last_offset  # up to the newer one
        # The newer one and what waits behind it stay pending; the folded ones are acknowledged
        # right after their fold (waited for: the watermark moves before the XACK).
        wait_until(lambda: redis.xpending(summary_stream(prefix), "aggregator")["pending"] == len(chain) - 2, 30,
                   what="only the newer summary and its successors pending")
        response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert response.status_code == 503
        assert "summary(s) cannot be read" in response.text and "contract version 99" in response.text
        log = (tmp_path / "agg.log").read_text()
        assert log.count("summary cannot be read") == 1, "logged once per entry, not once per read"
    finally:
        proc.terminate()
        proc.wait(10)
