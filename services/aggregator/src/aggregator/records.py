"""The records the aggregator's Lua scripts read, declared once, here, by name.

Each script call gets JSON objects, one per ARGV: ``fold.lua`` a :class:`FoldCall` and then one
group per ARGV (:func:`group_record`), ``emit.lua`` an :class:`EmitCall`. The Lua reads fields by
the names declared below (``sec.sum_kwh[j]``, ``args.horizon``), never by position. The names are
rendered into a Lua preamble (:func:`lua_preamble`) prepended, with ``lua/record.lua``, to each
script when it is loaded (store.py); ``record.lua`` checks every record against it before the
script writes anything: each declared field present, the columns of a table of one length, and
reading a field not declared here is an error, not a nil.

Why one JSON argument per group, in columns (measured on a read of 100 summaries at the shape of
1M readings/s, ~24,000 arguments when flat; bench/bench_aggregator.py --scale):

- a read's arguments cost ~22 ms of Python with the flat ARGV, half of it redis-py's asyncio
  client packing each argument in Python; as one JSON argument per group ~8 ms (orjson; merging
  the summaries included), while Redis's ``cjson.decode`` takes ~1.7 ms of the fold script;
- columns (``{"status": [...], "region": [...]}``) rather than an object per row: each name is
  parsed once per group, not once per meter update;
- msgpack (``cmsgpack`` in Redis) is not a dependency; orjson is, and cjson is in Redis's Lua;
- flat ARGV with offsets generated into the Lua would have named the positions but kept the
  packing cost and the index arithmetic.

Invariants (the Lua relies on them):

- every value the fold writes to Redis is a string made here: a float as its shortest repr
  (Redis reads it back exactly), an integer in decimal, never a JSON number: cjson would make it a
  double, which Redis prints with 17 digits and Lua concatenates with 14 (the call records'
  integers aside: below 2^53, exact as doubles; emit.lua writes ``emitted_ms`` with ``%d``);
- flags are JSON booleans;
- a table's columns all have one length, the number of rows;
- a group is applied all or nothing: its ranges are in (partition, offset) order, and its block of
  partials is merged from all its summaries (``fold.merge``); minutes are rolled up from the
  group's seconds (``fold.minute_partials``);
- ``regions.meter_ids`` (a list per row) carries version 1 summaries' meter ids, and
  ``regions.new_meters`` version 2 summaries' counts; a row merged from both versions has both;
- meter updates keep the order of their summaries (a meter's updates are in offset order).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from operator import attrgetter, is_
from typing import Any

import orjson
from smartgrid_common.contracts import Summary

from aggregator.fold import FoldConfig, merge, minute_partials, source_of


def _floats(values: Iterable[Any]) -> Iterable[str]:
    # Each value's shortest repr as a float ("3.0" for 3), without a Python call per value.
    return map(repr, map(float, values))


def _ints(values: Iterable[Any]) -> Iterable[str]:
    return map(str, values)


def _is_none(values: Iterable[Any]) -> Iterable[bool]:
    return map(partial(is_, None), values)


@dataclass(frozen=True, slots=True)
class Column:
    """One field of a table: the name the Lua reads, what it is taken from (an attribute of each
    row, or a function of the row), and how a column of such values is written (as is: None)."""

    name: str
    source: str | Callable[[Any], Any]
    encode: Callable[[Iterable[Any]], Iterable[Any]] | None = None

    def values(self, rows: list[Any]) -> list[Any]:
        got = map(attrgetter(self.source) if isinstance(self.source, str) else self.source, rows)
        return list(got if self.encode is None else self.encode(got))


@dataclass(frozen=True, slots=True)
class Table:
    """Rows of one kind as columns: ``{column name: [value of each row]}``."""

    name: str
    columns: tuple[Column, ...]

    def pack(self, rows: list[Any]) -> dict[str, list[Any]]:
        return {column.name: column.values(rows) for column in self.columns}


def _table(name: str, *columns: Column) -> Table:
    return Table(name, columns)


# A group's offset ranges (rows: its summaries).
RANGES = _table(
    "ranges",
    Column("source", source_of),  # the watermark field, "topic:partition"
    Column("first_offset", "first_offset", _ints),
    Column("last_offset", "last_offset", _ints),
    Column("chained", "chained"),  # an earlier summary of the partition exists
)
# The block of partials (rows: contracts.SecondPartial, fold.MinutePartial, contracts.RegionPartial,
# contracts.MeterUpdate).
SECONDS = _table(
    "seconds",
    Column("second", "second", _ints),
    Column("sum_kwh", "sum_kwh", _floats),
    Column("count", "count", _ints),
    Column("min_kwh", "min_kwh", _floats),
    Column("max_kwh", "max_kwh", _floats),
)
MINUTES = _table(
    "minutes",
    Column("minute", "minute", _ints),  # first second of the minute
    Column("sum_kwh", "sum_kwh", _floats),
    Column("count", "count", _ints),
    Column("min_kwh", "min_kwh", _floats),
    Column("max_kwh", "max_kwh", _floats),
)
REGIONS = _table(
    "regions",
    Column("second", "second", _ints),
    Column("region", "region"),
    Column("sum_kwh", "sum_kwh", _floats),
    Column("count", "count", _ints),
    Column("max_kwh", "max_kwh", _floats),
    Column("lat_sum", "lat_sum", _floats),
    Column("lon_sum", "lon_sum", _floats),
    Column("geo_count", "geo_count", _ints),  # readings behind lat_sum/lon_sum
    Column("new_meters", "new_meters", _ints),  # version 2: meters new to the bucket
    Column("meter_ids", "meters"),  # version 1: the bucket's meter ids, a list per row
)
METERS = _table(
    "meters",
    Column("meter_id", "meter_id"),
    Column("region", "region"),
    Column("status", "status"),
    Column("at_ms", "at_ms", _ints),
    Column("last_reading_ms", "last_reading_ms", _ints),
    Column("first_seen", "previous", _is_none),  # the partition saw the meter for the first time
)
# A group: one object whose fields are these tables, by name.
GROUP = (RANGES, SECONDS, MINUTES, REGIONS, METERS)


@dataclass(frozen=True, slots=True)
class FoldCall:
    """ARGV[1] of fold.lua; ARGV[2..] are the groups, folded in order."""

    prefix: str
    live_ttl: int
    region_ttl: int
    late_ttl: int
    horizon: int  # newest event second that may be folded: the wall clock plus the allowed skew


@dataclass(frozen=True, slots=True)
class EmitCall:
    """ARGV[1] of emit.lua (its only argument)."""

    prefix: str
    stream: str  # the rollup stream
    owner: str  # this replica: holds the emission lock
    lock_ms: int
    max_seconds: int  # dirty seconds per rollup message
    emitted_ms: int  # the wall clock, written into the rollup
    max_entries: int  # the stream's MAXLEN ~ backstop


CALLS = (FoldCall, EmitCall)


def group_record(summaries: list[Summary]) -> bytes:
    """One group: the summaries' offset ranges, then ONE block of partials (merged when there are
    several). Applied all or nothing."""
    if len(summaries) == 1:
        only = summaries[0]
        seconds, regions, meters = only.seconds, only.regions, only.meters
    else:
        seconds, regions, meters = merge(summaries)
    rows = {
        RANGES.name: summaries,
        SECONDS.name: seconds,
        MINUTES.name: minute_partials(seconds),
        REGIONS.name: regions,
        METERS.name: meters,
    }
    return orjson.dumps({table.name: table.pack(rows[table.name]) for table in GROUP})


def fold_args(prefix: str, config: FoldConfig, groups: list[list[Summary]], now: float) -> list[bytes]:
    """ARGV of one EVALSHA of fold.lua that folds ``groups`` in order, each all or nothing; ``now``
    is the wall clock (epoch seconds) that bounds the event seconds folded."""
    call = FoldCall(
        prefix=prefix, live_ttl=config.live_ttl, region_ttl=config.region_ttl, late_ttl=config.late_ttl,
        horizon=int(now) + config.max_clock_skew,
    )
    return [orjson.dumps(call), *map(group_record, groups)]


def emit_args(call: EmitCall) -> list[bytes]:
    """ARGV of one EVALSHA of emit.lua."""
    return [orjson.dumps(call)]


def _lua_table(declared: dict[str, list[str]]) -> str:
    """``{name = {'field', ...}, ...}``. Every name must be an identifier: the Lua reads ``t.name``."""
    for name, fields in declared.items():
        if not all(word.isidentifier() for word in (name, *fields)):
            raise ValueError(f"record {name}: every name must be an identifier, got {fields}")
    return "{" + ", ".join(f"{name} = {{{', '.join(repr(f) for f in fields)}}}" for name, fields in declared.items()) + "}"


def lua_preamble() -> str:
    """The declarations above in Lua, prepended to the scripts (with lua/record.lua) when loaded:
    ``RECORDS`` the fields of each object (the calls, and a group, whose fields are tables),
    ``TABLES`` the columns of each table."""
    records = {_snake(call.__name__): [f.name for f in dataclasses.fields(call)] for call in CALLS}
    records["group"] = [table.name for table in GROUP]
    tables = {table.name: [column.name for column in table.columns] for table in GROUP}
    return (
        "-- Generated from aggregator/records.py when the script is loaded: the fields of each record.\n"
        f"local RECORDS = {_lua_table(records)}\n"
        f"local TABLES = {_lua_table(tables)}\n"
    )


def _snake(name: str) -> str:
    """FoldCall -> fold_call: the record's name in RECORDS."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
