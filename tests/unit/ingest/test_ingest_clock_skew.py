"""Event time bounded by the wall clock: meters whose clocks are wrong (far future, far past, epoch
seconds where milliseconds were expected) neither move event time nor land in the live buckets."""

from __future__ import annotations

import time

import pytest
from ingest._hotpath import Processor
from smartgrid_common.contracts import Summary

from test_ingest_summaries import Feed, reading

SKEW_MS = 300_000
LATE_MS = 300_000
NOW = int(time.time() * 1000) // 1000 * 1000 - 60_000  # a whole second, a minute ago
YEAR_2100 = 4_102_444_800_000


def live() -> Processor:
    return Processor("grid", "ms", True, 600_000, lines=False, max_clock_skew_ms=SKEW_MS, late_window_ms=LATE_MS)


def statuses(summary) -> dict[str, str]:
    return {m.meter_id: m.status for m in summary.meters}


def test_a_reading_far_ahead_of_the_wall_clock_is_refused_with_a_reason_that_says_so():
    processor = Processor("grid", "ms", False, max_clock_skew_ms=SKEW_MS)
    result = processor.process([reading("a", NOW, 1.0), reading("b", YEAR_2100, 2.0)], [0, 0], [0, 1])
    assert result.valid == 1
    [(index, reason)] = result.rejected
    assert index == 1
    assert reason.startswith("clock skew: timestamp 2100-01-01T00:00:00.000Z is ")
    assert "ahead of the ingest's clock, more than SMARTGRID_MAX_CLOCK_SKEW (300s)" in reason
    assert result.body.count(b"\n") == 1 and b"meter_id=a" in result.body


def test_a_reading_within_the_skew_is_accepted():
    processor = Processor("grid", "ms", False, max_clock_skew_ms=SKEW_MS)
    ahead = int(time.time() * 1000) + SKEW_MS - 5_000
    assert processor.process([reading("a", ahead, 1.0)], [0], [0]).rejected == []


def test_a_far_future_reading_moves_no_watermark_and_no_bucket_but_flags_its_meter():
    feed = Feed(live())
    first = feed.batch(reading("a", NOW, 1.0), reading("b", NOW + 100, 2.0))
    summary = feed.batch(reading("b", YEAR_2100, 5.0), reading("a", NOW + 1000, 1.0))
    assert summary.watermark_ms == first.watermark_ms + 900 == NOW + 1000
    assert [(s.second, s.count, s.sum_kwh) for s in summary.seconds] == [(NOW // 1000 + 1, 1, 1.0)]
    assert statuses(summary) == {"b": "clock_skew"}
    clock_skew = next(m for m in summary.meters if m.meter_id == "b")
    assert clock_skew.previous == "ok"


def test_a_meter_flagged_for_its_clock_is_cleared_by_its_next_sane_reading():
    feed = Feed(live())
    feed.batch(reading("a", NOW, 1.0), reading("b", NOW, 1.0))
    feed.batch(reading("b", YEAR_2100, 1.0))
    cleared = feed.batch(reading("b", NOW + 500, 1.0, status="fault"))
    assert statuses(cleared) == {"b": "fault"}
    assert [m.previous for m in cleared.meters] == ["clock_skew"]


def test_a_meter_first_heard_with_a_wrong_clock_is_known_and_flagged():
    feed = Feed(live())
    summary = feed.batch(reading("z", YEAR_2100, 1.0))
    assert statuses(summary) == {"z": "clock_skew"}
    assert summary.seconds == [] and summary.regions == []


@pytest.mark.parametrize(
    "stamp",
    [NOW - LATE_MS - 1_000, NOW // 1000, 86_400_000],  # beyond the late window; epoch seconds as ms; 1970
    ids=["beyond-late-window", "epoch-seconds-as-ms", "1970"],
)
def test_a_reading_far_behind_the_watermark_counts_in_no_live_bucket_but_is_written_raw(stamp):
    processor = Processor("grid", "ms", True, 600_000, max_clock_skew_ms=SKEW_MS, late_window_ms=LATE_MS)
    feed = Feed(processor)
    feed.batch(reading("a", NOW, 1.0), reading("b", NOW, 1.0))
    offsets = [feed.offset, feed.offset + 1]
    feed.offset += 2
    result = processor.process([reading("b", stamp, 7.0), reading("a", NOW + 1000, 1.0)], [0, 0], offsets)
    assert result.valid == 2 and result.rejected == []  # the raw store keeps it (or InfluxDB refuses it)
    [(_, data)] = processor.take_summaries()
    summary = Summary.from_json(data)
    assert [(s.second, s.sum_kwh) for s in summary.seconds] == [(NOW // 1000 + 1, 1.0)]
    assert summary.watermark_ms == NOW + 1000
    assert statuses(summary) == {"b": "clock_skew"}


def test_a_late_reading_within_the_window_still_counts():
    feed = Feed(live())
    feed.batch(reading("a", NOW, 1.0))
    summary = feed.batch(reading("b", NOW - LATE_MS + 1_000, 3.0))
    assert [(s.second, s.sum_kwh) for s in summary.seconds] == [((NOW - LATE_MS + 1_000) // 1000, 3.0)]
    assert statuses(summary) == {"b": "ok"}  # a new meter, not a wrong clock


def test_wrong_clocks_mark_no_meter_offline():
    feed = Feed(live())
    feed.batch(*[reading(f"m{i}", NOW, 1.0) for i in range(5)])
    summary = feed.batch(reading("m0", YEAR_2100, 1.0), reading("m1", 86_400_000, 1.0), reading("m2", NOW + 2000, 1.0))
    assert "offline" not in statuses(summary).values()
    assert statuses(summary) == {"m0": "clock_skew", "m1": "clock_skew"}


def test_the_clock_bounds_are_checked():
    with pytest.raises(ValueError, match="max_clock_skew_ms"):
        Processor("grid", max_clock_skew_ms=-1)
    with pytest.raises(ValueError, match="late_window_ms"):
        Processor("grid", late_window_ms=0)
