"""The dashboard under many viewers, against a real aggregator process and the real Redis: concurrent
API calls share one view computation per interval, the SSE streams push one shared snapshot, and
the newest second is reported open until it is complete.

Each test uses its own SMARTGRID_REDIS_PREFIX, so it shares Redis with other suites safely; Redis
command counts are server-wide, so the bounds on them leave room for whatever else runs.
"""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import pytest
from redis import Redis
from smartgrid_common.contracts import summary_stream

from aggregator.testing import make_readings, make_summaries, wait_until
from aggregator.views import COMPLETE_GRACE_S

pytestmark = pytest.mark.integration



def fold(redis: Redis, prefix: str, readings, topic: str = "t") -> None:
    """Publishes the readings' summaries and waits until the aggregator has applied them all."""
    summaries = make_summaries(readings, partitions=4, batch=500, topic=topic)
    stats = f"{prefix}:agg:stats"
    target = int(redis.hget(stats, "applied") or 0) + len(summaries)
    pipe = redis.pipeline()
    for summary in summaries:
        pipe.xadd(summary_stream(prefix), {"data": summary.to_json()})
    pipe.execute()
    wait_until(lambda: int(redis.hget(stats, "applied") or 0) == target, 60, what="the summaries to be folded")


def computations(url: str, view: str) -> float:
    """``aggregator_view_computations_total{view=...}`` from /metrics (0 before the first one)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    match = re.search(rf'^aggregator_view_computations_total{{view="{view}"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def metric(url: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", httpx.get(f"{url}/metrics", timeout=10).text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def hmget_calls(redis: Redis) -> int:
    """HMGET commands Redis has run (server-wide; the window script reads one per bucket)."""
    return int(redis.info("commandstats").get("cmdstat_hmget", {}).get("calls", 0))


async def concurrent_gets(url: str, path: str, clients: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        return await asyncio.gather(*(client.get(path) for _ in range(clients)))


def test_concurrent_live_calls_share_one_view_computation_per_interval(redis, prefix, aggregator):
    # SSE interval 4 s: the 3,600-second view (a long one) serves every request for 4 s, longer
    # than the burst takes
    url = aggregator(SMARTGRID_SSE_INTERVAL="4s")
    fold(redis, prefix, make_readings(meters=50, seconds=120, start=int(time.time()) - 130, seed=3))
    clients = 100
    computed_before, hmget_before = computations(url, "live"), hmget_calls(redis)
    began = time.monotonic()
    responses = asyncio.run(concurrent_gets(url, "/api/live?seconds=3600", clients))
    elapsed = time.monotonic() - began
    computed = computations(url, "live") - computed_before
    hmgets = hmget_calls(redis) - hmget_before

    assert all(response.status_code == 200 for response in responses)
    assert len({response.content for response in responses}) <= computed  # one body per computation
    assert 1 <= computed <= 1 + int(elapsed / 4.0), f"{computed} computations for {clients} calls in {elapsed:.2f} s"
    # One computation reads 3,600 buckets; one per call would be 360,000 reads. The bound leaves
    # room for other suites sharing this Redis.
    assert hmgets >= 3600
    assert hmgets < clients * 3600 / 10, f"{hmgets} HMGETs for {clients} calls"
    view = responses[0].json()
    assert len(view["points"]) == 3600 and view["seconds"] == 3600
    # the data ended 10 s ago and nothing newer came: the newest second is complete
    assert view["complete"] == view["end"]


def test_views_are_recomputed_about_once_per_quarter_interval_while_clients_poll(redis, prefix, aggregator):
    url = aggregator(SMARTGRID_SSE_INTERVAL="1s")  # the default: views live 250 ms
    fold(redis, prefix, make_readings(meters=20, seconds=30, start=int(time.time()) - 40, seed=4))

    async def poll(client: httpx.AsyncClient, until: float) -> int:
        count = 0
        while time.monotonic() < until:
            (await client.get("/api/live?seconds=60")).raise_for_status()
            count += 1
        return count

    async def run() -> tuple[int, float]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            began = time.monotonic()
            counts = await asyncio.gather(*(poll(client, began + 3.0) for _ in range(20)))
            return sum(counts), time.monotonic() - began

    before = computations(url, "live")
    requests, elapsed = asyncio.run(run())
    computed = computations(url, "live") - before
    assert computed <= elapsed / 0.25 + 2, f"{computed} computations in {elapsed:.2f} s"
    assert requests >= 3 * computed, f"{requests} requests, {computed} computations"


def test_sse_streams_all_push_the_same_snapshot_once_per_interval(redis, prefix, aggregator):
    url = aggregator(SMARTGRID_SSE_INTERVAL="500ms")
    fold(redis, prefix, make_readings(meters=20, seconds=30, start=int(time.time()) - 40, seed=5))
    streams, events = 30, 4

    async def listen(client: httpx.AsyncClient, opened: asyncio.Event, ready: list[int]) -> list[bytes]:
        payloads: list[bytes] = []
        async with client.stream("GET", "/api/stream") as response:
            ready.append(1)
            if len(ready) == streams:
                opened.set()
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    payloads.append(line.encode())
                    if len(payloads) == events:
                        # stay connected until every stream is open, so the gauge can be read
                        await opened.wait()
                        return payloads
        return payloads

    async def run() -> tuple[list[list[bytes]], float, float]:
        limits = httpx.Limits(max_connections=streams + 5)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
            opened, ready = asyncio.Event(), []
            began = time.monotonic()
            tasks = [asyncio.ensure_future(listen(client, opened, ready)) for _ in range(streams)]
            await asyncio.wait_for(opened.wait(), 30)
            open_streams = await asyncio.to_thread(metric, url, "aggregator_sse_streams")
            results = await asyncio.gather(*tasks)
            return results, time.monotonic() - began, open_streams

    before = computations(url, "live")
    results, elapsed, open_streams = asyncio.run(run())
    computed = computations(url, "live") - before
    assert open_streams == streams
    assert all(len(payloads) == events for payloads in results)
    # every stream saw the same snapshots: at most one distinct payload per interval of the run
    distinct = {payload for payloads in results for payload in payloads}
    assert len(distinct) <= elapsed / 0.5 + 2, f"{len(distinct)} distinct payloads in {elapsed:.2f} s"
    assert computed <= elapsed / 0.5 + 2, f"{computed} computations for {streams} streams in {elapsed:.2f} s"
    # the streams closed with the client: the producer's listeners go back to zero
    wait_until(lambda: metric(url, "aggregator_sse_streams") == 0, 10, what="the streams to be released")


def test_sigterm_with_open_sse_streams_stops_the_aggregator_at_once_and_cleanly(redis, prefix, aggregator):
    # Open event streams never end by themselves: the server must end them when it stops, or a
    # rollout would wait for every dashboard left open (and then kill the pod). The service_logs
    # fixture fails the test on any ERROR line (a cancelled request is logged as one).
    url = aggregator()
    process = aggregator.processes[url]

    async def run() -> tuple[list[int], float, int | None]:
        async def listen(client: httpx.AsyncClient) -> int:
            events = 0
            async with client.stream("GET", "/api/stream") as response:
                async for line in response.aiter_lines():
                    events += line.startswith("event: update")
            return events  # the stream ended: the server closed it

        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            streams = [asyncio.ensure_future(listen(client)) for _ in range(10)]
            await asyncio.sleep(2.0)
            process.terminate()
            began = time.monotonic()
            events = await asyncio.wait_for(asyncio.gather(*streams), 15)
            code = await asyncio.to_thread(process.wait, 15)
            return events, time.monotonic() - began, code

    events, elapsed, code = asyncio.run(run())
    assert code == 0
    assert elapsed < 2.5, f"stopping took {elapsed:.1f} s"
    assert all(count >= 1 for count in events)


def test_the_newest_second_is_reported_open_until_a_later_second_is_folded(redis, prefix, aggregator):
    url = aggregator()
    # A little ahead of the wall clock (a meter clock within the allowed skew), so that the newest
    # second cannot turn complete by the grace while the test runs.
    newest = int(time.time()) + 60
    fold(redis, prefix, make_readings(meters=30, seconds=10, start=newest - 9, seed=6, late_share=0))

    def live() -> dict:
        return httpx.get(f"{url}/api/live?seconds=10", timeout=10).json()

    wait_until(lambda: live()["end"] == newest, 10, what="the newest second in /api/live")
    view = live()
    assert view["complete"] == newest - 1
    assert time.time() < newest + 1 + COMPLETE_GRACE_S  # still inside the open second's grace

    # a reading of the next second arrives: the one before it is complete now
    fold(redis, prefix, make_readings(meters=5, seconds=1, start=newest + 1, seed=7), topic="t-next")
    wait_until(lambda: live()["end"] == newest + 1, 10, what="the next second in /api/live")
    assert live()["complete"] == newest
