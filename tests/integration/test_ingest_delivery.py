"""Ingest against the real Kafka, InfluxDB and Redis: exactly the valid records land in InfluxDB,
every invalid one is dead-lettered with a reason, and crashes, outages and shutdowns lose nothing."""

from __future__ import annotations

from pathlib import Path

import json
import threading
import time

import pytest
from ingest.assignment import parse_partition_list
from confluent_kafka import Producer
from simulator import generate_labelled, produce
from smartgrid_common.contracts import DLQ_REASON_HEADER, DLQ_SOURCE_HEADER

from ingest_harness import (
    BROKERS,
    committed_offsets,
    end_offsets,
    influx_count,
    influx_query,
    read_topic,
    stack_command,
    wait_until,
)

pytestmark = pytest.mark.integration

NOW_MS = int(time.time() * 1000)
START_MS = NOW_MS - 3_600_000  # an hour ago: inside the raw_data retention


def dataset(count: int, malformed: float = 0.0, meters: int = 2000, seed: int = 7):
    return generate_labelled(count, meters=meters, seed=seed, start_ms=START_MS, step_ms=1000, malformed_fraction=malformed)


def expected_points(records) -> dict[tuple[str, int], float]:
    """Ground truth computed here, independently of ingest: (meter_id, time ms) -> kWh."""
    from datetime import datetime

    points = {}
    for record in records:
        if record.label != "valid":
            continue
        data = json.loads(record.value)
        stamp = data["timestamp"]
        if isinstance(stamp, str):
            time_ms = int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)
        else:
            time_ms = int(stamp)
        points[(data["meter_id"], time_ms)] = float(data["consumption_kwh"])
    return points


TRICKY_IDS = ["x,region=evil", "with space", "a=b", 'q"uote', "back\\slash", "a\\,b", "p\\=q\\ r", "two\\\\x", "zähler-東京-⚡", "x status=fault"]


def tricky_records() -> list[tuple[bytes, bytes]]:
    return [
        (meter.encode(), json.dumps({
            "meter_id": meter, "timestamp": NOW_MS - 60_000 + index, "consumption_kwh": index + 0.5,
            "region": "west, side", "status": "ok", "building_type": "b=1",
        }).encode())
        for index, meter in enumerate(TRICKY_IDS)
    ]


HAND_MADE_INVALID = [
    (b"k1", b"", "empty record"),
    (b"k2", b"{not json", "invalid JSON"),
    (b"k3", json.dumps({"meter_id": "m", "timestamp": NOW_MS, "consumption_kwh": -1, "region": "r", "status": "ok"}).encode(), "consumption_kwh must be >= 0"),
    (b"k4", json.dumps({"meter_id": "m", "timestamp": "later", "consumption_kwh": 1, "region": "r", "status": "ok"}).encode(), "not RFC 3339"),
    (None, b"[1, 2]", "not a JSON object"),
    (b"k6", json.dumps({"meter_id": "tail\\", "timestamp": NOW_MS, "consumption_kwh": 1, "region": "r", "status": "ok"}).encode(), "ends with a backslash"),
]


def test_valid_records_land_exactly_once_and_invalid_ones_reach_the_dlq_with_a_reason(names, ingest):
    records = dataset(40_000, malformed=0.01)
    malformed = [r for r in records if r.label != "valid"]
    assert malformed, "the dataset must contain invalid records"
    produce([(r.key, r.value) for r in records] + tricky_records(), BROKERS, names.topic)
    producer = Producer({"bootstrap.servers": BROKERS})
    for key, value, _ in HAND_MADE_INVALID:
        producer.produce(names.topic, key=key, value=value, partition=3)
    producer.flush(30)
    total = len(records) + len(TRICKY_IDS) + len(HAND_MADE_INVALID)

    service = ingest()
    service.wait_ready()
    service.wait_committed(total)

    expected = expected_points(records)
    rows = influx_query(names.database, "SELECT consumption_kwh, meter_id FROM raw_data.energy_consumption WHERE region != 'west, side'")
    stored = {(meter, time_ms): kwh for time_ms, kwh, meter in rows}
    assert len(rows) == len(expected)
    assert stored == expected

    # tag values with line-protocol syntax in them come back exactly as sent
    tricky = influx_query(names.database, "SELECT consumption_kwh, meter_id, building_type FROM raw_data.energy_consumption WHERE region = 'west, side'")
    assert sorted(row[2] for row in tricky) == sorted(TRICKY_IDS)
    assert {row[3] for row in tricky} == {"b=1"}

    invalid = len(malformed) + len(HAND_MADE_INVALID)
    dead = read_topic(names.dlq, invalid)
    assert len(dead) == invalid
    headers = [dict(m.headers()) for m in dead]
    assert all(h[DLQ_REASON_HEADER] for h in headers)
    assert all(h[DLQ_SOURCE_HEADER].decode().startswith(names.topic + "/") for h in headers)
    assert sorted(m.value() or b"" for m in dead) == sorted([r.value for r in malformed] + [v for _, v, _ in HAND_MADE_INVALID])
    by_key = {m.key(): (m.value() or b"", dict(m.headers())[DLQ_REASON_HEADER].decode()) for m in dead if m.key() is None or m.key().startswith(b"k")}
    for key, value, reason in HAND_MADE_INVALID:
        assert by_key[key][0] == value  # original bytes and key kept
        assert reason in by_key[key][1]
    totals = service.totals()
    assert totals["dead_lettered"] == invalid
    assert totals["written"] == len(expected) + len(TRICKY_IDS)
    # The InfluxDB path's threads yield to the live path's (SMARTGRID_INFLUXDB_PATH_NICE, 19).
    niceness = worker_thread_niceness(service.process.pid)
    assert 19 in niceness and 0 in niceness, niceness
    assert service.terminate() == 0


def worker_thread_niceness(supervisor_pid: int) -> list[int]:
    """The nice value of every thread of the supervisor's worker processes (Linux /proc)."""
    children = {pid for task in Path(f"/proc/{supervisor_pid}/task").iterdir() for pid in task.joinpath("children").read_text().split()}
    values = []
    for pid in children:
        for task in Path(f"/proc/{pid}/task").iterdir():
            values.append(int(task.joinpath("stat").read_text().rsplit(")", 1)[1].split()[16]))
    return values


def test_points_influxdb_rejects_go_to_the_dlq_with_its_reason_and_the_rest_is_written(names, ingest):
    fresh = [
        (f"m{i}".encode(), json.dumps({"meter_id": f"m{i}", "timestamp": NOW_MS - i * 1000, "consumption_kwh": i, "region": "r", "status": "ok"}).encode())
        for i in range(50)
    ]
    ancient = [  # valid by the contract, but older than the 30-day raw_data retention
        (f"old{i}".encode(), json.dumps({"meter_id": f"old{i}", "timestamp": NOW_MS - 90 * 86_400_000, "consumption_kwh": 1, "region": "r", "status": "ok"}).encode())
        for i in range(3)
    ]
    produce(fresh[:25] + ancient + fresh[25:], BROKERS, names.topic)
    service = ingest()
    service.wait_committed(len(fresh) + len(ancient))
    assert influx_count(names.database) == len(fresh)
    dead = read_topic(names.dlq, len(ancient))
    assert sorted(m.value() for m in dead) == sorted(v for _, v in ancient)
    for message in dead:
        reason = dict(message.headers())[DLQ_REASON_HEADER].decode()
        assert reason.startswith("rejected by InfluxDB") and "retention" in reason
    assert service.totals()["influx_rejected"] == len(ancient)


def test_kill_9_mid_stream_then_restart_loses_no_point(names, ingest):
    records = dataset(300_000, meters=20_000)
    produce([(r.key, r.value) for r in records], BROKERS, names.topic)
    first = ingest(INFLUXDB_BATCH_SIZE="5000")
    wait_until(lambda: first.totals().get("committed", 0) >= 60_000, 120, "a fifth of the records committed")
    first.kill9()
    assert influx_count(names.database) < len(records)
    ingest(INFLUXDB_BATCH_SIZE="5000")
    wait_until(lambda: influx_count(names.database) >= len(records), 180, "every point in InfluxDB")
    time.sleep(1.0)
    assert influx_count(names.database) == len(records)  # idempotent replay: nothing doubled
    wait_until(lambda: committed_offsets(names.group, names.topic, 32) == end_offsets(names.topic, 32), 60, "all offsets committed")


def test_influxdb_down_for_20s_loses_nothing_keeps_memory_bounded_and_reports_not_ready(names, ingest):
    service = ingest(PROCESSOR_QUEUE_SIZE="20000", INFLUXDB_MAX_RETRIES="2", INFLUXDB_RETRY_INTERVAL="200ms", SMARTGRID_INFLUXDB_TIMEOUT="2s")
    service.wait_ready()
    records = dataset(200_000, meters=10_000)
    producing = threading.Thread(target=produce, args=([(r.key, r.value) for r in records], BROKERS, names.topic))
    producing.start()
    wait_until(lambda: service.totals().get("committed", 0) >= 20_000, 60, "ingest under way")
    baseline_rss = service.rss_mb()
    stack_command("stop-server", "influxdb")
    try:
        wait_until(lambda: not service.ready(), 30, "/readyz to turn false while InfluxDB is down")
        # Units InfluxDB acknowledged before it stopped may still commit once the live path has
        # published through them; after that, nothing more can be committed.
        time.sleep(5)
        committed_during_outage = service.totals()["committed"]
        peak_rss = baseline_rss
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            peak_rss = max(peak_rss, service.rss_mb())
            time.sleep(0.5)
        assert not service.ready()
        in_flight = service.totals()["consumed"] - service.totals()["committed"]
        assert in_flight <= 20_000 + 10_000  # PROCESSOR_QUEUE_SIZE plus at most one batch
        assert service.totals()["committed"] == committed_during_outage
    finally:
        stack_command("start-server", "influxdb")
    producing.join()
    assert peak_rss - baseline_rss < 150, f"memory grew from {baseline_rss:.0f} MB to {peak_rss:.0f} MB"
    wait_until(service.ready, 60, "/readyz true again after InfluxDB is back")
    service.wait_committed(len(records), timeout=180)
    assert influx_count(names.database) == len(records)


def test_two_replicas_with_static_ranges_cover_all_32_partitions_exactly_once(names, ingest):
    records = dataset(64_000, meters=5_000)
    produce([(r.key, r.value) for r in records], BROKERS, names.topic)
    ends = end_offsets(names.topic, 32)
    assert all(ends[p] > 0 for p in range(32)), "every partition must hold records"
    replicas = [ingest(SMARTGRID_REPLICA_INDEX=str(i), SMARTGRID_PARTITIONS_PER_REPLICA="16", PROCESSOR_WORKER_COUNT="2") for i in range(2)]
    wait_until(lambda: sum(r.totals().get("committed", 0) for r in replicas) >= len(records), 180, "both replicas done")
    time.sleep(1.0)
    consumed = [r.totals()["consumed"] for r in replicas]
    assert consumed == [sum(ends[p] for p in range(16)), sum(ends[p] for p in range(16, 32))]
    assert committed_offsets(names.group, names.topic, 32) == ends
    assert influx_count(names.database) == len(records)
    for replica, expected in zip(replicas, ("0-15", "16-31")):
        lag = replica.get("/metrics").text
        assert "smartgrid_ingest_partition_lag" in lag
        assert replica.terminate() == 0
        text = replica.log.read_text()
        planned = [json.loads(line) for line in text.splitlines() if '"partitions planned"' in line][0]
        assert len(planned["workers"]) == 2  # PROCESSOR_WORKER_COUNT processes share the range
        assert sorted(sum((parse_partition_list(share) for share in planned["workers"]), [])) == parse_partition_list(expected)


def test_sigterm_finishes_in_flight_batches_commits_and_exits_0(names, ingest):
    records = dataset(100_000, meters=10_000)
    produce([(r.key, r.value) for r in records], BROKERS, names.topic)
    service = ingest()
    wait_until(lambda: service.totals().get("consumed", 0) >= 10_000, 60, "ingest under way")
    assert service.terminate() == 0
    committed = committed_offsets(names.group, names.topic, 32)
    # everything the stopped service committed is in InfluxDB, and it stopped with nothing half-done
    assert influx_count(names.database) >= sum(max(0, o) for o in committed.values())
    restarted = ingest()
    restarted.wait_ready()
    wait_until(lambda: influx_count(names.database) == len(records), 180, "the rest after a restart")
    assert restarted.terminate() == 0


def test_group_subscription_mode_consumes_every_partition_once_and_commits(names, ingest):
    records = dataset(30_000, meters=3_000)
    produce([(r.key, r.value) for r in records], BROKERS, names.topic)
    service = ingest(SMARTGRID_ASSIGNMENT="group", PROCESSOR_WORKER_COUNT="2")
    service.wait_committed(len(records), timeout=180)
    assert influx_count(names.database) == len(records)
    assert committed_offsets(names.group, names.topic, 32) == end_offsets(names.topic, 32)
    assert service.terminate() == 0


def test_aggregations_off_publishes_no_summaries(names, ingest):
    import redis

    from ingest_harness import REDIS

    records = dataset(5_000, meters=500)
    produce([(r.key, r.value) for r in records], BROKERS, names.topic)
    service = ingest(PROCESSOR_ENABLE_AGGREGATIONS="false")
    service.wait_committed(len(records))
    assert influx_count(names.database) == len(records)
    client = redis.Redis.from_url(REDIS)
    assert client.exists(f"{names.prefix}:summaries") == 0
    assert service.totals()["summaries"] == 0
    on = ingest(PROCESSOR_ENABLE_AGGREGATIONS="true", KAFKA_GROUP_ID=names.group + "-on")
    on.wait_committed(len(records))
    assert client.xlen(f"{names.prefix}:summaries") == on.totals()["summaries"] > 0
