"""Ingest benchmark against the real local stack (scripts/stack up): hot path, InfluxDB, Kafka -> InfluxDB.

Prints, in one run on this machine:

1. the hot path (``Processor.process``: decode + validate + line protocol, aggregations off and
   on) on one core in 10k-message batches, against a per-message Python baseline in the same
   process on the same records (msgspec or orjson, whichever decodes faster here; validation in
   Python; one f-string per line with the same tag escaping) -> msgs/s and the ratio (>= 3x);
2. InfluxDB's own capacity in this run (the hot path's bodies for the same records,
   INFLUXDB_BATCH_SIZE points each, written with the shared client: gzip, 2 threads, precision
   ms, into a fresh database) and Kafka -> InfluxDB through the real ingest service (records
   produced beforehand into a fresh 32-partition topic; timed from the first consumed record to
   all N committed) with aggregations off and on -> msgs/s, ingest/capacity (>= 0.85) and the
   cost of aggregations (<= 15%); every run checks count(consumption_kwh) == N in InfluxDB;
3. the peak RSS of the ingest process tree (parent + workers, sampled every 0.1 s).

It writes the summary as JSON to bench/results/ingest-<timestamp>.json and removes the databases,
topics, consumer groups and Redis keys it created. Run on purpose:

    uv run --no-sync python bench/bench_ingest.py [--records 1000000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import msgspec
import orjson
import psutil
import redis
from confluent_kafka.admin import AdminClient, NewTopic

import benchlib
from ingest._hotpath import Processor
from simulator import generate, produce
from smartgrid_common.influx import InfluxClient, wait_for
from smartgrid_common.settings import InfluxSettings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PARTITIONS = 32
BATCH = 10_000  # messages per hot-path call (KAFKA_BATCH_SIZE default)


# ---- per-message Python baseline ------------------------------------------------------------

def _escape(value: str) -> str:
    """Line-protocol tag escaping: backslash, comma, equals, space."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _number(value: object) -> bool:
    return type(value) is float or type(value) is int


def baseline(values: list[bytes], decode) -> tuple[bytes, int, list[tuple[int, str]]]:
    """Decode each message, validate it in Python, f-string its line; returns (body, valid, rejected)."""
    lines: list[str] = []
    rejected: list[tuple[int, str]] = []
    fromiso = datetime.fromisoformat
    for index, value in enumerate(values):
        try:
            record = decode(value)
        except Exception:
            rejected.append((index, "invalid JSON"))
            continue
        if type(record) is not dict:
            rejected.append((index, "not an object"))
            continue
        meter_id = record.get("meter_id")
        region = record.get("region")
        status = record.get("status")
        kwh = record.get("consumption_kwh")
        stamp = record.get("timestamp")
        if type(meter_id) is not str or not meter_id:
            rejected.append((index, "meter_id"))
            continue
        if type(region) is not str or type(status) is not str:
            rejected.append((index, "region/status"))
            continue
        if not _number(kwh) or not math.isfinite(kwh) or kwh < 0:
            rejected.append((index, "consumption_kwh"))
            continue
        if type(stamp) is str:
            try:
                millis = round(fromiso(stamp).timestamp() * 1000)
            except ValueError:
                rejected.append((index, "timestamp"))
                continue
        elif _number(stamp) and math.isfinite(stamp):
            millis = int(stamp)
        else:
            rejected.append((index, "timestamp"))
            continue
        tags = ""
        building = record.get("building_type")
        if building is not None:
            if type(building) is not str:
                rejected.append((index, "building_type"))
                continue
            if building:
                tags = f",building_type={_escape(building)}"
        fields = f"consumption_kwh={float(kwh)!r}"
        latitude = record.get("latitude")
        longitude = record.get("longitude")
        peak = record.get("peak_load")
        if latitude is not None:
            if not _number(latitude) or not -90.0 <= latitude <= 90.0:
                rejected.append((index, "latitude"))
                continue
            fields += f",latitude={float(latitude)!r}"
        if longitude is not None:
            if not _number(longitude) or not -180.0 <= longitude <= 180.0:
                rejected.append((index, "longitude"))
                continue
            fields += f",longitude={float(longitude)!r}"
        if peak is not None:
            if not _number(peak) or not math.isfinite(peak):
                rejected.append((index, "peak_load"))
                continue
            fields += f",peak_load={float(peak)!r}"
        lines.append(
            f"energy_consumption{tags},meter_id={_escape(meter_id)},region={_escape(region)},"
            f"status={_escape(status)} {fields} {millis}\n"
        )
    return "".join(lines).encode(), len(lines), rejected


# ---- helpers ---------------------------------------------------------------------------------

def batches_of(records: list[tuple[bytes, bytes]]) -> list[tuple[list[bytes], list[int], list[int]]]:
    """10k-message batches (values, partitions, offsets) spread over 32 partitions by key."""
    next_offset = [0] * PARTITIONS
    out = []
    for start in range(0, len(records), BATCH):
        chunk = records[start : start + BATCH]
        values = [value for _key, value in chunk]
        partitions = [zlib.crc32(key) % PARTITIONS for key, _value in chunk]
        offsets = []
        for partition in partitions:
            offsets.append(next_offset[partition])
            next_offset[partition] += 1
        out.append((values, partitions, offsets))
    return out


def best_of(repeat: int, run) -> float:
    """Shortest wall time of ``repeat`` calls of ``run()`` (the machine is shared and noisy)."""
    best = math.inf
    for _ in range(repeat):
        began = time.perf_counter()
        kept = run()  # freed after the clock stops (a Processor's meter state takes a while to drop)
        best = min(best, time.perf_counter() - began)
        del kept
    return best


def influx_client(url: str, database: str) -> InfluxClient:
    return InfluxClient(
        InfluxSettings.model_validate(
            {"INFLUXDB_URL": url, "INFLUXDB_DATABASE": database, "SMARTGRID_INFLUXDB_GZIP": True}
        )
    )


def drop_database(client: InfluxClient) -> None:
    """Drop ``client``'s database at once, so that influxd's cache snapshots and TSM compactions of
    its points do not run (and count) in the next measurement."""
    try:
        client.query(f'DROP DATABASE "{client.database}"', method="POST")
    except Exception as error:  # noqa: BLE001 - the final clean-up tries again
        print(f"  could not drop {client.database}: {error}")


def count_points(client: InfluxClient) -> int:
    results = client.query('SELECT count(consumption_kwh) FROM "raw_data"."energy_consumption"')
    for result in results:
        for series in result.get("series", []):
            return int(series["values"][0][1])
    return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_of(proc: psutil.Process | None) -> float:
    """User + system CPU seconds of ``proc`` (nan when unknown, e.g. InfluxDB was restarted)."""
    try:
        return sum(proc.cpu_times()[:2]) if proc else math.nan
    except psutil.Error:
        return math.nan


def find_influxd() -> psutil.Process | None:
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "influxd":
            return proc
    return None


class TreeSampler(threading.Thread):
    """Samples RSS (sum over the tree) and CPU time of a process and its children every 0.1 s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.peak_rss = 0
        self.cpu: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            rss = 0
            for proc in procs:
                try:
                    rss += proc.memory_info().rss
                    times = proc.cpu_times()
                    self.cpu[proc.pid] = times.user + times.system
                except psutil.NoSuchProcess:
                    pass
            self.peak_rss = max(self.peak_rss, rss)
            self.stop.wait(0.1)

    def cpu_seconds(self) -> float:
        return sum(self.cpu.values())


def stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=2) as response:
        return json.load(response)["totals"]


# ---- the measurements ------------------------------------------------------------------------

def bench_hot_path(records, repeat: int, topic: str) -> dict:
    batches = batches_of(records)
    values = [value for values, _p, _o in batches for value in values]
    count = len(values)

    decoders = {"msgspec": msgspec.json.Decoder().decode, "orjson": orjson.loads}
    decode_times = {name: best_of(repeat, lambda d=d: [d(v) for v in values]) for name, d in decoders.items()}
    decoder = min(decode_times, key=decode_times.get)

    def run_baseline():
        for chunk, _partitions, _offsets in batches:
            baseline(chunk, decoders[decoder])

    def run_hot(aggregations: bool):
        processor = Processor(topic, timestamp_unit="ms", aggregations=aggregations, offline_after_ms=300_000)
        for chunk, partitions, offsets in batches:
            processor.process(chunk, partitions, offsets)
            processor.take_summaries()  # summaries are built here (one per partition per batch)
        return processor

    # Same output? Compare the first batch's bodies line by line.
    chunk, partitions, offsets = batches[0]
    native = Processor(topic, aggregations=False).process(chunk, partitions, offsets)
    python_body, python_valid, _ = baseline(chunk, decoders[decoder])
    same = native.body == python_body and native.valid == python_valid

    base = best_of(repeat, run_baseline)
    off = best_of(repeat, lambda: run_hot(False))
    on = best_of(repeat, lambda: run_hot(True))
    return {
        "records": count,
        "repeat": repeat,
        "decoder": decoder,
        "decode_only_msgs_per_s": {name: count / t for name, t in decode_times.items()},
        "baseline_msgs_per_s": count / base,
        "hotpath_off_msgs_per_s": count / off,
        "hotpath_on_msgs_per_s": count / on,
        "ratio_off": base / off,
        "ratio_on": base / on,
        "baseline_output_identical": same,
    }


def bench_capacity(records, url: str, database: str, batch_size: int, concurrency: int) -> dict:
    processor = Processor("capacity", aggregations=False)
    bodies = []
    pending: list[bytes] = []
    points = 0
    total = 0
    for chunk, partitions, offsets in batches_of(records):
        result = processor.process(chunk, partitions, offsets)
        pending.append(result.body)
        points += result.valid
        total += result.valid
        if points >= batch_size:
            bodies.append(b"".join(pending))
            pending, points = [], 0
    if pending:
        bodies.append(b"".join(pending))
    client = influx_client(url, database)
    if not wait_for(client.ping, 120):
        raise RuntimeError(f"InfluxDB at {url} does not answer /ping (is the stack up?)")
    client.ensure_schema()
    influxd = find_influxd()
    influx_cpu0 = cpu_of(influxd)
    began = time.perf_counter()
    retries = []
    stop = threading.Event()

    def write(body: bytes) -> int:
        # the ingest's own write call: retries with backoff while InfluxDB answers 5xx/timeouts
        rejected = client.write_until_done(body, "raw_data", stop, precision="ms", on_retry=lambda n, e: retries.append(str(e)))
        return len(rejected or [])

    with ThreadPoolExecutor(concurrency) as pool:
        rejected = sum(pool.map(write, bodies))
    elapsed = time.perf_counter() - began
    influx_cpu = cpu_of(influxd) - influx_cpu0
    stored = count_points(client)
    client.close()
    return {
        "database": database,
        "points": total,
        "bodies": len(bodies),
        "seconds": elapsed,
        "points_per_s": total / elapsed,
        "rejected": rejected,
        "retries": len(retries),
        "stored": stored,
        "influxd_cpu_cores": influx_cpu / elapsed,
    }


def bench_e2e(args, topic: str, records: int, mode: str, stamp: str) -> dict:
    aggregations = mode == "on"
    database = f"bench_ingest_{stamp}_agg_{mode}"
    group = f"bench-ingest-{stamp}-{mode}"
    prefix = f"bench-ingest-{stamp}-{mode}"
    port = free_port()
    env = os.environ | {
        "KAFKA_BROKERS": args.brokers,
        "KAFKA_TOPIC": topic,
        "KAFKA_GROUP_ID": group,
        "INFLUXDB_URL": args.influxdb,
        "INFLUXDB_DATABASE": database,
        "INFLUXDB_BATCH_SIZE": str(args.batch_size),
        "PROCESSOR_WORKER_COUNT": str(args.workers),
        "PROCESSOR_ENABLE_AGGREGATIONS": "true" if aggregations else "false",
        "SMARTGRID_REDIS_URL": args.redis,
        "SMARTGRID_REDIS_PREFIX": prefix,
        "SMARTGRID_HTTP_PORT": str(port),
        "SMARTGRID_HTTP_HOST": "127.0.0.1",
        "SMARTGRID_INFLUXDB_GZIP": "true",
        "SMARTGRID_INFLUXDB_CONCURRENCY": str(args.concurrency),
        "SMARTGRID_LOG_LEVEL": "WARNING",
    }
    log_path = RESULTS / f"ingest-{stamp}-{mode}.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "ingest"], cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    influxd = find_influxd()
    result = {"mode": mode, "database": database, "group": group, "redis_prefix": prefix, "log": str(log_path)}
    try:
        deadline = time.monotonic() + 120  # start-up
        last = before = None
        t_zero = t_first = None
        influx_cpu0 = ingest_cpu0 = 0.0
        progress_at = time.monotonic()
        previous_committed = -1
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ingest exited with {proc.returncode}; see {log_path}")
            now = time.perf_counter()
            try:
                totals = stats(port)
            except OSError:
                totals = None
            if totals is not None:
                if t_first is None:
                    if totals["consumed"] > 0:
                        # consumption began between the previous poll and this one
                        t_first = (t_zero + now) / 2 if t_zero is not None else now
                        influx_cpu0 = cpu_of(influxd)
                        ingest_cpu0 = sampler.cpu_seconds()
                    else:
                        t_zero = now
                else:
                    if totals["committed"] >= records:
                        t_done = (before + now) / 2 if before is not None else now
                        last = totals
                        break
                    before = now
                if totals["committed"] != previous_committed:
                    previous_committed = totals["committed"]
                    progress_at = time.monotonic()
            if t_first is None and time.monotonic() > deadline:
                raise RuntimeError(f"ingest consumed nothing in 120 s; see {log_path}")
            if time.monotonic() - progress_at > 120:
                raise RuntimeError(f"ingest made no progress for 120 s at {totals}; see {log_path}")
            time.sleep(0.2)
        elapsed = t_done - t_first
        influx_cpu = cpu_of(influxd) - influx_cpu0
        ingest_cpu = sampler.cpu_seconds() - ingest_cpu0
    finally:
        benchlib.stop_process(proc)
        sampler.stop.set()
        sampler.join()
    client = influx_client(args.influxdb, database)
    stored = count_points(client)
    client.close()
    result |= {
        "records": records,
        "seconds": elapsed,
        "msgs_per_s": records / elapsed,
        "totals": last,
        "stored": stored,
        "count_ok": stored == records,
        "peak_rss_mb": sampler.peak_rss / 2**20,
        "ingest_cpu_cores": ingest_cpu / elapsed,
        "influxd_cpu_cores": influx_cpu / elapsed,
        "exit_code": proc.returncode,
    }
    return result


def run_on_off(args, records: list[tuple[bytes, bytes]], topic: str, stamp: str, best_capacity: float | None,
               databases: list[str], groups: list[str], prefixes: list[str], pairs: int = 1) -> tuple[dict[str, dict], float]:
    """Kafka -> InfluxDB through ``python -m ingest``, aggregations off then on, on the same records,
    ``pairs`` times (off, on, off, on, ...: the host's drift hits both modes alike).

    Produces ``records`` into a fresh ``PARTITIONS``-partition ``topic`` (not timed; ``records`` is
    emptied afterwards to free its memory), then runs :func:`bench_e2e` for each mode and prints a line
    each. Appends every database, consumer group and Redis prefix it creates to the given lists *before*
    creating it, so the caller's :func:`cleanup` (with ``[topic, topic + ".dlq"]``) removes them even
    when a run fails. ``best_capacity`` (points/s, or None) adds the ratio to InfluxDB's capacity.
    Returns ({"off": run, "on": run}, cost of aggregations in percent of the "off" throughput): per
    mode the run of median throughput, with ``count_ok`` true only if every run of that mode stored
    all records, and ``all_msgs_per_s`` listing every run's throughput.
    """
    records_n = len(records)
    admin = AdminClient({"bootstrap.servers": args.brokers})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    began = time.perf_counter()
    produce(records, args.brokers, topic, timeout_s=600)
    print(f"  produced {records_n:,} records to {topic} ({PARTITIONS} partitions) in "
          f"{time.perf_counter() - began:.1f} s (not timed)")
    records.clear()
    all_runs: dict[str, list[dict]] = {"off": [], "on": []}
    for pair in range(pairs):
        run_stamp = stamp if pairs == 1 else f"{stamp}p{pair + 1}"
        for mode in ("off", "on"):
            databases.append(f"bench_ingest_{run_stamp}_agg_{mode}")
            groups.append(f"bench-ingest-{run_stamp}-{mode}")
            prefixes.append(f"bench-ingest-{run_stamp}-{mode}")
            run = bench_e2e(args, topic, records_n, mode, run_stamp)
            all_runs[mode].append(run)
            totals = run["totals"]
            capacity = ""
            if best_capacity:
                run["ratio_to_capacity"] = run["msgs_per_s"] / best_capacity
                capacity = f"  x{run['ratio_to_capacity']:.2f} of capacity (target >= 0.85)"
            which = f" (pair {pair + 1}/{pairs})" if pairs > 1 else ""
            print(f"  Kafka -> InfluxDB, aggregations {mode:<3}: {run['msgs_per_s']:>10,.0f} msgs/s "
                  f"({records_n:,} in {run['seconds']:.2f} s){capacity}{which}")
            print(f"      stored {run['stored']:,} ({'OK' if run['count_ok'] else 'MISMATCH'}), dead-lettered "
                  f"{totals['dead_lettered']}, InfluxDB retries {totals.get('influx_retries', '?')}, summaries {totals['summaries']:,}, peak RSS {run['peak_rss_mb']:.0f} MB, "
                  f"CPU ingest {run['ingest_cpu_cores']:.2f} cores, influxd {run['influxd_cpu_cores']:.2f} cores")
    runs: dict[str, dict] = {}
    for mode, mode_runs in all_runs.items():
        ordered = sorted(mode_runs, key=lambda r: r["msgs_per_s"])
        runs[mode] = {**ordered[(len(ordered) - 1) // 2], "count_ok": all(r["count_ok"] for r in mode_runs),
                      "all_msgs_per_s": [r["msgs_per_s"] for r in mode_runs]}
    cost = (1 - runs["on"]["msgs_per_s"] / runs["off"]["msgs_per_s"]) * 100
    if pairs > 1:
        print(f"  medians of {pairs} pairs: off {runs['off']['msgs_per_s']:,.0f}, on {runs['on']['msgs_per_s']:,.0f} msgs/s")
    return runs, cost


# ---- clean-up --------------------------------------------------------------------------------

def cleanup(args, databases: list[str], topics: list[str], groups: list[str], prefixes: list[str]) -> None:
    client = influx_client(args.influxdb, "_internal")
    wait_for(client.ping, 120)
    for database in databases:
        try:
            client.query(f'DROP DATABASE "{database}"', method="POST")
        except Exception as error:  # noqa: BLE001 - report and go on cleaning
            print(f"  could not drop {database}: {error}")
    client.close()
    admin = AdminClient({"bootstrap.servers": args.brokers})
    if groups:
        try:
            for future in admin.delete_consumer_groups(groups).values():
                future.result(30)
        except Exception as error:  # noqa: BLE001
            print(f"  could not delete consumer groups: {error}")
    existing = set(admin.list_topics(timeout=10).topics)
    doomed = [topic for topic in topics if topic in existing]
    if doomed:
        for topic, future in admin.delete_topics(doomed, operation_timeout=30).items():
            try:
                future.result(60)
            except Exception as error:  # noqa: BLE001
                print(f"  could not delete topic {topic}: {error}")
    client_redis = redis.Redis.from_url(args.redis)
    for prefix in prefixes:
        keys = list(client_redis.scan_iter(f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client_redis.delete(*keys[start : start + 500])
    client_redis.close()


# ---- main ------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """This script's options; ``build_parser().parse_args([])`` gives the defaults (used by
    bench_aggregations.py)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=None, help="records end to end (default 1,000,000; --quick 200,000)")
    parser.add_argument("--quick", action="store_true", help="200k records end to end, fewer repetitions")
    parser.add_argument("--hot-records", type=int, default=200_000, help="records per hot-path repetition")
    parser.add_argument("--repeat", type=int, default=None, help="hot-path repetitions (best taken; default 5, --quick 3)")
    parser.add_argument("--pairs", type=int, default=1,
                        help="Kafka -> InfluxDB runs per mode, alternating off/on; the medians are compared (default 1)")
    parser.add_argument("--meters", type=int, default=100_000, help="distinct meters (series) in the records")
    parser.add_argument("--workers", type=int, default=1, help="PROCESSOR_WORKER_COUNT of the ingest run")
    parser.add_argument("--concurrency", type=int, default=2, help="InfluxDB writes in flight (ingest and capacity)")
    parser.add_argument("--batch-size", type=int, default=10_000, help="INFLUXDB_BATCH_SIZE (points per write)")
    parser.add_argument("--capacity-runs", type=int, default=1, help="capacity repetitions (best taken)")
    parser.add_argument("--skip-e2e", action="store_true", help="hot path only")
    parser.add_argument("--brokers", default=os.environ.get("KAFKA_BROKERS", "127.0.0.1:9092"))
    parser.add_argument("--influxdb", default=os.environ.get("INFLUXDB_URL", "http://127.0.0.1:8086"))
    parser.add_argument("--redis", default=os.environ.get("SMARTGRID_REDIS_URL", "redis://127.0.0.1:6379/0"))
    return parser


def main() -> int:
    parser = build_parser()
    args = parser.parse_args()
    # SIGTERM (kill, timeout) exits through the finally blocks: ingest stopped, topics/databases removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    records_n = args.records or (200_000 if args.quick else 1_000_000)
    repeat = args.repeat or (3 if args.quick else 5)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out: dict = {"timestamp": stamp, "cpus": os.cpu_count(), "records": records_n, "meters": args.meters,
                 "workers": args.workers, "influxdb_batch_size": args.batch_size, "concurrency": args.concurrency}

    start_ms = int(time.time() * 1000) - 600_000
    began = time.perf_counter()
    records = generate(max(records_n, args.hot_records), meters=args.meters, seed=7, start_ms=start_ms)
    mean = sum(len(v) for _k, v in records[:10_000]) / min(len(records), 10_000)
    print(f"{len(records):,} simulator records, {args.meters:,} meters, ~{mean:.0f} bytes each "
          f"(generated in {time.perf_counter() - began:.1f} s); {os.cpu_count()} CPUs")

    # 1. hot path
    print(f"\n== 1. Hot path, one core, {BATCH:,}-message batches, {args.hot_records:,} records, best of {repeat} ==")
    hot = bench_hot_path(records[: args.hot_records], repeat, "bench")
    out["hot_path"] = hot
    for name, rate in hot["decode_only_msgs_per_s"].items():
        print(f"  {'decode only, ' + name:<36} {rate:>12,.0f} msgs/s")
    print(f"  {'per-message Python (' + hot['decoder'] + ' + f-string)':<36} {hot['baseline_msgs_per_s']:>12,.0f} msgs/s")
    print(f"  Processor.process, aggregations off  {hot['hotpath_off_msgs_per_s']:>12,.0f} msgs/s   x{hot['ratio_off']:.2f} vs baseline (target >= 3)")
    print(f"  Processor.process, aggregations on   {hot['hotpath_on_msgs_per_s']:>12,.0f} msgs/s   x{hot['ratio_on']:.2f} vs baseline (which builds no summaries)")
    print(f"  baseline output identical to hot path (first batch): {hot['baseline_output_identical']}")

    if args.skip_e2e:
        path = RESULTS / f"ingest-{stamp}.json"
        path.write_text(json.dumps(out, indent=2))
        print(f"\nresults: {path}")
        return 0

    records = records[:records_n]
    topic = f"bench-ingest-{stamp.lower()}"
    databases: list[str] = []
    groups: list[str] = []
    prefixes: list[str] = []
    runs: dict[str, dict] = {}
    try:
        # 2a. InfluxDB capacity
        print(f"\n== 2. End to end, {records_n:,} records, INFLUXDB_BATCH_SIZE={args.batch_size:,}, gzip, "
              f"{args.concurrency} writers, precision ms ==")
        capacities = []
        for run in range(args.capacity_runs):
            database = f"bench_ingest_{stamp}_capacity_{run}"
            databases.append(database)
            capacity = bench_capacity(records, args.influxdb, database, args.batch_size, args.concurrency)
            capacities.append(capacity)
            print(f"  InfluxDB capacity run {run + 1}: {capacity['points_per_s']:>10,.0f} points/s "
                  f"({capacity['points']:,} points in {capacity['seconds']:.2f} s, {capacity['bodies']} bodies, "
                  f"{capacity['retries']} retries, stored {capacity['stored']:,}, influxd {capacity['influxd_cpu_cores']:.2f} cores)")
        best_capacity = max(c["points_per_s"] for c in capacities)
        out["capacity"] = {"runs": capacities, "best_points_per_s": best_capacity}

        # 2b. Kafka -> InfluxDB
        runs, cost = run_on_off(args, records, topic, stamp, best_capacity, databases, groups, prefixes, args.pairs)
        del records
        out["e2e"] = runs
        out["aggregation_cost_percent"] = cost
        print(f"  cost of aggregations: {cost:.1f}% (target <= 15%)")
    finally:
        print("\ncleaning up (databases, topics, consumer groups, Redis keys) ...")
        cleanup(args, databases, [topic, f"{topic}.dlq"], groups, prefixes)

    # summary
    checks = [
        ("hot path / per-message baseline (aggregations off)", f"x{hot['ratio_off']:.2f}", ">= 3", hot["ratio_off"] >= 3),
    ]
    for mode in ("off", "on"):
        ratio = runs[mode]["ratio_to_capacity"]
        checks.append((f"ingest / InfluxDB capacity (aggregations {mode})", f"{ratio:.2f}", ">= 0.85", ratio >= 0.85))
    checks.append(("cost of aggregations", f"{cost:.1f}%", "<= 15%", cost <= 15))
    for mode in ("off", "on"):
        checks.append((f"count in InfluxDB == N (aggregations {mode})", str(runs[mode]["stored"]), f"{records_n}", runs[mode]["count_ok"]))
    out["checks"] = [{"check": c, "value": v, "target": t, "ok": ok} for c, v, t, ok in checks]
    print("\n== Summary ==")
    rows = [
        ("hot path, per-message Python baseline", f"{hot['baseline_msgs_per_s']:,.0f} msgs/s"),
        ("hot path, Processor aggregations off", f"{hot['hotpath_off_msgs_per_s']:,.0f} msgs/s"),
        ("hot path, Processor aggregations on", f"{hot['hotpath_on_msgs_per_s']:,.0f} msgs/s"),
        ("InfluxDB capacity (best)", f"{best_capacity:,.0f} points/s"),
        ("Kafka -> InfluxDB, aggregations off", f"{runs['off']['msgs_per_s']:,.0f} msgs/s"),
        ("Kafka -> InfluxDB, aggregations on", f"{runs['on']['msgs_per_s']:,.0f} msgs/s"),
        ("peak RSS ingest tree, aggregations off", f"{runs['off']['peak_rss_mb']:.0f} MB"),
        ("peak RSS ingest tree, aggregations on", f"{runs['on']['peak_rss_mb']:.0f} MB"),
    ]
    for name, value in rows:
        print(f"  {name:<52} {value:>20}")
    print()
    print(f"  {'check':<52} {'value':>12} {'target':>10}  result")
    for name, value, target, ok in checks:
        print(f"  {name:<52} {value:>12} {target:>10}  {'PASS' if ok else 'MISS'}")
    path = RESULTS / f"ingest-{stamp}.json"
    path.write_text(json.dumps(out, indent=2, default=str))
    print(f"\nresults: {path}")
    return 0 if all(ok for *_rest, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
