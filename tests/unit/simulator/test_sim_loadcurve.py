"""Daily load curves: the shape of a day, and readings that follow it by event time."""

from __future__ import annotations

import orjson
from simulator import generate
from simulator.loadcurve import BUILDING_CURVES, load_factor, local_minute
from simulator.timefmt import parse_start


def test_residential_load_peaks_in_the_morning_and_higher_in_the_evening():
    night, morning, midday, evening = (load_factor("residential", hour) for hour in (3.5, 7.5, 11.0, 19.0))
    assert morning > night * 1.5
    assert evening > morning
    assert midday < morning
    assert max(range(1440), key=BUILDING_CURVES["residential"].__getitem__) // 60 in (18, 19, 20)


def test_commercial_load_is_high_in_business_hours_and_municipal_at_night():
    assert load_factor("commercial", 13) > 3 * load_factor("commercial", 3)
    assert load_factor("municipal", 0) > 3 * load_factor("municipal", 12)


def test_curves_wrap_around_midnight_smoothly():
    for name, curve in BUILDING_CURVES.items():
        assert all(value > 0 for value in curve), name
        assert abs(curve[0] - curve[-1]) < 0.01, name


def test_local_minute_applies_the_region_offset():
    noon_utc = parse_start("2024-05-01T12:00:00Z")
    assert local_minute(noon_utc, 0) == 720
    assert local_minute(noon_utc, -5) == 420
    assert local_minute(noon_utc, -8) == 240


def test_readings_follow_the_curve_of_their_local_event_time():
    def mean_kwh(start: str) -> float:
        records = generate(4000, meters=4000, seed=9, start_ms=parse_start(start))
        values = [
            reading["consumption_kwh"]
            for reading in map(orjson.loads, (value for _, value in records))
            if reading["region"] == "great-lakes" and reading["building_type"] == "residential"
        ]
        return sum(values) / len(values)

    # great-lakes is UTC-6: 09:00Z is 03:00 local, 01:00Z next day is 19:00 local.
    assert mean_kwh("2024-05-02T01:00:00Z") > 2 * mean_kwh("2024-05-01T09:00:00Z")
