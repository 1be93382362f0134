"""The Grafana dashboards (docs/grafana/*.json) against the real pipeline.

A known dataset (regions, building types, statuses and readings chosen here) goes through the
real Kafka, ingest, aggregator, writer and InfluxDB in two phases. Then every InfluxQL query of
the dashboards (panels and template variables) is expanded as Grafana does it — ``$timeFilter``
(an absolute range and ``now-1h``, or the panel's ``timeFrom``), ``$__interval`` and
``$__interval_ms`` computed from the range and the panel's ``maxDataPoints`` and minimum interval,
the template variables as "All", one value and several values (a regular expression) — and run on
InfluxDB; the series and values each panel shows must equal what is computed here from the
dataset. A panel this file has no expectation for fails the test, as does an expectation no panel
uses.

The Prometheus panels' expressions are read with a small PromQL tokenizer: every metric name they
use, and every label they select or group by, must be exposed on the ``/metrics`` of the running
services (or be a label Prometheus adds at scrape time, ``TARGET_LABELS``).

Grafana itself does not run here: the expansion follows its InfluxDB data source and
``rangeutil`` (interval rounding, regex escaping of multi-value variables).
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from simulator import produce

from ingest_harness import BROKERS, INFLUX
from test_pipeline_e2e import pipeline, truth_from_topic  # noqa: F401 - fixture

PARTITIONS = 4  # several meters per partition, so silences become offline
pytestmark = [pytest.mark.integration, pytest.mark.partitions(PARTITIONS)]

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "docs" / "grafana"

# ---- Grafana's macros and variables --------------------------------------------------------------

_ROUND_STEPS = (  # rangeutil.roundInterval: below the bound (ms) -> interval (ms)
    (10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000), (3500, 2000),
    (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000), (90000, 60000),
    (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000), (1500000, 1200000),
    (2700000, 1800000), (5400000, 3600000), (9000000, 7200000), (16200000, 10800000), (32400000, 21600000),
    (86400000, 43200000), (604800000, 86400000), (1814400000, 604800000), (3628800000, 2592000000),
)
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000, "y": 31_536_000_000}


def round_interval(interval_ms: float) -> int:
    """Grafana's rounding of range / maxDataPoints to a readable interval."""
    for bound, rounded in _ROUND_STEPS:
        if interval_ms < bound:
            return rounded
    return 31_536_000_000


def duration_ms(text: str) -> int:
    """``500ms``, ``1s``, ``2m``, ``24h`` -> milliseconds."""
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d|w|y)", text)
    assert match, f"not a Grafana duration: {text!r}"
    return int(match[1]) * _UNITS_MS[match[2]]


def format_interval(interval_ms: int) -> str:
    """Grafana's ``secondsToHms``: the largest whole unit (what ``$__interval`` becomes)."""
    for unit in ("y", "d", "h", "m", "s", "ms"):
        if interval_ms >= _UNITS_MS[unit]:
            return f"{interval_ms // _UNITS_MS[unit]}{unit}"
    return "1ms"


def grafana_interval(range_ms: int, max_data_points: int, min_interval: str | None) -> int:
    """``$__interval_ms`` of a query: range / maxDataPoints rounded, at least the panel's (or the
    data source's) minimum interval."""
    interval = round_interval(range_ms / max_data_points)
    return max(interval, duration_ms(min_interval)) if min_interval else interval


def regex_escape(value: str) -> str:
    """Grafana's ``escapeRegex``, applied to the values of multi-value and "All" variables."""
    return re.sub(r"[\\^$*+?.()|\[\]{}/]", lambda m: "\\" + m[0], value)


ALL = "$__all"


def format_variable(variable: dict[str, Any], value: str | list[str]) -> str:
    """A variable's value as the InfluxDB data source puts it in a query (``interpolateQueryExpr``)."""
    if value == ALL or value == [ALL]:
        assert variable.get("allValue"), f"variable {variable['name']}: All needs an allValue"
        return variable["allValue"]
    if not variable.get("multi") and not variable.get("includeAll"):
        return value if isinstance(value, str) else value[0]
    values = [value] if isinstance(value, str) else value
    escaped = [regex_escape(v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


@dataclass(frozen=True)
class TimeRange:
    """A dashboard time range: absolute (epoch ms) or relative to now (``now-1h``)."""

    from_ms: int | None = None
    to_ms: int | None = None
    relative: str | None = None

    def range_ms(self) -> int:
        if self.relative:
            return duration_ms(self.relative.removeprefix("now-"))
        assert self.from_ms is not None and self.to_ms is not None
        return self.to_ms - self.from_ms

    def time_filter(self) -> str:
        """``$timeFilter`` as Grafana's InfluxDB data source writes it."""
        if self.relative:
            amount = self.relative.removeprefix("now-")
            return f"time >= now() - {amount} and time <= now()"
        return f"time >= {self.from_ms}ms and time <= {self.to_ms}ms"

    def bounds(self, now_ms: int) -> tuple[int, int]:
        if self.relative:
            return now_ms - self.range_ms(), now_ms
        assert self.from_ms is not None and self.to_ms is not None
        return self.from_ms, self.to_ms


@dataclass(frozen=True)
class Expansion:
    """One way a panel is looked at: its time range, interval and variable values."""

    time_range: TimeRange
    interval_ms: int
    values: dict[str, str | list[str]]


def expand(query: str, variables: dict[str, dict[str, Any]], expansion: Expansion) -> str:
    """The query as Grafana sends it to InfluxDB; fails on a macro or variable it does not know."""
    out = query.replace("$timeFilter", expansion.time_range.time_filter())
    out = out.replace("$__timeFilter", expansion.time_range.time_filter())
    out = out.replace("$__interval_ms", str(expansion.interval_ms))
    out = out.replace("$__interval", format_interval(expansion.interval_ms))

    def variable(match: re.Match) -> str:
        name = match[1] or match[2]
        assert name in variables, f"unknown variable ${name} in {query}"
        return format_variable(variables[name], expansion.values[name])

    out = re.sub(r"\$\{(\w+)\}|\$([A-Za-z_]\w*)", variable, out)
    assert "[[" not in out, f"deprecated [[variable]] syntax in {query}"
    return out


# ---- the dashboards ------------------------------------------------------------------------------


def load_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard of docs/grafana, by uid."""
    boards = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        boards[board["uid"]] = board
    assert boards, f"no dashboards in {DASHBOARDS}"
    return boards


def panels_of(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that queries data (rows' nested panels included, rows themselves left out)."""
    for panel in board["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def datasource_type(board: dict[str, Any], reference: dict[str, str] | None) -> str:
    """``influxdb`` or ``prometheus``: the type of the dashboard's data source variable referenced."""
    assert reference, "a panel or target without a data source"
    match = re.fullmatch(r"\$\{(\w+)\}", reference["uid"])
    assert match, f"data source {reference} is not a data source variable: import would tie it to one Grafana"
    declared = {v["name"]: v["query"] for v in board["templating"]["list"] if v["type"] == "datasource"}
    assert match[1] in declared, f"data source variable {match[1]} is not declared"
    assert reference["type"] == declared[match[1]], f"{reference} refers to a {declared[match[1]]} variable"
    return declared[match[1]]


def variables_of(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in board["templating"]["list"] if v["type"] == "query"}


def test_the_dashboards_are_importable_grafana_models():
    """Structure: schema version, unique ids, every data source a variable of the dashboard,
    InfluxQL targets raw queries, every query variable on a declared data source."""
    for uid, board in load_dashboards().items():
        assert board["schemaVersion"] >= 39, uid
        assert board["id"] is None, f"{uid}: an id ties the model to one Grafana's database"
        ids = [p["id"] for p in board["panels"]] + [p["id"] for r in board["panels"] for p in r.get("panels", [])]
        assert len(ids) == len(set(ids)), f"{uid}: panel ids repeat"
        for panel in panels_of(board):
            kind = datasource_type(board, panel["datasource"])
            assert panel["targets"], f"{uid}/{panel['title']}: no query"
            for target in panel["targets"]:
                assert datasource_type(board, target["datasource"]) == kind
                if kind == "influxdb":
                    where = f"{uid}/{panel['title']}/{target['refId']}"
                    assert target["rawQuery"] is True and target["query"], where
                    # The dashboard's time range and resolution apply to every panel.
                    assert "$timeFilter" in target["query"], f"{where}: no $timeFilter"
                    group_by_time = re.search(r"GROUP BY time\(([^)]*)\)", target["query"])
                    assert group_by_time is None or group_by_time[1] == "$__interval", f"{where}: a fixed GROUP BY time"
                else:
                    assert target["expr"], f"{uid}/{panel['title']}/{target['refId']}"
        for variable in variables_of(board).values():
            datasource_type(board, variable["datasource"])


def test_grafana_interval_rounding_and_variable_formats():
    """The expansion itself, on cases whose outcome Grafana's documentation and source give."""
    assert grafana_interval(3_600_000, 1000, None) == 5000  # 1 h on a 1000-point panel: 5s
    assert grafana_interval(240_000, 1000, "1s") == 1000  # the panel's minimum wins
    assert grafana_interval(86_400_000, 1440, "1m") == 60_000
    assert format_interval(60_000) == "1m" and format_interval(5000) == "5s" and format_interval(500) == "500ms"
    variable = {"name": "region", "multi": True, "includeAll": True, "allValue": ".*"}
    assert format_variable(variable, ALL) == ".*"
    assert format_variable(variable, "mid.west") == r"mid\.west"
    assert format_variable(variable, ["north", "a/b"]) == r"(north|a\/b)"
    expansion = Expansion(TimeRange(1000, 61_000), 1000, {"region": ["north"]})
    assert expand('WHERE "region" =~ /^$region$/ AND $timeFilter GROUP BY time($__interval)', {"region": variable}, expansion) == (
        'WHERE "region" =~ /^north$/ AND time >= 1000ms and time <= 61000ms GROUP BY time(1s)'
    )
    with pytest.raises(AssertionError, match="unknown variable"):
        expand("$nope", {}, expansion)


# ---- the known dataset ---------------------------------------------------------------------------

REGIONS = ("north", "south", "mid.west")  # the dot: variables are regex-escaped
BUILDING_TYPES = ("residential", "commercial", "industrial", None)  # None: sent without one
METERS = 48
PHASE_SECONDS = 60
OFFLINE_AFTER_S = 5  # FullPipeline's SMARTGRID_OFFLINE_AFTER


@dataclass(frozen=True)
class Reading:
    meter: str
    ms: int
    kwh: float
    region: str
    building_type: str | None
    status: str


def meter_region(index: int) -> str:
    return REGIONS[index % len(REGIONS)]


def meter_building(index: int) -> str | None:
    return BUILDING_TYPES[(index // len(REGIONS)) % len(BUILDING_TYPES)]


def phase_readings(phase: int, start_s: int, seed: int) -> list[Reading]:
    """One reading per meter and second for a minute, with statuses that change between phases.

    Phase 0: meters 0-3 report fault; meters 44-47 fall silent after 30 s (offline).
    Phase 1: meters 0-1 report ok again, 4-7 fault; 40-43 fall silent after 30 s; 44-47 stay silent.
    """
    rng = random.Random(seed)
    readings = []
    for offset in range(PHASE_SECONDS):
        second = start_s + phase * PHASE_SECONDS + offset
        for index in range(METERS):
            silent = index >= 44 and (phase == 1 or offset >= 30) or (phase == 1 and 40 <= index < 44 and offset >= 30)
            if silent:
                continue
            faulty = index < 4 if phase == 0 else 2 <= index < 8
            readings.append(Reading(
                f"meter-{index:03d}", second * 1000 + (index * 17) % 1000, round(rng.uniform(0.05, 4.0), 3),
                meter_region(index), meter_building(index), "fault" if faulty else "ok",
            ))
    return readings


def record(reading: Reading) -> tuple[bytes, bytes]:
    body: dict[str, Any] = {
        "meter_id": reading.meter, "timestamp": reading.ms, "consumption_kwh": reading.kwh,
        "region": reading.region, "status": reading.status,
    }
    if reading.building_type:
        body["building_type"] = reading.building_type
    return reading.meter.encode(), json.dumps(body).encode()


INVALID = [  # dead-lettered by ingest: in no panel
    (b"meter-bad-1", b'{"meter_id": "meter-bad-1", "timestamp": 0, "consumption_kwh": -1, "region": "north", "status": "ok"}'),
    (b"meter-bad-2", b'{"meter_id": "meter-bad-2", "consumption_kwh": 1.0, "region": "north", "status": "ok"}'),
    (b"meter-bad-3", b"not json"),
]


# ---- what each panel must show -------------------------------------------------------------------

Series = dict[tuple[tuple[str, str], ...], list[list[Any]]]
"""InfluxDB's answer: tags of each series -> its rows ([time ms, value, ...])."""


@dataclass
class Dataset:
    """The readings that reached InfluxDB and the status counts after each phase."""

    readings: list[Reading]
    phase_ends_s: list[int]
    status_after: list[dict[str, int]]
    statuses_seen: set[str] = field(default_factory=set)

    def selected(self, values: dict[str, str | list[str]], building: bool = True) -> list[Reading]:
        """The readings the variables select (All also selects readings without a building type)."""
        def chosen(name: str) -> set[str] | None:
            value = values[name]
            return None if value in (ALL, [ALL]) else {value} if isinstance(value, str) else set(value)

        regions, buildings = chosen("region"), chosen("building_type") if building else None
        return [
            r for r in self.readings
            if (regions is None or r.region in regions) and (buildings is None or r.building_type in buildings)
        ]


def bucket(ms: int, interval_ms: int) -> int:
    """The start of the GROUP BY time() bucket of ``ms`` (InfluxDB aligns buckets to the epoch)."""
    return ms // interval_ms * interval_ms


def grouped(readings: list[Reading], key: Callable[[Reading], tuple], interval_ms: int | None,
            reduce: Callable[[list[Reading]], list[float]]) -> dict[tuple, dict[int, list[float]]]:
    """Series key -> bucket start -> reduced values (one bucket at 0 when not grouped by time)."""
    groups: dict[tuple, dict[int, list[Reading]]] = defaultdict(lambda: defaultdict(list))
    for reading in readings:
        groups[key(reading)][bucket(reading.ms, interval_ms) if interval_ms else 0].append(reading)
    return {k: {b: reduce(rs) for b, rs in buckets.items()} for k, buckets in groups.items()}


def assert_series(panel: str, got: Series, expected: dict[tuple, dict[int, list[float]]], timeless: bool = False) -> None:
    """Same series (tags), same non-null rows (bucket times), same values (1e-9 relative)."""
    got_rows = {tags: {row[0]: row[1:] for row in rows if any(v is not None for v in row[1:])} for tags, rows in got.items()}
    got_rows = {tags: rows for tags, rows in got_rows.items() if rows}
    assert set(got_rows) == set(expected), f"{panel}: series {sorted(got_rows)} != {sorted(expected)}"
    for tags, buckets in expected.items():
        rows = got_rows[tags]
        if timeless:
            assert len(rows) == 1, f"{panel} {tags}: {len(rows)} rows, one expected"
            rows = {0: next(iter(rows.values()))}
        assert set(rows) == set(buckets), (
            f"{panel} {tags}: buckets missing {sorted(set(buckets) - set(rows))[:5]}, extra {sorted(set(rows) - set(buckets))[:5]}"
        )
        for at, values in buckets.items():
            for got_value, want in zip(rows[at], values, strict=True):
                assert got_value is not None and math.isclose(got_value, want, rel_tol=1e-9, abs_tol=1e-9), (
                    f"{panel} {tags} at {at}: {rows[at]} != {values}"
                )


def tag(name: str, value: str | None) -> tuple[str, str]:
    return (name, value or "")


def kwh_sum(rs: list[Reading]) -> list[float]:
    return [math.fsum(r.kwh for r in rs)]


def per_second_of(interval_ms: int) -> Callable[[list[Reading]], list[float]]:
    return lambda rs: [math.fsum(r.kwh for r in rs) * 1000 / interval_ms]


def check_raw_by_region(data: Dataset, got: Series, x: Expansion) -> None:
    expected = grouped(data.selected(x.values), lambda r: (tag("region", r.region),), x.interval_ms, kwh_sum)
    assert_series("Consumption by region", got, expected)


def check_raw_by_building(data: Dataset, got: Series, x: Expansion) -> None:
    expected = grouped(data.selected(x.values), lambda r: (tag("building_type", r.building_type),), x.interval_ms, kwh_sum)
    assert_series("Consumption by building type", got, expected)


def check_raw_table(data: Dataset, got: Series, x: Expansion) -> None:
    def reduce(rs: list[Reading]) -> list[float]:
        kwh = [r.kwh for r in rs]
        return [len(kwh), math.fsum(kwh), math.fsum(kwh) / len(kwh), max(kwh)]

    expected = grouped(data.selected(x.values), lambda r: (tag("building_type", r.building_type), tag("region", r.region)), None, reduce)
    assert_series("Consumption by region and building type", got, expected, timeless=True)


def check_raw_by_status(data: Dataset, got: Series, x: Expansion) -> None:
    expected = grouped(data.selected(x.values), lambda r: (tag("status", r.status),), x.interval_ms, lambda rs: [len(rs)])
    assert_series("Readings by reported status", got, expected)


def check_kwh_per_second(data: Dataset, got: Series, x: Expansion) -> None:
    expected = grouped(data.readings, lambda r: (), x.interval_ms, per_second_of(x.interval_ms))
    assert_series("Consumption per second: kWh", got, expected)


def check_readings_per_second(data: Dataset, got: Series, x: Expansion) -> None:
    expected = grouped(data.readings, lambda r: (), x.interval_ms, lambda rs: [len(rs) * 1000 / x.interval_ms])
    assert_series("Consumption per second: readings", got, expected)


def check_trend(data: Dataset, got: Series, x: Expansion) -> None:
    assert x.interval_ms == 60_000, f"the 24 h trend is computed per {x.interval_ms} ms, not per minute"
    expected = grouped(data.readings, lambda r: (), x.interval_ms, per_second_of(x.interval_ms))
    assert_series("Consumption, last 24 hours", got, expected)


def check_meter_status(data: Dataset, got: Series, x: Expansion) -> None:
    """Each status is a series; the interval holding a phase's last second shows the status counts
    after that phase (the last count of the interval, carried forward by fill(previous)), and
    every interval after the last data shows the final counts."""
    series = {dict(tags)["status"]: {row[0]: row[1] for row in rows} for tags, rows in got.items()}
    assert set(series) == data.statuses_seen, f"Meter status: series {sorted(series)} != {sorted(data.statuses_seen)}"
    for end_s, counts in zip(data.phase_ends_s, data.status_after, strict=True):
        at = bucket(end_s * 1000, x.interval_ms)
        shown = {status: rows.get(at) for status, rows in series.items()}
        assert {s: v for s, v in shown.items() if v} == counts, f"Meter status at {at} (phase end {end_s}): {shown} != {counts}"
    last_data = bucket(data.phase_ends_s[-1] * 1000, x.interval_ms)
    for status, rows in series.items():
        later = {at: value for at, value in rows.items() if at > last_data}
        assert all((value or 0) == data.status_after[-1].get(status, 0) for value in later.values()), (status, later)
        assert all(value is None or 0 <= value <= METERS for value in rows.values()), (status, rows)


def check_region_consumption(data: Dataset, got: Series, x: Expansion) -> None:
    selected = data.selected(x.values, building=False)
    expected = grouped(selected, lambda r: (tag("region", r.region),), x.interval_ms, kwh_sum)
    assert_series("Region consumption", got, expected)


def check_region_table(data: Dataset, got: Series, x: Expansion) -> None:
    def reduce(rs: list[Reading]) -> list[float]:
        meters_per_second: dict[int, set[str]] = defaultdict(set)
        for r in rs:
            meters_per_second[r.ms // 1000].add(r.meter)
        return [math.fsum(r.kwh for r in rs), max(r.kwh for r in rs), max(len(m) for m in meters_per_second.values())]

    expected = grouped(data.selected(x.values, building=False), lambda r: (tag("region", r.region),), None, reduce)
    assert_series("Regions over the time range", got, expected, timeless=True)


CHECKS: dict[tuple[str, str, str], Callable[[Dataset, Series, Expansion], None]] = {
    ("smartgrid-consumption", "Consumption by region", "A"): check_raw_by_region,
    ("smartgrid-consumption", "Consumption by building type", "A"): check_raw_by_building,
    ("smartgrid-consumption", "Consumption by region and building type", "A"): check_raw_table,
    ("smartgrid-consumption", "Readings by reported status", "A"): check_raw_by_status,
    ("smartgrid-consumption", "Consumption per second", "A"): check_kwh_per_second,
    ("smartgrid-consumption", "Consumption per second", "B"): check_readings_per_second,
    ("smartgrid-consumption", "Consumption, last 24 hours", "A"): check_trend,
    ("smartgrid-consumption", "Meter status", "A"): check_meter_status,
    ("smartgrid-consumption", "Region consumption", "A"): check_region_consumption,
    ("smartgrid-consumption", "Regions over the time range", "A"): check_region_table,
}
"""Every InfluxQL target of the dashboards: (dashboard uid, panel title, refId) -> its check."""


def check_variable(data: Dataset, name: str, got: list[str], values: dict[str, str | list[str]]) -> None:
    """The template variables list the tag values of the (selected) raw readings."""
    if name == "region":
        expected = {r.region for r in data.readings}
    elif name == "building_type":
        expected = {r.building_type for r in data.selected({**values, "building_type": ALL}) if r.building_type}
    else:
        raise AssertionError(f"no expectation for the variable {name}: add one")
    assert sorted(got) == sorted(expected), f"variable {name} with {values}: {got} != {sorted(expected)}"


# ---- running the queries -------------------------------------------------------------------------


def influxql(database: str, query: str) -> list[dict[str, Any]]:
    """The series InfluxDB answers ``query`` with (times in epoch ms); its error fails the test."""
    response = httpx.get(f"{INFLUX}/query", params={"db": database, "q": query, "epoch": "ms"}, timeout=30)
    assert response.status_code == 200, f"{query}\n-> {response.status_code} {response.text}"
    results = response.json()["results"]
    assert len(results) == 1 and "error" not in results[0], f"{query}\n-> {results}"
    return results[0].get("series", [])


def as_series(raw: list[dict[str, Any]]) -> Series:
    return {tuple(sorted((raw_series.get("tags") or {}).items())): raw_series["values"] for raw_series in raw}


VALUE_SETS: dict[str, dict[str, str | list[str]]] = {
    "all": {"region": ALL, "building_type": ALL},
    "one value": {"region": "mid.west", "building_type": "commercial"},
    "several values": {"region": ["north", "mid.west"], "building_type": ["residential", "industrial"]},
}


def expansions(panel: dict[str, Any], absolute: TimeRange) -> Iterator[tuple[str, Expansion]]:
    """The ways the test looks at a panel: an absolute range at three resolutions (the interval
    from maxDataPoints 1000, 50 and 4) and the dashboard's default ``now-1h``; each with every
    variable value set. A panel's ``timeFrom`` replaces the dashboard's range, as in Grafana."""
    if panel.get("timeFrom"):
        ranges = [(TimeRange(relative=f"now-{panel['timeFrom']}"), 1000)]
    else:
        ranges = [(absolute, 1000), (absolute, 50), (absolute, 4), (TimeRange(relative="now-1h"), 1000)]
    for time_range, width in ranges:
        points = panel.get("maxDataPoints", width)  # else Grafana takes the panel's width in pixels
        interval = grafana_interval(time_range.range_ms(), points, panel.get("interval"))
        for label, values in VALUE_SETS.items():
            yield f"{time_range} / {format_interval(interval)} / {label}", Expansion(time_range, interval, values)


# ---- PromQL ----------------------------------------------------------------------------------------

TARGET_LABELS = frozenset({"namespace", "pod", "job", "instance", "service", "container", "endpoint"})
"""Labels Prometheus attaches at scrape time (Kubernetes service discovery), not in /metrics."""

_PROMQL_TOKEN = re.compile(
    r"""(?P<space>\s+)
    |(?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
    |(?P<range>\[[^\]]*\])
    |(?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    |(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)
    |(?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=,(){}])
    """,
    re.VERBOSE,
)
_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"})


@dataclass
class PromQLUse:
    """What an expression uses: metric -> labels it selects on, and labels it groups or joins by."""

    selectors: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    grouping: set[str] = field(default_factory=set)


def promql_uses(expr: str) -> PromQLUse:
    """Metric names and label names of a PromQL expression (a tokenizer, not a full parser)."""
    tokens = []
    position = 0
    while position < len(expr):
        match = _PROMQL_TOKEN.match(expr, position)
        assert match, f"cannot read PromQL at {expr[position:position + 20]!r} in {expr}"
        position = match.end()
        if match.lastgroup != "space":
            tokens.append((match.lastgroup, match[0]))
    depth = 0
    for _, text in tokens:
        depth += {"(": 1, "{": 1, ")": -1, "}": -1}.get(text, 0)
        assert depth >= 0, f"unbalanced brackets in {expr}"
    assert depth == 0, f"unbalanced brackets in {expr}"
    use = PromQLUse()
    index = 0
    while index < len(tokens):
        kind, text = tokens[index]
        following = tokens[index + 1][1] if index + 1 < len(tokens) else None
        if kind == "name" and text in _KEYWORDS:
            if text in ("by", "without", "on", "ignoring", "group_left", "group_right") and following == "(":
                end = next(i for i in range(index + 2, len(tokens)) if tokens[i][1] == ")")
                use.grouping |= {t for k, t in tokens[index + 2 : end] if k == "name"}
                index = end
        elif kind == "name" and (following == "(" or following in ("by", "without")):
            pass  # a function or an aggregation
        elif kind == "name":
            labels = use.selectors[text]
            if following == "{":
                end = next(i for i in range(index + 2, len(tokens)) if tokens[i][1] == "}")
                labels |= {t for k, t in tokens[index + 2 : end] if k == "name"}
                index = end
        elif text == "{":
            raise AssertionError(f"a selector without a metric name in {expr}: name the metric")
        index += 1
    assert use.selectors, f"no metric in {expr}"
    return use


Exposed = dict[str, set[str]]
"""Sample name (``_total``, ``_bucket`` ... included) -> its label names, from the services' /metrics."""


def scrape(urls: list[str], exposed: Exposed) -> None:
    """Add the samples of the services' /metrics to ``exposed``."""
    for url in urls:
        response = httpx.get(url, timeout=10)
        assert response.status_code == 200, f"{url}: {response.status_code}"
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                exposed.setdefault(sample.name, set()).update(sample.labels)


class Scraper(threading.Thread):
    """Scrapes the services every 100 ms while the dataset flows: some gauges have samples only
    while there is something to show (records in flight per partition)."""

    def __init__(self, urls: Callable[[], list[str]]) -> None:
        super().__init__(daemon=True)
        self.urls = urls
        self.exposed: Exposed = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.1):
            try:
                scrape(self.urls(), self.exposed)
            except (httpx.HTTPError, AssertionError):
                pass  # a service still starting: the next round scrapes it

    def stop(self) -> Exposed:
        self.stopping.set()
        self.join(10)
        scrape(self.urls(), self.exposed)  # and once more, at rest
        return self.exposed


def check_promql(where: str, expr: str, exposed: Exposed, legend: str = "") -> None:
    """Every metric in ``expr`` is exposed, with every label the expression selects or groups by."""
    use = promql_uses(expr)
    for metric, labels in use.selectors.items():
        assert metric in exposed, f"{where}: {metric} is exposed by no service (expression {expr})"
        missing = labels - exposed[metric] - TARGET_LABELS
        assert not missing, f"{where}: {metric} has no label {sorted(missing)} (it has {sorted(exposed[metric])})"
        missing = use.grouping - exposed[metric] - TARGET_LABELS
        assert not missing, f"{where}: grouping by {sorted(missing)}, which {metric} does not have"
    shown = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
    assert shown <= use.grouping, f"{where}: the legend shows {sorted(shown - use.grouping)}, which the result has not"


def test_the_promql_reader_finds_metrics_and_labels():
    use = promql_uses('histogram_quantile(0.99, sum by (le) (rate(x_bucket{namespace=~"$ns", worker="0"}[$__rate_interval])))')
    assert dict(use.selectors) == {"x_bucket": {"namespace", "worker"}} and use.grouping == {"le"}
    use = promql_uses("sum(a_total) / count(b) > bool 0")
    assert set(use.selectors) == {"a_total", "b"} and not use.grouping
    exposed = {"a_total": {"worker"}, "b": set()}
    check_promql("t", "sum by (worker) (rate(a_total[5m]))", exposed, "{{worker}}")
    with pytest.raises(AssertionError, match="exposed by no service"):
        check_promql("t", "sum(rate(a[5m]))", exposed)
    with pytest.raises(AssertionError, match="no label"):
        check_promql("t", 'a_total{partition="1"}', exposed)
    with pytest.raises(AssertionError, match="legend"):
        check_promql("t", "sum(a_total)", exposed, "{{worker}}")
    with pytest.raises(AssertionError, match="unbalanced"):
        promql_uses("sum(rate(a_total[5m])")


# ---- the test --------------------------------------------------------------------------------------


def test_every_panel_shows_the_known_dataset_and_uses_exposed_metrics(names, pipeline):
    started = time.monotonic()
    start_s = (int(time.time()) // 60 - 20) * 60  # two whole minutes of event time, 20 minutes ago
    phases = [phase_readings(phase, start_s, seed=40 + phase) for phase in range(2)]
    data = Dataset([], [], [])

    pipeline.start_aggregator()
    pipeline.start_writer()
    # A partly filled write waits 2 s: records stay in flight long enough to be seen in /metrics.
    ingest = pipeline.start_ingest(INFLUXDB_BATCH_TIMEOUT="2s")
    ingest.wait_ready()
    scraper = Scraper(lambda: [f"{ingest.url}/metrics", f"{pipeline.api}/metrics", f"http://127.0.0.1:{pipeline.writer_port}/metrics"])
    scraper.start()
    sent = 0
    for phase, readings in enumerate(phases):
        produce([record(r) for r in readings] + (INVALID if phase == 0 else []), BROKERS, names.topic)
        sent += len(readings) + (len(INVALID) if phase == 0 else 0)
        ingest.wait_committed(sent)
        truth = truth_from_topic(names.topic, sent, frozenset(value for _, value in INVALID), OFFLINE_AFTER_S)
        assert truth["readings"] == sum(len(p) for p in phases[: phase + 1])
        pipeline.wait_exact(truth)  # InfluxDB aggregated_data and the live API equal the truth
        data.readings += readings
        data.phase_ends_s.append(start_s + (phase + 1) * PHASE_SECONDS - 1)
        data.status_after.append(truth["status"])
        data.statuses_seen |= set(truth["status"])
    exposed = scraper.stop()
    assert data.status_after[0] == {"ok": 40, "fault": 4, "offline": 4}, data.status_after
    assert data.status_after[1] == {"ok": 34, "fault": 6, "offline": 8}, data.status_after
    print(f"pipeline ran the dataset in {time.monotonic() - started:.1f}s")

    boards = load_dashboards()
    absolute = TimeRange((start_s - 60) * 1000, (start_s + 180) * 1000)  # 4 minutes around the data
    used: set[tuple[str, str, str]] = set()
    queries = 0
    for uid, board in boards.items():
        variables = variables_of(board)
        for name, variable in variables.items():
            if datasource_type(board, variable["datasource"]) != "influxdb":
                continue
            for label, values in VALUE_SETS.items():
                query = expand(variable["query"], variables, Expansion(absolute, 1000, values))
                got = [row[1] for series in influxql(names.database, query) for row in series["values"]]
                check_variable(data, name, got, values)
                queries += 1
        for panel in panels_of(board):
            if datasource_type(board, panel["datasource"]) != "influxdb":
                continue
            for target in panel["targets"]:
                key = (uid, panel["title"], target["refId"])
                assert key in CHECKS, f"no expectation for the panel {key}: add one to CHECKS"
                used.add(key)
                for label, expansion in expansions(panel, absolute):
                    query = expand(target["query"], variables, expansion)
                    try:
                        CHECKS[key](data, as_series(influxql(names.database, query)), expansion)
                    except AssertionError as error:
                        raise AssertionError(f"{key} ({label}):\n{query}\n{error}") from None
                    queries += 1
    assert used == set(CHECKS), f"expectations without a panel: {sorted(set(CHECKS) - used)}"

    # The Prometheus panels: what the services' /metrics showed while the dataset flowed.
    expressions = 0
    for uid, board in boards.items():
        for name, variable in variables_of(board).items():
            if datasource_type(board, variable["datasource"]) == "prometheus":
                query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
                match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
                assert match, f"{uid} variable {name}: {query}"
                check_promql(f"{uid} variable {name}", f"{match[1]}{{{match[2]}=\"\"}}", exposed)
        for panel in panels_of(board):
            if datasource_type(board, panel["datasource"]) != "prometheus":
                continue
            for target in panel["targets"]:
                check_promql(f"{uid}/{panel['title']}/{target['refId']}", target["expr"], exposed, target.get("legendFormat", ""))
                expressions += 1
    print(f"{queries} InfluxQL queries and {expressions} PromQL expressions checked in {time.monotonic() - started:.1f}s")
