"""Fold planning: outcomes against the watermarks, summaries merged into one block of partials
(records.py writes them as the fold script's arguments).

Also the fold's semantics in plain Python (:class:`LiveModel`): the Lua script in
``lua/fold.lua`` is its Redis twin. Unit tests pin the semantics on the model; integration tests
check that Redis ends in the same state as the model given the same summaries.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from smartgrid_common.contracts import MeterUpdate, RegionPartial, SecondPartial, Summary


class Outcome(enum.IntEnum):
    """What the fold did with one summary (the Lua script returns these integers)."""

    APPLIED = 1
    DUPLICATE = 0  # last_offset <= watermark: already folded; acknowledge
    WAIT = -1  # first_offset > watermark + 1 (or chained, no watermark yet): predecessor not folded; retry
    OVERLAP = -2  # straddles the watermark: breaks the chaining contract; acknowledged, counted


def classify(watermark: int | None, first_offset: int, last_offset: int, chained: bool = False) -> Outcome:
    """Decide a summary's fate from its partition's applied-offset watermark (contracts.py)."""
    if watermark is None:
        # Nothing folded yet: only the chain's first summary may start it.
        return Outcome.WAIT if chained else Outcome.APPLIED
    if first_offset == watermark + 1:
        return Outcome.APPLIED
    if last_offset <= watermark:
        return Outcome.DUPLICATE
    if first_offset > watermark + 1:
        return Outcome.WAIT
    return Outcome.OVERLAP


def source_of(summary: Summary) -> str:
    """The watermark field of a summary's partition."""
    return f"{summary.topic}:{summary.partition}"


@dataclass(slots=True)
class MinutePartial:
    """Seconds of one summary folded into their minute (the 24-hour trend)."""

    minute: int
    sum_kwh: float = 0.0
    count: int = 0
    min_kwh: float = float("inf")
    max_kwh: float = float("-inf")


def minute_partials(seconds: Iterable[SecondPartial]) -> list[MinutePartial]:
    """Roll second partials up into minute partials (``minute`` = first second of the minute)."""
    minutes: dict[int, MinutePartial] = {}
    for part in seconds:
        start = part.second - part.second % 60
        acc = minutes.setdefault(start, MinutePartial(start))
        acc.sum_kwh += part.sum_kwh
        acc.count += part.count
        acc.min_kwh = min(acc.min_kwh, part.min_kwh)
        acc.max_kwh = max(acc.max_kwh, part.max_kwh)
    return sorted(minutes.values(), key=lambda m: m.minute)


def merge(summaries: list[Summary]) -> tuple[list[SecondPartial], list[RegionPartial], list[MeterUpdate]]:
    """The partials of several summaries as one block: same sums, counts, extremes, new-meter
    counts (and version 1 meter ids, united) and centroid sums; meter updates kept in the given order (each meter belongs to one
    partition, whose summaries come in offset order)."""
    seconds: dict[int, SecondPartial] = {}
    regions: dict[tuple[int, str], tuple[RegionPartial, set[str]]] = {}
    meters: list[MeterUpdate] = []
    for summary in summaries:
        for s in summary.seconds:
            acc = seconds.get(s.second)
            if acc is None:
                seconds[s.second] = SecondPartial(s.second, s.sum_kwh, s.count, s.min_kwh, s.max_kwh)
            else:
                acc.sum_kwh += s.sum_kwh
                acc.count += s.count
                acc.min_kwh = min(acc.min_kwh, s.min_kwh)
                acc.max_kwh = max(acc.max_kwh, s.max_kwh)
        for r in summary.regions:
            held = regions.get((r.second, r.region))
            if held is None:
                regions[(r.second, r.region)] = (
                    RegionPartial(
                        r.second, r.region, r.sum_kwh, r.count, r.max_kwh, r.new_meters, r.lat_sum, r.lon_sum, r.geo_count
                    ),
                    set(r.meters),
                )
            else:
                acc, ids = held
                acc.sum_kwh += r.sum_kwh
                acc.count += r.count
                acc.max_kwh = max(acc.max_kwh, r.max_kwh)
                acc.new_meters += r.new_meters
                acc.lat_sum += r.lat_sum
                acc.lon_sum += r.lon_sum
                acc.geo_count += r.geo_count
                ids.update(r.meters)
        meters += summary.meters
    merged_regions = []
    for acc, ids in regions.values():
        acc.meters = sorted(ids)
        merged_regions.append(acc)
    return sorted(seconds.values(), key=lambda s: s.second), merged_regions, meters


@dataclass(frozen=True, slots=True)
class FoldConfig:
    """The knobs the fold script needs, in seconds."""

    live_ttl: int
    region_ttl: int
    late_ttl: int
    # Event seconds further ahead of the wall clock are not folded (SMARTGRID_MAX_CLOCK_SKEW):
    # ingest refuses such readings already; this keeps the live view on the present even with a
    # summary from an ingest that did not.
    max_clock_skew: int = 300


@dataclass(slots=True)
class Bucket:
    """sum/count/min/max of readings."""

    sum_kwh: float = 0.0
    count: int = 0
    min_kwh: float = float("inf")
    max_kwh: float = float("-inf")

    def add(self, sum_kwh: float, count: int, min_kwh: float, max_kwh: float) -> None:
        """Fold a partial into the bucket."""
        self.sum_kwh += sum_kwh
        self.count += count
        self.min_kwh = min(self.min_kwh, min_kwh)
        self.max_kwh = max(self.max_kwh, max_kwh)


@dataclass(slots=True)
class RegionBucket:
    """One (second, region)."""

    sum_kwh: float = 0.0
    count: int = 0
    max_kwh: float = float("-inf")
    new_meters: int = 0  # summed counts (version 2 summaries)
    meters: set[str] = field(default_factory=set)  # meter ids (version 1 summaries)
    lat_sum: float = 0.0
    lon_sum: float = 0.0
    geo_count: int = 0

    @property
    def meter_count(self) -> int:
        """Distinct meters in the bucket (one of the two terms is 0 unless versions were mixed)."""
        return self.new_meters + len(self.meters)


@dataclass(slots=True)
class Alert:
    """A meter whose effective status is not ok."""

    status: str
    since_ms: int
    last_reading_ms: int
    region: str


@dataclass
class LiveModel:
    """The live state in plain Python, with the fold's exact semantics (late window aside)."""

    watermarks: dict[str, int] = field(default_factory=dict)
    seconds: dict[int, Bucket] = field(default_factory=dict)
    minutes: dict[int, Bucket] = field(default_factory=dict)
    regions: dict[tuple[int, str], RegionBucket] = field(default_factory=dict)
    meter_status: dict[str, str] = field(default_factory=dict)
    status_counts: dict[str, int] = field(default_factory=dict)
    region_meters: dict[str, int] = field(default_factory=dict)
    alerts: dict[str, Alert] = field(default_factory=dict)

    def apply(self, summary: Summary) -> Outcome:
        """Fold one summary if its offsets say so; return what happened."""
        source = source_of(summary)
        outcome = classify(self.watermarks.get(source), summary.first_offset, summary.last_offset, summary.chained)
        if outcome is not Outcome.APPLIED:
            return outcome
        self.watermarks[source] = summary.last_offset
        for s in summary.seconds:
            self.seconds.setdefault(s.second, Bucket()).add(s.sum_kwh, s.count, s.min_kwh, s.max_kwh)
        for m in minute_partials(summary.seconds):
            self.minutes.setdefault(m.minute, Bucket()).add(m.sum_kwh, m.count, m.min_kwh, m.max_kwh)
        for r in summary.regions:
            bucket = self.regions.setdefault((r.second, r.region), RegionBucket())
            bucket.sum_kwh += r.sum_kwh
            bucket.count += r.count
            bucket.max_kwh = max(bucket.max_kwh, r.max_kwh)
            bucket.new_meters += r.new_meters
            bucket.meters.update(r.meters)
            bucket.lat_sum += r.lat_sum
            bucket.lon_sum += r.lon_sum
            bucket.geo_count += r.geo_count
        for u in summary.meters:
            held = self.meter_status.get(u.meter_id)
            # Counts move from the status WE hold (ingest's `previous` is informational).
            if held is None:
                self.region_meters[u.region] = self.region_meters.get(u.region, 0) + 1
            elif held != u.status:
                self.status_counts[held] = self.status_counts.get(held, 0) - 1
            if held != u.status:
                self.status_counts[u.status] = self.status_counts.get(u.status, 0) + 1
            self.meter_status[u.meter_id] = u.status
            if u.status == "ok":
                self.alerts.pop(u.meter_id, None)
            else:
                current = self.alerts.get(u.meter_id)
                since = current.since_ms if current and current.status == u.status else u.at_ms
                self.alerts[u.meter_id] = Alert(u.status, since, u.last_reading_ms, u.region)
        return Outcome.APPLIED
