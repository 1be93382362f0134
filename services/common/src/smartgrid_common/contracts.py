"""The messages that cross service boundaries, defined once.

Ingest publishes one :class:`Summary` per write unit (consumed batches written together) and
partition to the Redis Stream
``<prefix>:summaries`` (field ``data`` = JSON bytes of :meth:`Summary.to_json`). The aggregator folds
summaries exactly once, atomically with advancing the partition's applied-offset watermark ``W``:

* the summaries of one partition CHAIN: each one's ``first_offset`` is the previous one's
  ``last_offset + 1`` (ingest guarantees it, across restarts too, by remembering the last offset it
  published); so a summary with ``last_offset <= W`` is a duplicate (acknowledge, skip), one with
  ``first_offset == W + 1`` is applied, and one with ``first_offset > W + 1`` arrived before its
  predecessor (leave it pending, retry later). While ``W`` is unset only a chain's FIRST summary
  (``chained`` false: nothing of the partition was published before it) is applied; a ``chained``
  one waits for its predecessor, which may still be pending at another aggregator replica;
* a meter's status counts are moved from the status the AGGREGATOR holds for that meter to the new
  one (``MeterUpdate.previous`` is ingest's view, informational only): a restarted ingest may
  report a meter as new again, and that must not count it twice.

Time is epoch milliseconds (``*_ms``) or epoch seconds (``second``: the start of a 1-second
event-time bucket). Every field name here is part of the contract between services.

Versions: summaries and rollups carry ``"v"`` (:data:`SUMMARY_VERSION`, :data:`ROLLUP_VERSION`;
absent means 1, the messages of releases before versioning). A reader refuses a version newer than
its own with :class:`UnsupportedVersion` and leaves the entry unacknowledged, so nothing is lost
while a rolling upgrade replaces the readers (upgrade readers first: docs/operations.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

# InfluxDB schema (unchanged from the original system).
DATABASE = "smart_grid_monitoring"
RAW_RETENTION_POLICY = "raw_data"
RAW_RETENTION = "30d"
AGGREGATE_RETENTION_POLICY = "aggregated_data"
AGGREGATE_RETENTION = "365d"
RAW_MEASUREMENT = "energy_consumption"
AGGREGATE_MEASUREMENT = "energy_consumption_aggregate"
STATUS_MEASUREMENT = "meter_status"
REGION_MEASUREMENT = "region_consumption"

# Kafka record contract.
DEFAULT_TOPIC = "smart-grid-transactions"
DLQ_SUFFIX = ".dlq"
DLQ_REASON_HEADER = "smartgrid-error"
"""Header on every dead-lettered record: why it was rejected."""
DLQ_SOURCE_HEADER = "smartgrid-source"
"""Header on every dead-lettered record: ``topic/partition/offset`` it came from."""
SUMMARY_VERSION = 2
"""Contract version of the summaries this release writes and the newest it reads. 2: a region
partial carries ``new_meters`` (a count) where 1 carried the bucket's meter ids (still read)."""
ROLLUP_VERSION = 1
"""Contract version of the rollups this release writes and the newest it reads."""


class UnsupportedVersion(ValueError):
    """A message of a newer contract version than this service reads: upgrade this service."""


def _version(raw: dict[str, Any], kind: str, newest: int) -> int:
    version = raw.get("v", 1)
    if not isinstance(version, int) or version < 1 or version > newest:
        raise UnsupportedVersion(
            f"{kind} contract version {version!r}; this release reads versions 1 to {newest}: "
            f"upgrade this service (readers before writers, see docs/operations.md)"
        )
    return version


STATUSES_KNOWN = ("ok", "fault", "offline", "clock_skew")
"""Statuses with a meaning to the product; `clock_skew` is set by ingest (its last reading had a
wrong clock), the others come from meters. Any other status is kept as sent."""


def summary_stream(prefix: str) -> str:
    """Redis Stream that carries summaries from ingest to the aggregator."""
    return f"{prefix}:summaries"


def rollup_stream(prefix: str) -> str:
    """Redis Stream that carries finished rollups from the aggregator to the writer."""
    return f"{prefix}:rollups"


@dataclass(slots=True)
class SecondPartial:
    """Readings of one partition batch that fall in one event-time second."""

    second: int
    sum_kwh: float
    count: int
    min_kwh: float
    max_kwh: float


@dataclass(slots=True)
class RegionPartial:
    """Readings of one batch in one (second, region).

    ``new_meters``: meters whose first reading of the bucket is in this batch. Every reading of a
    meter is in one partition (Kafka is keyed by meter id), so the sum over the partition's
    summaries is the bucket's distinct meter count: the aggregator adds counts, never ids.
    ``meters``: the distinct meter ids of the batch, carried by version 1 summaries only (the
    aggregator still reads them during an upgrade); empty from version 2 on.
    ``lat_sum``/``lon_sum`` over the ``geo_count`` readings that carried coordinates give the
    region's centroid for the map.
    """

    second: int
    region: str
    sum_kwh: float
    count: int
    max_kwh: float
    new_meters: int
    lat_sum: float
    lon_sum: float
    geo_count: int
    meters: list[str] = field(default_factory=list)


@dataclass(slots=True)
class MeterUpdate:
    """A meter whose effective status changed, or that is not ``ok`` and reported again.

    ``previous`` is None the first time the partition sees the meter. ``at_ms`` is the event time
    of the change (for ``offline``: the partition watermark at which the silence was detected).
    """

    meter_id: str
    region: str
    previous: str | None
    status: str
    at_ms: int
    last_reading_ms: int


@dataclass(slots=True)
class Summary:
    """Everything the aggregator needs from one batch of one partition."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    watermark_ms: int
    seconds: list[SecondPartial] = field(default_factory=list)
    regions: list[RegionPartial] = field(default_factory=list)
    meters: list[MeterUpdate] = field(default_factory=list)
    # True when an earlier summary of the partition was published (this one continues it); absent
    # in the JSON means false.
    chained: bool = False

    def to_json(self, version: int = SUMMARY_VERSION) -> bytes:
        """Compact JSON: partials as arrays in field order (summaries are hot). ``version=1``
        writes what releases before version 2 wrote (meter ids per region; for tests and the
        benchmark's baseline)."""
        if version == 1:
            regions = [
                [r.second, r.region, r.sum_kwh, r.count, r.max_kwh, r.meters, r.lat_sum, r.lon_sum, r.geo_count]
                for r in self.regions
            ]
        else:
            regions = [
                [r.second, r.region, r.sum_kwh, r.count, r.max_kwh, r.new_meters, r.lat_sum, r.lon_sum, r.geo_count]
                for r in self.regions
            ]
        data: dict[str, Any] = {
            "v": version,
            "topic": self.topic,
            "partition": self.partition,
            "first_offset": self.first_offset,
            "last_offset": self.last_offset,
            "watermark_ms": self.watermark_ms,
            "seconds": [[s.second, s.sum_kwh, s.count, s.min_kwh, s.max_kwh] for s in self.seconds],
            "regions": regions,
            "meters": [
                [m.meter_id, m.region, m.previous, m.status, m.at_ms, m.last_reading_ms]
                for m in self.meters
            ],
        }
        if self.chained:
            data["chained"] = True
        return orjson.dumps(data)

    @classmethod
    def from_json(cls, data: bytes | str) -> Summary:
        """Inverse of :meth:`to_json`."""
        raw: dict[str, Any] = orjson.loads(data)
        if _version(raw, "summary", SUMMARY_VERSION) == 1:
            regions = [
                RegionPartial(second, region, total, count, high, 0, lat, lon, geo, meters)
                for second, region, total, count, high, meters, lat, lon, geo in raw["regions"]
            ]
        else:
            regions = [RegionPartial(*row) for row in raw["regions"]]
        return cls(
            topic=raw["topic"],
            partition=raw["partition"],
            first_offset=raw["first_offset"],
            last_offset=raw["last_offset"],
            watermark_ms=raw["watermark_ms"],
            seconds=[SecondPartial(*row) for row in raw["seconds"]],
            regions=regions,
            meters=[MeterUpdate(*row) for row in raw["meters"]],
            chained=bool(raw.get("chained", False)),
        )


# Rollups: aggregator -> writer, on stream ``rollup_stream(prefix)``, field ``data`` = JSON bytes.
# The aggregator builds this JSON inside a Redis Lua script (so emitting and clearing the dirty
# marks is atomic); numbers are Redis' own decimal strings written as JSON numbers, hence the
# float()/int() coercion in from_json (an integral sum like 3.0 arrives as 3).


@dataclass(slots=True)
class SecondRollup:
    """One event-time second over every partition, as it stands: ``energy_consumption_aggregate``."""

    second: int
    total_kwh: float
    reading_count: int
    min_kwh: float
    max_kwh: float


@dataclass(slots=True)
class RegionRollup:
    """One (second, region) over every partition: ``region_consumption``.

    ``meter_count`` = distinct meters with a reading in the bucket.
    """

    second: int
    region: str
    total_kwh: float
    reading_count: int
    meter_count: int
    max_kwh: float


@dataclass(slots=True)
class Rollup:
    """Buckets that changed since the last emission, plus the status counts if they changed.

    A bucket emitted again later carries its complete new state and overwrites the older point.
    ``seq`` increases with every emission; the newest ``seq`` of each bucket is kept next to the
    bucket in Redis so a writer can skip a rollup that a newer one already superseded.
    ``status_counts`` (None when unchanged) holds every status ever seen, zeros included, and is
    written at ``status_second`` (the newest event second folded when it was emitted).
    """

    seq: int
    emitted_ms: int
    seconds: list[SecondRollup] = field(default_factory=list)
    regions: list[RegionRollup] = field(default_factory=list)
    status_second: int | None = None
    status_counts: dict[str, int] | None = None

    def to_json(self) -> bytes:
        """Compact JSON, rows as arrays in field order (the aggregator's Lua emits the same)."""
        return orjson.dumps(
            {
                "v": ROLLUP_VERSION,
                "seq": self.seq,
                "emitted_ms": self.emitted_ms,
                "seconds": [
                    [s.second, s.total_kwh, s.reading_count, s.min_kwh, s.max_kwh] for s in self.seconds
                ],
                "regions": [
                    [r.second, r.region, r.total_kwh, r.reading_count, r.meter_count, r.max_kwh]
                    for r in self.regions
                ],
                "status_second": self.status_second,
                "status": self.status_counts,
            }
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> Rollup:
        """Inverse of :meth:`to_json`; numbers are coerced to their declared types."""
        raw: dict[str, Any] = orjson.loads(data)
        _version(raw, "rollup", ROLLUP_VERSION)
        status = raw.get("status")
        return cls(
            seq=int(raw["seq"]),
            emitted_ms=int(raw["emitted_ms"]),
            seconds=[
                SecondRollup(int(s), float(total), int(count), float(low), float(high))
                for s, total, count, low, high in raw["seconds"]
            ],
            regions=[
                RegionRollup(int(s), str(region), float(total), int(count), int(meters), float(high))
                for s, region, total, count, meters, high in raw["regions"]
            ],
            status_second=None if raw.get("status_second") is None else int(raw["status_second"]),
            status_counts=None if status is None else {str(k): int(v) for k, v in status.items()},
        )


def rollup_seq_keys(prefix: str, second: int) -> tuple[str, str]:
    """Redis hashes whose field ``emit_seq`` holds the newest rollup ``seq`` of a second's buckets.

    (totals of the second, regions of the second). Part of the rollup contract: a writer compares
    a rollup's ``seq`` with these to skip a bucket that a newer rollup already carries.
    """
    return f"{prefix}:sec:{second}", f"{prefix}:rsec:{second}"


def rollup_status_seq_key(prefix: str) -> str:
    """Redis string ``"<seq> <status_second>"`` of the newest rollup that carried status counts."""
    return f"{prefix}:agg:status_seq"


def rollup_dirty_keys(prefix: str) -> tuple[str, str]:
    """(set of event seconds, flag) that the aggregator's next emission carries: the seconds whose
    buckets changed, and whether the status counts did. Part of the rollup contract: a writer adds
    to them to have seconds (and the status counts) emitted again, whole, with a newer ``seq``."""
    return f"{prefix}:agg:dirty", f"{prefix}:agg:dirty_status"
