"""Rollups -> line protocol (writer/builders.py)."""

from __future__ import annotations

from smartgrid_common.contracts import RegionRollup, Rollup, SecondRollup

from writer.builders import Superseded, build_body, escape_tag


def rollup(seq: int, total: float, status_second: int | None = None, counts=None) -> Rollup:
    return Rollup(seq, 0, [SecondRollup(100, total, 2, 0.5, total - 0.5)],
                  [RegionRollup(100, "north east", total, 2, 1, total - 0.5)], status_second, counts)


def test_every_numeric_field_is_a_float_and_time_is_the_bucket_second():
    lines = build_body([rollup(1, 3.0, 100, {"ok": 4, "fault": 0})])
    assert lines == [
        "energy_consumption_aggregate total_kwh=3.0,reading_count=2.0,max_kwh=2.5,min_kwh=0.5,avg_kwh=1.5 100",
        r"region_consumption,region=north\ east total_kwh=3.0,meter_count=1.0,average_kwh=3.0,max_consumption=2.5 100",
        "meter_status,status=fault count=0.0 100",
        "meter_status,status=ok count=4.0 100",
    ]


def test_tag_values_are_escaped():
    assert escape_tag("a,b=c d") == r"a\,b\=c\ d"
    assert escape_tag("") == "unknown"


def test_newest_rollup_of_a_bucket_wins_within_a_batch():
    lines = build_body([rollup(2, 5.0), rollup(1, 3.0)])
    assert len(lines) == 2 and "total_kwh=5.0" in lines[0]


def test_rollup_superseded_by_a_newer_emission_is_skipped():
    newest = Superseded(seconds={100: 7}, regions={100: 7})
    assert build_body([rollup(3, 3.0)], newest) == []
    assert len(build_body([rollup(7, 3.0)], newest)) == 2


def test_status_snapshots_of_other_seconds_are_kept_as_history():
    newest = Superseded(status=9, status_second=200)
    lines = build_body([rollup(3, 1.0, 100, {"ok": 1}), rollup(4, 1.0, 200, {"ok": 2})], newest)
    assert [line for line in lines if line.startswith("meter_status")] == ["meter_status,status=ok count=1.0 100"]
