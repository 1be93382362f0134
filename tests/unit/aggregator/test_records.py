"""The records across the Python/Lua boundary (records.py): what Python writes, and that the Lua
scripts read exactly the fields records.py declares (a round trip through Redis:
tests/integration/test_aggregator_exactly_once.py)."""

from __future__ import annotations

import dataclasses
import re
from importlib import resources

import orjson
from smartgrid_common.contracts import MeterUpdate, RegionPartial, SecondPartial, Summary

from aggregator.fold import FoldConfig, merge
from aggregator.records import CALLS, GROUP, EmitCall, emit_args, fold_args, group_record, lua_preamble


def summary(partition: int = 3, first: int = 10, last: int = 19, chained: bool = False) -> Summary:
    return Summary(
        "t", partition, first, last, 0,
        [SecondPartial(60, 0.1, 2, 0.03, 0.07), SecondPartial(61, 3, 1, 3, 3)],
        [RegionPartial(60, "a,b", 0.1, 2, 0.07, 0, 1.5, 2.5, 1, ["m1", "m2"])],
        [MeterUpdate("m1", "a,b", None, "fault", 5, 4), MeterUpdate("m2", "a,b", "ok", "offline", 6, 3)],
        chained=chained,
    )


def declared() -> dict[str, set[str]]:
    """Record or table name -> its fields, as records.py declares them."""
    names = {table.name: {column.name for column in table.columns} for table in GROUP}
    names["group"] = {table.name for table in GROUP}
    for call in CALLS:
        names[re.sub(r"(?<!^)([A-Z])", r"_\1", call.__name__).lower()] = {f.name for f in dataclasses.fields(call)}
    return names


def test_a_group_is_one_record_of_named_columns_with_exact_strings():
    group = orjson.loads(group_record([summary()]))
    assert group["ranges"] == {"source": ["t:3"], "first_offset": ["10"], "last_offset": ["19"], "chained": [False]}
    # Floats as their shortest repr (Redis reads them back exactly), integers in decimal.
    assert group["seconds"] == {"second": ["60", "61"], "sum_kwh": ["0.1", "3.0"], "count": ["2", "1"],
                                "min_kwh": ["0.03", "3.0"], "max_kwh": ["0.07", "3.0"]}
    assert group["minutes"] == {"minute": ["60"], "sum_kwh": ["3.1"], "count": ["3"], "min_kwh": ["0.03"],
                                "max_kwh": ["3.0"]}
    assert group["regions"] == {"second": ["60"], "region": ["a,b"], "sum_kwh": ["0.1"], "count": ["2"],
                                "max_kwh": ["0.07"], "lat_sum": ["1.5"], "lon_sum": ["2.5"], "geo_count": ["1"],
                                "new_meters": ["0"], "meter_ids": [["m1", "m2"]]}
    assert group["meters"] == {"meter_id": ["m1", "m2"], "region": ["a,b", "a,b"], "status": ["fault", "offline"],
                               "at_ms": ["5", "6"], "last_reading_ms": ["4", "3"], "first_seen": [True, False]}


def test_every_record_has_exactly_the_declared_fields_and_columns_of_one_length():
    names = declared()
    call, *groups = fold_args("p", FoldConfig(86400, 3600, 300, max_clock_skew=60), [[summary()], [summary()]], 1000.5)
    assert orjson.loads(call) == {"prefix": "p", "live_ttl": 86400, "region_ttl": 3600, "late_ttl": 300, "horizon": 1060}
    assert set(orjson.loads(call)) == names["fold_call"] and len(groups) == 2
    for group in map(orjson.loads, groups):
        assert set(group) == names["group"]
        for table, columns in group.items():
            assert set(columns) == names[table]
            assert len({len(values) for values in columns.values()}) == 1, table
    (emit,) = emit_args(EmitCall("p", "p:rollups", "me", 950, 200, 1_700_000_000_123, 1000))
    assert set(orjson.loads(emit)) == names["emit_call"]


def test_a_merged_group_carries_every_range_and_one_merged_block():
    first, second = summary(first=10, last=19), summary(first=20, last=29, chained=True)
    group = orjson.loads(group_record([first, second]))
    assert group["ranges"]["first_offset"] == ["10", "20"] and group["ranges"]["chained"] == [False, True]
    seconds, _, meters = merge([first, second])
    assert group["seconds"]["count"] == [str(s.count) for s in seconds] == ["4", "2"]
    assert group["regions"]["meter_ids"] == [["m1", "m2"]] and len(group["meters"]["meter_id"]) == len(meters) == 4


def test_the_lua_preamble_declares_what_python_writes():
    preamble = lua_preamble()
    rendered = {
        name: set(re.findall(r"'(\w+)'", fields))
        for name, fields in re.findall(r"(\w+) = \{([^{}]*)\}", preamble)
    }
    assert rendered == declared()


def lua(name: str) -> str:
    text = resources.files("aggregator").joinpath("lua", name).read_text()
    return "\n".join(line.split("--", 1)[0] for line in text.splitlines())  # comments dropped


def fields_read(source: str) -> dict[str, set[str]]:
    """Record -> the fields a script reads from it. The scripts bind records to locals in one
    of two ways: ``local args = record(ARGV[1], 'fold_call')``, ``local sec = group.seconds``."""
    bound = dict(re.findall(r"local (\w+) = record\(ARGV\[\w+\], '(\w+)'\)", source))
    bound |= {var: table for var, table in re.findall(r"local (\w+) = group\.(\w+)\b", source)}
    if "record(ARGV[k], 'group')" in source:
        bound["group"] = "group"
    read: dict[str, set[str]] = {}
    for var, kind in bound.items():
        read.setdefault(kind, set()).update(re.findall(rf"\b{var}\.(\w+)", source))
    return read


def test_the_fold_script_reads_every_declared_field_and_no_other():
    read = fields_read(lua("fold.lua"))
    names = declared()
    assert read == {kind: names[kind] for kind in ("fold_call", "group", "ranges", "seconds", "minutes",
                                                    "regions", "meters")}


def test_the_emit_script_reads_every_declared_field_and_no_other():
    assert fields_read(lua("emit.lua")) == {"emit_call": declared()["emit_call"]}


def test_no_script_reading_records_indexes_argv_beyond_the_records():
    for name in ("fold.lua", "emit.lua"):
        assert set(re.findall(r"ARGV\[([^\]]+)\]", lua(name))) <= {"1", "k"}, name
