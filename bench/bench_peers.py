"""Peers: the same records through this product, Telegraf and Quix Streams into the same InfluxDB.

Generates N simulator records once (RFC 3339 timestamps, 10 minutes old, ``--meters`` meters),
produces them into a fresh 32-partition topic per peer (not timed), then runs each consumer in
turn against the stack's InfluxDB, each into a fresh database (raw_data retention policy, made by
the product's schema set-up):

- **this product**: ``python -m ingest`` as shipped (aggregations on: summaries to Redis, default
  settings; nothing else runs, so the summaries wait in their stream);
- **Telegraf** ``inputs.kafka_consumer`` -> ``outputs.influxdb``, built once with ``go install``
  from the Go module proxy with only those plugins (``~/.cache/smartgrid/peers``, ~2.5 min at
  nice 19), configured for these readings (../shared/RECIPES.md): json parser with the time key
  and format, tags and fields, 10k-point batches, no gzip (as the product ships);
- **Quix Streams** ``quixstreams[influxdb1]`` with its InfluxDB1Sink (bench/peer_quixstreams.py),
  in a virtual environment of its own under ``~/.cache/smartgrid/peers``.

For each it polls the points its database's shards took (influxd's statistics, ``/debug/vars``:
free for influxd, where a ``count()`` query over 100k series is not, see :class:`PointsWritten`)
every ``--poll`` s and samples the CPU time (from /proc) of the peer's processes, influxd, the Kafka
broker and redis-server at each poll; once they reach N, ``count(consumption_kwh)`` confirms them.
Throughput: 80 % of N divided by the time between 10 % and 90 % of N stored (both interpolated
between polls). CPU per message: the peer's CPU from its start until all N are stored, less its
start-up CPU (measured first, by running it ``--startup`` s on an empty topic), divided by N
(a peer that reads ahead of its writes, as the product's live path does, spends much of its CPU
before 10 % are stored, so the 10-90 % window alone would undercount it; that figure is shown too);
influxd's from the first point stored to the last. "All N stored": the count reached N. Each
run's database is dropped as soon as it is counted, so that influxd's snapshots and compactions of
one peer's points are not counted in the next peer's run. Then the ratios against Telegraf, all from this run. With
``--rounds R`` the peers run R times in turn and each figure is the median.

Goal (issue 10): >= 2.5x Telegraf's throughput at <= 0.3x its CPU per message (peer + influxd).
influxd's share depends on the shape of each peer's writes more than on the peer's work: it works
per series of a write, and with 100k meters and 3 readings each, a write holding a partition's
consecutive readings (the product's; Quix Streams' influxd figure says the same of its) carries
2-3 points per series where Telegraf's (it interleaves the partitions) carries one;
``bench_influx_shapes.py`` measures that apart.
The Kafka broker and Redis are shared with whatever else runs on the machine; they are shown for
context only. Writes bench/results/peers-<timestamp>.json; removes what it created. Run on purpose:

    uv run --no-sync python bench/bench_peers.py [--records 300000] [--rounds 1] [--peers product,telegraf,quixstreams]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from tempfile import mkdtemp
from urllib.parse import urlparse

import httpx
import psutil
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

import bench_freshness  # noqa: E402
import bench_ingest  # noqa: E402
import benchlib  # noqa: E402
from ingest_harness import BROKERS, INFLUX, REDIS, IngestProcess  # noqa: E402
from simulator import generate, produce  # noqa: E402
from smartgrid_common.influx import InfluxUnavailable  # noqa: E402

PARTITIONS = 32
PEERS_CACHE = Path(os.environ.get("SMARTGRID_CACHE_DIR", Path.home() / ".cache" / "smartgrid")) / "peers"
TELEGRAF_VERSION = "1.37.2"
TELEGRAF_TAGS = "custom,inputs.kafka_consumer,inputs.internal,outputs.influxdb,parsers.json"
QUIX_REQUIREMENT = "quixstreams[influxdb1]==3.28.*"
QUIX_VENV = PEERS_CACHE / "quixstreams-3.28"
THROUGHPUT_GOAL, CPU_GOAL = 2.5, 0.3
PEER_NAMES = ("product", "telegraf", "quixstreams")
LABELS = {"product": "this product (ingest)", "telegraf": f"Telegraf {TELEGRAF_VERSION}", "quixstreams": "Quix Streams 3.28"}


# ---- the peers, built and cached once --------------------------------------------------------

def telegraf_binary() -> Path:
    """Telegraf with only the plugins needed, built with ``go install`` when not cached yet."""
    directory = PEERS_CACHE / f"telegraf-{TELEGRAF_VERSION}"
    binary = directory / "telegraf"
    if binary.exists():
        return binary
    directory.mkdir(parents=True, exist_ok=True)
    print(f"  building Telegraf {TELEGRAF_VERSION} into {directory} (go install, nice 19, ~2.5 min) ...", flush=True)
    subprocess.run(
        ["nice", "-n", "19", "go", "install", "-tags", TELEGRAF_TAGS,
         f"github.com/influxdata/telegraf/cmd/telegraf@v{TELEGRAF_VERSION}"],
        env={**os.environ, "CGO_ENABLED": "0", "GOBIN": str(directory)}, check=True,
    )
    return binary


def quix_python() -> Path:
    """The Python of Quix Streams' own virtual environment, made with the project's uv when missing."""
    python = QUIX_VENV / "bin" / "python"
    if python.exists():
        return python
    uv = str(benchlib.ROOT / "scripts" / "uv")
    print(f"  installing {QUIX_REQUIREMENT} into {QUIX_VENV} ...", flush=True)
    subprocess.run(["nice", "-n", "19", uv, "venv", "--python", "3.11", str(QUIX_VENV)], check=True)
    subprocess.run(["nice", "-n", "19", uv, "pip", "install", "--python", str(python), QUIX_REQUIREMENT], check=True)
    return python


def telegraf_config(topic: str, group: str, database: str) -> str:
    """Telegraf's configuration for these readings (see ../shared/RECIPES.md for why each setting)."""
    return f"""
[agent]
  interval = "10s"
  flush_interval = "1s"
  flush_jitter = "0s"
  metric_batch_size = 10000
  metric_buffer_limit = 1000000
  omit_hostname = true

[[inputs.kafka_consumer]]
  brokers = ["{BROKERS.split(',')[0]}"]
  topics = ["{topic}"]
  consumer_group = "{group}"
  offset = "oldest"
  kafka_version = "3.9.0"
  max_undelivered_messages = 100000
  data_format = "json"
  json_time_key = "timestamp"
  json_time_format = "rfc3339"
  tag_keys = ["meter_id", "region", "status", "building_type"]
  fieldinclude = ["consumption_kwh", "latitude", "longitude", "peak_load"]
  name_override = "energy_consumption"

[[outputs.influxdb]]
  urls = ["{INFLUX}"]
  database = "{database}"
  retention_policy = "raw_data"
  skip_database_creation = true
  content_encoding = "identity"
  timeout = "30s"
"""


class Peer:
    """One consumer run: ``start()`` the processes, ``roots()`` whose CPU counts, ``stop()``."""

    def __init__(self, name: str, topic: str, group: str, database: str, logs: Path) -> None:
        self.name, self.topic, self.group, self.database, self.logs = name, topic, group, database, logs
        self.process: subprocess.Popen | None = None
        self.ingest: IngestProcess | None = None

    def start(self) -> None:
        log = self.logs / f"{self.name}.log"
        if self.name == "product":
            self.ingest = IngestProcess({
                "KAFKA_BROKERS": BROKERS, "KAFKA_TOPIC": self.topic, "KAFKA_GROUP_ID": self.group,
                "INFLUXDB_URL": INFLUX, "INFLUXDB_DATABASE": self.database, "SMARTGRID_REDIS_URL": REDIS,
                "SMARTGRID_REDIS_PREFIX": self.group, "PROCESSOR_ENABLE_AGGREGATIONS": "true",
                "SMARTGRID_LOG_LEVEL": "WARNING",
            }, log)
            self.process = self.ingest.process
            return
        if self.name == "telegraf":
            config = self.logs / f"telegraf-{self.topic}.conf"
            config.write_text(telegraf_config(self.topic, self.group, self.database))
            command = [str(telegraf_binary()), "--config", str(config)]
        else:
            influx = urlparse(INFLUX)
            command = [str(quix_python()), str(Path(__file__).resolve().parent / "peer_quixstreams.py"),
                       BROKERS, self.topic, self.group, influx.hostname or "127.0.0.1", str(influx.port or 8086),
                       self.database]
        with log.open("ab") as handle:
            self.process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)

    def roots(self) -> list[psutil.Process]:
        return [psutil.Process(self.process.pid)] if self.process is not None else []

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.ingest is not None:
            self.ingest.stop()
        elif self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


# ---- one measured run ------------------------------------------------------------------------

def crossing(samples: list[tuple[float, int, dict[str, float]]], level: float) -> tuple[float, dict[str, float]] | None:
    """(time, CPU seconds per group) when the stored count crossed ``level``, interpolated between polls."""
    for (t0, c0, cpu0), (t1, c1, cpu1) in zip(samples, samples[1:]):
        if c0 < level <= c1:
            share = (level - c0) / (c1 - c0)
            return t0 + share * (t1 - t0), {k: cpu0[k] + share * (cpu1[k] - cpu0[k]) for k in cpu0}
    return None


class PointsWritten:
    """Points InfluxDB's shards of ``database`` took so far, from influxd's statistics
    (``/debug/vars``, each shard's ``writePointsOk``). Reading them costs influxd nothing, where a
    ``count()`` over 100k series costs it up to 2 CPU-seconds (300k points, measured apart), inside
    the window measured. Redelivered points count again here, so the run ends on a ``count()``
    query once this reaches N (after the last CPU sample)."""

    def __init__(self, url: str, database: str) -> None:
        self.database = database
        self.http = httpx.Client(base_url=url, timeout=10)

    def poll(self) -> int:
        response = self.http.get("/debug/vars")
        response.raise_for_status()
        return sum(int(stat["values"].get("writePointsOk", 0)) for key, stat in response.json().items()
                   if key.startswith("shard") and (stat.get("tags") or {}).get("database") == self.database)

    def close(self) -> None:
        self.http.close()


def startup_cpu(peer: Peer, seconds: float) -> float:
    """CPU seconds of ``peer``'s processes from start until ``seconds`` later, on an empty topic:
    start-up (imports, connections) and idle polling, which the measured run subtracts."""
    client = bench_ingest.influx_client(INFLUX, peer.database)
    client.ensure_schema()
    account = benchlib.CpuAccount({"peer": (peer.roots, True)})
    peer.start()
    account.start()
    try:
        time.sleep(seconds)
        return account.snapshot()["peer"]
    finally:
        account.close()
        peer.stop()
        bench_ingest.drop_database(client)  # its snapshots and compactions must not land in the next run
        client.close()


def measure(peer: Peer, records: int, servers: dict[str, benchlib.PortProcess], poll: float, stall: float,
            startup: float) -> dict:
    """Start ``peer``, poll InfluxDB until all ``records`` are stored (or no progress for ``stall`` s).

    ``startup``: the peer's start-up CPU seconds (:func:`startup_cpu`), taken off its run's CPU.
    """
    client = bench_ingest.influx_client(INFLUX, peer.database)
    client.ensure_schema()
    account = benchlib.CpuAccount({
        "peer": (peer.roots, True),
        **{role: (process, False) for role, process in servers.items()},
    })
    began = time.monotonic()
    peer.start()
    account.start()
    samples: list[tuple[float, int, dict[str, float]]] = []
    progress_at, last = time.monotonic(), -1
    unavailable = 0
    written = PointsWritten(INFLUX, peer.database)
    counted = 0  # distinct points stored, by query, once the shards took N
    try:
        while True:
            cpu = account.snapshot()
            try:
                count = written.poll()
                if count >= records:  # then check by query (after the CPU sample: not counted)
                    counted = bench_ingest.count_points(client)
            except (InfluxUnavailable, httpx.HTTPError):  # restarted by other work on the machine: the run is flagged
                unavailable += 1
                if time.monotonic() - progress_at > stall:
                    print(f"  {peer.name}: InfluxDB unreachable for {stall:.0f} s")
                    break
                time.sleep(poll)
                continue
            now = time.monotonic()
            samples.append((now - began, count, cpu))
            if counted >= records:
                break
            if count != last:
                last, progress_at = count, now
            if now - progress_at > stall:
                print(f"  {peer.name}: no progress for {stall:.0f} s at {count:,} of {records:,}; see {peer.logs / (peer.name + '.log')}")
                break
            if not peer.alive():
                print(f"  {peer.name} exited with {peer.process.returncode}; see {peer.logs / (peer.name + '.log')}")
                break
            time.sleep(max(0.0, poll - (time.monotonic() - now)))
    finally:
        account.close()
        peer.stop()
        written.close()
        if not counted:  # the run ended early: what is stored, by query
            try:
                counted = bench_ingest.count_points(client)
            except InfluxUnavailable:
                pass
        bench_ingest.drop_database(client)  # its snapshots and compactions must not land in the next run
        client.close()
    if not samples:
        samples.append((0.0, 0, account.snapshot()))
    stored = counted
    low, high = crossing(samples, 0.1 * records), crossing(samples, 0.9 * records)
    result = {"peer": peer.name, "records": records, "stored": stored, "all_stored": stored == records,
              "startup_cpu_seconds": startup, "polls": len(samples), "influx_unavailable_polls": unavailable,
              "restarted": [role for role in servers if account.processes(role) > 1]}
    if low is None or high is None or high[0] <= low[0]:
        return result | {"msgs_per_s": None}
    messages = 0.8 * records
    seconds = high[0] - low[0]
    window = {group: (high[1][group] - low[1][group]) / messages * 1e6 for group in high[1]}
    # The whole run: the peer from its start (less its start-up) and the servers from the last poll
    # before the first point was stored, to the poll that saw all of them (or the last one).
    before_first = max((i for i, (_, count, _) in enumerate(samples) if count == 0), default=0)
    end_cpu, first_cpu = samples[-1][2], samples[before_first][2]
    run = {group: (end_cpu[group] - first_cpu[group]) / stored * 1e6 for group in end_cpu}
    run["peer"] = max(0.0, end_cpu["peer"] - startup) / stored * 1e6
    return result | {
        "first_stored_s": samples[min(before_first + 1, len(samples) - 1)][0], "seconds_10_90": seconds,
        "msgs_per_s": messages / seconds, "us_per_msg": run, "us_per_msg_10_90": window,
        "us_per_msg_peer_influxd": run["peer"] + run["influxd"],
    }


# ---- main ------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000, help="N, records per peer (default 300,000)")
    parser.add_argument("--meters", type=int, default=100_000, help="distinct meters in them (default 100,000)")
    parser.add_argument("--rounds", type=int, default=1, help="times each peer runs, in turn; medians reported (default 1)")
    parser.add_argument("--peers", default=",".join(PEER_NAMES), help=f"which, in order (default {','.join(PEER_NAMES)})")
    parser.add_argument("--poll", type=float, default=0.5, help="poll interval for the points stored, s (default 0.5)")
    parser.add_argument("--stall", type=float, default=90.0, help="give up on a peer after this long without progress, s (default 90)")
    parser.add_argument("--startup", type=float, default=10.0,
                        help="how long each peer first runs on an empty topic, to measure its start-up CPU, s (default 10)")
    return parser


def median_of(runs: list[dict], key) -> float | None:
    values = [key(run) for run in runs if run.get("msgs_per_s")]
    return statistics.median(values) if values else None


def main() -> int:
    args = build_parser().parse_args()
    bench_freshness.exit_on_sigterm()
    peers = [name.strip() for name in args.peers.split(",") if name.strip()]
    unknown = set(peers) - set(PEER_NAMES)
    if unknown:
        raise SystemExit(f"unknown peer(s) {', '.join(sorted(unknown))}: choose from {', '.join(PEER_NAMES)}")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    logs = Path(mkdtemp(prefix="bench-peers-"))
    print(f"peers bench: {args.records:,} records, {args.meters:,} meters, {PARTITIONS} partitions, "
          f"{args.rounds} round(s), {psutil.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    if "telegraf" in peers:
        telegraf_binary()
    if "quixstreams" in peers:
        quix_python()
    servers = benchlib.stack_servers(BROKERS, INFLUX, REDIS)
    influxd_gc = benchlib.go_gc(servers["influxd"])
    print(f"  influxd (the same for every peer): {influxd_gc}")

    began = time.perf_counter()
    records = generate(args.records, meters=args.meters, seed=11, start_ms=int(time.time() * 1000) - 600_000)
    print(f"  generated {len(records):,} records in {time.perf_counter() - began:.1f} s (RFC 3339 timestamps)")
    admin = AdminClient({"bootstrap.servers": BROKERS})
    plan = [(round_index, name) for round_index in range(args.rounds) for name in peers]
    topics, databases, groups = [], [], []
    runs: dict[str, list[dict]] = {name: [] for name in peers}
    try:
        for round_index, name in plan:
            tag = f"{stamp.lower()}-{name}-{round_index + 1}"
            for kind in ("idle", "run"):  # an empty topic for the start-up CPU, then the records
                topics.append(f"bench-peers-{tag}-{kind}")
                groups.append(f"bench-peers-{tag}-{kind}")
                databases.append(f"bench_peers_{tag.replace('-', '_')}_{kind}")
        for topic, future in admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics]).items():
            future.result(30)
        began = time.perf_counter()
        for topic in topics[1::2]:
            produce(records, BROKERS, topic, timeout_s=600)
        print(f"  produced them into {len(plan)} topics in {time.perf_counter() - began:.1f} s (not timed)", flush=True)
        records.clear()
        for index, (round_index, name) in enumerate(plan):
            idle, real = (Peer(name, topics[2 * index + k], groups[2 * index + k], databases[2 * index + k], logs)
                          for k in (0, 1))
            startup = startup_cpu(idle, args.startup)
            time.sleep(3)  # let the previous run's writes settle in influxd
            run = measure(real, args.records, servers, args.poll, args.stall, startup)
            run["round"] = round_index + 1
            runs[name].append(run)
            if run.get("msgs_per_s"):
                per = run["us_per_msg"]
                print(f"  {LABELS[name]:<24} round {round_index + 1}: {run['msgs_per_s']:>9,.0f} msgs/s (10-90 % in "
                      f"{run['seconds_10_90']:.1f} s), CPU µs/msg: own {per['peer']:.1f} (start-up "
                      f"{startup:.1f} s taken off; 10-90 % window {run['us_per_msg_10_90']['peer']:.1f}) + influxd "
                      f"{per['influxd']:.1f} = {run['us_per_msg_peer_influxd']:.1f} (broker {per['kafka broker (JVM)']:.1f}, "
                      f"redis {per['redis-server']:.1f}); stored {run['stored']:,}{'' if run['all_stored'] else ' NOT ALL'}", flush=True)
            else:
                print(f"  {LABELS[name]:<24} round {round_index + 1}: no 10-90 % figure; stored {run['stored']:,} of {args.records:,}", flush=True)
            if run.get("msgs_per_s") and run["seconds_10_90"] < 10 * args.poll:
                print(f"      note: the 10-90 % window ({run['seconds_10_90']:.1f} s) is under 10 polls: its throughput "
                      f"is within about +-{50 * args.poll / run['seconds_10_90']:.0f} %; more --records (with --meters "
                      "scaled) or a shorter --poll steady it")
            if run["restarted"] or run["influx_unavailable_polls"]:
                print(f"      WARNING: restarted during the run by other work: {', '.join(run['restarted']) or 'none'}; "
                      f"InfluxDB unreachable at {run['influx_unavailable_polls']} polls: this run's figures are suspect")
    finally:
        print("  cleaning up (databases, topics, consumer groups, Redis keys) ...")
        clean = argparse.Namespace(brokers=BROKERS, influxdb=INFLUX, redis=REDIS)
        product_prefixes = [group for group in groups if "-product-" in group]
        existing = {group.group_id for group in admin.list_consumer_groups().result(30).valid}
        bench_ingest.cleanup(clean, databases, topics + [f"{t}.dlq" for t in topics],
                             [group for group in groups if group in existing], product_prefixes)

    summary: dict[str, dict] = {}
    for name in peers:
        summary[name] = {
            "msgs_per_s": median_of(runs[name], lambda r: r["msgs_per_s"]),
            "own": median_of(runs[name], lambda r: r["us_per_msg"]["peer"]),
            "own_10_90": median_of(runs[name], lambda r: r["us_per_msg_10_90"]["peer"]),
            "influxd": median_of(runs[name], lambda r: r["us_per_msg"]["influxd"]),
            "own_influxd": median_of(runs[name], lambda r: r["us_per_msg_peer_influxd"]),
            "broker": median_of(runs[name], lambda r: r["us_per_msg"]["kafka broker (JVM)"]),
            "redis": median_of(runs[name], lambda r: r["us_per_msg"]["redis-server"]),
            "all_stored": all(r["all_stored"] for r in runs[name]),
        }
    base = summary.get("telegraf", {})
    median = f" (median of {args.rounds})" if args.rounds > 1 else ""
    print(f"\n== {args.records:,} records each{median}; CPU in µs per message between 10 % and 90 % stored ==")
    print(f"  {'peer':<24} {'msgs/s':>9} {'own':>7} {'(10-90)':>8} {'influxd':>8} {'own+infl':>9} {'broker':>7} {'redis':>6} "
          f"{'all N':>6} {'x thr.':>7} {'x CPU':>6} {'x own':>6}")

    def fmt(value: float | None, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    for name in peers:
        row = summary[name]
        ratio_throughput = ratio_cpu = ratio_own = None
        if base.get("msgs_per_s") and row["msgs_per_s"]:
            ratio_throughput = row["msgs_per_s"] / base["msgs_per_s"]
            ratio_cpu = row["own_influxd"] / base["own_influxd"]
            ratio_own = row["own"] / base["own"]
        row["x_telegraf_throughput"], row["x_telegraf_cpu"], row["x_telegraf_own_cpu"] = ratio_throughput, ratio_cpu, ratio_own
        print(f"  {LABELS[name]:<24} {fmt(row['msgs_per_s'], ',.0f'):>9} {fmt(row['own'], '.1f'):>7} {fmt(row['own_10_90'], '.1f'):>8} "
              f"{fmt(row['influxd'], '.1f'):>8} {fmt(row['own_influxd'], '.1f'):>9} {fmt(row['broker'], '.1f'):>7} "
              f"{fmt(row['redis'], '.1f'):>6} {'yes' if row['all_stored'] else 'NO':>6} "
              f"{fmt(ratio_throughput, '.2f'):>7} {fmt(ratio_cpu, '.2f'):>6} {fmt(ratio_own, '.2f'):>6}")
    product = summary.get("product", {})
    met = None
    if product.get("x_telegraf_throughput") is not None and "telegraf" in summary:
        met = (product["x_telegraf_throughput"] >= THROUGHPUT_GOAL and product["x_telegraf_cpu"] <= CPU_GOAL
               and product["all_stored"])
        print(f"  goal: >= {THROUGHPUT_GOAL}x Telegraf's throughput and <= {CPU_GOAL}x its CPU per message (own + influxd), "
              f"all N stored: {'met' if met else 'NOT met'} (x{product['x_telegraf_throughput']:.2f} throughput, "
              f"x{product['x_telegraf_cpu']:.2f} CPU)")
        if summary["telegraf"].get("own_influxd") and product.get("influxd") is not None:
            # The CPU ratio cannot go below influxd's work for the product's points alone.
            floor = product["x_telegraf_influxd_floor"] = product["influxd"] / summary["telegraf"]["own_influxd"]
            print(f"  floor: influxd alone, under this product, is x{floor:.2f} Telegraf's CPU per message (own + influxd)")
    print("  x thr., x CPU (own + influxd), x own: ratios to Telegraf in this run")
    print("  own: the peer's processes, from start to N stored less their start-up on an empty topic, per message stored;")
    print("  (10-90): own CPU in the throughput window only; influxd, broker, redis: from the first point stored to N stored;")
    print("  broker and redis are shared servers, context only (other work on the machine lands there too); influxd's")
    cache_mb = (args.meters * 4 * 110 + args.records * 4 * 16) / 1e6  # keys per series and field, values (docs/capacity.md)
    print(f"  cache snapshots (the stack's: at 100 MB; a run fills ~{cache_mb:.0f} MB) "
          + ("fall after every run: no peer's figure has them;" if cache_mb < 100 else
             "fall inside a slow writer's window and partly after a fast one's;"))
    print("  influxd works per series of a write: a peer whose writes hold one point per series (Telegraf's: it interleaves")
    print("  the partitions) costs it ~1.6x per point what writes holding a partition's consecutive readings do")
    print("  (bench/bench_influx_shapes.py); at scale every write holds one point per series, whoever writes it")
    out = {"timestamp": stamp, "command": " ".join(["bench/bench_peers.py", *sys.argv[1:]]), "cpus": psutil.cpu_count(),
           "influxd_gc": influxd_gc, "settings": vars(args), "runs": runs, "summary": summary, "goal_met": met, "logs": str(logs)}
    benchlib.save_results("peers", stamp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
