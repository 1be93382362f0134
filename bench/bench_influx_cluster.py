"""InfluxDB single node vs an InfluxDB Cluster of 2 data nodes, replication 1 and 2, in one run.

Starts its own InfluxDB 1.8.10 and its own InfluxDB Cluster 1.8.11-c1.2.0 (1 meta + 2 data
nodes) with ``scripts/stack`` in a temporary state dir, on free ports (the suite's stack keeps
running untouched; Kafka and Redis are the local stack's). Then, on the same records, for each
target in turn (order rotated each round, so drift hits all alike):

1. **client**: the hot path's line protocol written by the product's InfluxDB client
   (``InfluxClient.write_until_done``: INFLUXDB_BATCH_SIZE points a request, 2 requests in flight,
   spread over the data nodes), into a fresh database -> points/s and **influxd CPU per point**
   (user + system CPU of every influxd and influxd-meta process of the target, over the points);
2. **ingest**: Kafka -> ``python -m ingest`` (aggregations off, the real service) -> InfluxDB,
   records produced beforehand to a fresh 32-partition topic, timed from the first consumed record
   to all committed (as /stats shows it: its counters lag up to 1 s, so runs should last 10 s or
   more) -> records/s and influxd CPU per point (from the ingest's start: influxd does nothing
   else meanwhile).

Every run checks the stored count (and, on the cluster, each data node's own copy with
``node_id``: replication 2 means both nodes hold every point). Prints a table with ratios to the
single node, writes bench/results/influx-cluster-<timestamp>.json, and removes what it created.
Run on purpose:

    uv run --no-sync python bench/bench_influx_cluster.py [--records 200000] [--rounds 1] [--modes client,ingest]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from confluent_kafka.admin import AdminClient, NewTopic

import benchlib
from ingest._hotpath import convert_one
from simulator import generate, produce
from smartgrid_common.influx import InfluxClient
from smartgrid_common.settings import InfluxSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from ingest_harness import free_base_port, free_port  # noqa: E402

ROOT = benchlib.ROOT
STACK = ROOT / "scripts" / "stack"
PARTITIONS = 32
BROKERS = os.environ.get("KAFKA_BROKERS", "127.0.0.1:9092")
REDIS = os.environ.get("SMARTGRID_REDIS_URL", "redis://127.0.0.1:6379/0")


# ---- the InfluxDB targets, started in a state dir of their own -------------------------------------


def _base_port(offsets: tuple[int, ...]) -> int:
    return free_base_port(offsets, 30000, 40000)


@dataclass
class Server:
    """One InfluxDB (a single node, or a cluster) run by scripts/stack."""

    kind: str  # "single" or "cluster"
    state: Path
    port: int = 0
    env: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.port = _base_port((0, 2) if self.kind == "single" else (0, 2, 3, 5, 10, 12))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("SMARTGRID_INFLUXDB", "INFLUXDB_"))} | {
            "SMARTGRID_STATE_DIR": str(self.state), "SMARTGRID_INFLUXDB": self.kind,
            "SMARTGRID_INFLUXDB_PORT": str(self.port),
        }

    @property
    def urls(self) -> list[str]:
        ports = [self.port] if self.kind == "single" else [self.port, self.port + 10]
        return [f"http://127.0.0.1:{p}" for p in ports]

    def stack(self, *args: str) -> None:
        subprocess.run([str(STACK), *args], env=self.env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)

    def processes(self) -> list[psutil.Process]:
        """The influxd (and influxd-meta) processes of this target, found by their ports."""
        ports = [self.port] if self.kind == "single" else [self.port, self.port + 10, self.port + 5]
        return [p for p in (benchlib.listener(port) for port in ports) if p is not None]

    def node_counts(self, database: str) -> list[int]:
        """Each data node's own count of raw points (``node_id``), or the node's count for one node."""
        if self.kind == "single":
            return [count(self.urls[0], database)]
        ids = sorted(int(row[0]) for row in _show_data_nodes(self))
        return [count(self.urls[0], database, node_id) for node_id in ids]


def _show_data_nodes(server: Server) -> list[list[str]]:
    ctl = Path(os.environ.get("SMARTGRID_CACHE_DIR") or Path.home() / ".cache/smartgrid") / "influxdb-cluster-1.8.11-c1.2.0/bin/influxd-ctl"
    shown = subprocess.run([str(ctl), "-bind", f"127.0.0.1:{server.port + 5}", "show"], capture_output=True, text=True, timeout=30).stdout
    section = shown.split("Meta Nodes")[0]
    return [line.split() for line in section.splitlines() if line[:1].isdigit()]


def count(url: str, database: str, node_id: int | None = None) -> int:
    params = {"db": database, "q": 'SELECT count(consumption_kwh) FROM "raw_data"."energy_consumption"'}
    if node_id is not None:
        params["node_id"] = str(node_id)
    series = httpx.get(f"{url}/query", params=params, timeout=60).json()["results"][0].get("series", [])
    return int(series[0]["values"][0][1]) if series else 0


@dataclass(frozen=True)
class Target:
    name: str
    server: Server
    replication: int


# ---- the two measurements -------------------------------------------------------------------------


def client_run(target: Target, bodies: list[bytes], points: int, database: str, concurrency: int) -> dict:
    client = InfluxClient(InfluxSettings(
        INFLUXDB_URL=",".join(target.server.urls), INFLUXDB_DATABASE=database,
        SMARTGRID_INFLUXDB_REPLICATION=str(target.replication),
    ))
    client.ensure_schema()
    account = benchlib.CpuAccount({"influxd": (target.server.processes, False)}, interval=0.5)
    account.start()
    stop = threading.Event()
    retries: list[str] = []
    try:
        cpu0 = account.snapshot()["influxd"]
        began = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            rejected = sum(len(r or []) for r in pool.map(
                lambda body: client.write_until_done(body, "raw_data", stop, on_retry=lambda n, e: retries.append(str(e))),
                bodies))
        seconds = time.perf_counter() - began
        influxd_cpu = account.snapshot()["influxd"] - cpu0
        writes = {node.url: node.writes for node in client.nodes}
    finally:
        account.close()
        client.close()
    return {
        "points": points, "seconds": seconds, "points_per_s": points / seconds,
        "influxd_cpu_s": influxd_cpu, "influxd_us_per_point": influxd_cpu / points * 1e6,
        "rejected": rejected, "retries": len(retries), "writes_per_node": writes,
    }


def ingest_run(target: Target, topic: str, records: int, database: str, stamp: str, logs: Path) -> dict:
    port = free_port()
    group = f"bench-influx-cluster-{stamp}-{database}"
    env = os.environ | {
        "KAFKA_BROKERS": BROKERS, "KAFKA_TOPIC": topic, "KAFKA_GROUP_ID": group,
        "INFLUXDB_URL": ",".join(target.server.urls), "INFLUXDB_DATABASE": database,
        "SMARTGRID_INFLUXDB_REPLICATION": str(target.replication),
        "PROCESSOR_ENABLE_AGGREGATIONS": "false", "SMARTGRID_REDIS_URL": REDIS,
        "SMARTGRID_REDIS_PREFIX": group, "SMARTGRID_HTTP_PORT": str(port), "SMARTGRID_HTTP_HOST": "127.0.0.1",
        "SMARTGRID_LOG_LEVEL": "WARNING",
    }
    log = logs / f"ingest-{database}.log"
    with open(log, "wb") as handle:
        proc = subprocess.Popen([sys.executable, "-m", "ingest"], cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    account = benchlib.CpuAccount({"influxd": (target.server.processes, False)}, interval=0.5)
    account.start()
    # influxd's CPU counts from the start: it does nothing else meanwhile, and the first batches
    # are written before /stats first shows them.
    influxd0 = account.snapshot()["influxd"]
    try:
        deadline, began = time.monotonic() + 180, None
        progress, last_committed = time.monotonic(), -1
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ingest exited with {proc.returncode}; see {log}")
            totals = _totals(port)
            if totals and began is None and totals.get("consumed", 0) > 0:
                began = time.perf_counter()
            if totals and totals.get("committed", 0) >= records:
                seconds = time.perf_counter() - began
                cpu = account.snapshot()
                break
            if totals and totals.get("committed", 0) != last_committed:
                last_committed, progress = totals.get("committed", 0), time.monotonic()
            if (began is None and time.monotonic() > deadline) or time.monotonic() - progress > 180:
                raise RuntimeError(f"ingest made no progress ({totals}); see {log}")
            time.sleep(0.2)
    finally:
        account.close()
        benchlib.stop_process(proc)
        _delete_group(group)
    influxd_cpu = cpu["influxd"] - influxd0
    return {
        "records": records, "seconds": seconds, "records_per_s": records / seconds,
        "influxd_cpu_s": influxd_cpu, "influxd_us_per_point": influxd_cpu / records * 1e6, "log": str(log),
    }


def _totals(port: int) -> dict | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/stats", timeout=2).json()["totals"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def _delete_group(group: str) -> None:
    try:
        AdminClient({"bootstrap.servers": BROKERS}).delete_consumer_groups([group])[group].result(30)
    except Exception:  # noqa: BLE001 - best effort: a group with no offsets cannot be deleted
        pass


def line_bodies(records: list[tuple[bytes, bytes]], batch: int) -> tuple[list[bytes], int]:
    """The hot path's lines of ``records`` in bodies of ``batch`` points (what ingest sends)."""
    bodies, pending, points = [], [], 0
    for _key, value in records:
        line, reason = convert_one(value, "ms")
        if reason is not None:
            continue
        pending.append(line if line.endswith("\n") else line + "\n")
        points += 1
        if len(pending) == batch:
            bodies.append("".join(pending).encode())
            pending = []
    if pending:
        bodies.append("".join(pending).encode())
    return bodies, points


# ---- main -------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000, help="records (points) per run (default 200000)")
    parser.add_argument("--meters", type=int, default=20_000, help="distinct meters (series) (default 20000)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each target; figures are medians (default 1)")
    parser.add_argument("--modes", default="client,ingest", help="client, ingest or both (default both)")
    parser.add_argument("--batch-size", type=int, default=10_000, help="points per write (INFLUXDB_BATCH_SIZE)")
    parser.add_argument("--concurrency", type=int, default=2, help="writes in flight in client mode (default 2)")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    state = Path(tempfile.mkdtemp(prefix="bench-influx-cluster-"))
    logs = benchlib.RESULTS / f"influx-cluster-{stamp}"
    logs.mkdir(parents=True, exist_ok=True)
    single, cluster = Server("single", state / "single"), Server("cluster", state / "cluster")
    targets = [Target("single node", single, 1), Target("cluster, replication 1", cluster, 1),
               Target("cluster, replication 2", cluster, 2)]
    topic = f"bench-influx-cluster-{stamp}"
    admin = AdminClient({"bootstrap.servers": BROKERS})
    results: dict[str, dict[str, list[dict]]] = {t.name: {m: [] for m in modes} for t in targets}
    print(f"influx cluster bench: {args.records:,} records, {args.meters:,} meters, rounds {args.rounds}, "
          f"modes {','.join(modes)}, {os.cpu_count()} CPUs (shared with whatever else runs)")
    try:
        for server in (single, cluster):
            server.stack("start-server", "influxdb")
            print(f"  {server.kind}: {', '.join(server.urls)} ({server.state})")
        records = generate(args.records, meters=args.meters, seed=11, start_ms=int(time.time() * 1000) - 3_600_000)
        bodies, points = line_bodies(records, args.batch_size)
        if "ingest" in modes:
            admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
            produce(records, BROKERS, topic, timeout_s=600)
            print(f"  produced {len(records):,} records to {topic} (not timed)")
        del records
        for round_index in range(args.rounds):
            order = targets[round_index % len(targets):] + targets[: round_index % len(targets)]
            for target in order:
                for mode in modes:
                    database = f"bench_{mode}_{target.server.kind}_rf{target.replication}_r{round_index}"
                    if mode == "client":
                        run = client_run(target, bodies, points, database, args.concurrency)
                        rate = f"{run['points_per_s']:>9,.0f} points/s"
                    else:
                        run = ingest_run(target, topic, args.records, database, stamp, logs)
                        rate = f"{run['records_per_s']:>9,.0f} records/s"
                    # Stored: the cluster-wide count; each node's own copy holds all of it with
                    # replication 2, a share of it with replication 1.
                    run["stored"] = count(target.server.urls[0], database)
                    run["node_counts"] = target.server.node_counts(database)
                    copies = run["node_counts"]
                    run["complete"] = (all(c == run["stored"] for c in copies) if target.replication == len(copies)
                                       else sum(copies) == run["stored"])
                    results[target.name][mode].append(run)
                    print(f"  round {round_index + 1} {mode:6} {target.name:24} {rate}, "
                          f"influxd {run['influxd_us_per_point']:.1f} us/point, stored {run['stored']:,}, node copies "
                          f"{copies}{'' if run['complete'] else ' INCOMPLETE'}")
        summary = {}
        print("\nmedians (influxd CPU per point: every influxd and influxd-meta process of the target)")
        for mode in modes:
            base = statistics.median(r["influxd_us_per_point"] for r in results[targets[0].name][mode])
            rate_key = "points_per_s" if mode == "client" else "records_per_s"
            base_rate = statistics.median(r[rate_key] for r in results[targets[0].name][mode])
            for target in targets:
                runs = results[target.name][mode]
                cpu = statistics.median(r["influxd_us_per_point"] for r in runs)
                rate = statistics.median(r[rate_key] for r in runs)
                summary[f"{mode}/{target.name}"] = {"rate": rate, "influxd_us_per_point": cpu, "cpu_vs_single": cpu / base,
                                                    "rate_vs_single": rate / base_rate,
                                                    "complete": all(r["complete"] for r in runs)}
                print(f"  {mode:6} {target.name:24} {rate:>9,.0f}/s (x{rate / base_rate:.2f})  "
                      f"influxd {cpu:6.1f} us/point (x{cpu / base:.2f})")
        benchlib.save_results("influx-cluster", stamp, {
            "timestamp": stamp, "command": " ".join(["bench/bench_influx_cluster.py", *sys.argv[1:]]),
            "cpus": os.cpu_count(), "records": args.records, "meters": args.meters, "rounds": args.rounds,
            "summary": summary, "runs": results,
        })
    finally:
        for server in (single, cluster):
            subprocess.run([str(STACK), "stop-server", "influxdb"], env=server.env, cwd=ROOT, capture_output=True)
        shutil.rmtree(state, ignore_errors=True)
        try:
            for future in admin.delete_topics([topic, f"{topic}.dlq"]).values():
                try:
                    future.result(30)
                except Exception:  # noqa: BLE001 - the topics may not exist
                    pass
        except Exception:  # noqa: BLE001
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
