"""Aggregator + writer against the real Redis and InfluxDB: the aggregated measurements equal a
ground truth computed from the readings; the writer killed before its ack, and InfluxDB down for
20 s, lose and double nothing.

Each test has its own Redis prefix and InfluxDB database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
from redis import Redis
from smartgrid_common.contracts import rollup_stream, summary_stream

from aggregator.testing import free_port, ground_truth, make_readings, make_summaries, start_service, wait_until
from ingest_harness import REDIS

pytestmark = pytest.mark.integration

INFLUX = os.environ.get("INFLUXDB_URL", "http://127.0.0.1:8086")
REPO = Path(__file__).resolve().parents[2]
START = int(time.time()) - 300


@pytest.fixture
def names(redis: Redis):
    tag = uuid.uuid4().hex[:8]
    prefix, database = f"test-wr-{tag}", f"test_wr_{tag}"
    yield prefix, database
    for key in redis.scan_iter(f"{prefix}:*", count=1000):
        redis.delete(key)
    try:
        httpx.post(f"{INFLUX}/query", data={"q": f'DROP DATABASE "{database}"'}, timeout=10)
    except httpx.HTTPError:
        pass


class Pipeline:
    """An aggregator and a writer as real processes on one prefix and database."""

    def __init__(self, prefix: str, database: str, logs: Path) -> None:
        self.prefix, self.database, self.logs = prefix, database, logs
        self.common = {
            "SMARTGRID_REDIS_PREFIX": prefix,
            "INFLUXDB_DATABASE": database,
            "SMARTGRID_HTTP_HOST": "127.0.0.1",
            "SMARTGRID_EMIT_INTERVAL": "200ms",
            "SMARTGRID_AGGREGATOR_CLAIM_IDLE": "2s",
            "SMARTGRID_WRITER_CLAIM_IDLE": "2s",
            "INFLUXDB_RETRY_INTERVAL": "200ms",
            "INFLUXDB_MAX_RETRIES": "2",
            "SMARTGRID_INFLUXDB_TIMEOUT": "3s",
        }
        self.procs: list[subprocess.Popen] = []
        self.writer_port = 0

    def start_aggregator(self) -> None:
        env = {**self.common, "SMARTGRID_HTTP_PORT": str(free_port())}
        self.procs.append(start_service("aggregator", env, str(self.logs / "aggregator.log")))

    def start_writer(self, consumer: str, **extra: str) -> subprocess.Popen:
        self.writer_port = free_port()
        env = {**self.common, "SMARTGRID_HTTP_PORT": str(self.writer_port), "SMARTGRID_WRITER_CONSUMER": consumer, **extra}
        proc = start_service("writer", env, str(self.logs / f"writer-{consumer}.log"))
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)

    def dump_logs(self) -> None:
        for log in self.logs.glob("*.log"):
            print(f"--- {log.name}\n" + log.read_text()[-4000:])


def publish(redis: Redis, prefix: str, summaries) -> None:
    pipe = redis.pipeline()
    for summary in summaries:
        pipe.xadd(summary_stream(prefix), {"data": summary.to_json()})
    pipe.execute()


def query(database: str, statement: str) -> list[dict]:
    response = httpx.get(f"{INFLUX}/query", params={"db": database, "q": statement, "epoch": "s"}, timeout=10)
    result = response.json()["results"][0]
    if any(missing in result.get("error", "") for missing in ("database not found", "retention policy not found")):
        return []  # the writer has not created it yet (database first, then its retention policies)
    assert "error" not in result, result
    return result.get("series", [])


def influx_state(database: str) -> dict:
    """The aggregated measurements, shaped like ground_truth()."""
    out: dict = {"seconds": {}, "regions": {}, "status": {}}
    for series in query(database, "SELECT * FROM aggregated_data.energy_consumption_aggregate"):
        cols = series["columns"]
        for row in series["values"]:
            r = dict(zip(cols, row, strict=True))
            out["seconds"][r["time"]] = (r["total_kwh"], r["reading_count"], r["min_kwh"], r["max_kwh"], r["avg_kwh"])
    for series in query(database, "SELECT * FROM aggregated_data.region_consumption GROUP BY region"):
        region = series["tags"]["region"]
        cols = series["columns"]
        for row in series["values"]:
            r = dict(zip(cols, row, strict=True))
            out["regions"][(r["time"], region)] = (r["total_kwh"], r["meter_count"], r["max_consumption"], r["average_kwh"])
    for series in query(database, "SELECT last(count) FROM aggregated_data.meter_status GROUP BY status"):
        count = series["values"][0][1]
        if count:
            out["status"][series["tags"]["status"]] = count
    return out


def matches_truth(database: str, truth: dict) -> bool:
    """True when InfluxDB holds exactly the truth (counts exact, sums within 1e-9 relative)."""
    state = influx_state(database)
    if set(state["seconds"]) != set(truth["seconds"]) or set(state["regions"]) != set(truth["regions"]):
        return False
    for second, (total, count, low, high) in truth["seconds"].items():
        got = state["seconds"][second]
        if abs(got[0] - total) > 1e-9 * max(1, total) or got[1] != count or got[2] != low or got[3] != high:
            return False
        assert isinstance(got[1], float) or got[1] == int(got[1])
    for key, (total, count, high, meters) in truth["regions"].items():
        got = state["regions"][key]
        if abs(got[0] - total) > 1e-9 * max(1, total) or got[1] != meters or got[2] != high:
            return False
        if abs(got[3] - total / meters) > 1e-9 * max(1, got[3]):
            return False
    return state["status"] == truth["status"]


def explain(database: str, truth: dict) -> str:
    state = influx_state(database)
    missing = sorted(set(truth["seconds"]) - set(state["seconds"]))[:5]
    wrong = [(s, state["seconds"].get(s), truth["seconds"][s]) for s in sorted(truth["seconds"])
             if s in state["seconds"] and state["seconds"][s][1] != truth["seconds"][s][1]][:5]
    return f"missing seconds {missing}; wrong {wrong}; status {state['status']} vs {truth['status']}"


def test_aggregates_in_influxdb_equal_the_ground_truth(redis, names, tmp_path):
    prefix, database = names
    readings = make_readings(meters=300, seconds=20, start=START, seed=11)
    truth = ground_truth(readings)
    summaries = make_summaries(readings, partitions=4, batch=100)
    pipeline = Pipeline(prefix, database, tmp_path)
    try:
        pipeline.start_aggregator()
        pipeline.start_writer("w1")
        publish(redis, prefix, summaries[: len(summaries) // 2])
        time.sleep(1)  # a second wave re-emits buckets already written: the rewrite overwrites
        publish(redis, prefix, summaries[len(summaries) // 2 :] + summaries[:5])
        wait_until(lambda: matches_truth(database, truth), 60, what="InfluxDB to match the truth")
        fields = query(database, "SHOW FIELD KEYS FROM aggregated_data.energy_consumption_aggregate")
        assert {v[1] for v in fields[0]["values"]} == {"float"}
    except AssertionError:
        pipeline.dump_logs()
        print(explain(database, truth))
        raise
    finally:
        pipeline.stop()


def test_writer_killed_before_its_ack_loses_and_doubles_nothing(redis, names, tmp_path):
    prefix, database = names
    readings = make_readings(meters=300, seconds=20, start=START, seed=12)
    truth = ground_truth(readings)
    pipeline = Pipeline(prefix, database, tmp_path)
    try:
        pipeline.start_aggregator()
        # The first writer holds every batch 3 s between InfluxDB's ack and its XACK.
        first = pipeline.start_writer("w1", SMARTGRID_WRITER_ACK_DELAY="3s")
        publish(redis, prefix, make_summaries(readings, partitions=4, batch=100))
        wait_until(lambda: query(database, "SELECT count(total_kwh) FROM aggregated_data.energy_consumption_aggregate"),
                   30, what="a first write")
        pending = redis.xpending(rollup_stream(prefix), "writer")["pending"]
        assert pending > 0, "nothing was in flight when the writer was killed"
        first.send_signal(signal.SIGKILL)
        first.wait()
        # A new pod name: its entries can only come back through XAUTOCLAIM.
        pipeline.start_writer("w2")
        wait_until(lambda: matches_truth(database, truth), 60, what="InfluxDB to match the truth")
        wait_until(lambda: redis.xpending(rollup_stream(prefix), "writer")["pending"] == 0, 20, what="all acked")
    except AssertionError:
        pipeline.dump_logs()
        print(explain(database, truth))
        raise
    finally:
        pipeline.stop()


def stack(*args: str) -> None:
    subprocess.run([str(REPO / "scripts" / "stack"), *args], check=True, timeout=120)


def test_influxdb_down_for_20s_the_writer_catches_up(redis, names, tmp_path):
    prefix, database = names
    readings = make_readings(meters=300, seconds=30, start=START, seed=13)
    truth = ground_truth(readings)
    summaries = make_summaries(readings, partitions=4, batch=100)
    pipeline = Pipeline(prefix, database, tmp_path)
    writer_ready = lambda: httpx.get(f"http://127.0.0.1:{pipeline.writer_port}/readyz", timeout=2).status_code  # noqa: E731
    try:
        pipeline.start_aggregator()
        pipeline.start_writer("w1")
        publish(redis, prefix, summaries[:10])
        wait_until(lambda: writer_ready() == 200, 30, what="the writer to be ready")
        stack("stop-server", "influxdb")
        try:
            publish(redis, prefix, summaries[10:])
            wait_until(lambda: writer_ready() == 503, 20, what="the writer to report not-ready")
            time.sleep(20)
            assert redis.xpending(rollup_stream(prefix), "writer")["pending"] > 0
        finally:
            stack("start-server", "influxdb")
        wait_until(lambda: matches_truth(database, truth), 90, what="the writer to catch up")
        wait_until(lambda: writer_ready() == 200, 30, what="the writer to be ready again")
    except AssertionError:
        pipeline.dump_logs()
        print(explain(database, truth))
        raise
    finally:
        pipeline.stop()


@pytest.mark.expected_log_errors(r"rollup cannot be read")
def test_a_rollup_of_a_newer_contract_version_is_never_acknowledged(redis, names, tmp_path):
    """Written by a newer aggregator mid rolling upgrade: kept pending for a writer that reads it,
    /readyz says why, and the rollups around it are written."""
    import orjson
    from smartgrid_common.contracts import Rollup, SecondRollup, rollup_stream

    prefix, database = names
    older = Rollup(1, 0, [SecondRollup(START, 1.0, 1, 1.0, 1.0)])
    newer = orjson.loads(Rollup(2, 0, [SecondRollup(START + 1, 2.0, 1, 2.0, 2.0)]).to_json()) | {"v": 99}
    later = Rollup(3, 0, [SecondRollup(START + 2, 3.0, 1, 3.0, 3.0)])
    stream = rollup_stream(prefix)
    for data in (older.to_json(), orjson.dumps(newer), later.to_json()):
        redis.xadd(stream, {"data": data})
    pipeline = Pipeline(prefix, database, tmp_path)
    try:
        pipeline.start_writer("w1")
        wait_until(lambda: len(influx_state(database)["seconds"]) == 2, 60, what="the readable rollups written")
        assert set(influx_state(database)["seconds"]) == {START, START + 2}
        # The written ones are acknowledged right after InfluxDB's answer: waited for.
        wait_until(lambda: redis.xpending(stream, "writer")["pending"] == 1, 30, what="only the unreadable rollup pending")
        response = httpx.get(f"http://127.0.0.1:{pipeline.writer_port}/readyz", timeout=5)
        assert response.status_code == 503 and "rollup contract version 99" in response.text
    except AssertionError:
        pipeline.dump_logs()
        raise
    finally:
        pipeline.stop()


class HoldingProxy:
    """An HTTP forwarder to the real InfluxDB that holds the first write carrying ``marker`` for
    ``hold`` seconds and then delivers it all the same, the way a cluster's data node stores a
    write it held past the client's timeout (waiting for the meta node to create a shard group)."""

    def __init__(self, target: str, marker: bytes, hold: float) -> None:
        import gzip
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        upstream = httpx.Client(base_url=target, timeout=30)
        self.held_at: float | None = None  # when the held write was stored, once it was
        self.holding = False  # the write to hold has come
        holding = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                plain = gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body
                held = False
                if self.path.startswith("/write") and marker in plain:
                    with holding:
                        held, proxy.holding = not proxy.holding, True
                if held:
                    time.sleep(hold)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
                answer = upstream.request(self.command, self.path, content=body, headers=headers)
                if held:
                    proxy.held_at = time.monotonic()
                try:
                    self.send_response(answer.status_code)
                    for name in ("Content-Type", "X-Influxdb-Version", "X-Influxdb-Error"):
                        if name in answer.headers:
                            self.send_header(name, answer.headers[name])
                    self.send_header("Content-Length", str(len(answer.content)))
                    self.end_headers()
                    self.wfile.write(answer.content)
                except OSError:
                    pass  # the client gave up waiting: the write was stored all the same

            do_GET = do_POST = forward

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_write_held_past_its_timeout_that_lands_after_a_newer_emission_is_overwritten_again(redis, names, tmp_path):
    """The writer times out on a write that InfluxDB stores later, after the next emission of the
    same seconds was written: the stale values must not stay. 8 s after InfluxDB took the write,
    the aggregator is asked to emit those seconds again (by whichever writer runs then), and they
    are written last."""
    prefix, database = names
    readings = make_readings(meters=300, seconds=5, start=START, seed=17)
    truth = ground_truth(readings)
    summaries = make_summaries(readings, partitions=4, batch=100)
    # The first write of aggregates is held 4 s (the writer gives up after 1 s and retries).
    proxy = HoldingProxy(INFLUX, marker=b"energy_consumption_aggregate", hold=4.0)
    pipeline = Pipeline(prefix, database, tmp_path)
    try:
        pipeline.start_aggregator()
        first = pipeline.start_writer("w1", INFLUXDB_URL=proxy.url, SMARTGRID_INFLUXDB_TIMEOUT="1s",
                                      SMARTGRID_WRITER_REEMIT_AFTER="8s")
        publish(redis, prefix, summaries[: len(summaries) // 2])
        wait_until(lambda: len(influx_state(database)["seconds"]) > 0, 30, what="the first emission written (by the retry)")
        publish(redis, prefix, summaries[len(summaries) // 2 :])
        wait_until(lambda: matches_truth(database, truth), 30, what="the newer emissions written")
        assert proxy.held_at is None, "the held write landed too soon for this test"
        wait_until(lambda: proxy.held_at is not None, 10, what="the held write to be stored")
        assert not matches_truth(database, truth)  # older values, stored last, replaced newer ones
        # The writer dies before the seconds are due to be emitted again: the request waits in
        # Redis, and the next writer (straight to InfluxDB) hands it to the aggregator.
        first.send_signal(signal.SIGKILL)
        first.wait()
        pipeline.start_writer("w2", SMARTGRID_WRITER_REEMIT_AFTER="8s")
        wait_until(lambda: matches_truth(database, truth), 30, what="the seconds emitted again and written")
        metrics = httpx.get(f"http://127.0.0.1:{pipeline.writer_port}/metrics", timeout=5).text
        reemitted = [line for line in metrics.splitlines() if line.startswith("writer_seconds_reemitted_total ")]
        assert reemitted and float(reemitted[0].split()[1]) >= 1  # by the second writer
    except AssertionError:
        pipeline.dump_logs()
        print(explain(database, truth))
        raise
    finally:
        pipeline.stop()
        proxy.close()


def test_seconds_to_emit_again_wait_in_redis_until_due_then_go_to_the_aggregator_s_next_emission(redis, names):
    import asyncio

    from redis.asyncio import Redis as AsyncRedis
    from smartgrid_common.contracts import rollup_dirty_keys

    from writer.builders import build_body
    from writer.worker import Reemissions
    from smartgrid_common.contracts import Rollup, SecondRollup

    prefix, _ = names
    dirty, dirty_status = rollup_dirty_keys(prefix)
    lines = build_body([Rollup(1, 0, [SecondRollup(START, 1.0, 1, 1.0, 1.0), SecondRollup(START + 1, 1.0, 1, 1.0, 1.0)],
                               status_second=START + 1, status_counts={"ok": 2})])

    async def run() -> None:
        client = AsyncRedis.from_url(REDIS)
        try:
            reemissions = Reemissions(client, prefix, after=1.0)
            await reemissions.written(lines)
            assert await reemissions.move_due() == (0, False)  # not due yet
            assert redis.zcard(f"{prefix}:writer:reemit") == 3  # two seconds and the status
            # Another replica's view of the same Redis hands them over once due.
            other = Reemissions(client, prefix, after=1.0)
            await asyncio.sleep(1.1)
            assert await other.move_due() == (2, True)
            assert await reemissions.move_due() == (0, False)  # taken once
        finally:
            await client.aclose()

    asyncio.run(run())
    assert redis.smembers(dirty) == {str(START).encode(), str(START + 1).encode()}
    assert redis.get(dirty_status) == b"1"
    assert redis.zcard(f"{prefix}:writer:reemit") == 0
