"""Records that violate the input contract, each in its own way.

Every variant starts from a valid reading (as a dict) and breaks exactly one rule, so a consumer's
dead-letter reason can be checked against the variant's name. All of them are invalid under the
contract whatever JSON parser reads them: a lenient parser that accepts ``NaN`` or ``1e400`` still
gets a non-finite number, which the contract rejects.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import orjson

Reading = dict[str, Any]
Variant = Callable[[Reading, random.Random], bytes]

_PLACEHOLDER = "\x00placeholder\x00"


def _dumps(reading: Reading) -> bytes:
    return orjson.dumps(reading)


def _with_raw_consumption(reading: Reading, raw: bytes) -> bytes:
    """The reading with ``consumption_kwh`` replaced by raw bytes (tokens JSON cannot express)."""
    return _dumps({**reading, "consumption_kwh": _PLACEHOLDER}).replace(orjson.dumps(_PLACEHOLDER), raw)


def _without(field: str) -> Variant:
    def variant(reading: Reading, rng: random.Random) -> bytes:
        return _dumps({key: value for key, value in reading.items() if key != field})

    return variant


def _replace(field: str, choices: list[Any]) -> Variant:
    def variant(reading: Reading, rng: random.Random) -> bytes:
        return _dumps({**reading, field: rng.choice(choices)})

    return variant


def _not_json(reading: Reading, rng: random.Random) -> bytes:
    return f"meter_id={reading['meter_id']};consumption_kwh={reading['consumption_kwh']}".encode()


def _json_array(reading: Reading, rng: random.Random) -> bytes:
    return _dumps(list(reading.values()))


def _json_scalar(reading: Reading, rng: random.Random) -> bytes:
    return rng.choice([b"42", b"null", b'"reading"', b"true"])


def _negative_consumption(reading: Reading, rng: random.Random) -> bytes:
    return _dumps({**reading, "consumption_kwh": -round(abs(reading["consumption_kwh"]) + 0.001, 4)})


def _nan_token(reading: Reading, rng: random.Random) -> bytes:
    return _with_raw_consumption(reading, rng.choice([b"NaN", b"Infinity", b"-Infinity"]))


def _huge_number(reading: Reading, rng: random.Random) -> bytes:
    # Beyond the double range: parses to infinity (or fails to parse), never a finite reading.
    return _with_raw_consumption(reading, rng.choice([b"1e400", b"-1e400", b"9" * 400]))


def _consumption_as_string(reading: Reading, rng: random.Random) -> bytes:
    return _dumps({**reading, "consumption_kwh": f"{reading['consumption_kwh']}"})


def _latitude_out_of_range(reading: Reading, rng: random.Random) -> bytes:
    field, value = rng.choice([("latitude", 200.0), ("latitude", -91.5), ("longitude", 540.0)])
    return _dumps({**reading, field: value})


def _empty(reading: Reading, rng: random.Random) -> bytes:
    return b""


def _truncated(reading: Reading, rng: random.Random) -> bytes:
    whole = _dumps(reading)
    return whole[: rng.randint(1, len(whole) - 2)]


def _trailing_garbage(reading: Reading, rng: random.Random) -> bytes:
    return _dumps(reading) + rng.choice([b"}", b",", b" x"])


def _not_utf8(reading: Reading, rng: random.Random) -> bytes:
    return _dumps({**reading, "meter_id": _PLACEHOLDER}).replace(orjson.dumps(_PLACEHOLDER), b'"\xff\xfe\xfd"')


VARIANTS: dict[str, Variant] = {
    "not_json": _not_json,
    "json_array": _json_array,
    "json_scalar": _json_scalar,
    "empty": _empty,
    "truncated": _truncated,
    "trailing_garbage": _trailing_garbage,
    "not_utf8": _not_utf8,
    "missing_meter_id": _without("meter_id"),
    "meter_id_not_string": _replace("meter_id", [12345, None, ["MTR-1"]]),
    "missing_timestamp": _without("timestamp"),
    "bad_timestamp": _replace(
        "timestamp", ["2024-13-45T25:61:00Z", "yesterday", "", "12/05/2024 10:00", True, None]
    ),
    "missing_consumption": _without("consumption_kwh"),
    "negative_consumption": _negative_consumption,
    "nan_token": _nan_token,
    "nan_string": _replace("consumption_kwh", ["NaN", "nan", "Infinity", "-inf"]),
    "consumption_as_string": _consumption_as_string,
    "consumption_null": _replace("consumption_kwh", [None]),
    "huge_number": _huge_number,
    "missing_region": _without("region"),
    "missing_status": _without("status"),
    "status_not_string": _replace("status", [1, None, {"code": "ok"}]),
    "latitude_out_of_range": _latitude_out_of_range,
}
"""Name of each way a record breaks the contract, and how to break a valid reading that way."""

VARIANT_NAMES: tuple[str, ...] = tuple(VARIANTS)


def malform(reading: Reading, rng: random.Random) -> tuple[str, bytes]:
    """Break a valid reading in a randomly chosen way; returns (variant name, bytes)."""
    name = rng.choice(VARIANT_NAMES)
    return name, VARIANTS[name](reading, rng)
