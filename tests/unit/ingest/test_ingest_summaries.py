"""Summaries built by the hot path: partials, chaining, resume, meter status in event time."""

from __future__ import annotations

import json

from ingest._hotpath import Processor
from smartgrid_common.contracts import Summary

T0 = 1_795_773_600_000  # 2026-11-27T10:00:00Z


def reading(meter: str, at_ms: int, kwh: float, region: str = "north", status: str = "ok", **extra) -> bytes:
    return json.dumps(
        {"meter_id": meter, "timestamp": at_ms, "consumption_kwh": kwh, "region": region, "status": status, **extra}
    ).encode()


class Feed:
    """Feeds one partition with increasing offsets and decodes its summaries."""

    def __init__(self, processor: Processor, partition: int = 0, offset: int = 0) -> None:
        self.processor, self.partition, self.offset = processor, partition, offset

    def batch(self, *values: bytes) -> Summary | None:
        offsets = list(range(self.offset, self.offset + len(values)))
        self.offset += len(values)
        self.processor.process(list(values), [self.partition] * len(values), offsets)
        taken = self.processor.take_summaries()
        summaries = [Summary.from_json(data) for partition, data in taken if partition == self.partition]
        assert len(summaries) <= 1
        return summaries[0] if summaries else None


def test_partials_per_second_and_region_with_distinct_meters_and_centroid():
    feed = Feed(Processor("grid", "ms", True, 60_000))
    summary = feed.batch(
        reading("a", T0 + 100, 1.0, latitude=50.0, longitude=8.0),
        reading("a", T0 + 900, 3.0, latitude=52.0, longitude=10.0),
        reading("b", T0 + 500, 2.0, region="south"),
        reading("c", T0 + 1500, 4.0),
        b"not json",
    )
    assert (summary.topic, summary.partition, summary.first_offset, summary.last_offset) == ("grid", 0, 0, 4)
    seconds = {s.second: (s.sum_kwh, s.count, s.min_kwh, s.max_kwh) for s in summary.seconds}
    assert seconds == {T0 // 1000: (6.0, 3, 1.0, 3.0), T0 // 1000 + 1: (4.0, 1, 4.0, 4.0)}
    regions = {(r.second, r.region): r for r in summary.regions}
    north = regions[(T0 // 1000, "north")]
    assert (north.sum_kwh, north.count, north.max_kwh, north.new_meters) == (4.0, 2, 3.0, 1)
    assert (north.lat_sum, north.lon_sum, north.geo_count) == (102.0, 18.0, 2)
    assert regions[(T0 // 1000, "south")].new_meters == 1
    assert summary.watermark_ms == T0 + 1500


def test_summaries_of_a_partition_chain_offsets_even_across_empty_batches():
    feed = Feed(Processor("grid", "ms", True, 60_000), offset=100)
    first = feed.batch(reading("a", T0, 1.0))
    second = feed.batch(b"bad", b"bad")
    third = feed.batch(reading("a", T0 + 1000, 1.0))
    assert (first.first_offset, first.last_offset) == (100, 100)
    assert (second.first_offset, second.last_offset) == (101, 102)
    assert (third.first_offset, third.last_offset) == (103, 103)
    # Only the chain's first summary may start the aggregator's watermark.
    assert (first.chained, second.chained, third.chained) == (False, True, True)


def test_resume_suppresses_what_was_already_published_but_rebuilds_state():
    processor = Processor("grid", "ms", True, 60_000)
    processor.resume(0, published_upto=11)
    feed = Feed(processor, offset=10)
    # offsets 10, 11 were summarised before the restart: not again
    assert feed.batch(reading("a", T0, 1.0), reading("b", T0, 2.0)) is None
    summary = feed.batch(reading("a", T0 + 10, 5.0, status="fault"), reading("c", T0 + 20, 1.0))
    assert (summary.first_offset, summary.last_offset) == (12, 13)
    assert summary.chained  # continues what was published before the restart
    assert sum(s.count for s in summary.seconds) == 2
    updates = {m.meter_id: (m.previous, m.status) for m in summary.meters}
    # "a" was known from the suppressed replay: its previous status is ok, not new
    assert updates == {"a": ("ok", "fault"), "c": (None, "ok")}


def test_partially_published_batch_starts_right_after_the_published_offset():
    processor = Processor("grid", "ms", True, 60_000)
    processor.resume(0, published_upto=10)
    summary = Feed(processor, offset=9).batch(reading("a", T0, 1.0), reading("a", T0 + 1, 1.0), reading("a", T0 + 2, 7.0))
    assert (summary.first_offset, summary.last_offset) == (11, 11)
    assert [s.sum_kwh for s in summary.seconds] == [7.0]


def test_meter_goes_offline_after_silence_in_event_time_and_comes_back_with_a_reading():
    feed = Feed(Processor("grid", "ms", True, 60_000))
    feed.batch(reading("quiet", T0, 1.0), reading("busy", T0, 1.0))
    still = feed.batch(reading("busy", T0 + 59_000, 1.0))
    assert [m.meter_id for m in still.meters] == []
    silent = feed.batch(reading("busy", T0 + 61_000, 1.0))
    assert [(m.meter_id, m.previous, m.status, m.at_ms, m.last_reading_ms) for m in silent.meters] == [
        ("quiet", "ok", "offline", T0 + 61_000, T0)
    ]
    back = feed.batch(reading("quiet", T0 + 62_000, 1.0))
    assert [(m.meter_id, m.previous, m.status) for m in back.meters] == [("quiet", "offline", "ok")]


def test_replayed_backlog_does_not_mark_meters_offline_by_wall_clock():
    # Readings from long ago, replayed now: only event time counts.
    old = 1_000_000_000_000
    feed = Feed(Processor("grid", "ms", True, 60_000))
    feed.batch(reading("a", old, 1.0), reading("b", old, 1.0))
    summary = feed.batch(reading("a", old + 30_000, 1.0), reading("b", old + 30_000, 1.0))
    assert summary.meters == []


def test_late_reading_counts_in_its_bucket_but_does_not_change_status():
    feed = Feed(Processor("grid", "ms", True, 600_000))
    feed.batch(reading("a", T0 + 10_000, 1.0, status="fault"))
    late = feed.batch(reading("a", T0, 2.0, status="ok"))
    assert [(s.second, s.sum_kwh) for s in late.seconds] == [(T0 // 1000, 2.0)]
    assert late.meters == []
    assert late.watermark_ms == T0 + 10_000


def test_faulty_meter_reports_its_latest_reading_each_batch():
    feed = Feed(Processor("grid", "ms", True, 600_000))
    first = feed.batch(reading("a", T0, 1.0, status="fault"))
    again = feed.batch(reading("a", T0 + 5_000, 1.0, status="fault"))
    assert [(m.previous, m.status) for m in first.meters] == [(None, "fault")]
    assert [(m.previous, m.status, m.last_reading_ms) for m in again.meters] == [("fault", "fault", T0 + 5_000)]


def test_snapshot_restores_meter_state_for_offline_detection():
    processor = Processor("grid", "ms", True, 60_000)
    Feed(processor).batch(reading("quiet", T0, 1.0), reading("busy", T0, 1.0))
    snapshot = processor.snapshot(0)
    restarted = Processor("grid", "ms", True, 60_000)
    restarted.resume(0, published_upto=1, snapshot=snapshot)
    summary = Feed(restarted, offset=2).batch(reading("busy", T0 + 70_000, 1.0))
    assert {(m.meter_id, m.status) for m in summary.meters} == {("quiet", "offline")}


def test_no_summaries_when_aggregations_are_off():
    processor = Processor("grid", "ms", False)
    assert processor.process([reading("a", T0, 1.0)], [0], [0]).valid == 1
    assert processor.take_summaries() == []


def test_one_summary_per_partition_covers_every_batch_since_the_last_take():
    processor = Processor("grid", "ms", True, 60_000)
    processor.process([reading("a", T0, 1.0), reading("b", T0, 2.0)], [0, 1], [0, 0])
    processor.process([reading("a", T0 + 1, 3.0)], [0], [1])
    taken = {partition: Summary.from_json(data) for partition, data in processor.take_summaries()}
    assert (taken[0].first_offset, taken[0].last_offset, taken[0].seconds[0].count) == (0, 1, 2)
    assert (taken[1].first_offset, taken[1].last_offset) == (0, 0)
    assert processor.take_summaries() == []


def test_live_path_processor_builds_no_lines_but_the_same_verdicts_and_summaries():
    """The live path's processor (lines=False) and the InfluxDB path's must agree on what is valid;
    the live one must summarise exactly what a line-building processor would."""
    values = [reading("a", T0, 1.0), b"{not json", reading("b", T0 + 1500, 2.5, status="fault"), reading("c", T0, -1.0)]
    partitions, offsets = [3] * len(values), list(range(10, 10 + len(values)))
    live = Processor("grid", "ms", True, 60_000, lines=False)
    full = Processor("grid", "ms", True, 60_000)
    got, expected = live.process(values, partitions, offsets), full.process(values, partitions, offsets)
    assert got.body == b"" and expected.body.count(b"\n") == 2
    assert (got.valid, got.rejected, got.ranges) == (expected.valid, expected.rejected, expected.ranges)
    assert [i for i, _ in got.rejected] == [1, 3]
    assert live.take_summaries() == full.take_summaries() != []
