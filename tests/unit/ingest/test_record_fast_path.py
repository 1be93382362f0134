"""The flat-record fast path of the decoder against the general JSON parser.

Most records are a flat object of strings and numbers without escapes; the hot path reads those
without serde and hands everything else to serde_json. Both must give the same verdict, the same
point and the same reason for every value: a corpus of shapes at the edges of JSON and of the
contract, and random mutations of a real record, each read both ways (``convert_one(general=True)``
skips the fast path).
"""

from __future__ import annotations

import json
import random
import re

import pytest

from ingest._hotpath import Processor, convert_one

BASE = {
    "meter_id": "MTR-00000042", "timestamp": "2026-12-02T19:16:35.415Z", "consumption_kwh": 0.0728,
    "peak_load": 0.389, "status": "ok", "region": "florida-peninsula", "building_type": "apartment",
    "latitude": 28.11978, "longitude": -81.5991,
}
TEXT = json.dumps(BASE, separators=(",", ":"))

CORPUS = [
    TEXT,
    json.dumps(BASE, indent=2),
    " \t\r\n" + TEXT + " \n",
    TEXT + "x",
    TEXT + "}",
    TEXT[:-1],
    "{}",
    "[]",
    "[1,2]",
    '"text"',
    "12",
    "null",
    "",
    "\x0c" + TEXT,  # form feed is not JSON whitespace
    TEXT.replace('"status":"ok"', '"status":"ok","status":"faulty"'),  # duplicate field
    TEXT.replace('"status":"ok"', '"status":"ok","extra":{"a":[1,{"b":null}]}'),  # unknown nested
    TEXT.replace('"status":"ok"', '"status":"ok","extra":true,"more":false,"none":null,"n":-1.5e3'),
    TEXT.replace('"status":"ok"', '"st\\u0061tus":"ok"'),  # escaped key
    TEXT.replace('"region":"florida-peninsula"', '"region":"a\\"b\\\\c"'),  # escapes in a value
    TEXT.replace('"region":"florida-peninsula"', '"region":"Île-de-France ☀"'),
    TEXT.replace('"region":"florida-peninsula"', '"region":"tab\there"'),  # raw control character
    TEXT.replace('"region":"florida-peninsula"', '"region":"line\\nbreak"'),
    TEXT.replace('"region":"florida-peninsula"', '"region":"ends\\\\"'),
    TEXT.replace('"region":"florida-peninsula"', '"region":""'),
    TEXT.replace('"region":"florida-peninsula"', '"region":null'),
    TEXT.replace('"region":"florida-peninsula"', '"region":7'),
    TEXT.replace('"region":"florida-peninsula"', '"region":["a"]'),
    TEXT.replace('"building_type":"apartment"', '"building_type":""'),
    TEXT.replace('"building_type":"apartment"', '"building_type":null'),
] + [
    TEXT.replace('"consumption_kwh":0.0728', f'"consumption_kwh":{number}')
    for number in (
        "0", "-0", "5", "-5", "0.5", "-0.0", "1e3", "1E3", "1e+3", "1.5e-3", "1.", ".5", "01", "+1",
        "00.5", "-", "1e", "1e400", "-1e400", "123456789012345678901234567890", "0.1000000000000000055511151231257827",
        "2.2250738585072011e-308", "4.9e-324", "1.7976931348623157e308", '"1.5"', "true", "NaN", "Infinity",
        "0.30000000000000004", "9007199254740993",
    )
] + [
    TEXT.replace('"timestamp":"2026-12-02T19:16:35.415Z"', f'"timestamp":{stamp}')
    for stamp in ("1795773600250", "1795773600250.9", "-1", "1e12", '"2026-12-02T19:16:35+01:00"', '"2026-02-30T00:00:00Z"', '"yesterday"', "9.3e15")
] + [
    TEXT.replace('"latitude":28.11978', f'"latitude":{value}') for value in ("90", "90.0000001", "-90", "null", '"28"')
]


def both(value: bytes, unit: str = "ms"):
    return convert_one(value, unit), convert_one(value, unit, general=True)


def parts(line: str) -> list[str]:
    """Series, fields and time of a line (tag values escape their spaces)."""
    return re.split(r"(?<!\\) ", line.rstrip("\n"))


def fields(line: str) -> dict[str, float]:
    return {key: float(value) for key, value in (part.split("=") for part in parts(line)[1].split(","))}


def assert_same(value: bytes, unit: str = "ms") -> None:
    (fast_line, fast_reason), (general_line, general_reason) = both(value, unit)
    assert fast_reason == general_reason, value
    if general_line is None:
        assert fast_line is None, value
        return
    # The same point: tags and time byte for byte; fields the same floats (the fast path writes a
    # plain decimal as sent, the general one its shortest round-trip form).
    assert (parts(fast_line)[0], parts(fast_line)[2]) == (parts(general_line)[0], parts(general_line)[2]), value
    assert fields(fast_line) == fields(general_line), value


@pytest.mark.parametrize("text", CORPUS)
def test_every_shape_gets_the_same_verdict_point_and_reason_both_ways(text):
    assert_same(text.encode())
    assert_same(text.encode(), "s")


def test_invalid_utf8_is_refused_the_same_way():
    assert_same(TEXT.replace("florida-peninsula", "flor\udcffida").encode("utf-8", "surrogateescape"))
    assert_same(b'{"meter_id":"\xff\xfe"}')


def test_a_plain_decimal_is_written_as_sent_and_an_exponent_in_its_shortest_form():
    line, _ = convert_one(TEXT.replace('"consumption_kwh":0.0728', '"consumption_kwh":0.07280000000000000001').encode())
    assert "consumption_kwh=0.07280000000000000001," in line
    line, _ = convert_one(TEXT.replace('"consumption_kwh":0.0728', '"consumption_kwh":7.28e-2').encode())
    assert "consumption_kwh=0.0728," in line


def test_random_mutations_of_a_record_get_the_same_verdict_both_ways():
    rng = random.Random(20261202)
    alphabet = b'{}[]",:\\ 0123456789.eE+-tfnul\t\n\xc3\xa9abc'
    source = TEXT.encode()
    for _ in range(20_000):
        value = bytearray(source)
        for _ in range(rng.randint(1, 3)):
            position = rng.randrange(len(value) + 1)
            action = rng.random()
            if action < 0.4 and value:
                del value[min(position, len(value) - 1)]
            elif action < 0.7:
                value.insert(position, rng.choice(alphabet))
            elif value:
                value[min(position, len(value) - 1)] = rng.choice(alphabet)
        assert_same(bytes(value))


def test_the_fold_reads_plain_decimals_as_correctly_rounded_floats():
    """The folded value of a plain decimal (its fast conversion, or the general parser past 2^53)
    is the correctly rounded float, the one Python and InfluxDB read from the same text."""
    import time

    from smartgrid_common.contracts import Summary

    rng = random.Random(7)
    now_s = int(time.time()) - 100
    texts = ["0", "-0", "0.1", "0.3", "2.675", "9007199254740993", "9007199254740992", "0.000000000000000000001"]
    for _ in range(400):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 20)))
        point = rng.randint(0, len(digits))
        texts.append((digits[:point].lstrip("0") or "0") + ("." + digits[point:] if point < len(digits) else ""))
    processor = Processor("t", "ms", True, 300_000)
    values = [
        TEXT.replace('"consumption_kwh":0.0728', f'"consumption_kwh":{text}')
        .replace('"timestamp":"2026-12-02T19:16:35.415Z"', f'"timestamp":{(now_s - index % 90) * 1000}')
        .replace("MTR-00000042", f"m-{index}").encode()
        for index, text in enumerate(texts)
    ]
    # One reading per second per batch: each second's sum is that one value, unrounded by addition.
    for index, value in enumerate(values):
        assert processor.process([value], [0], [index]).valid == 1, value
        [(_, data)] = processor.take_summaries()
        [second] = Summary.from_json(data).seconds
        assert second.sum_kwh == float(texts[index]) and second.count == 1, texts[index]


@pytest.mark.parametrize("text", [
    "0", "0.5", "0.1", "0.0728", "12.345678901234567", "0.30000000000000004", "9007199254740992",
    "9007199254740993", "123456789012345678901234567890", "0.1000000000000000055511151231257827",
    "1.0000000000000000000001", "4.9e-324", "1.7976931348623157e308", "2.5e-3",
])
def test_a_number_folds_as_the_correctly_rounded_double_of_its_text(text):
    # The line carries a plain decimal's text; the fold needs its value, read in the same pass.
    processor = Processor("grid", "ms", True, 600_000)
    processor.process([TEXT.replace('"consumption_kwh":0.0728', f'"consumption_kwh":{text}').encode()], [0], [0])
    [(_, data)] = processor.take_summaries()
    _second, total, count, low, high = json.loads(data)["seconds"][0]
    assert (count, total, low, high) == (1, float(text), float(text), float(text))
