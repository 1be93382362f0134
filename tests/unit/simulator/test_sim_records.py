"""The simulator's records against the input contract: valid ones pass, malformed ones fail,
fractions and determinism hold. No Kafka involved.

``violation`` below is a strict reading of the contract (/work/shared/DESIGN.md, "Input
contract"), kept here on purpose: it is the yardstick, independent of any consumer.
"""

from __future__ import annotations

from collections import Counter

import pytest
from simulator import generate, generate_labelled
from simulator.fleet import REGIONS, build_fleet
from simulator.malformed import VARIANTS
from simulator.timefmt import parse_start

import math
from datetime import datetime

import orjson

REQUIRED_STRINGS = ("meter_id", "region", "status")


def violation(key: bytes, value: bytes, epoch_unit: str = "ms") -> str | None:
    """Why a Kafka record breaks the contract, or None when it is a valid reading."""
    try:
        reading = orjson.loads(value)
    except orjson.JSONDecodeError as error:
        return f"not JSON: {error}"
    if not isinstance(reading, dict):
        return "not a JSON object"
    for name in REQUIRED_STRINGS:
        if not isinstance(reading.get(name), str):
            return f"{name} missing or not a string"
    if "timestamp" not in reading:
        return "timestamp missing"
    stamp = reading["timestamp"]
    if isinstance(stamp, str):
        try:
            parsed = datetime.fromisoformat(stamp)
        except ValueError:
            return f"bad timestamp {stamp!r}"
        if parsed.tzinfo is None:
            return "timestamp without offset"
    elif isinstance(stamp, bool) or not isinstance(stamp, (int, float)):
        return "timestamp neither string nor number"
    consumption = reading.get("consumption_kwh")
    if isinstance(consumption, bool) or not isinstance(consumption, (int, float)):
        return "consumption_kwh missing or not a number"
    if not math.isfinite(consumption) or consumption < 0:
        return "consumption_kwh not finite and >= 0"
    for name, bound in (("latitude", 90.0), ("longitude", 180.0)):
        if name in reading:
            number = reading[name]
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not -bound <= number <= bound:
                return f"{name} out of range"
    if "peak_load" in reading:
        peak = reading["peak_load"]
        if isinstance(peak, bool) or not isinstance(peak, (int, float)) or not math.isfinite(peak):
            return "peak_load not a finite number"
    if "building_type" in reading and not isinstance(reading["building_type"], str):
        return "building_type not a string"
    return None


def event_ms(value: bytes) -> int:
    """Event time of a valid reading in epoch milliseconds (epoch numbers taken as ms)."""
    stamp = orjson.loads(value)["timestamp"]
    if isinstance(stamp, str):
        return round(datetime.fromisoformat(stamp).timestamp() * 1000)
    return int(stamp)


START = parse_start("2024-05-01T00:00:00Z")


@pytest.mark.parametrize("timestamp_format", ["rfc3339", "epoch-ms", "epoch-s", "mixed"])
def test_every_valid_record_satisfies_the_contract(timestamp_format):
    epoch_unit_ms = timestamp_format != "epoch-s"
    for key, value in generate(3000, meters=500, seed=3, timestamp_format=timestamp_format):
        assert violation(key, value) is None, value
        reading = orjson.loads(value)
        assert key == reading["meter_id"].encode()
        assert reading["status"] == "ok"
        assert isinstance(reading["consumption_kwh"], float)
        assert reading["peak_load"] >= reading["consumption_kwh"] * 4  # kW over a 15-minute interval
        if epoch_unit_ms:
            assert START <= event_ms(value) < START + 10_000


def test_epoch_formats_carry_the_same_instant_in_their_unit():
    milliseconds = generate(1, meters=1, timestamp_format="epoch-ms", start_ms=START + 1234)
    seconds = generate(1, meters=1, timestamp_format="epoch-s", start_ms=START + 1234)
    assert orjson.loads(milliseconds[0][1])["timestamp"] == START + 1234
    assert orjson.loads(seconds[0][1])["timestamp"] == pytest.approx((START + 1234) / 1000)


def test_mixed_format_varies_the_encoding_but_not_the_instant():
    records = generate(400, meters=400, timestamp_format="mixed")
    stamps = [orjson.loads(value)["timestamp"] for _, value in records]
    kinds = Counter(type(stamp).__name__ + (stamp[-6:] if isinstance(stamp, str) else "") for stamp in stamps)
    assert len(kinds) == 4, kinds
    assert {event_ms(value) for _, value in records} == {START}


def test_rounds_advance_event_time_by_the_step():
    records = generate(30, meters=10, step_ms=250, timestamp_format="epoch-ms")
    assert [event_ms(value) for _, value in records] == [START + 250 * (i // 10) for i in range(30)]
    assert [key for key, _ in records[:10]] == [key for key, _ in records[10:20]]


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not():
    options = dict(meters=300, faulty_fraction=0.1, malformed_fraction=0.05, late_fraction=0.05)
    first = generate(2000, seed=11, **options)
    assert generate(2000, seed=11, **options) == first
    assert generate(2000, seed=12, **options) != first


def test_records_do_not_depend_on_the_batch_size():
    options = dict(meters=300, seed=5, malformed_fraction=0.05, late_fraction=0.05, timestamp_format="mixed")
    small = generate_labelled(1500, batch_size=7, **options)
    large = generate_labelled(1500, batch_size=10_000, **options)
    assert small == large


def test_faulty_fraction_is_honoured_and_faulty_meters_always_report_fault():
    records = generate(20_000, meters=10_000, seed=1, faulty_fraction=0.1)
    by_meter: dict[bytes, set[str]] = {}
    for key, value in records:
        by_meter.setdefault(key, set()).add(orjson.loads(value)["status"])
    assert all(len(statuses) == 1 for statuses in by_meter.values())
    faulty = sum(1 for statuses in by_meter.values() if statuses == {"fault"})
    assert 800 <= faulty <= 1200


def test_silent_meters_stop_after_the_silence_threshold_in_event_time():
    meters = 1000
    records = generate(
        meters * 10, meters=meters, seed=2, step_ms=1000, silent_fraction=0.2, silent_after_s=5, timestamp_format="epoch-ms"
    )
    silent = {key for key, silent in zip(build_fleet(meters, 2, 0.0, 0.2).keys, build_fleet(meters, 2, 0.0, 0.2).silent) if silent}
    assert 150 <= len(silent) <= 250
    for key, value in records:
        if key in silent:
            assert event_ms(value) < START + 5000
    before = {key for key, value in records if event_ms(value) < START + 5000}
    assert silent <= before  # they did report until then


def test_malformed_fraction_is_honoured_and_every_malformed_record_violates_the_contract():
    records = generate_labelled(20_000, meters=1000, seed=4, malformed_fraction=0.05)
    malformed = [record for record in records if record.label != "valid"]
    assert 800 <= len(malformed) <= 1200
    for record in records:
        reason = violation(record.key, record.value)
        if record.label == "valid":
            assert reason is None, record
        else:
            assert reason is not None, record
    assert {record.label.removeprefix("malformed:") for record in malformed} == set(VARIANTS)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_malformed_variant_is_invalid(variant):
    import random

    reading = orjson.loads(generate(1, meters=1)[0][1])
    rng = random.Random(0)
    for _ in range(20):
        assert violation(b"MTR-00000000", VARIANTS[variant](dict(reading), rng)) is not None


def test_late_readings_lie_in_the_past_within_the_bound():
    records = generate_labelled(10_000, meters=1000, seed=6, late_fraction=0.1, late_max_s=30, timestamp_format="epoch-ms")
    late = [record for record in records if record.late]
    assert 800 <= len(late) <= 1200
    for index, record in enumerate(records):
        round_ms = START + 1000 * (index // 1000)
        lag = round_ms - event_ms(record.value)
        if record.late:
            assert 1000 <= lag <= 30_000
            assert violation(record.key, record.value) is None
        else:
            assert lag == 0


def test_meters_cluster_around_their_region_centre():
    records = generate(5000, meters=5000, seed=7)
    centres = {region.name: region for region in REGIONS}
    regions = Counter()
    for _, value in records:
        reading = orjson.loads(value)
        centre = centres[reading["region"]]
        regions[reading["region"]] += 1
        assert abs(reading["latitude"] - centre.latitude) < 3 * centre.spread_km / 111
        assert abs(reading["longitude"] - centre.longitude) < 4 * centre.spread_km / 111 / 0.6
    assert set(regions) == set(centres)
    assert regions["southern-california"] > regions["new-england"]


def test_building_types_differ_in_base_load():
    records = generate(20_000, meters=20_000, seed=8)
    totals: dict[str, list[float]] = {}
    for _, value in records:
        reading = orjson.loads(value)
        totals.setdefault(reading["building_type"], []).append(reading["consumption_kwh"])
    mean = {name: sum(values) / len(values) for name, values in totals.items()}
    assert mean["industrial"] > mean["commercial"] > mean["residential"] > mean["apartment"]
