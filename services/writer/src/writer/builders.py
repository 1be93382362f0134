"""Rollups -> InfluxDB line protocol (precision seconds). No network here.

Every numeric field is written as a float (an integer in one point and a float in the next would
be a field-type conflict in InfluxDB). A bucket that appears in several rollups of one batch is
written once, from the rollup with the highest ``seq`` (the newest state).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from smartgrid_common.contracts import (
    AGGREGATE_MEASUREMENT,
    REGION_MEASUREMENT,
    STATUS_MEASUREMENT,
    RegionRollup,
    Rollup,
    SecondRollup,
)

_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\ ", "\r": r"\ "})


def escape_tag(value: str) -> str:
    """A tag value escaped for line protocol (an empty one becomes ``unknown``: InfluxDB drops
    empty tags, which would merge it with the untagged series)."""
    return value.translate(_TAG_ESCAPES) if value else "unknown"


def fmt(value: float) -> str:
    """A float field value (shortest exact repr; never an integer literal)."""
    return repr(float(value))


def second_line(row: SecondRollup) -> str:
    """``energy_consumption_aggregate`` point of one second."""
    avg = row.total_kwh / row.reading_count if row.reading_count else 0.0
    return (
        f"{AGGREGATE_MEASUREMENT} total_kwh={fmt(row.total_kwh)},reading_count={fmt(row.reading_count)},"
        f"max_kwh={fmt(row.max_kwh)},min_kwh={fmt(row.min_kwh)},avg_kwh={fmt(avg)} {row.second}"
    )


def region_line(row: RegionRollup) -> str:
    """``region_consumption`` point of one (second, region)."""
    average = row.total_kwh / row.meter_count if row.meter_count else 0.0
    return (
        f"{REGION_MEASUREMENT},region={escape_tag(row.region)} total_kwh={fmt(row.total_kwh)},"
        f"meter_count={fmt(row.meter_count)},average_kwh={fmt(average)},"
        f"max_consumption={fmt(row.max_kwh)} {row.second}"
    )


def status_lines(second: int, counts: dict[str, int]) -> list[str]:
    """``meter_status`` points: one per status, zeros included (a status that emptied shows 0)."""
    return [
        f"{STATUS_MEASUREMENT},status={escape_tag(status)} count={fmt(count)} {second}"
        for status, count in sorted(counts.items())
    ]


@dataclass
class Superseded:
    """Buckets a newer rollup already carries: ``seconds``/``regions`` map second -> newest seq."""

    seconds: dict[int, int] = field(default_factory=dict)
    regions: dict[int, int] = field(default_factory=dict)
    status: int = 0
    status_second: int | None = None


def build_body(rollups: Iterable[Rollup], newest: Superseded | None = None) -> list[str]:
    """Line-protocol lines for a batch of rollups, newest state per bucket, superseded ones left out.

    ``newest`` holds the latest emission seq of each bucket as Redis knows it: a rollup older than
    that is skipped (the newer one is in the stream and will be written), so an old rollup
    re-delivered after a crash never overwrites a newer value.
    """
    newest = newest or Superseded()
    seconds: dict[int, tuple[int, SecondRollup]] = {}
    regions: dict[tuple[int, str], tuple[int, RegionRollup]] = {}
    statuses: dict[int, tuple[int, dict[str, int]]] = {}
    for rollup in rollups:
        for row in rollup.seconds:
            if rollup.seq < newest.seconds.get(row.second, 0):
                continue
            if row.second not in seconds or seconds[row.second][0] < rollup.seq:
                seconds[row.second] = (rollup.seq, row)
        for region_row in rollup.regions:
            if rollup.seq < newest.regions.get(region_row.second, 0):
                continue
            key = (region_row.second, region_row.region)
            if key not in regions or regions[key][0] < rollup.seq:
                regions[key] = (rollup.seq, region_row)
        if rollup.status_counts is not None and rollup.status_second is not None:
            # Status snapshots of other seconds are history, not overwrites: keep them.
            stale = rollup.seq < newest.status and rollup.status_second == newest.status_second
            kept = statuses.get(rollup.status_second)
            if not stale and (kept is None or kept[0] < rollup.seq):
                statuses[rollup.status_second] = (rollup.seq, rollup.status_counts)
    lines = [second_line(row) for _, row in sorted(seconds.values(), key=lambda item: item[1].second)]
    lines += [region_line(row) for _, row in sorted(regions.values(), key=lambda item: (item[1].second, item[1].region))]
    for second in sorted(statuses):
        lines += status_lines(second, statuses[second][1])
    return lines
