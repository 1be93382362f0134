"""The live reader's CPU for each fetch setting, on the same live load, in one run.

Runs the meter simulator as a process of its own at ``--rate`` readings/s into a fresh 32-partition
topic (its producer as shipped: lz4, 20 ms linger) and, in this process, reads it from its end with
ingest's native reader as the live path does (``Reader.poll`` folding every reading and building
its line), once per fetch setting, the settings alternating ``--rounds`` times. For each it prints
the readings read per second and, per reading, the CPU of the polling thread, of librdkafka's
broker thread, and of the Kafka broker JVM (the whole broker: run nothing else against it). The
first setting is the baseline of the ratios. Needs the local stack (``scripts/stack up``):

    scripts/uv run --no-sync python bench/bench_fetch.py [--rate 20000] [--fetch 50:262144 100:1048576]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from tempfile import mkdtemp

from confluent_kafka.admin import AdminClient, NewTopic
from ingest._hotpath import Processor, Reader
from ingest.records import reader_config
from ingest.settings import IngestSettings
from smartgrid_common.settings import load_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

import benchlib  # noqa: E402
from ingest_harness import BROKERS, INFLUX, REDIS  # noqa: E402

PARTITIONS = 32
OFFSET_END = -1


def fetch_arg(text: str) -> tuple[int, int]:
    """``wait_ms:min_bytes``, e.g. ``100:1048576``."""
    wait, _, min_bytes = text.partition(":")
    return int(wait), int(min_bytes or 1)


def measure(topic: str, wait_ms: int, min_bytes: int, seconds: float, warmup: float, broker) -> dict:
    """Read ``topic`` from its end with one fetch setting; CPU per reading of each part."""
    # The live path's own reader settings; only the fetch varies.
    config = reader_config(load_settings(IngestSettings), f"bench-fetch-{uuid.uuid4().hex[:8]}") | {
        "bootstrap.servers": BROKERS, "fetch.wait.max.ms": str(wait_ms), "fetch.min.bytes": str(min_bytes)}
    reader, live = Reader(config, topic), Processor(topic, "ms", True, 300_000, lines=False)
    for partition in range(PARTITIONS):
        reader.hand_off(partition, -1)  # build the lines too, as the live path does when attached
    reader.assign([(partition, OFFSET_END) for partition in range(PARTITIONS)])
    pid = os.getpid()
    read, began = 0, time.monotonic()
    window = None
    while time.monotonic() - began < warmup + seconds:
        read += reader.poll(live, 10_000, 0.25).records
        live.take_summaries()
        if window is None and time.monotonic() - began >= warmup:
            window = (read, time.monotonic(), benchlib.thread_times([pid]), benchlib.cpu_seconds(broker()[0]))
    read0, t0, threads0, broker0 = window
    elapsed, readings = time.monotonic() - t0, read - read0
    rows = benchlib.thread_rows(threads0, benchlib.thread_times([pid]), [pid])
    broker_cpu = benchlib.cpu_seconds(broker()[0]) - broker0
    reader.close()
    poll = sum(cpu for _name, _pid, tid, cpu, _wakeups in rows if tid == threading.get_native_id())
    fetch = sum(cpu for name, _pid, _tid, cpu, _wakeups in rows if name.startswith("rdk:broker"))
    return {"per_s": readings / elapsed, "poll_us": poll / readings * 1e6, "fetch_us": fetch / readings * 1e6,
            "broker_us": broker_cpu / readings * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=20_000, help="readings/s produced (default 20,000)")
    parser.add_argument("--fetch", type=fetch_arg, nargs="+", default=[(50, 262_144), (100, 1_048_576), (200, 1_048_576)],
                        help="fetch settings as wait_ms:min_bytes (default 50:262144 100:1048576 200:1048576; the first is the baseline)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured per setting and round, s (default 20)")
    parser.add_argument("--warmup", type=float, default=5.0, help="read before each window, s (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    parser.add_argument("--meters", type=int, default=100_000, help="distinct meters (default 100,000)")
    args = parser.parse_args()

    broker = benchlib.stack_servers(BROKERS, INFLUX, REDIS)["kafka broker (JVM)"]
    topic = f"bench-fetch-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": BROKERS})
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS)])[topic].result(30)
    total = (args.seconds + args.warmup) * len(args.fetch) * args.rounds + 30
    load = benchlib.start_simulator(BROKERS, topic, args.rate, args.meters, total, Path(mkdtemp(prefix="bench-fetch-")) / "simulator.log")
    try:
        time.sleep(3)
        results: dict[tuple[int, int], list[dict]] = {setting: [] for setting in args.fetch}
        for _ in range(args.rounds):
            for setting in args.fetch:
                results[setting].append(measure(topic, *setting, args.seconds, args.warmup, broker))
    finally:
        load.kill()
        load.wait(10)
        admin.delete_topics([topic])
    print(f"live reader per fetch setting: {args.rate:,} readings/s produced, {args.meters:,} meters, {PARTITIONS} partitions, "
          f"{args.rounds} alternating round(s) of {args.seconds:.0f} s each, mean of the rounds; µs of CPU per reading")
    print(f"  {'fetch wait, min bytes':<24} {'read/s':>8} {'poll thread':>12} {'rdk broker':>11} {'reader':>8} {'x base':>7} "
          f"{'Kafka broker':>13} {'x base':>7}")
    base = None
    for (wait_ms, min_bytes), runs in results.items():
        mean = {key: sum(run[key] for run in runs) / len(runs) for key in ("per_s", "poll_us", "fetch_us", "broker_us")}
        reader = mean["poll_us"] + mean["fetch_us"]
        base = base or (reader, mean["broker_us"])
        print(f"  {f'{wait_ms} ms, {min_bytes:,} B':<24} {mean['per_s']:>8,.0f} {mean['poll_us']:>12.2f} {mean['fetch_us']:>11.2f} "
              f"{reader:>8.2f} {reader / base[0]:>7.2f} {mean['broker_us']:>13.2f} {mean['broker_us'] / base[1]:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
