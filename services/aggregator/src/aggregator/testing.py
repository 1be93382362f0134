"""Test and benchmark support: synthetic readings, a reference summarizer, ground truth, and a
dump of the live state from Redis in the same shape. Not used by the service itself.

The ground truth is computed from the readings directly, not through the fold, so a test that
compares it with Redis checks the whole chain summary -> Lua fold -> Redis.
"""

from __future__ import annotations

import bisect
import itertools
import os
import random
import socket
import subprocess
import sys
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from redis import Redis
from smartgrid_common.contracts import MeterUpdate, RegionPartial, SecondPartial, Summary

from aggregator.keys import Keys

REGIONS = {"north": (59.9, 10.7), "south": (58.1, 8.0), "east": (60.8, 11.1), "west": (60.4, 5.3), "mid": (63.4, 10.4)}


@dataclass(frozen=True, slots=True)
class Reading:
    """One meter reading, as ingest would have decoded it."""

    meter_id: str
    region: str
    second: int
    kwh: float
    status: str
    lat: float
    lon: float


def region_centres(count: int) -> dict[str, tuple[float, float]]:
    """``count`` regions: the five named ones, then ``region-NN`` spread over the same country."""
    centres = dict(list(REGIONS.items())[:count])
    for index in range(len(centres), count):
        centres[f"region-{index:02d}"] = (58.0 + (index * 0.37) % 6, 5.0 + (index * 0.91) % 7)
    return centres


def make_readings(
    meters: int, seconds: int, start: int, seed: int = 7, late_share: float = 0.05, regions: int = len(REGIONS),
    faulty_share: float | None = None, centres: dict[str, tuple[float, float]] | None = None,
    weights: dict[str, float] | None = None,
) -> list[Reading]:
    """Readings in arrival order: each meter reports about once a second; some arrive late.

    Statuses flip at random (4% of readings are not ok: a stress of the status counts), or, with
    ``faulty_share``, stick to each meter as in the field (that share of meters reports fault).
    ``centres``: the regions' names and (lat, lon) centres (default: ``region_centres(regions)``);
    ``weights``: each region's share of the meters (default: equal shares, meters dealt in turn).
    """
    rng = random.Random(seed)
    centres = region_centres(regions) if centres is None else centres
    names = list(centres)
    if weights is None:
        home = {f"m{index:05d}": names[index % len(names)] for index in range(meters)}
    else:  # the same meter in the same region in every call: by where its index falls in the shares
        bounds = list(itertools.accumulate(weights.get(name, 0.0) for name in names))
        home = {
            f"m{index:05d}": names[min(bisect.bisect(bounds, (index * 0.6180339887) % 1 * bounds[-1]), len(names) - 1)]
            for index in range(meters)
        }
    faulty = set() if faulty_share is None else {m for m in home if rng.random() < faulty_share}
    readings = []
    for offset in range(seconds):
        for meter, region in home.items():
            if rng.random() < 0.1:
                continue
            second = start + offset
            if offset > 3 and rng.random() < late_share:
                second -= rng.randint(1, 3)
            if faulty_share is None:
                status = "ok" if rng.random() > 0.04 else rng.choice(["fault", "offline"])
            else:
                status = "fault" if meter in faulty else "ok"
            lat, lon = centres[region]
            readings.append(
                Reading(meter, region, second, round(rng.uniform(0.0, 3.0), 6), status,
                        lat + rng.uniform(-0.2, 0.2), lon + rng.uniform(-0.2, 0.2))
            )
    return readings


def partition_of(meter_id: str, partitions: int) -> int:
    """Kafka-like keyed partitioning (stable)."""
    return zlib.crc32(meter_id.encode()) % partitions


def summarize(
    topic: str, partition: int, first_offset: int, batch: list[Reading], held: dict[str, str],
    seen: set[tuple[int, str]], version: int = 2,
) -> Summary:
    """What ingest publishes for one batch (a straightforward, not columnar, reference version).

    ``held``: each meter's last status; ``seen``: the partition's (second, meter) pairs so far,
    which make ``new_meters`` (both carried over from the partition's earlier batches).
    ``version=1``: what releases before version 2 published, the bucket's meter ids instead.
    """
    seconds: dict[int, list[float]] = {}
    regions: dict[tuple[int, str], dict[str, Any]] = {}
    # Like ingest: one update per meter per batch, from its status before the batch to its last
    # reading's, when that changed it or is not ok.
    touched: dict[str, str | None] = {}
    latest: dict[str, Reading] = {}
    for reading in batch:
        acc = seconds.setdefault(reading.second, [0.0, 0, float("inf"), float("-inf")])
        acc[0] += reading.kwh
        acc[1] += 1
        acc[2] = min(acc[2], reading.kwh)
        acc[3] = max(acc[3], reading.kwh)
        region = regions.setdefault(
            (reading.second, reading.region),
            {"sum": 0.0, "count": 0, "max": float("-inf"), "meters": set(), "new": 0, "lat": 0.0, "lon": 0.0},
        )
        region["sum"] += reading.kwh
        region["count"] += 1
        region["max"] = max(region["max"], reading.kwh)
        region["meters"].add(reading.meter_id)
        if (reading.second, reading.meter_id) not in seen:
            seen.add((reading.second, reading.meter_id))
            region["new"] += 1
        region["lat"] += reading.lat
        region["lon"] += reading.lon
        touched.setdefault(reading.meter_id, held.get(reading.meter_id))
        latest[reading.meter_id] = reading
        held[reading.meter_id] = reading.status
    updates = []
    for meter, previous in touched.items():
        reading = latest[meter]
        if previous != reading.status or reading.status != "ok":
            at_ms = reading.second * 1000
            updates.append(MeterUpdate(meter, reading.region, previous, reading.status, at_ms, at_ms))
    return Summary(
        topic=topic,
        partition=partition,
        first_offset=first_offset,
        last_offset=first_offset + len(batch) - 1,
        watermark_ms=max(r.second for r in batch) * 1000,
        seconds=[SecondPartial(s, *acc) for s, acc in sorted(seconds.items())],
        regions=[
            RegionPartial(s, name, v["sum"], v["count"], v["max"], v["new"], v["lat"], v["lon"], v["count"])
            if version >= 2
            else RegionPartial(s, name, v["sum"], v["count"], v["max"], 0, v["lat"], v["lon"], v["count"], sorted(v["meters"]))
            for (s, name), v in sorted(regions.items())
        ],
        meters=updates,
    )


def make_summaries(
    readings: list[Reading], partitions: int, batch: int, topic: str = "t", version: int = 2
) -> list[Summary]:
    """Chained summaries per partition, interleaved across partitions in arrival order."""
    by_partition: dict[int, list[Reading]] = defaultdict(list)
    for reading in readings:
        by_partition[partition_of(reading.meter_id, partitions)].append(reading)
    per_partition: list[list[Summary]] = []
    for partition, items in sorted(by_partition.items()):
        held: dict[str, str] = {}
        seen: set[tuple[int, str]] = set()
        chain = []
        for start in range(0, len(items), batch):
            summary = summarize(topic, partition, start, items[start : start + batch], held, seen, version)
            summary.chained = start > 0
            chain.append(summary)
        per_partition.append(chain)
    interleaved = []
    for index in range(max(len(chain) for chain in per_partition)):
        interleaved += [chain[index] for chain in per_partition if index < len(chain)]
    return interleaved


def ground_truth(readings: list[Reading]) -> dict[str, Any]:
    """Totals per second and per (second, region), final status counts and alerts."""
    seconds: dict[int, list[float]] = {}
    regions: dict[tuple[int, str], list[Any]] = {}
    last_status: dict[str, tuple[str, str]] = {}
    for reading in readings:
        acc = seconds.setdefault(reading.second, [0.0, 0, float("inf"), float("-inf")])
        acc[0] += reading.kwh
        acc[1] += 1
        acc[2] = min(acc[2], reading.kwh)
        acc[3] = max(acc[3], reading.kwh)
        region = regions.setdefault((reading.second, reading.region), [0.0, 0, float("-inf"), set()])
        region[0] += reading.kwh
        region[1] += 1
        region[2] = max(region[2], reading.kwh)
        region[3].add(reading.meter_id)
        last_status[reading.meter_id] = (reading.status, reading.region)
    counts: dict[str, int] = defaultdict(int)
    for status, _ in last_status.values():
        counts[status] += 1
    return {
        "seconds": {s: (acc[0], acc[1], acc[2], acc[3]) for s, acc in seconds.items()},
        "regions": {key: (v[0], v[1], v[2], len(v[3])) for key, v in regions.items()},
        "status": dict(counts),
        "alerts": {meter: status for meter, (status, _) in last_status.items() if status != "ok"},
    }


def dump_state(redis: Redis, prefix: str, seconds: list[int]) -> dict[str, Any]:
    """The live state in Redis, shaped like :func:`ground_truth`."""
    keys = Keys(prefix)
    out: dict[str, Any] = {"seconds": {}, "regions": {}}
    for second in seconds:
        h = redis.hgetall(keys.second(second))
        if h:
            out["seconds"][second] = (float(h[b"sum"]), int(h[b"count"]), float(h[b"min"]), float(h[b"max"]))
        for field, value in redis.hgetall(keys.region_second(second)).items():
            kind, _, region = field.decode().partition(":")
            if kind in ("sum", "cnt", "max", "mc"):
                out["regions"].setdefault((second, region), {})[kind] = value
    out["regions"] = {
        key: (float(v["sum"]), int(v["cnt"]), float(v["max"]), int(v["mc"])) for key, v in out["regions"].items()
    }
    out["status"] = {k.decode(): int(v) for k, v in redis.hgetall(keys.status).items() if int(v)}
    alerts = {}
    for meter, raw in redis.hgetall(keys.alerts).items():
        alerts[meter.decode()] = orjson.loads(raw)["status"]
    out["alerts"] = alerts
    return out


def assert_matches(actual: dict[str, Any], truth: dict[str, Any], rel: float = 1e-9) -> None:
    """Counts exact, sums within ``rel``; raises AssertionError naming the first difference."""
    for part in ("seconds", "regions"):
        assert set(actual[part]) == set(truth[part]), (
            f"{part}: missing {sorted(set(truth[part]) - set(actual[part]))[:5]}, "
            f"extra {sorted(set(actual[part]) - set(truth[part]))[:5]}"
        )
        for key, expected in truth[part].items():
            got = actual[part][key]
            assert abs(got[0] - expected[0]) <= rel * max(1.0, abs(expected[0])), f"{part}[{key}] sum {got} != {expected}"
            assert got[1:] == expected[1:], f"{part}[{key}] {got} != {expected}"
    assert actual["status"] == truth["status"], f"status {actual['status']} != {truth['status']}"
    assert actual["alerts"] == truth["alerts"], "alerts differ"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_service(module: str, env: dict[str, str], log_path: str) -> subprocess.Popen:
    """``python -m <module>`` with ``env`` on top of ours, logs to ``log_path``."""
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it
    return subprocess.Popen(
        [sys.executable, "-m", module], env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
    )


def wait_until(check: Any, timeout: float, interval: float = 0.2, what: str = "condition") -> None:
    """Poll ``check()`` until true; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def http_ok(url: str) -> bool:
    """True when ``url`` answers 200."""
    return httpx.get(url, timeout=2).status_code == 200
