"""The whole pipeline against the real stack: Kafka -> ingest -> InfluxDB raw + summaries -> aggregator
-> Redis live state + rollups -> writer -> InfluxDB ``aggregated_data``.

Every test produces known records, computes the expected aggregates from those records here
(independently of every service), and waits until InfluxDB's aggregated measurements and the
dashboard API equal them: counts exact, sums within 1e-9 relative. Faults (kill -9 of each service,
duplicate summaries, InfluxDB down) must not change the outcome.

Isolation: the ``names`` fixture gives each test its own 32-partition topic, InfluxDB database,
Redis prefix and consumer group, shared by ingest, aggregator and writer.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aggregator.testing import Reading, free_port, ground_truth, start_service
from confluent_kafka import Producer
from redis import Redis
from simulator import generate_labelled, produce
from smartgrid_common.contracts import rollup_stream, summary_stream

from ingest_harness import BROKERS, committed_offsets, end_offsets, read_topic, stack_command, wait_until
from test_writer_influx import Pipeline, explain, influx_state, matches_truth

pytestmark = pytest.mark.integration

OFFLINE_AFTER_S = 5


# ---- ground truth, computed from the records in Kafka ------------------------------------------


def event_ms(stamp: Any) -> int:
    if isinstance(stamp, str):
        return round(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)
    return int(stamp)


def truth_from_topic(
    topic: str, expected: int, invalid: frozenset[bytes] = frozenset(), offline_after_s: float = OFFLINE_AFTER_S
) -> dict[str, Any]:
    """Read the topic back (so each record's partition is known) and compute what the pipeline must show.

    Aggregates: ``aggregator.testing.ground_truth`` over the valid readings. Statuses: a meter is
    ``offline`` when its partition's event-time watermark (newest valid reading of the partition)
    is more than ``offline_after_s`` past its newest reading, else the status it last reported.
    ``invalid`` (the values the simulator labelled malformed: what ingest dead-letters) are left out.
    """
    messages = read_topic(topic, expected)
    assert len(messages) == expected, f"read {len(messages)} of {expected} records back from {topic}"
    messages.sort(key=lambda m: (m.partition(), m.offset()))
    readings: list[Reading] = []
    watermark: dict[int, int] = defaultdict(int)
    last: dict[str, tuple[int, int, str, str]] = {}  # meter -> (partition, newest ms, status, region)
    for message in messages:
        if message.value() in invalid:
            continue
        data = json.loads(message.value())
        ms = event_ms(data["timestamp"])
        kwh = float(data["consumption_kwh"])
        meter, region, status = data["meter_id"], data["region"], data["status"]
        readings.append(Reading(meter, region, ms // 1000, kwh, status, data.get("latitude") or 0.0, data.get("longitude") or 0.0))
        partition = message.partition()
        watermark[partition] = max(watermark[partition], ms)
        newest = max(ms, last[meter][1]) if meter in last else ms
        last[meter] = (partition, newest, status, region)
    truth = ground_truth(readings)
    effective = {
        meter: "offline" if watermark[partition] - newest > offline_after_s * 1000 else status
        for meter, (partition, newest, status, _) in last.items()
    }
    counts: dict[str, int] = defaultdict(int)
    for status in effective.values():
        counts[status] += 1
    truth["status"] = dict(counts)
    truth["alerts"] = {meter: status for meter, status in effective.items() if status != "ok"}
    truth["readings"] = len(readings)
    return truth


def dataset(count: int, meters: int, start_ms: int, seed: int, **extra: Any):
    options = {"faulty_fraction": 0.02, "malformed_fraction": 0.01, "late_fraction": 0.01, "late_max_s": 3.0}
    return generate_labelled(count, meters=meters, seed=seed, start_ms=start_ms, step_ms=1000, **{**options, **extra})


def invalid_of(records) -> frozenset[bytes]:
    return frozenset(r.value for r in records if r.label != "valid")


def now_ms() -> int:
    return int(time.time() * 1000)


# ---- the services ------------------------------------------------------------------------------


class FullPipeline(Pipeline):
    """Aggregator (with a known API port) and writer as processes, plus ingest from the fixture."""

    def __init__(self, names, ingest_factory, logs: Path) -> None:
        logs.mkdir(exist_ok=True)
        super().__init__(names.prefix, names.database, logs)
        self.names = names
        self.ingest_factory = ingest_factory
        self.api_port = free_port()
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.aggregator: subprocess.Popen | None = None
        self.writer: subprocess.Popen | None = None
        self.ingest_env = {
            "SMARTGRID_OFFLINE_AFTER": f"{OFFLINE_AFTER_S}s",
            "SMARTGRID_CHECKPOINT_INTERVAL": "2s",
            "PROCESSOR_ENABLE_AGGREGATIONS": "true",
        }
        self.starts = 0

    def start_ingest(self, **extra: str):
        return self.ingest_factory(**{**self.ingest_env, **extra})

    def start_aggregator(self, **extra: str) -> subprocess.Popen:
        self.starts += 1
        env = {**self.common, "SMARTGRID_HTTP_PORT": str(self.api_port), "SMARTGRID_AGGREGATOR_CONSUMER": "agg-0", **extra}
        self.aggregator = start_service("aggregator", env, str(self.logs / f"aggregator-{self.starts}.log"))
        self.procs.append(self.aggregator)
        wait_until(self.api_ready, 30, "the aggregator API")
        return self.aggregator

    def start_writer(self, consumer: str = "w1", **extra: str) -> subprocess.Popen:
        self.writer = super().start_writer(consumer, **extra)
        return self.writer

    def api_ready(self) -> bool:
        try:
            return httpx.get(f"{self.api}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)

    # ---- what the API shows ----

    def api_status_counts(self) -> dict[str, int]:
        counts = httpx.get(f"{self.api}/api/status", timeout=5).json()["counts"]
        return {k: v for k, v in counts.items() if v}

    def api_alerts(self) -> dict[str, str]:
        out, page = {}, 1
        while True:
            body = httpx.get(f"{self.api}/api/meters", params={"page": page, "page_size": 500}, timeout=5).json()
            out.update({item["meter_id"]: item["status"] for item in body["items"]})
            if page >= body["pages"]:
                return out
            page += 1

    def api_live(self, seconds: int = 3600) -> dict[int, tuple[float, int]]:
        body = httpx.get(f"{self.api}/api/live", params={"seconds": seconds}, timeout=5).json()
        return {p["second"]: (p["total_kwh"], p["reading_count"]) for p in body["points"] if p["reading_count"]}

    def api_matches(self, truth: dict[str, Any]) -> bool:
        try:
            if self.api_status_counts() != truth["status"] or self.api_alerts() != truth["alerts"]:
                return False
            live = self.api_live()
        except httpx.HTTPError:
            return False
        wanted = {s: v for s, v in truth["seconds"].items() if s in live or s >= max(truth["seconds"]) - 3599}
        return set(live) == set(wanted) and all(
            live[s][1] == wanted[s][1] and abs(live[s][0] - wanted[s][0]) <= 1e-9 * max(1.0, wanted[s][0]) for s in wanted
        )

    def explain_api(self, truth: dict[str, Any]) -> str:
        try:
            counts, alerts = self.api_status_counts(), self.api_alerts()
        except httpx.HTTPError as error:
            return f"API unreachable: {error}"
        wrong = {m: (alerts.get(m), s) for m, s in truth["alerts"].items() if alerts.get(m) != s}
        extra = {m: s for m, s in alerts.items() if m not in truth["alerts"]}
        live = self.api_live()
        bad = [(s, live.get(s), truth["seconds"][s][:2]) for s in sorted(truth["seconds"]) if live.get(s, (0, 0))[1] != truth["seconds"][s][1]]
        return (
            f"API status {counts} vs truth {truth['status']}; alerts wrong {len(wrong)} (e.g. {list(wrong.items())[:5]}), "
            f"extra {len(extra)} (e.g. {list(extra.items())[:5]}); live seconds wrong {bad[:5]}"
        )

    def wait_exact(self, truth: dict[str, Any], timeout: float = 120) -> None:
        """InfluxDB aggregated_data and the API both equal ``truth``; explains the difference otherwise."""
        try:
            wait_until(lambda: matches_truth(self.database, truth), timeout, "InfluxDB aggregated_data to equal the truth", interval=1)
            wait_until(lambda: self.api_matches(truth), 30, "the dashboard API to equal the truth", interval=0.5)
        except AssertionError as error:
            raise AssertionError(f"{error}\nInfluxDB: {explain(self.database, truth)}\n{self.explain_api(truth)}") from None
        fields = query_fields(self.database)
        assert fields == {"float"}, f"aggregate field types {fields}"

    def aggregator_stats(self, redis: Redis) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in redis.hgetall(f"{self.prefix}:agg:stats").items()}


def query_fields(database: str) -> set[str]:
    from test_writer_influx import query

    types = set()
    for measurement in ("energy_consumption_aggregate", "region_consumption", "meter_status"):
        for series in query(database, f"SHOW FIELD KEYS FROM aggregated_data.{measurement}"):
            types |= {v[1] for v in series["values"]}
    return types


@pytest.fixture
def pipeline(names, ingest, tmp_path, request):
    built = FullPipeline(names, ingest, tmp_path / "services")
    yield built
    built.stop()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        built.dump_logs()


def all_committed(names) -> bool:
    ends = end_offsets(names.topic, 32)
    committed = committed_offsets(names.group, names.topic, 32)
    return all(committed.get(p, -1) >= end for p, end in ends.items() if end > 0)


# ---- 1. a known dataset -----------------------------------------------------------------------


def test_known_dataset_through_the_whole_pipeline_is_exact(names, pipeline, redis):
    records = dataset(60_000, meters=5_000, start_ms=now_ms() - 1_800_000, seed=21, silent_fraction=0.03, silent_after_s=3)
    assert any(r.label != "valid" for r in records) and any(b'"fault"' in r.value for r in records)
    produce([(r.key, r.value) for r in records], BROKERS, names.topic)
    truth = truth_from_topic(names.topic, len(records), invalid_of(records))
    assert truth["status"].get("offline", 0) > 50 and truth["status"].get("fault", 0) > 50, truth["status"]

    pipeline.start_aggregator()
    pipeline.start_writer()
    service = pipeline.start_ingest()
    service.wait_committed(len(records))
    pipeline.wait_exact(truth)
    totals = service.totals()
    assert totals["dead_lettered"] == len(records) - truth["readings"]
    stats = pipeline.aggregator_stats(redis)
    assert stats.get("overlaps", 0) == 0 and stats.get("too_late_seconds", 0) == 0, stats


def test_group_mode_rebalance_mid_stream_is_exact(names, pipeline, redis):
    """Two replicas subscribing as a group: the second joins mid-stream, the group rebalances, and
    each moved partition's summaries (and meter state) continue from where the first left them."""
    records = dataset(40_000, meters=4_000, start_ms=now_ms() - 1_800_000, seed=24, silent_fraction=0.03, silent_after_s=3)
    pipeline.start_aggregator()
    pipeline.start_writer()
    settings = {"SMARTGRID_ASSIGNMENT": "group", "KAFKA_BATCH_SIZE": "1000", "INFLUXDB_BATCH_SIZE": "1000"}
    first = pipeline.start_ingest(**settings)
    first.wait_ready()
    chunks = [records[i : i + 2_000] for i in range(0, len(records), 2_000)]
    produce([(r.key, r.value) for r in chunks[0]], BROKERS, names.topic)
    first.wait_committed(1_000)
    second = pipeline.start_ingest(**settings)  # joins: the group rebalances while records flow

    def second_holds_partitions() -> bool:
        response = second.get("/stats")
        return response is not None and any(w.get("lag") for w in response.json()["workers"].values())

    # Records flow while it joins (however long a loaded machine makes that), and a quarter of them
    # only once it holds partitions: the rebalance is always mid-stream.
    rest = chunks[1:]
    while len(rest) > len(chunks) // 4 and not second_holds_partitions():
        produce([(r.key, r.value) for r in rest.pop(0)], BROKERS, names.topic)
        time.sleep(0.5)
    wait_until(second_holds_partitions, 90, "the second replica to be given partitions")
    for chunk in rest:
        produce([(r.key, r.value) for r in chunk], BROKERS, names.topic)
        time.sleep(0.5)
    truth = truth_from_topic(names.topic, len(records), invalid_of(records))
    assert truth["status"].get("offline", 0) > 20, truth["status"]
    wait_until(lambda: all_committed(names), 120, "the two replicas to commit every record")
    assert second.totals().get("consumed", 0) > 0, "the second replica never got a partition"
    pipeline.wait_exact(truth)
    stats = pipeline.aggregator_stats(redis)
    assert stats.get("overlaps", 0) == 0, stats


def test_two_replicas_publishing_the_same_partitions_never_fork_the_chain(names, pipeline, redis):
    """Two live paths on the same partitions (a replica the group dropped while it still ran, or
    two replicas given the same static partitions): every publish is a compare-and-set on the
    partition's published offset, so the loser re-resumes from Redis and the live view stays exact."""
    records = dataset(30_000, meters=3_000, start_ms=now_ms() - 1_800_000, seed=31, silent_fraction=0.03, silent_after_s=3)
    pipeline.start_aggregator()
    pipeline.start_writer()
    settings = {"SMARTGRID_PARTITIONS": "0-31", "KAFKA_BATCH_SIZE": "1000", "INFLUXDB_BATCH_SIZE": "1000"}
    replicas = [pipeline.start_ingest(**settings), pipeline.start_ingest(**settings)]
    for replica in replicas:
        replica.wait_ready()
    for start in range(0, len(records), 3_000):
        produce([(r.key, r.value) for r in records[start : start + 3_000]], BROKERS, names.topic)
        time.sleep(0.3)
    truth = truth_from_topic(names.topic, len(records), invalid_of(records))
    wait_until(lambda: all_committed(names), 120, "every record committed")
    pipeline.wait_exact(truth)
    stats = pipeline.aggregator_stats(redis)
    assert stats.get("overlaps", 0) == 0, stats
    # Both published a chain start for the partitions; the second to do so was refused.
    assert sum(replica.totals().get("fenced", 0) for replica in replicas) > 0


# ---- 2. the same with faults ------------------------------------------------------------------


def summaries_drained(redis: Redis, prefix: str) -> bool:
    stream = summary_stream(prefix)
    groups = {g["name"].decode(): g for g in redis.xinfo_groups(stream)}
    if "aggregator" not in groups or groups["aggregator"]["pending"]:
        return False
    return groups["aggregator"]["last-delivered-id"] == redis.xinfo_stream(stream)["last-generated-id"]


def inject_duplicates(redis: Redis, prefix: str, every: int = 5) -> int:
    """XADD copies of existing summary entries (every ``every``-th one); returns how many."""
    entries = redis.xrange(summary_stream(prefix))
    copies = entries[::every]
    pipe = redis.pipeline()
    for _, fields in copies:
        pipe.xadd(summary_stream(prefix), fields)
    pipe.execute()
    return len(copies)


def test_kill_9_of_every_service_and_duplicate_summaries_are_still_exact(names, pipeline, redis):
    records = dataset(150_000, meters=5_000, start_ms=now_ms() - 1_800_000, seed=22, silent_fraction=0.03, silent_after_s=10)
    produce([(r.key, r.value) for r in records], BROKERS, names.topic)
    truth = truth_from_topic(names.topic, len(records), invalid_of(records))

    # Ingest alone first: summaries pile up in the stream; kill -9 it mid-stream.
    # A publish per consumed batch: many small chained summaries for the aggregator to be killed in.
    first = pipeline.start_ingest(KAFKA_BATCH_SIZE="2000", INFLUXDB_BATCH_SIZE="2000", SMARTGRID_SUMMARY_INTERVAL="10ms")
    first.wait_committed(30_000)
    first.kill9()
    assert not all_committed(names), "the ingest kill came too late to be mid-stream"
    dup_before = inject_duplicates(redis, names.prefix, every=7)

    # The aggregator folds slowly (one summary per read: no merged folds); kill -9 it while
    # summaries are in flight, as soon as its first folds landed.
    pipeline.start_aggregator(SMARTGRID_AGGREGATOR_BATCH="1", SMARTGRID_AGGREGATOR_FOLD_GROUP="1")
    # The first writer holds every batch 3 s between InfluxDB's ack and its XACK.
    pipeline.start_writer("w1", SMARTGRID_WRITER_ACK_DELAY="3s")
    second = pipeline.start_ingest(KAFKA_BATCH_SIZE="2000", INFLUXDB_BATCH_SIZE="2000")
    wait_until(lambda: pipeline.aggregator_stats(redis).get("applied", 0) >= 3, 60, "the aggregator to fold something",
               interval=0.005)
    assert not summaries_drained(redis, names.prefix), "the aggregator kill came too late to be mid-fold"
    pipeline.aggregator.send_signal(signal.SIGKILL)
    pipeline.aggregator.wait()
    applied_at_kill = pipeline.aggregator_stats(redis).get("applied", 0)
    time.sleep(1)
    pipeline.start_aggregator()

    wait_until(lambda: redis.exists(rollup_stream(names.prefix)) and redis.xpending(rollup_stream(names.prefix), "writer")["pending"] > 0,
               60, "the writer to hold an unacknowledged rollup")
    pipeline.writer.send_signal(signal.SIGKILL)
    pipeline.writer.wait()
    pipeline.start_writer("w2")  # a new consumer name: w1's entries come back only through XAUTOCLAIM
    wait_until(lambda: second.totals().get("consumed", 0) > 0 and all(v == 0 for v in second.get("/stats").json()["workers"]["0"]["in_flight"].values())
               and matches_truth(names.database, truth), 180, "ingest to have processed everything")

    dup_after = inject_duplicates(redis, names.prefix, every=3)
    pipeline.wait_exact(truth, timeout=180)
    wait_until(lambda: summaries_drained(redis, names.prefix), 30, "every summary acknowledged")
    stats = pipeline.aggregator_stats(redis)
    print(f"aggregator stats {stats}; applied at kill {applied_at_kill}; duplicates injected {dup_before}+{dup_after}")
    assert stats["duplicates"] >= dup_before + dup_after
    assert stats.get("overlaps", 0) == 0, stats
    wait_until(lambda: redis.xpending(rollup_stream(names.prefix), "writer")["pending"] == 0, 30, "every rollup acknowledged")
    # Last: every record's offset committed in Kafka (the group's lag is what operators see).
    try:
        wait_until(lambda: all_committed(names), 30, "ingest to commit every record")
    except AssertionError:
        ends, committed = end_offsets(names.topic, 32), committed_offsets(names.group, names.topic, 32)
        behind = {p: (committed.get(p), end) for p, end in ends.items() if committed.get(p, -1) < end}
        print(f"partitions behind (committed, end): {behind}; ingest /stats: {second.get('/stats').json() if second.get('/stats') else None}")
        published = {k.decode(): v.decode() for k, v in redis.hgetall(f"{names.prefix}:agg:wm").items()}
        print(f"aggregator watermarks: {published}")
        raise


# ---- 3. late readings -------------------------------------------------------------------------


def reading(meter: str, ms: int, kwh: float, status: str = "ok", region: str = "north") -> bytes:
    return json.dumps({"meter_id": meter, "timestamp": ms, "consumption_kwh": kwh, "region": region, "status": status}).encode()


def test_a_late_reading_corrects_its_bucket(names, pipeline, redis):
    start = (now_ms() // 1000 - 120) * 1000
    records = dataset(2_000, meters=400, start_ms=start, seed=23, late_fraction=0.0, malformed_fraction=0.0)
    produce([(r.key, r.value) for r in records], BROKERS, names.topic)
    pipeline.start_aggregator()
    pipeline.start_writer()
    service = pipeline.start_ingest()
    service.wait_committed(len(records))
    truth = truth_from_topic(names.topic, len(records))
    pipeline.wait_exact(truth)
    old_second = start // 1000 + 1
    before = influx_state(names.database)["seconds"][old_second]

    # Late: an existing meter again (500 ms into the second: a different raw point) and a new meter.
    existing = json.loads(records[0].value)
    late = [
        (existing["meter_id"].encode(), reading(existing["meter_id"], old_second * 1000 + 500, 1234.5, region=existing["region"])),
        (b"late-newcomer", reading("late-newcomer", old_second * 1000 + 250, 777.25, region=existing["region"])),
    ]
    produce(late, BROKERS, names.topic)
    service.wait_committed(len(records) + len(late))
    truth = truth_from_topic(names.topic, len(records) + len(late))
    assert truth["seconds"][old_second][1] == before[1] + 2
    pipeline.wait_exact(truth)
    after = influx_state(names.database)["seconds"][old_second]
    assert after[1] == before[1] + 2 and after[3] == 1234.5, (before, after)
    assert pipeline.api_live()[old_second][1] == before[1] + 2


# ---- 4. silence -> offline -> back ------------------------------------------------------------


def produce_to(topic: str, partition: int, records: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": BROKERS})
    for key, value in records:
        producer.produce(topic, key=key, value=value, partition=partition)
    assert producer.flush(30) == 0


def test_silence_marks_a_meter_offline_and_its_next_reading_clears_it(names, pipeline, redis):
    base = (now_ms() // 1000 - 300) * 1000
    others = [f"loud-{i}" for i in range(5)]
    # Everyone reports for 3 s, then "quiet" falls silent while the others go on for 8 s more
    # (event time), all on one partition: its watermark passes quiet's last reading + 5 s.
    phase1 = [(m.encode(), reading(m, base + t * 1000, 1.0 + t)) for t in range(3) for m in ["quiet", *others]]
    phase1 += [(m.encode(), reading(m, base + t * 1000, 1.0 + t)) for t in range(3, 11) for m in others]
    produce_to(names.topic, 5, phase1)
    pipeline.start_aggregator()
    pipeline.start_writer()
    service = pipeline.start_ingest()
    service.wait_committed(len(phase1))
    truth = truth_from_topic(names.topic, len(phase1))
    assert truth["alerts"] == {"quiet": "offline"} and truth["status"] == {"ok": 5, "offline": 1}
    pipeline.wait_exact(truth)
    items = httpx.get(f"{pipeline.api}/api/meters", params={"status": "offline"}).json()["items"]
    assert [(i["meter_id"], i["last_reading_ms"]) for i in items] == [("quiet", base + 2000)]

    back = [(b"quiet", reading("quiet", base + 11_000, 2.5))]
    produce_to(names.topic, 5, back)
    service.wait_committed(len(phase1) + 1)
    truth = truth_from_topic(names.topic, len(phase1) + 1)
    assert truth["alerts"] == {} and truth["status"] == {"ok": 6}
    pipeline.wait_exact(truth)
    assert httpx.get(f"{pipeline.api}/api/meters").json()["total"] == 0


# ---- 5. InfluxDB down for 20 s ----------------------------------------------------------------


def live_readings(redis, prefix: str) -> int:
    """Readings folded into the live per-second totals so far."""
    total = 0
    for key in redis.scan_iter(f"{prefix}:sec:*", count=1000):
        total += int(redis.hget(key, "count") or 0)
    return total


def test_influxdb_down_for_20s_the_pipeline_catches_up_exactly(names, pipeline, redis):
    records = dataset(60_000, meters=2_000, start_ms=now_ms() - 1_800_000, seed=25)
    pipeline.start_aggregator()
    service = pipeline.start_ingest()
    service.wait_ready()

    chunks = [records[i : i + 2_000] for i in range(0, len(records), 2_000)]
    errors: list[BaseException] = []

    def producer() -> None:  # ~4k readings/s for 15 s: the pipeline is running when InfluxDB goes
        try:
            for chunk in chunks:
                produce([(r.key, r.value) for r in chunk], BROKERS, names.topic)
                time.sleep(0.5)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    def writer_status() -> int:
        try:
            return httpx.get(f"http://127.0.0.1:{pipeline.writer_port}/readyz", timeout=2).status_code
        except httpx.HTTPError:
            return 0

    def writer_backlog() -> bool:
        """Rollups the writer group has not acknowledged (undelivered or pending)."""
        stream = rollup_stream(names.prefix)
        group = next(g for g in redis.xinfo_groups(stream) if g["name"] == b"writer")
        return group["pending"] > 0 or group["last-delivered-id"] != redis.xinfo_stream(stream)["last-generated-id"]

    # A first writer creates the schema and its group and goes away; rollups then pile up while
    # readings flow. A new writer starts while InfluxDB is down: it has a backlog to retry, and
    # ingest meanwhile cannot write raw points either.
    first = pipeline.start_writer("w0")
    wait_until(lambda: any(g["name"] == b"writer" for g in redis.xinfo_groups(rollup_stream(names.prefix)))
               if redis.exists(rollup_stream(names.prefix)) else False, 30, "the writer group")
    first.terminate()
    first.wait(30)
    started = time.monotonic()
    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    wait_until(lambda: redis.xlen(rollup_stream(names.prefix)) >= 5 and writer_backlog(), 60, "rollups waiting for the writer")
    print(f"backlog after {time.monotonic() - started:.1f}s of producing")
    stack_command("stop-server", "influxdb")
    try:
        stopped = time.monotonic()
        pipeline.start_writer("w1")
        wait_until(lambda: writer_status() == 503, 20, "the writer to report not-ready")
        wait_until(lambda: not service.ready(), 20, "ingest to report not-ready")
        assert writer_backlog()
        # The live view does not wait for InfluxDB: every valid reading produced is folded while
        # most of them cannot be committed.
        committed = service.totals()["committed"]
        thread.join(60)
        valid = sum(1 for r in records if r.label == "valid")
        wait_until(lambda: live_readings(redis, names.prefix) >= valid, 20, "every reading in the live view")
        assert live_readings(redis, names.prefix) == valid
        assert service.totals()["committed"] == committed < len(records)
        time.sleep(max(0.0, 20 - (time.monotonic() - stopped)))
    finally:
        stack_command("start-server", "influxdb")
    thread.join(120)
    assert not errors, errors
    truth = truth_from_topic(names.topic, len(records), invalid_of(records))
    wait_until(lambda: all_committed(names), 180, "ingest to commit every record")
    pipeline.wait_exact(truth, timeout=180)
    wait_until(lambda: writer_status() == 200, 30, "the writer to be ready again")
    wait_until(lambda: redis.xpending(rollup_stream(names.prefix), "writer")["pending"] == 0, 30, "every rollup acknowledged")
    # Ready again by itself: a worker turns ready within a second of its last write, and its state
    # reaches /readyz with its next snapshot (one a second).
    wait_until(service.ready, 10, "ingest to report ready again")
