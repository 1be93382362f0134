"""The records across the Python/Lua boundary (records.py) through the real Redis: every field of
a group and of an emit call distinct, so a field the Lua read under another name, or from another
record, would land in the wrong place; a record the declaration does not match is refused before
anything is written.
"""

from __future__ import annotations

import asyncio
import os
import time

import orjson
import pytest
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import ResponseError
from smartgrid_common.contracts import MeterUpdate, RegionPartial, SecondPartial, Summary, rollup_stream

from aggregator.fold import FoldConfig, LiveModel, Outcome
from aggregator.records import fold_args, lua_preamble
from aggregator.store import LiveStore, _record_script, _script

pytestmark = pytest.mark.integration

URL = os.environ.get("SMARTGRID_REDIS_URL", "redis://127.0.0.1:6379/0")
CONFIG = FoldConfig(live_ttl=86400, region_ttl=3600, late_ttl=300)


def run(prefix: str, scenario):
    async def main():
        client = AsyncRedis.from_url(URL)
        try:
            return await scenario(LiveStore(client, prefix, CONFIG))
        finally:
            await client.aclose()

    return asyncio.run(main())


def distinct_summaries(now: int) -> list[Summary]:
    """Two summaries of one partition whose every number differs from every other, for two event
    seconds of the previous minute."""
    now = now - now % 60 - 60 + 12  # so that now - 2 and now - 1 are one minute's
    first = Summary(
        "t", 7, 100, 199, now * 1000,
        [SecondPartial(now - 2, 1.25, 3, 0.125, 0.75)],
        [RegionPartial(now - 2, "north,x=1", 2.5, 5, 0.875, 11, 13.5, 17.25, 19)],
        [MeterUpdate("m-a", "north,x=1", None, "fault", 1_700_000_000_101, 1_700_000_000_103)],
    )
    second = Summary(
        "t", 7, 200, 299, now * 1000,
        [SecondPartial(now - 1, 4.5, 23, 0.0625, 1.5)],
        # A version 1 partial: meter ids instead of a count.
        [RegionPartial(now - 1, "north,x=1", 6.75, 29, 1.125, 0, 31.5, 37.25, 41, ["m-b", "m-c", "m-d"])],
        # Known already (new to this partition again), still fault: its alert keeps its since.
        [MeterUpdate("m-a", "north,x=1", None, "fault", 1_700_000_000_107, 1_700_000_000_109)],
        chained=True,
    )
    return [first, second]


@pytest.mark.parametrize("merged", [True, False], ids=["merged", "one-by-one"])
def test_every_field_of_a_group_lands_where_the_model_puts_it(redis: Redis, prefix, merged):
    now = int(time.time())
    summaries = distinct_summaries(now)

    async def scenario(store: LiveStore):
        if merged:
            return [Outcome.APPLIED] if await store.fold_merged(summaries) else [Outcome.WAIT]
        return await store.fold(summaries)

    assert run(prefix, scenario) == [Outcome.APPLIED] * (1 if merged else 2)
    model = LiveModel()
    for summary in summaries:
        model.apply(summary)
    assert redis.hgetall(f"{prefix}:agg:wm") == {b"t:7": b"299"}
    for second, bucket in model.seconds.items():
        assert redis.hgetall(f"{prefix}:sec:{second}") == {
            b"sum": repr(bucket.sum_kwh).encode(), b"count": str(bucket.count).encode(),
            b"min": repr(bucket.min_kwh).encode(), b"max": repr(bucket.max_kwh).encode(),
        }
    ((minute, trend),) = model.minutes.items()
    assert redis.hgetall(f"{prefix}:min:{minute}") == {
        b"sum": repr(trend.sum_kwh).encode(), b"count": str(trend.count).encode(),
        b"min": repr(trend.min_kwh).encode(), b"max": repr(trend.max_kwh).encode(),
    }
    for (second, region), bucket in model.regions.items():
        assert redis.hgetall(f"{prefix}:rsec:{second}") == {
            f"{kind}:{region}".encode(): str(value).encode()
            for kind, value in (("sum", bucket.sum_kwh), ("cnt", bucket.count), ("max", bucket.max_kwh),
                                ("lat", bucket.lat_sum), ("lon", bucket.lon_sum), ("geo", bucket.geo_count),
                                ("mc", bucket.meter_count))
        }
    second = summaries[1].regions[0].second
    assert redis.smembers(f"{prefix}:rmet:{second}:north,x=1") == {b"m-b", b"m-c", b"m-d"}
    assert redis.hgetall(f"{prefix}:geo") == {b"lat:north,x=1": b"45", b"lon:north,x=1": b"54.5", b"n:north,x=1": b"60"}
    assert redis.hgetall(f"{prefix}:meter_status") == {b"m-a": b"fault"}
    assert redis.hgetall(f"{prefix}:region_meters") == {b"north,x=1": b"1"}
    alert = model.alerts["m-a"]
    assert orjson.loads(redis.hget(f"{prefix}:alerts", "m-a")) == {
        "status": alert.status, "since": str(alert.since_ms), "last": str(alert.last_reading_ms), "region": alert.region}
    assert redis.zscore(f"{prefix}:alerts:r:north,x=1", "m-a") == alert.since_ms
    stats = {k.decode(): int(v) for k, v in redis.hgetall(f"{prefix}:agg:stats").items()}
    assert stats == {"applied": 2, "meters_new_again": 1}
    assert int(redis.get(f"{prefix}:agg:latest")) == max(model.seconds)


def test_a_group_that_does_not_match_the_declaration_is_refused_before_any_write(redis: Redis, prefix):
    now = int(time.time())
    call, group = fold_args(prefix, CONFIG, [distinct_summaries(now)[:1]], now)
    fold = redis.register_script(_record_script("fold.lua"))
    without_a_column = orjson.loads(group)
    del without_a_column["regions"]["geo_count"]
    uneven = orjson.loads(group)
    uneven["meters"]["status"].append("ok")
    for bad, why in ((without_a_column, "record regions has no column geo_count"),
                     (uneven, "record meters: column status has 2 rows, not 1")):
        # The bad group second: the good one before it is not applied either.
        with pytest.raises(ResponseError, match=why):
            fold(args=[call, group, orjson.dumps(bad)])
        assert list(redis.scan_iter(f"{prefix}:*")) == []


def test_a_script_reading_an_undeclared_field_fails_instead_of_reading_nil(redis: Redis):
    reader = redis.register_script(
        lua_preamble() + _script("record.lua") + "local args = record(ARGV[1], 'fold_call')\nreturn args.ttl")
    with pytest.raises(ResponseError, match="record fold_call has no field ttl"):
        reader(args=fold_args("p", CONFIG, [], time.time()))


def test_every_field_of_the_emit_call_is_read_by_its_name(redis: Redis, prefix):
    now = int(time.time())

    async def scenario(store: LiveStore):
        await store.fold(distinct_summaries(now))
        first = await store.emit("replica-a", 4321, 1, 3)
        # Another replica within the lock's 4321 ms: not its turn.
        other = await store.emit("replica-b", 4321, 1, 3)
        return first, other

    (seq, left), other = run(prefix, scenario)
    assert (seq, left) == (1, 1)  # one dirty second per message: one of two left
    assert other == (-1, 0)
    assert redis.get(f"{prefix}:agg:emit_lock") == b"replica-a"
    assert 4000 < redis.pttl(f"{prefix}:agg:emit_lock") <= 4321
    ((_, fields),) = redis.xrange(rollup_stream(prefix))
    rollup = orjson.loads(fields[b"data"])
    assert rollup["seq"] == 1 and abs(rollup["emitted_ms"] - time.time() * 1000) < 60_000
    assert [row[0] for row in rollup["seconds"]] in ([s.seconds[0].second] for s in distinct_summaries(now))
