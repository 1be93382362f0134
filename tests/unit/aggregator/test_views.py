"""Dashboard API shaping (views.py)."""

from __future__ import annotations

import orjson

from aggregator.views import (
    COMPLETE_GRACE_S,
    live_view,
    meters_view,
    newest_complete_second,
    regions_view,
    split_region_hash,
    status_view,
    trend_view,
    unpack_buckets,
)


def test_live_view_has_one_point_per_second_with_zeros_for_gaps():
    rows = [{b"sum": b"1.5", b"count": b"3", b"min": b"0.5", b"max": b"0.5"}, {}]
    view = live_view(101, 2, rows)
    assert [p["second"] for p in view["points"]] == [100, 101]
    assert view["points"][0]["avg_kwh"] == 0.5
    assert view["points"][1] == {"second": 101, "total_kwh": 0.0, "reading_count": 0, "min_kwh": None,
                                 "max_kwh": None, "avg_kwh": None}


def test_live_view_without_data_is_empty():
    view = live_view(None, 60, [])
    assert view["points"] == [] and view["complete"] is None


def test_the_newest_folded_second_is_open_while_the_partitions_fill_it():
    # event time 100 is the newest folded second and the wall clock is inside it or just past it
    assert newest_complete_second(100, now=100.4) == 99
    assert newest_complete_second(100, now=101 + COMPLETE_GRACE_S - 0.01) == 99


def test_the_newest_folded_second_is_complete_once_the_stream_is_quiet_for_the_grace():
    assert newest_complete_second(100, now=101 + COMPLETE_GRACE_S) == 100
    assert newest_complete_second(100, now=5000.0) == 100  # a replay of old data that stopped


def test_a_second_is_complete_as_soon_as_a_later_second_is_folded():
    # the wall clock does not matter once the next second exists (a replay far behind real time)
    assert newest_complete_second(101, now=101.0) == 100


def test_nothing_is_complete_before_anything_was_folded():
    assert newest_complete_second(None, now=100.0) is None


def test_live_view_says_which_second_is_the_newest_complete_one():
    rows = [{b"sum": b"10", b"count": b"4"}, {b"sum": b"0.5", b"count": b"1"}]
    view = live_view(101, 2, rows, complete=newest_complete_second(101, now=101.3))
    assert view["complete"] == 100
    # the open second stays in the points (the page draws it apart); the keys are unchanged
    assert [p["second"] for p in view["points"]] == [100, 101]
    assert set(view) == {"end", "complete", "seconds", "points"}


def test_live_view_without_a_complete_second_given_takes_every_second_as_complete():
    assert live_view(101, 2, [{}, {}])["complete"] == 101


def test_trend_view_says_which_minute_is_the_newest_complete_one():
    rows = [{}, {}, {}]
    assert trend_view(180, 3, rows, complete_second=200)["complete"] == 120  # 180..239 still filling
    assert trend_view(180, 3, rows, complete_second=239)["complete"] == 180
    assert trend_view(180, 3, rows, complete_second=179)["complete"] == 120
    assert trend_view(180, 3, rows)["complete"] == 180


def test_window_script_reply_unpacks_to_one_hash_per_bucket():
    packed = b"1.5,3,0.25,0.75;,,,;2,1,2,2"
    assert unpack_buckets(packed) == [
        {b"sum": b"1.5", b"count": b"3", b"min": b"0.25", b"max": b"0.75"},
        {},
        {b"sum": b"2", b"count": b"1", b"min": b"2", b"max": b"2"},
    ]


def test_trend_view_steps_by_minute():
    view = trend_view(180, 3, [{}, {}, {b"sum": b"2", b"count": b"1"}])
    assert [p["minute"] for p in view["points"]] == [60, 120, 180]


def test_region_names_may_contain_colons():
    assert split_region_hash({b"sum:a:b": b"1", b"emit_seq": b"4"}) == {"a:b": {"sum": b"1"}}


def test_regions_are_ranked_by_consumption_with_centroids():
    window = [{b"sum:north": b"1", b"cnt:north": b"1", b"max:north": b"1", b"mc:north": b"1",
               b"sum:south": b"5", b"cnt:south": b"2", b"max:south": b"3", b"mc:south": b"2"},
              {b"sum:north": b"1", b"cnt:north": b"1", b"max:north": b"1", b"mc:north": b"1"}]
    geo = {b"lat:north": b"120", b"lon:north": b"20", b"n:north": b"2"}
    rows = regions_view(window, geo, {b"north": b"7"}, 60)
    assert [(r["region"], r["rank"], r["total_kwh"]) for r in rows] == [("south", 1, 5.0), ("north", 2, 2.0)]
    assert rows[1]["lat"] == 60.0 and rows[1]["lon"] == 10.0 and rows[1]["meters"] == 7
    assert rows[0]["lat"] is None


def test_status_view_counts_alerts_as_everything_but_ok():
    view = status_view({b"ok": b"5", b"fault": b"2", b"offline": b"0"})
    assert view == {"counts": {"fault": 2, "offline": 0, "ok": 5}, "total": 7, "alerts": 2}


def test_meters_view_paginates_and_skips_vanished_records():
    record = orjson.dumps({"status": "fault", "region": "r", "since": "1000", "last": "2000"})
    view = meters_view(101, 2, 50, [(b"m1", record), (b"m2", None)])
    assert view["pages"] == 3 and view["items"] == [
        {"meter_id": "m1", "status": "fault", "region": "r", "since_ms": 1000, "last_reading_ms": 2000}]
