"""Capacity: CPU per reading of every process of the pipeline, at a steady load, on the real stack.

Starts ingest (aggregations on), the aggregator and the writer as real processes on a fresh
32-partition topic, Redis prefix and InfluxDB database, then runs the meter simulator as a process
of its own at ``--rate`` readings/s (event time = now, ``--meters`` meters). After ``--warmup``
seconds it reads the CPU time (user + system, from /proc) of every process for ``--seconds``:
ingest (main process and its workers), aggregator, writer, and the local stack's redis-server,
influxd and Kafka broker JVM (found by their ports), plus the load generator and this script, shown
apart. Each process's CPU seconds are divided by the readings ingest committed in that window:
microseconds of CPU per reading, which is also the number of cores it needs per 1M readings/s.

``--rate max`` runs the simulator flat out: the committed rate is then the highest this machine
sustains with everything on it (the simulator included). The rate counts as sustained when ingest
committed at least 95 % of what was produced in the window.

The machine may be shared: the stack's servers also serve whatever else runs on it (their CPU
is counted whole), and the whole box's busy CPU is printed next to the sum, so the difference shows.
Writes bench/results/capacity-<timestamp>.json; removes the topic, database, consumer group and
Redis keys it created. Run on purpose, with the stack up (``scripts/stack up``):

    uv run --no-sync python bench/bench_capacity.py [--rate 20000|max] [--seconds 60] [--warmup 15]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from tempfile import mkdtemp

import psutil
import redis as redis_client

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

import bench_freshness  # noqa: E402
import bench_ingest  # noqa: E402
import benchlib  # noqa: E402
from aggregator.testing import free_port, start_service  # noqa: E402
from ingest_harness import BROKERS, INFLUX, REDIS, IngestProcess, Names, end_offsets, wait_until  # noqa: E402
from smartgrid_common.contracts import summary_stream  # noqa: E402

PARTITIONS = 32
SUSTAINED_SHARE = 0.95
PIPELINE = ("ingest", "aggregator", "writer", "redis-server", "influxd", "kafka broker (JVM)")
APART = ("load generator (simulator)", "this script")
INGEST_SUPERVISOR = "  of which its HTTP process"  # the supervisor (API, stats, metrics); the rest: its workers


def rate_arg(text: str) -> int:
    """A readings/s figure, or ``max`` (0: the simulator runs flat out)."""
    if text == "max":
        return 0
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("--rate must be a positive number of readings/s, or max")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=rate_arg, default=20_000,
                        help="readings/s produced, or max: flat out (default 20,000)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the measured window, s (default 60)")
    parser.add_argument("--warmup", type=float, default=15.0, help="load before the window opens, s (default 15)")
    parser.add_argument("--meters", type=int, default=100_000, help="distinct meters (default 100,000)")
    parser.add_argument("--workers", type=int, default=1, help="PROCESSOR_WORKER_COUNT of ingest (default 1, as shipped)")
    return parser


def topic_end(topic: str) -> int:
    """Records in ``topic`` so far (sum of the partitions' end offsets)."""
    return sum(end_offsets(topic, PARTITIONS).values())


def run(rate: int, seconds: float, warmup: float, meters: int, workers: int) -> dict:
    """One capacity run (prints the report); returns its figures."""
    names = Names(PARTITIONS)
    logs = Path(mkdtemp(prefix="bench-capacity-"))
    # Shipped batch timeouts (Names.env sets the tests' shorter ones).
    ingest_env = names.env(PROCESSOR_ENABLE_AGGREGATIONS="true", PROCESSOR_WORKER_COUNT=str(workers),
                           KAFKA_BATCH_TIMEOUT="500ms", INFLUXDB_BATCH_TIMEOUT="1s", SMARTGRID_LOG_LEVEL="WARNING")
    service_env = {"SMARTGRID_REDIS_PREFIX": names.prefix, "INFLUXDB_DATABASE": names.database,
                   "SMARTGRID_HTTP_HOST": "127.0.0.1", "SMARTGRID_LOG_LEVEL": "WARNING"}
    servers = benchlib.stack_servers(BROKERS, INFLUX, REDIS)
    services: dict[str, object] = {}
    ingest = load = account = None
    try:
        api_port = free_port()
        services["aggregator"] = start_service("aggregator", {**service_env, "SMARTGRID_HTTP_PORT": str(api_port)},
                                               str(logs / "aggregator.log"))
        services["writer"] = start_service("writer", {**service_env, "SMARTGRID_HTTP_PORT": str(free_port())},
                                           str(logs / "writer.log"))
        ingest = IngestProcess(ingest_env, logs / "ingest.log")
        wait_until(lambda: bench_freshness._up(f"http://127.0.0.1:{api_port}"), 60, "the aggregator API")
        ingest.wait_ready(90)

        load = benchlib.start_simulator(BROKERS, names.topic, rate, meters, warmup + seconds + 30, logs / "simulator.log")

        def one(pid: int):
            return lambda: [psutil.Process(pid)]

        groups = {
            "ingest": (one(ingest.process.pid), True),
            INGEST_SUPERVISOR: (one(ingest.process.pid), False),
            "aggregator": (one(services["aggregator"].pid), True),
            "writer": (one(services["writer"].pid), True),
            **{role: (process, False) for role, process in servers.items()},
            "load generator (simulator)": (one(load.pid), True),
            "this script": (lambda: [psutil.Process(os.getpid())], False),
        }
        account = benchlib.CpuAccount(groups)
        account.start()
        time.sleep(warmup)
        if load.poll() is not None:
            raise RuntimeError(f"the simulator exited with {load.returncode}; see {logs / 'simulator.log'}")

        redis = redis_client.Redis.from_url(REDIS)
        stats_key = f"{names.prefix}:agg:stats"
        began = time.monotonic()
        ingest_pids = [ingest.process.pid, *(child.pid for child in psutil.Process(ingest.process.pid).children(recursive=True))]
        threads0 = benchlib.thread_times(ingest_pids)
        cpu0, box0, committed0, produced0 = account.snapshot(), benchlib.box_busy_seconds(), ingest.totals().get("committed", 0), topic_end(names.topic)
        totals0 = ingest.totals()
        applied0 = int(redis.hget(stats_key, "applied") or 0)
        progress: list[tuple[float, int]] = [(0.0, committed0)]
        while time.monotonic() - began < seconds:
            time.sleep(min(5.0, seconds - (time.monotonic() - began)))
            progress.append((time.monotonic() - began, ingest.totals().get("committed", 0)))
        cpu1, box1 = account.snapshot(), benchlib.box_busy_seconds()
        ingest_threads = benchlib.thread_rows(threads0, benchlib.thread_times(ingest_pids), ingest_pids)
        committed1, produced1 = ingest.totals().get("committed", 0), topic_end(names.topic)
        totals1 = ingest.totals()
        read_again = totals1.get("read_again", 0) - totals0.get("read_again", 0)
        detached = totals1.get("detached", 0) - totals0.get("detached", 0)
        elapsed = time.monotonic() - began
        applied1 = int(redis.hget(stats_key, "applied") or 0)
        backlog_summaries = redis.xlen(summary_stream(names.prefix))
        load_avg = os.getloadavg()
        influxd_gc = benchlib.go_gc(servers["influxd"])

        committed, produced = committed1 - committed0, produced1 - produced0
        if committed <= 0:
            raise RuntimeError(f"ingest committed nothing in the window; see {logs}")
        cpu = {name: cpu1[name] - cpu0[name] for name in groups}
        pipeline_total = sum(cpu[name] for name in PIPELINE)
        box = box1 - box0
        sustained = committed >= SUSTAINED_SHARE * produced
        intervals = [(c1 - c0) / (t1 - t0) for (t0, c0), (t1, c1) in zip(progress, progress[1:]) if t1 > t0]

        target = "max (simulator flat out)" if rate == 0 else f"{rate:,} readings/s"
        print(f"capacity bench: {target}, {seconds:.0f} s measured after {warmup:.0f} s warm-up, {meters:,} meters, "
              f"{PARTITIONS} partitions, ingest {workers} worker(s), aggregations on, aggregator + writer on, "
              f"{psutil.cpu_count()} CPUs, load average at the end {load_avg[0]:.1f}; influxd: {influxd_gc}")
        print(f"  produced in the window: {produced:,} ({produced / elapsed:,.0f}/s); committed by ingest: "
              f"{committed:,} ({committed / elapsed:,.0f}/s) -> "
              f"{'sustained' if sustained else 'NOT sustained'} (>= {SUSTAINED_SHARE:.0%} of produced)")
        inherited = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items())
                             if k.startswith(("PROCESSOR_", "INFLUXDB_", "KAFKA_", "SMARTGRID_")) and k not in ingest_env)
        print(f"  settings from the environment: {inherited or 'none (as shipped)'}")
        if not sustained and rate:
            print("  WARNING: not sustained: the live path and the broker work at the produced rate, the raw path at the "
                  "committed one, so the figures per committed reading below are overstated; use a lower --rate")
        print(f"  committed/s per 5 s interval: min {min(intervals):,.0f}, max {max(intervals):,.0f}; backlog "
              f"(produced - committed) at start {produced0 - committed0:,}, at end {produced1 - committed1:,}")
        print(f"  aggregator applied {applied1 - applied0:,} summaries in the window ({backlog_summaries:,} in the stream at the end)")
        print(f"  read a second time by ingest's InfluxDB path (behind the live path): {read_again:,} "
              f"({read_again / committed:.0%} of committed; the live path detached {detached} time(s) in the window)")
        print(f"  {'process':<30} {'CPU s':>8} {'avg cores':>10} {'µs CPU/reading':>15} {'cores per 1M/s':>15}")

        def line(name: str, seconds_cpu: float, count: int | None = None) -> None:
            label = f"{name} ({count} processes)" if count and count > 1 else name
            per_reading = seconds_cpu / committed * 1e6
            print(f"  {label:<30} {seconds_cpu:>8.1f} {seconds_cpu / elapsed:>10.2f} {per_reading:>15.2f} {per_reading:>15.2f}")

        for name in PIPELINE:
            line(name, cpu[name], account.processes(name))
            if name == "ingest":
                line(INGEST_SUPERVISOR, cpu[INGEST_SUPERVISOR])
        line("pipeline total", pipeline_total)
        print("  shown apart:")
        for name in APART:
            line(name, cpu[name], account.processes(name))
        line("whole box (everything)", box)
        line("  of which not listed above", box - pipeline_total - sum(cpu[name] for name in APART))
        print(f"  ingest per thread (threads named in the OS; the HTTP process is pid {ingest.process.pid}; "
              f"CPU counted in ticks of {1000 / benchlib.TICK:.0f} ms):")
        print(f"    {'thread':<16} {'pid':>7} {'µs CPU/reading':>15} {'wake-ups/s':>11}")
        for name, pid, _tid, seconds_cpu, wakeups in ingest_threads:
            if seconds_cpu > 0:
                print(f"    {name:<16} {pid:>7} {seconds_cpu / committed * 1e6:>15.2f} {wakeups / elapsed:>11.1f}")
        restarted = [name for name in servers if account.processes(name) > 1]
        if restarted:
            print(f"  WARNING: restarted during the run by other work on the machine: {', '.join(restarted)}; figures suspect")
        print(f"  logs: {logs}")
        return {
            "rate_target": rate or "max", "seconds": elapsed, "warmup": warmup, "meters": meters, "workers": workers,
            "partitions": PARTITIONS, "cpus": psutil.cpu_count(), "load_average_end": load_avg, "influxd_gc": influxd_gc,
            "produced": produced, "committed": committed, "produced_per_s": produced / elapsed,
            "committed_per_s": committed / elapsed, "sustained": sustained, "committed_per_s_intervals": intervals,
            "backlog_start": produced0 - committed0, "backlog_end": produced1 - committed1, "read_again": read_again, "detached": detached,
            "summaries_applied": applied1 - applied0, "summaries_in_stream_end": backlog_summaries,
            "cpu_seconds": cpu, "pipeline_total_cpu_seconds": pipeline_total, "box_busy_cpu_seconds": box,
            "us_per_reading": {name: value / committed * 1e6 for name, value in cpu.items()}
            | {"pipeline total": pipeline_total / committed * 1e6, "whole box": box / committed * 1e6},
            "ingest_threads": [{"thread": name, "pid": pid, "us_per_reading": seconds_cpu / committed * 1e6,
                                "wakeups_per_s": wakeups / elapsed} for name, pid, _tid, seconds_cpu, wakeups in ingest_threads],
            "processes": {name: account.processes(name) for name in groups}, "restarted": restarted, "logs": str(logs),
        }
    finally:
        if account is not None:
            account.close()
        if load is not None and load.poll() is None:
            load.kill()
            load.wait(10)
        if ingest is not None:
            ingest.stop()
        for service in services.values():
            if service.poll() is None:
                service.kill()
                service.wait(10)
        clean = argparse.Namespace(brokers=BROKERS, influxdb=INFLUX, redis=REDIS)
        bench_ingest.cleanup(clean, [names.database], [names.topic, names.dlq], [names.group], [names.prefix])


def main() -> int:
    args = build_parser().parse_args()
    bench_freshness.exit_on_sigterm()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    result = run(args.rate, args.seconds, args.warmup, args.meters, args.workers)
    result["command"] = " ".join(["bench/bench_capacity.py", *sys.argv[1:]])
    result["timestamp"] = stamp
    benchlib.save_results("capacity", stamp, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
