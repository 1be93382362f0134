"""The native hot path: validation, line protocol, escaping, timestamps, floats."""

from __future__ import annotations

import json
import pytest
from ingest._hotpath import Processor, convert_one

BASE = {
    "meter_id": "m-1",
    "timestamp": "2026-11-27T10:00:00.250Z",
    "consumption_kwh": 1.25,
    "region": "north",
    "status": "ok",
}


def record(**changes) -> bytes:
    data = {**BASE, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not ...}).encode()


def line_of(value: bytes, unit: str = "ms") -> str:
    line, reason = convert_one(value, unit)
    assert reason is None, reason
    return line


def reason_of(value: bytes, unit: str = "ms") -> str:
    line, reason = convert_one(value, unit)
    assert line is None, f"accepted: {line!r}"
    return reason


def split_unescaped(text: str, separator: str) -> list[str]:
    """Split line protocol the way InfluxDB 1.x scans it: a separator preceded by a backslash is
    part of the value (1.x looks one byte back; backslashes are otherwise literal)."""
    parts, start = [], 0
    for index, char in enumerate(text):
        if char == separator and (index == 0 or text[index - 1] != "\\"):
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts


def unescape(value: str) -> str:
    """InfluxDB 1.x unescapes exactly these three pairs."""
    for escaped in ("\\,", "\\=", "\\ "):
        value = value.replace(escaped, escaped[1])
    return value


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, float], int]:
    """A reference parser of the lines we write (measurement, tags, fields, time)."""
    series, fields_text, time_text = split_unescaped(line.rstrip("\n"), " ")
    measurement, *tag_parts = split_unescaped(series, ",")
    tags = {}
    for part in tag_parts:
        key, value = split_unescaped(part, "=")
        tags[unescape(key)] = unescape(value)
    fields = {}
    for part in fields_text.split(","):
        key, value = part.split("=")
        fields[key] = float(value)
    return measurement, tags, fields, int(time_text)


def test_valid_record_becomes_one_point_with_every_field_a_float():
    line = line_of(record(consumption_kwh=5, latitude=52, longitude=13.4, peak_load=7, building_type="residential"))
    measurement, tags, fields, time_ms = parse_line(line)
    assert measurement == "energy_consumption"
    assert tags == {"building_type": "residential", "meter_id": "m-1", "region": "north", "status": "ok"}
    assert fields == {"consumption_kwh": 5.0, "latitude": 52.0, "longitude": 13.4, "peak_load": 7.0}
    # integers in JSON are still written as floats: as sent, without the `i` suffix that would make
    # them integers (InfluxDB parses a plain decimal to the same float; tests/integration checks it)
    assert "consumption_kwh=5," in line and "i," not in line and not line.split(" ")[1].endswith("i")
    assert time_ms == 1795773600250


@pytest.mark.parametrize(
    "meter_id",
    [
        "x,region=evil",
        "has space",
        "a=b",
        'quote"d',
        "back\\slash",
        "double\\\\backslash",
        "\\,\\=\\ x",
        "a\\\\,b",
        "ünïcødé-zähler-東京",
        "emoji-⚡",
        "x status=fault consumption_kwh=9",
        "'single'",
    ],
)
def test_tag_values_are_escaped_so_they_stay_one_tag(meter_id):
    line = line_of(record(meter_id=meter_id, region="a b,c=d"))
    _, tags, fields, _ = parse_line(line)
    assert tags["meter_id"] == meter_id
    assert tags["region"] == "a b,c=d"
    assert tags["status"] == "ok"
    assert set(fields) == {"consumption_kwh"}


@pytest.mark.parametrize("field", ["meter_id", "region", "status"])
def test_line_breaks_in_tags_are_rejected_not_written(field):
    assert "line break" in reason_of(record(**{field: "a\nb"}))


@pytest.mark.parametrize("field", ["meter_id", "region", "status", "building_type"])
def test_a_tag_ending_in_a_backslash_is_rejected_because_line_protocol_cannot_carry_it(field):
    assert reason_of(record(**{field: "tail\\"})) == f"{field} ends with a backslash, which InfluxDB line protocol cannot store"


def test_empty_building_type_is_omitted_but_empty_required_tags_are_rejected():
    assert "building_type" not in line_of(record(building_type=""))
    assert reason_of(record(meter_id="")) == "meter_id is empty"
    assert reason_of(record(region="")) == "region is empty"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"meter_id": ...}, "meter_id is missing"),
        ({"meter_id": None}, "meter_id is missing"),
        ({"meter_id": 17}, "meter_id must be a string, got a number"),
        ({"timestamp": ...}, "timestamp is missing"),
        ({"consumption_kwh": ...}, "consumption_kwh is missing"),
        ({"consumption_kwh": "1.5"}, "consumption_kwh must be a number, got a string"),
        ({"consumption_kwh": True}, "consumption_kwh must be a number, got a boolean"),
        ({"consumption_kwh": [1]}, "consumption_kwh must be a number, got an array"),
        ({"consumption_kwh": -0.5}, "consumption_kwh must be >= 0, got -0.5"),
        ({"region": ...}, "region is missing"),
        ({"status": {"a": 1}}, "status must be a string, got an object"),
        ({"latitude": 91}, "latitude must be within [-90, 90], got 91"),
        ({"longitude": -180.5}, "longitude must be within [-180, 180], got -180.5"),
        ({"peak_load": "high"}, "peak_load must be a number, got a string"),
    ],
)
def test_invalid_fields_are_rejected_with_a_reason_naming_the_field(changes, expected):
    assert reason_of(record(**changes)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"", "empty record"),
        (b"   ", "empty record"),
        (b"[1,2,3]", "record is not a JSON object"),
        (b'"text"', "record is not a JSON object"),
        (b"42", "record is not a JSON object"),
        (b"null", "record is not a JSON object"),
    ],
)
def test_values_that_are_not_json_objects_are_rejected(value, expected):
    assert reason_of(value) == expected


@pytest.mark.parametrize(
    "value",
    [b"{", b"not json", b'{"meter_id": "a",}', b'{"consumption_kwh": NaN}', b'{"consumption_kwh": 1e400}', b"\xff\xfe"],
)
def test_malformed_json_is_rejected(value):
    assert reason_of(value)


def test_duplicate_keys_are_rejected_rather_than_guessed():
    assert "duplicate field" in reason_of(b'{"meter_id":"a","meter_id":"b"}')


def test_unknown_fields_are_ignored():
    assert parse_line(line_of(record(firmware="1.2", extra={"nested": [1]})))[1]["meter_id"] == "m-1"


def test_json_escapes_in_strings_are_decoded():
    value = b'{"meter_id":"m\\u00e9\\"1","timestamp":0,"consumption_kwh":1,"region":"r","status":"ok"}'
    assert parse_line(line_of(value))[1]["meter_id"] == 'mé"1'


@pytest.mark.parametrize(
    ("timestamp", "unit", "expected_ms"),
    [
        ("2026-11-27T10:00:00Z", "ms", 1795773600000),
        ("2026-11-27T12:00:00+02:00", "ms", 1795773600000),
        ("2026-11-27T10:00:00.123456789Z", "ms", 1795773600123),
        ("2026-11-27 10:00:00Z", "ms", 1795773600000),
        (1795773600123, "ms", 1795773600123),
        (1795773600, "s", 1795773600000),
        (1795773600.5, "s", 1795773600500),
        (1795773600123456, "us", 1795773600123),
        (1795773600123456789, "ns", 1795773600123),
    ],
)
def test_timestamps_in_every_accepted_form(timestamp, unit, expected_ms):
    assert parse_line(line_of(record(timestamp=timestamp), unit))[3] == expected_ms


@pytest.mark.parametrize(
    ("timestamp", "fragment"),
    [
        ("yesterday", "not RFC 3339"),
        ("2026-13-01T00:00:00Z", "not RFC 3339"),
        ("1795773600", "not RFC 3339"),
        (True, "got a boolean"),
        (1e22, "outside the range"),
    ],
)
def test_bad_timestamps_are_rejected(timestamp, fragment):
    assert fragment in reason_of(record(timestamp=timestamp))


def test_floats_round_trip_exactly():
    for value in (0.1, 1e-7, 123456789.123, 1e30, 2.0**53 + 2, 5e-324):
        line = line_of(record(consumption_kwh=value))
        assert parse_line(line)[2]["consumption_kwh"] == value


def test_batch_separates_valid_and_rejected_and_reports_ranges():
    processor = Processor("t", "ms", False)
    values = [record(), b"junk", record(meter_id="m-2"), None]
    result = processor.process(values, [0, 0, 1, 1], [5, 6, 9, 10])
    assert result.valid == 2
    assert [index for index, _ in result.rejected] == [1, 3]
    assert result.rejected[1][1] == "empty record (no value)"
    assert result.body.count(b"\n") == 2
    assert sorted(result.ranges) == [(0, 5, 6), (1, 9, 10)]
    assert processor.take_summaries() == []


def test_processor_refuses_a_bad_unit():
    with pytest.raises(ValueError, match="use s, ms, us or ns"):
        Processor("t", "minutes")


def test_rfc3339_times_agree_with_an_independent_parser_across_many_shapes():
    import random
    from datetime import datetime, timedelta, timezone

    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    rng = random.Random(3)
    for _ in range(2000):
        true_ms = rng.randrange(-10**12, 9 * 10**12)  # 1938 .. 2255
        offset = timedelta(minutes=rng.choice([0, 60, -90, 330, -720, 840]))
        local = (epoch + timedelta(milliseconds=true_ms)).astimezone(timezone(offset))
        digits = rng.choice([0, 1, 2, 3, 6, 9])
        fraction = f"{true_ms % 1000:03d}" + "".join(str(rng.randrange(10)) for _ in range(6))
        text = local.strftime("%Y-%m-%dT%H:%M:%S") + ("." + fraction[:digits] if digits else "")
        zone = local.strftime("%z")
        text += "Z" if not offset and rng.random() < 0.5 else f"{zone[:3]}:{zone[3:]}"
        kept_ms = int(fraction[: min(digits, 3)].ljust(3, "0"))
        expected_ms = true_ms - true_ms % 1000 + kept_ms
        assert parse_line(line_of(record(timestamp=text)))[3] == expected_ms, text


@pytest.mark.parametrize("text", ["2023-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-11-27T24:00:00Z", "2026-11-27T10:00:00", "2026-11-27T10:00:00.Z", "2026-11-27T10:00:00+25:00"])
def test_impossible_rfc3339_times_are_rejected(text):
    assert "not RFC 3339" in reason_of(record(timestamp=text))


@pytest.mark.parametrize("special", [",", "=", " "])
def test_a_tag_value_is_escaped_wherever_its_special_character_stands(special):
    # Tag values are scanned eight bytes at a time: put the character at every place of values
    # shorter and longer than a word, first, last and across word boundaries.
    for length in (1, 7, 8, 9, 16, 17, 23):
        for at in range(length):
            meter = "".join(special if k == at else "abcdefghijklmnopqrstuvw"[k] for k in range(length))
            record = {"meter_id": meter, "timestamp": 1_700_000_000_000, "consumption_kwh": 1.5, "region": "north", "status": "ok"}
            line, reason = convert_one(json.dumps(record).encode())
            assert reason is None
            assert f",meter_id={meter.replace(special, chr(92) + special)},region=north" in line, (length, at)
    line, _ = convert_one(json.dumps({"meter_id": "m-1", "timestamp": 1, "consumption_kwh": 1, "region": "north", "status": "ok"}).encode())
    assert ",meter_id=m-1,region=north,status=ok " in line
