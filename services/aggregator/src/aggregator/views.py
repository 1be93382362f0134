"""Dashboard API shaping: raw Redis hashes -> JSON-ready dicts. No network here."""

from __future__ import annotations

import math
from typing import Any

import orjson

Hash = dict[bytes, bytes]


def _num(raw: bytes | None) -> float | None:
    return None if raw is None else float(raw)


def bucket_point(hash_: Hash) -> dict[str, Any]:
    """sum/count/min/max hash -> totals (zeros and nulls where nothing was read)."""
    count = int(hash_.get(b"count", 0))
    total = float(hash_.get(b"sum", 0.0))
    return {
        "total_kwh": total,
        "reading_count": count,
        "min_kwh": _num(hash_.get(b"min")),
        "max_kwh": _num(hash_.get(b"max")),
        "avg_kwh": total / count if count else None,
    }


_BUCKET_FIELDS = (b"sum", b"count", b"min", b"max")


def unpack_buckets(packed: bytes) -> list[Hash]:
    """The window script's reply (``lua/window.lua``: ``sum,count,min,max`` per bucket, ``;``
    between buckets, empty fields where nothing was read) -> one hash per bucket ({} if empty)."""
    rows: list[Hash] = []
    for bucket in packed.split(b";"):
        values = bucket.split(b",")
        rows.append({} if not values[0] else {f: v for f, v in zip(_BUCKET_FIELDS, values, strict=True) if v})
    return rows


# How long after its end (wall clock) the newest folded second is taken as complete when no later
# second has been folded: the stream has gone quiet. Within it, the second is still filling: ingest
# publishes every 250 ms (SMARTGRID_SUMMARY_INTERVAL) per partition, and the last partitions'
# readings of a second reach Redis up to about a second after it ends under load (bench/README.md,
# freshness p99). Data arriving later than this only lowers the headline in a quiet pipeline.
COMPLETE_GRACE_S = 2.0


def newest_complete_second(end: int | None, now: float, grace: float = COMPLETE_GRACE_S) -> int | None:
    """The newest event second that is complete: every second before the newest folded one
    (``end``, which the partitions are still filling), and ``end`` itself once the wall clock
    ``now`` is ``grace`` past its end with nothing newer folded."""
    if end is None:
        return None
    return end if now >= end + 1 + grace else end - 1


def live_view(end: int | None, seconds: int, rows: list[Hash], complete: int | None = None) -> dict[str, Any]:
    """``/api/live``: one point per second, ``end - seconds + 1 .. end`` (event time).

    ``complete`` is the newest complete second (see :func:`newest_complete_second`; None: all of
    them are): the points after it are still filling, and the page draws them apart.
    """
    if end is None:
        return {"end": None, "complete": None, "seconds": seconds, "points": []}
    start = end - seconds + 1
    points = [{"second": start + offset, **bucket_point(row)} for offset, row in enumerate(rows)]
    return {"end": end, "complete": end if complete is None else complete, "seconds": seconds, "points": points}


def trend_view(
    end_minute: int | None, minutes: int, rows: list[Hash], complete_second: int | None = None
) -> dict[str, Any]:
    """``/api/trend``: one point per minute for the last ``minutes`` minutes.

    ``complete`` is the newest minute whose every second is complete (``complete_second``; None:
    all of them are); the newest minute is normally still filling.
    """
    if end_minute is None:
        return {"end": None, "complete": None, "minutes": minutes, "points": []}
    start = end_minute - 60 * (minutes - 1)
    points = [{"minute": start + 60 * offset, **bucket_point(row)} for offset, row in enumerate(rows)]
    if complete_second is None:
        complete = end_minute
    else:  # the minute that ends with the complete second, or the one before it
        complete = min(end_minute, (complete_second + 1) - (complete_second + 1) % 60 - 60)
    return {"end": end_minute, "complete": complete, "minutes": minutes, "points": points}


def split_region_hash(hash_: Hash) -> dict[str, dict[str, bytes]]:
    """``<kind>:<region>`` fields -> {region: {kind: value}} (region names may contain ':')."""
    regions: dict[str, dict[str, bytes]] = {}
    for raw_field, value in hash_.items():
        kind, sep, region = raw_field.decode().partition(":")
        if sep:
            regions.setdefault(region, {})[kind] = value
    return regions


def regions_view(
    window: list[Hash], geo: Hash, known_meters: Hash, window_seconds: int,
    places: dict[str, tuple[float, float] | str] | None = None,
) -> list[dict[str, Any]]:
    """``/api/regions``: every region with its centroid, consumption over the window and rank.

    Rank 1 = highest consumption in the window. ``active_meters`` is the largest per-second
    distinct-meter count in the window (distinct over the whole window is not kept).
    ``places`` (``SMARTGRID_REGION_PLACES``): a region's configured (lat, lon), or the US state the
    map draws it in (``state``), instead of its meters' mean coordinates; ``placed_by`` says which.
    """
    places = places or {}
    totals: dict[str, dict[str, float]] = {}
    for hash_ in window:
        for region, kinds in split_region_hash(hash_).items():
            acc = totals.setdefault(region, {"total": 0.0, "count": 0, "max": -math.inf, "active": 0})
            acc["total"] += float(kinds.get("sum", 0.0))
            acc["count"] += int(kinds.get("cnt", 0))
            acc["max"] = max(acc["max"], float(kinds.get("max", -math.inf)))
            acc["active"] = max(acc["active"], int(kinds.get("mc", 0)))
    geo_by_region = split_region_hash(geo)
    meters = {key.decode(): int(value) for key, value in known_meters.items()}
    names = sorted(set(totals) | set(geo_by_region) | set(meters))
    rows = []
    for name in names:
        acc = totals.get(name, {"total": 0.0, "count": 0, "max": -math.inf, "active": 0})
        centre = geo_by_region.get(name, {})
        points = int(centre.get("n", 0))
        rows.append(
            {
                "region": name,
                "lat": float(centre["lat"]) / points if points else None,
                "lon": float(centre["lon"]) / points if points else None,
                "total_kwh": acc["total"],
                "reading_count": int(acc["count"]),
                "max_kwh": None if acc["max"] == -math.inf else acc["max"],
                "active_meters": int(acc["active"]),
                "meters": meters.get(name, 0),
                "window_seconds": window_seconds,
                "state": None,
                "placed_by": "meters" if points else None,
            }
        )
        place = places.get(name)
        if isinstance(place, tuple):
            rows[-1].update(lat=place[0], lon=place[1], placed_by="config")
        elif place is not None:
            rows[-1].update(state=place, placed_by="config")
    rows.sort(key=lambda row: (-row["total_kwh"], row["region"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def status_view(counts: Hash) -> dict[str, Any]:
    """``/api/status``: effective status counts (zeros kept), total and non-ok meters."""
    parsed = {key.decode(): int(value) for key, value in counts.items()}
    total = sum(parsed.values())
    return {"counts": dict(sorted(parsed.items())), "total": total, "alerts": total - parsed.get("ok", 0)}


def meters_view(
    total: int, page: int, page_size: int, records: list[tuple[bytes, bytes | None]]
) -> dict[str, Any]:
    """``/api/meters``: one page of faulty/offline meters."""
    items = []
    for meter_id, raw in records:
        if raw is None:  # removed between the index read and the record read
            continue
        record = orjson.loads(raw)
        items.append(
            {
                "meter_id": meter_id.decode(),
                "status": record["status"],
                "region": record["region"],
                "since_ms": int(record["since"]),
                "last_reading_ms": int(record["last"]),
            }
        )
    return {
        "total": total,
        "page": page,
        "page_size": page_size,
        "pages": max(1, math.ceil(total / page_size)),
        "items": items,
    }
