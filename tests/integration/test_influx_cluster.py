"""The product on a real InfluxDB Cluster (1.8.11-c1.2.0: one meta node, two data nodes).

The cluster is started by ``scripts/stack --influxdb cluster`` in a state dir and on ports of its
own (Kafka and Redis are the suite's stack). The services get both data nodes in
``INFLUXDB_URL`` and replication 2. Every test compares with a ground truth computed from the
records, and reads each data node's own copy (``node_id``) of the raw points:

- the whole pipeline is exact, and each node holds every point;
- a data node killed with SIGKILL mid-stream: writes go on through the other node, the writer's
  /readyz says degraded, nothing is lost or doubled, and after its restart hinted handoff gives it
  every point it missed;
- the meta node down for 20 s while the stream needs new shard groups: ingest and writer hold
  back (not ready, offsets not committed), and catch up by themselves when it is back;
- the cluster's 500 answers: points it refuses (``partial write: ... dropped=N``) are dead-lettered
  with its reason and the rest written; a write stored below ``all`` (a node down) is retried a
  bounded number of times, then accepted and counted.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import test_writer_influx
from simulator import produce

from ingest_harness import BROKERS, REPO, free_base_port, wait_until
from test_pipeline_e2e import FullPipeline, all_committed, dataset, event_ms, invalid_of, now_ms, truth_from_topic

pytestmark = pytest.mark.integration

STACK = REPO / "scripts" / "stack"
CACHE = Path(os.environ.get("SMARTGRID_CACHE_DIR") or Path.home() / ".cache" / "smartgrid")


class InfluxCluster:
    """An InfluxDB Cluster run by scripts/stack in its own state dir and ports."""

    def __init__(self, state: Path, port: int) -> None:
        self.env = {
            key: value for key, value in os.environ.items()
            if not key.startswith(("SMARTGRID_INFLUXDB", "INFLUXDB_"))
        } | {"SMARTGRID_STATE_DIR": str(state), "SMARTGRID_INFLUXDB": "cluster", "SMARTGRID_INFLUXDB_PORT": str(port)}
        self.state = state
        self.urls = [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 10}"]
        self.url = ",".join(self.urls)

    def stack(self, *args: str) -> str:
        proc = subprocess.run([str(STACK), *args], env=self.env, cwd=REPO, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"scripts/stack {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def node_ids(self) -> dict[str, int]:
        """Data node id by HTTP URL (ids come from the meta node: 2 and 3 in a new cluster)."""
        ids = {}
        for index, url in enumerate(self.urls):
            tcp_port = int(url.rsplit(":", 1)[1]) + 2
            shown = subprocess.run(
                [str(CACHE / "influxdb-cluster-1.8.11-c1.2.0" / "bin" / "influxd-ctl"),
                 "-bind", f"127.0.0.1:{int(self.urls[0].rsplit(':', 1)[1]) + 5}", "show"],
                capture_output=True, text=True, timeout=30,
            ).stdout
            for line in shown.splitlines():
                parts = line.split()
                if len(parts) >= 2 and parts[0].isdigit() and parts[1] == f"127.0.0.1:{tcp_port}":
                    ids[url] = int(parts[0])
            assert url in ids, f"data node {index + 1} not in `influxd-ctl show`:\n{shown}"
        return ids

    def query(self, database: str, statement: str, node_id: int | None = None) -> list[dict]:
        params = {"db": database, "q": statement, "epoch": "ms"}
        if node_id is not None:
            params["node_id"] = str(node_id)
        response = httpx.get(f"{self.urls[0]}/query", params=params, timeout=30)
        result = response.json()["results"][0]
        if "error" in result and any(m in result["error"] for m in ("not found", "shard")):
            return []
        assert "error" not in result, result
        return result.get("series", [])

    def raw_count(self, database: str, node_id: int | None = None) -> int:
        series = self.query(database, "SELECT count(consumption_kwh) FROM raw_data.energy_consumption", node_id)
        return series[0]["values"][0][1] if series else 0

    def aggregate_count(self, database: str, node_id: int | None = None) -> int:
        series = self.query(database, "SELECT count(reading_count) FROM aggregated_data.energy_consumption_aggregate", node_id)
        return series[0]["values"][0][1] if series else 0


def _cluster_port() -> int:
    """A base port P whose cluster ports (P, P+2, P+3, P+5, P+10, P+12) are all free."""
    return free_base_port((0, 2, 3, 5, 10, 12), 20000, 30000)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Iterator[InfluxCluster]:
    built = InfluxCluster(tmp_path_factory.mktemp("influxdb-cluster"), _cluster_port())
    try:
        built.stack("start-server", "influxdb")  # builds it once (cached), starts and joins it
        yield built
    finally:
        subprocess.run([str(STACK), "stop-server", "influxdb"], env=built.env, cwd=REPO, capture_output=True, timeout=120)


@pytest.fixture
def pipeline(names, ingest, tmp_path, request, cluster, monkeypatch):
    """The whole pipeline (test_pipeline_e2e's) writing to both data nodes with replication 2."""
    monkeypatch.setattr(test_writer_influx, "INFLUX", cluster.urls[0])  # its aggregate queries
    built = FullPipeline(names, ingest, tmp_path / "services")
    on_cluster = {"INFLUXDB_URL": cluster.url, "SMARTGRID_INFLUXDB_REPLICATION": "2"}
    built.common.update(on_cluster)
    built.ingest_env.update(on_cluster)
    yield built
    built.stop()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        built.dump_logs()
        for log in sorted((cluster.state / "logs").glob("influxdb-*.log")):
            print(f"---- {log.name}\n{log.read_text()[-3000:]}")


def distinct_points(records) -> int:
    """Raw points the valid records make (a point with the series and time of another overwrites it)."""
    keys = set()
    for record in records:
        if record.label != "valid":
            continue
        data = json.loads(record.value)
        keys.add((data["meter_id"], data["region"], data["status"], data.get("building_type") or "", event_ms(data["timestamp"])))
    return len(keys)


def writer_readyz(pipeline) -> tuple[int, str]:
    try:
        response = httpx.get(f"http://127.0.0.1:{pipeline.writer_port}/readyz", timeout=2)
        return response.status_code, response.json().get("reason", "")
    except httpx.HTTPError as error:
        return 0, str(error)


def each_node_holds(cluster: InfluxCluster, database: str, points: int, aggregates: int) -> bool:
    return all(
        cluster.raw_count(database, node) == points and cluster.aggregate_count(database, node) == aggregates
        for node in cluster.node_ids().values()
    )


def producing(records, topic: str, chunk: int = 2_000, pause: float = 0.5) -> tuple[threading.Thread, list]:
    """Produce ``records`` in chunks from a thread (a stream, not one burst)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for start in range(0, len(records), chunk):
                produce([(r.key, r.value) for r in records[start : start + chunk]], BROKERS, topic)
                time.sleep(pause)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


# ---- 1. the whole pipeline, replication 2 --------------------------------------------------------


def test_whole_pipeline_on_a_cluster_with_replication_2_is_exact_and_each_node_holds_every_point(names, pipeline, cluster):
    records = dataset(40_000, meters=4_000, start_ms=now_ms() - 1_800_000, seed=31)
    produce([(r.key, r.value) for r in records], BROKERS, names.topic)
    truth = truth_from_topic(names.topic, len(records), invalid_of(records))

    pipeline.start_aggregator()
    pipeline.start_writer()
    service = pipeline.start_ingest()
    service.wait_committed(len(records), timeout=180)
    pipeline.wait_exact(truth, timeout=180)
    assert service.totals()["dead_lettered"] == len(records) - truth["readings"]

    policies = cluster.query(names.database, f'SHOW RETENTION POLICIES ON "{names.database}"')[0]["values"]
    assert {row[0]: row[3] for row in policies}.items() >= {"raw_data": 2, "aggregated_data": 2}.items()
    points = distinct_points(records)
    wait_until(lambda: each_node_holds(cluster, names.database, points, len(truth["seconds"])), 60,
               f"each data node to hold {points} raw points and {len(truth['seconds'])} aggregates")
    # The writer's writes go to the nodes in turn (its per-node counters): with two or more
    # writes, both nodes took some.
    metrics = httpx.get(f"http://127.0.0.1:{pipeline.writer_port}/metrics", timeout=5).text
    writes = [
        float(next(m for m in metrics.splitlines() if m.startswith(f'smartgrid_influxdb_node_writes_total{{node="{url}"}}')).split()[-1])
        for url in cluster.urls
    ]
    assert sum(writes) >= 1 and (sum(writes) < 2 or min(writes) >= 1), writes


# ---- 2. kill -9 of a data node mid-stream ----------------------------------------------------------


def test_a_data_node_killed_mid_stream_loses_and_doubles_nothing_and_catches_up_after_restart(names, pipeline, cluster):
    records = dataset(60_000, meters=2_000, start_ms=now_ms() - 1_800_000, seed=33)
    pipeline.start_aggregator()
    pipeline.start_writer()
    service = pipeline.start_ingest()
    service.wait_ready()
    thread, errors = producing(records, names.topic)
    wait_until(lambda: service.totals().get("committed", 0) >= 6_000, 60, "the stream to be written")

    cluster.stack("kill-server", "influxdb-data2")
    try:
        killed_at = service.totals()["committed"]
        # Writes go on through the other node: commits keep moving while the node is dead, and
        # the writer stays ready, saying which node is out.
        wait_until(lambda: service.totals()["committed"] >= killed_at + 10_000, 60, "commits while a node is dead")
        # A dead node is out while its retry pause lasts, and tried again after it: the checks
        # below look at one answer given inside a pause (two reads could straddle its end).
        status, reason = answer_saying(lambda: writer_readyz(pipeline), "degraded", "the writer's /readyz to say degraded")
        assert status == 200 and cluster.urls[1] in reason, (status, reason)
        # Ingest too: ready, saying which node is out, and its per-node metrics show it.
        status, reason = answer_saying(lambda: ingest_readyz(service), "degraded", "ingest's /readyz to say degraded")
        assert status == 200 and cluster.urls[1] in reason, (status, reason)
        down = f'smartgrid_influxdb_node_up{{node="{cluster.urls[1]}",worker="0"}} 0.0'
        metrics = answer_saying(lambda: service.get("/metrics").text, down, "the dead node's node_up to be 0")
        assert f'smartgrid_influxdb_node_up{{node="{cluster.urls[0]}",worker="0"}} 1.0' in metrics
        time.sleep(5)
    finally:
        cluster.stack("start-server", "influxdb-data2")
        restarted = time.monotonic()
    thread.join(120)
    assert not errors, errors

    truth = truth_from_topic(names.topic, len(records), invalid_of(records))
    wait_until(lambda: all_committed(names), 180, "ingest to commit every record")
    pipeline.wait_exact(truth, timeout=180)
    points = distinct_points(records)
    # Hinted handoff gives the restarted node what it missed: each node's own copy is complete.
    wait_until(lambda: each_node_holds(cluster, names.database, points, len(truth["seconds"])), 120,
               "both data nodes to hold every point (hinted handoff)")
    print(f"both data nodes hold all {points} points {time.monotonic() - restarted:.1f}s after the restart")
    assert cluster.raw_count(names.database) == points
    wait_until(lambda: writer_readyz(pipeline) == (200, "writing"), 60, "the writer to be ready, not degraded")
    wait_until(lambda: "degraded" not in ingest_readyz(service)[1], 60, "ingest to be ready, not degraded")


def answer_saying(read, text: str, what: str, timeout: float = 30):
    """The first answer of ``read()`` that holds ``text`` (a tuple's last item, or the answer)."""
    answers = []

    def says() -> bool:
        answers.append(read())
        answer = answers[-1]
        return text in (answer[-1] if isinstance(answer, tuple) else answer)

    wait_until(says, timeout, what)
    return answers[-1]


def ingest_readyz(service) -> tuple[int, str]:
    response = service.get("/readyz")
    return (0, "") if response is None else (response.status_code, response.text)


# ---- 3. the meta node down for 20 s ------------------------------------------------------------------


def test_meta_node_down_for_20s_while_new_shard_groups_are_needed_backpressure_then_recovery(names, pipeline, cluster):
    """Data nodes keep writing into shard groups they know without the meta node; a point that
    needs a new shard group waits for it (10 s, then a 500). Here the stream crosses an hour into
    1-hour shard groups while the meta node is down, so ingest and writer must hold back."""
    hour_ms = 3_600_000
    boundary = now_ms() // hour_ms * hour_ms  # the last full hour: its shard group does not exist yet
    records = dataset(60_000, meters=2_000, start_ms=boundary - 8_000, seed=35, late_fraction=0.0)
    # The database and its retention policies with 1-hour shard groups (the services only ALTER
    # the duration and replication of existing policies).
    for statement in (
        f'CREATE DATABASE "{names.database}"',
        f'CREATE RETENTION POLICY "raw_data" ON "{names.database}" DURATION 30d REPLICATION 2 SHARD DURATION 1h DEFAULT',
        f'CREATE RETENTION POLICY "aggregated_data" ON "{names.database}" DURATION 365d REPLICATION 2 SHARD DURATION 1h',
    ):
        httpx.post(f"{cluster.urls[0]}/query", data={"q": statement}, timeout=30).raise_for_status()
    pipeline.start_aggregator()
    pipeline.start_writer()
    # Short request timeouts and few retries before not-ready, so that the test sees it quickly
    # (a write needing a new shard group waits 10 s per data node for the meta node).
    service = pipeline.start_ingest(INFLUXDB_MAX_RETRIES="2", SMARTGRID_INFLUXDB_TIMEOUT="3s", INFLUXDB_RETRY_INTERVAL="500ms")
    service.wait_ready()
    first = records[:4_000]  # before the hour: creates the earlier shard groups
    produce([(r.key, r.value) for r in first], BROKERS, names.topic)
    wait_until(lambda: service.totals().get("committed", 0) >= len(first), 60, "the first records to be written")

    cluster.stack("stop-server", "influxdb-meta")
    stopped = time.monotonic()
    try:
        thread, errors = producing(records[len(first):], names.topic)
        # Backpressure: nothing after the hour can be written, so commits stop short and both
        # services report not-ready; nothing is dropped.
        wait_until(lambda: not service.ready(), 40, "ingest to report not-ready")
        wait_until(lambda: writer_readyz(pipeline)[0] == 503, 40, "the writer to report not-ready")
        assert service.totals()["committed"] < len(records)
        time.sleep(max(0.0, 20 - (time.monotonic() - stopped)))
    finally:
        cluster.stack("start-server", "influxdb-meta")
        back = time.monotonic()
    thread.join(120)
    assert not errors, errors

    truth = truth_from_topic(names.topic, len(records), invalid_of(records))
    wait_until(lambda: all_committed(names), 240, "ingest to commit every record after the meta node is back")
    print(f"meta node down {back - stopped:.0f}s; every record committed {time.monotonic() - back:.1f}s after it was back")
    pipeline.wait_exact(truth, timeout=180)
    points = distinct_points(records)
    wait_until(lambda: each_node_holds(cluster, names.database, points, len(truth["seconds"])), 120,
               "both data nodes to hold every point")
    wait_until(service.ready, 60, "ingest to be ready again")
    wait_until(lambda: writer_readyz(pipeline)[0] == 200, 60, "the writer to be ready again")
    # Its writes that timed out may have been stored later than newer ones: the writer has their
    # seconds emitted again (SMARTGRID_WRITER_REEMIT_AFTER later) and written last: still exact.
    wait_until(lambda: writer_metric(pipeline, "writer_seconds_reemitted_total") > 0, 60,
               "the writer to have the seconds of its unanswered writes emitted again")
    pipeline.wait_exact(truth, timeout=60)


def writer_metric(pipeline, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{pipeline.writer_port}/metrics", timeout=2).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


# ---- 4. the cluster's own answers: 500 partial writes ------------------------------------------------


def test_points_the_cluster_refuses_with_a_500_go_to_the_dlq_with_its_reason_and_the_rest_is_written(names, ingest, cluster):
    """A cluster answers a field type conflict or a point beyond the retention with a 500
    ``partial write: ... dropped=N`` (one node: 400): still a refusal of those points."""
    from smartgrid_common.contracts import DLQ_REASON_HEADER

    from ingest_harness import read_topic

    now = now_ms()
    # latitude is a string in this shard: readings that carry one conflict with it.
    for statement in (
        f'CREATE DATABASE "{names.database}"',
        f'CREATE RETENTION POLICY "raw_data" ON "{names.database}" DURATION 30d REPLICATION 2 DEFAULT',
    ):
        httpx.post(f"{cluster.urls[0]}/query", data={"q": statement}, timeout=30).raise_for_status()
    # On both replicas before ingest writes: with consistency "one" the second copy can still be on
    # its way, and a conflicting point is then taken by that node, stored below RF 2 (seen in CI).
    httpx.post(f"{cluster.urls[1]}/write", params={"db": names.database, "precision": "ms", "consistency": "all"},
               content=f'energy_consumption,meter_id=pre latitude="north" {now}\n'.encode(), timeout=30).raise_for_status()

    def reading(meter: str, ms: int, **extra) -> tuple[bytes, bytes]:
        return meter.encode(), json.dumps({"meter_id": meter, "timestamp": ms, "consumption_kwh": 1.5,
                                           "region": "r", "status": "ok", **extra}).encode()

    fresh = [reading(f"m{i}", now - i * 1000) for i in range(40)]
    conflicting = [reading(f"geo{i}", now - i * 1000, latitude=52.5) for i in range(3)]
    ancient = [reading(f"old{i}", now - 90 * 86_400_000) for i in range(2)]  # beyond the 30 days
    produce(fresh[:20] + conflicting + ancient + fresh[20:], BROKERS, names.topic)
    service = ingest(INFLUXDB_URL=cluster.url, SMARTGRID_INFLUXDB_REPLICATION="2")
    service.wait_committed(len(fresh) + len(conflicting) + len(ancient), timeout=120)
    assert cluster.raw_count(names.database) == len(fresh)
    refused = conflicting + ancient
    dead = read_topic(names.dlq, len(refused))
    assert sorted(m.value() for m in dead) == sorted(v for _, v in refused)
    reasons = {m.key().decode(): dict(m.headers())[DLQ_REASON_HEADER].decode() for m in dead}
    assert all(reason.startswith("rejected by InfluxDB") for reason in reasons.values()), reasons
    assert all("field type conflict" in reasons[f"geo{i}"] for i in range(3)), reasons
    assert all("retention" in reasons[f"old{i}"] for i in range(2)), reasons
    assert service.totals()["influx_rejected"] == len(refused)


@pytest.mark.parametrize("consistency", ["one", "all"])
def test_a_write_stored_below_the_consistency_asked_is_retried_a_bounded_number_of_times_then_accepted(cluster, consistency):
    """A data node down: ``one`` is met by the live node (204); ``all`` gets a bare 500 ``partial
    write`` (stored on the live node, queued for the other): retried INFLUXDB_MAX_RETRIES times,
    then accepted and counted. Hinted handoff completes the copy when the node is back."""
    from smartgrid_common.influx import InfluxClient
    from smartgrid_common.settings import InfluxSettings

    database = f"test_consistency_{consistency}_{random.randrange(1 << 30)}"
    client = InfluxClient(InfluxSettings(
        INFLUXDB_URL=cluster.url, INFLUXDB_DATABASE=database, SMARTGRID_INFLUXDB_REPLICATION="2",
        SMARTGRID_INFLUXDB_CONSISTENCY=consistency, INFLUXDB_MAX_RETRIES="2", INFLUXDB_RETRY_INTERVAL="100ms",
    ))
    now = now_ms()
    body = "".join(f"energy_consumption,meter_id=m{i} consumption_kwh=1.5 {now - i}\n" for i in range(100)).encode()
    retries: list[int] = []
    try:
        client.ensure_schema()
        assert client.write(body.split(b"\n", 1)[0] + b"\n", "raw_data") == []  # the shard group exists before the node goes
        # ... on both nodes: a node killed within moments of creating a shard was seen (once in CI)
        # to refuse that shard's hinted handoff for over 60 s after its restart; this test is about
        # the client, so the node goes down in a steady state.
        dead = cluster.node_ids()[cluster.urls[1]]
        wait_until(lambda: cluster.raw_count(database, dead) == 1, 30, "the other node to hold the first point")
        cluster.stack("kill-server", "influxdb-data2")
        try:
            rejected = client.write_until_done(body, "raw_data", threading.Event(),
                                               on_retry=lambda attempt, _: retries.append(attempt))
            assert rejected == []
            if consistency == "one":
                assert retries == [] and client.under_replicated == 0
            else:
                assert retries == [1, 2] and client.under_replicated == 1
            live = cluster.node_ids()[cluster.urls[0]]
            assert cluster.raw_count(database, live) == 100
        finally:
            cluster.stack("start-server", "influxdb-data2")
        wait_until(lambda: cluster.raw_count(database, dead) == 100, 60, "hinted handoff to the restarted node")
    finally:
        client.close()
        httpx.post(f"{cluster.urls[0]}/query", data={"q": f'DROP DATABASE "{database}"'}, timeout=30)


def test_once_the_schema_is_made_every_data_node_knows_it(cluster):
    """Requests go to the data nodes in turn and a node learns a new database from the meta node a
    moment later: ``ensure_schema`` returns only when each node answers for the database and both
    policies (a CI run once met ``database not found`` from the second node right after CREATE)."""
    from smartgrid_common.influx import InfluxClient
    from smartgrid_common.settings import InfluxSettings

    for _ in range(5):
        database = f"test_schema_{random.randrange(1 << 30)}"
        client = InfluxClient(InfluxSettings(INFLUXDB_URL=cluster.url, INFLUXDB_DATABASE=database,
                                             SMARTGRID_INFLUXDB_REPLICATION="2"))
        try:
            client.ensure_schema()
            for url in cluster.urls:
                answer = httpx.get(f"{url}/query", params={"q": f'SHOW RETENTION POLICIES ON "{database}"'}, timeout=30)
                result = answer.json()["results"][0]
                assert "error" not in result, (url, result)
                names = {row[0] for row in result["series"][0]["values"]}
                assert {"raw_data", "aggregated_data"} <= names, (url, names)
                body = f"energy_consumption,meter_id=m1 consumption_kwh=1.5 {now_ms()}\n".encode()
                assert client.write(body, "raw_data") == []  # the next node in turn takes it
        finally:
            client.close()
            httpx.post(f"{cluster.urls[0]}/query", data={"q": f'DROP DATABASE "{database}"'}, timeout=30)
