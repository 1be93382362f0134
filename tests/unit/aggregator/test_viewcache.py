"""The dashboard's shared views (viewcache.py): single flight, freshness, the SSE broadcast."""

from __future__ import annotations

import asyncio

import pytest

from aggregator.viewcache import Broadcast, ViewCache


class Clock:
    """A clock the test moves by hand (the cache's freshness is measured with it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Computation:
    """Counts calls; each one takes ``delay`` seconds and returns the call number."""

    def __init__(self, delay: float = 0.01, fail: bool = False) -> None:
        self.calls = 0
        self.delay = delay
        self.fail = fail

    async def __call__(self) -> int:
        self.calls += 1
        call = self.calls
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ConnectionError("redis went away")
        return call


def test_concurrent_callers_of_a_view_share_one_computation():
    async def scenario():
        cache = ViewCache(1.0, clock=Clock())
        compute = Computation()
        results = await asyncio.gather(*(cache.get(("live", 3600), compute) for _ in range(200)))
        return compute.calls, set(results)

    assert asyncio.run(scenario()) == (1, {1})


def test_a_view_is_computed_once_per_interval_and_again_after_it():
    async def scenario():
        clock = Clock()
        cache = ViewCache(0.25, clock=clock)
        compute = Computation(delay=0)
        seen = []
        for _ in range(10):  # 10 steps of 0.1 s: 2.5 intervals
            seen.append(await cache.get(("live", 60), compute))
            seen.append(await cache.get(("live", 60), compute))
            clock.now += 0.1
        return compute.calls, seen

    calls, seen = asyncio.run(scenario())
    # fresh for 0.25 s from the start of a computation: computed at 0, 0.3, 0.6, 0.9
    assert calls == 4
    assert seen == [1] * 6 + [2] * 6 + [3] * 6 + [4] * 2


def test_a_view_given_a_longer_ttl_is_kept_for_it():
    async def scenario():
        clock = Clock()
        cache = ViewCache(0.25, clock=clock)
        compute = Computation(delay=0)
        seen = []
        for _ in range(4):  # 0, 0.4, 0.8, 1.2 s
            seen.append(await cache.get(("trend",), compute, ttl=1.0))
            clock.now += 0.4
        return seen

    assert asyncio.run(scenario()) == [1, 1, 1, 2]


def test_views_with_different_parameters_are_computed_apart():
    async def scenario():
        cache = ViewCache(1.0, clock=Clock())
        short, long = Computation(), Computation()
        await asyncio.gather(cache.get(("live", 60), short), cache.get(("live", 3600), long),
                             cache.get(("live", 60), short))
        return short.calls, long.calls

    assert asyncio.run(scenario()) == (1, 1)


def test_a_failed_computation_reaches_every_waiter_and_is_not_cached():
    async def scenario():
        cache = ViewCache(10.0, clock=Clock())
        failing = Computation(fail=True)
        results = await asyncio.gather(*(cache.get(("status",), failing) for _ in range(5)), return_exceptions=True)
        recovered = await cache.get(("status",), Computation())
        return failing.calls, results, recovered

    calls, results, recovered = asyncio.run(scenario())
    assert calls == 1
    assert all(isinstance(result, ConnectionError) for result in results)
    assert recovered == 1


def test_a_caller_that_goes_away_does_not_cancel_the_computation_of_the_others():
    async def scenario():
        cache = ViewCache(10.0, clock=Clock())
        compute = Computation(delay=0.05)
        leaving = asyncio.ensure_future(cache.get(("trend",), compute))
        staying = asyncio.ensure_future(cache.get(("trend",), compute))
        await asyncio.sleep(0.01)
        leaving.cancel()  # a client disconnecting mid-request
        return await staying, compute.calls, leaving.cancelled()

    assert asyncio.run(scenario()) == (1, 1, True)


def test_ttl_zero_computes_for_every_call():
    async def scenario():
        cache = ViewCache(0, clock=Clock())
        compute = Computation()
        await asyncio.gather(*(cache.get(("live", 60), compute) for _ in range(5)))
        return compute.calls

    assert asyncio.run(scenario()) == 5


def test_every_computation_is_reported_with_its_key():
    async def scenario():
        counted = []
        cache = ViewCache(1.0, clock=Clock(), on_compute=counted.append)
        await asyncio.gather(*(cache.get(("live", 60), Computation()) for _ in range(3)))
        await cache.get(("status",), Computation())
        return counted

    assert asyncio.run(scenario()) == [("live", 60), ("status",)]


def test_the_cache_keeps_at_most_max_entries():
    async def scenario():
        clock = Clock()
        cache = ViewCache(1.0, clock=clock, max_entries=3)
        for page in range(10):
            await cache.get(("meters", page), Computation(delay=0))
            clock.now += 0.01
        return cache

    cache = asyncio.run(scenario())
    assert sorted(key[1] for key in cache._entries) == [7, 8, 9]


async def _collect(broadcast: Broadcast, count: int) -> list[bytes]:
    payloads = []
    async for payload in broadcast.listen():
        payloads.append(payload)
        if len(payloads) == count:
            break
    return payloads


def test_every_sse_listener_gets_the_same_snapshot_from_one_computation_per_interval():
    async def scenario():
        produced = []

        async def produce() -> bytes:
            produced.append(len(produced) + 1)
            return b"update %d" % len(produced)

        broadcast = Broadcast(0.05, produce, error_payload=b": down")
        streams = await asyncio.gather(*(_collect(broadcast, 3) for _ in range(50)))
        await asyncio.sleep(0.12)  # the producer stops once nobody listens
        return produced, streams, broadcast

    produced, streams, broadcast = asyncio.run(scenario())
    assert streams[0] == [b"update 1", b"update 2", b"update 3"]
    assert all(stream == streams[0] for stream in streams)
    assert len(produced) <= 4  # 3 updates read, at most one more produced before the last left
    assert broadcast.listeners == 0 and broadcast._task.done()


def test_a_new_sse_listener_gets_the_current_snapshot_at_once():
    async def scenario():
        count = 0

        async def produce() -> bytes:
            nonlocal count
            count += 1
            return b"update %d" % count

        broadcast = Broadcast(10.0, produce, error_payload=b": down")
        first = asyncio.ensure_future(_collect(broadcast, 2))
        await asyncio.sleep(0.01)
        # The second listener does not wait the 10 s interval for its first payload.
        late = await asyncio.wait_for(_collect(broadcast, 1), 1.0)
        first.cancel()
        await broadcast.close()
        return late, count

    assert asyncio.run(scenario()) == ([b"update 1"], 1)


def test_a_failed_sse_update_sends_the_error_payload_and_the_stream_goes_on():
    async def scenario():
        calls = 0

        async def produce() -> bytes:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise ConnectionError("redis went away")
            return b"update"

        broadcast = Broadcast(0.01, produce, error_payload=b": redis unavailable\n\n")
        return await _collect(broadcast, 2)

    assert asyncio.run(scenario()) == [b": redis unavailable\n\n", b"update"]


def test_finish_ends_every_sse_stream_and_refuses_new_ones():
    async def scenario():
        async def produce() -> bytes:
            return b"update"

        broadcast = Broadcast(10.0, produce, error_payload=b"")
        streams = [asyncio.ensure_future(_collect(broadcast, 10**6)) for _ in range(5)]
        await asyncio.sleep(0.01)
        broadcast.finish()  # the server is stopping
        ended = await asyncio.wait_for(asyncio.gather(*streams), 1.0)
        late = await asyncio.wait_for(_collect(broadcast, 1), 1.0)
        await broadcast.close()
        return ended, late, broadcast.listeners

    ended, late, listeners = asyncio.run(scenario())
    assert ended == [[b"update"]] * 5 and late == [] and listeners == 0


@pytest.mark.parametrize("listeners", [1, 20])
def test_the_sse_producer_keeps_its_rate_whatever_the_number_of_listeners(listeners):
    async def scenario():
        produced = 0

        async def produce() -> bytes:
            nonlocal produced
            produced += 1
            return b"x"

        broadcast = Broadcast(0.02, produce, error_payload=b"")
        tasks = [asyncio.ensure_future(_collect(broadcast, 10**6)) for _ in range(listeners)]
        await asyncio.sleep(0.2)
        for task in tasks:
            task.cancel()
        await broadcast.close()
        return produced

    assert 6 <= asyncio.run(scenario()) <= 12  # ~0.2 s / 0.02 s, loose for a loaded machine
