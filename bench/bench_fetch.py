"""The live reader's CPU for each fetch setting (or each build), on the same live load, in one run.

Runs the meter simulator as a process of its own at ``--rate`` readings/s into a fresh 32-partition
topic (its producer as shipped: lz4, 20 ms linger) and, in this process, reads it from its end with
ingest's native reader as the live path does (``Reader.poll`` folding every reading and building
its line), once per fetch setting, the settings alternating ``--rounds`` times. For each it prints
the readings read per second and, per reading, the CPU of the polling thread, of librdkafka's
broker thread, and of the Kafka broker JVM (the whole broker: run nothing else against it). The
first setting is the baseline of the ratios. With ``--builds``, the variants are builds of the
native module instead (this commit's and another's, say), read with the fetch as shipped: what a
change of the native code does to the live reader, measured alternating on the same load (this
box's noise moves single runs by 10-20 %). Needs the local stack (``scripts/stack up``):

    scripts/uv run --no-sync python bench/bench_fetch.py [--rate 20000] [--fetch 50:262144 100:1048576]
    scripts/uv run --no-sync python bench/bench_fetch.py --builds BASE.so services/ingest/src/ingest/_hotpath.abi3.so
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from tempfile import mkdtemp

from types import ModuleType

from confluent_kafka.admin import AdminClient, NewTopic
from ingest import _hotpath
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


def measure(topic: str, wait_ms: int | None, min_bytes: int | None, seconds: float, warmup: float, broker,
            hotpath: ModuleType = _hotpath) -> dict:
    """Read ``topic`` from its end with one fetch setting (None: as shipped) and one build of the
    native module; CPU per reading of each part."""
    # The live path's own reader settings; only the fetch varies.
    config = reader_config(load_settings(IngestSettings), f"bench-fetch-{uuid.uuid4().hex[:8]}") | {"bootstrap.servers": BROKERS}
    if wait_ms is not None:
        config |= {"fetch.wait.max.ms": str(wait_ms), "fetch.min.bytes": str(min_bytes)}
    reader, live = hotpath.Reader(config, topic), hotpath.Processor(topic, "ms", True, 300_000, lines=False)
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


def load_build(path: str) -> ModuleType:
    """Another build of ingest's native module (an ``_hotpath*.so`` file), loaded beside this one."""
    if not Path(path).is_file():
        raise SystemExit(f"--builds: no file {path} (build another commit with scripts/bootstrap in a git worktree)")
    spec = importlib.util.spec_from_file_location("ingest._hotpath", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--builds: {path} is not a Python extension module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=20_000, help="readings/s produced (default 20,000)")
    parser.add_argument("--fetch", type=fetch_arg, nargs="+", default=[(50, 262_144), (100, 1_048_576), (200, 1_048_576)],
                        help="fetch settings as wait_ms:min_bytes (default 50:262144 100:1048576 200:1048576; the first is the baseline)")
    parser.add_argument("--builds", nargs="+", metavar="SO",
                        help="compare builds of the native module instead, fetch as shipped: paths of _hotpath*.so files "
                             "(another commit's: `git worktree add DIR COMMIT`, `scripts/bootstrap` in DIR, then "
                             "DIR/services/ingest/src/ingest/_hotpath.abi3.so); the first is the baseline")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured per setting and round, s (default 20)")
    parser.add_argument("--warmup", type=float, default=5.0, help="read before each window, s (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    parser.add_argument("--meters", type=int, default=100_000, help="distinct meters (default 100,000)")
    args = parser.parse_args()
    if args.builds:
        variants = {path: (None, None, load_build(path)) for path in args.builds}
    else:
        variants = {f"{wait_ms} ms, {min_bytes:,} B": (wait_ms, min_bytes, _hotpath) for wait_ms, min_bytes in args.fetch}

    broker = benchlib.stack_servers(BROKERS, INFLUX, REDIS)["kafka broker (JVM)"]
    topic = f"bench-fetch-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": BROKERS})
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS)])[topic].result(30)
    total = (args.seconds + args.warmup) * len(variants) * args.rounds + 30
    load = benchlib.start_simulator(BROKERS, topic, args.rate, args.meters, total, Path(mkdtemp(prefix="bench-fetch-")) / "simulator.log")
    try:
        time.sleep(3)
        results: dict[str, list[dict]] = {label: [] for label in variants}
        for _ in range(args.rounds):
            for label, (wait_ms, min_bytes, hotpath) in variants.items():
                results[label].append(measure(topic, wait_ms, min_bytes, args.seconds, args.warmup, broker, hotpath))
    finally:
        load.kill()
        load.wait(10)
        admin.delete_topics([topic])
    print(f"live reader per {'build' if args.builds else 'fetch setting'}: {args.rate:,} readings/s produced, {args.meters:,} meters, "
          f"{PARTITIONS} partitions, {args.rounds} alternating round(s) of {args.seconds:.0f} s each, mean of the rounds; "
          "µs of CPU per reading")
    width = max(24, *(len(label) for label in variants))
    print(f"  {'build' if args.builds else 'fetch wait, min bytes':<{width}} {'read/s':>8} {'poll thread':>12} {'rdk broker':>11} "
          f"{'reader':>8} {'x base':>7} {'Kafka broker':>13} {'x base':>7}   poll thread per round")
    base = None
    for label, runs in results.items():
        mean = {key: sum(run[key] for run in runs) / len(runs) for key in ("per_s", "poll_us", "fetch_us", "broker_us")}
        reader = mean["poll_us"] + mean["fetch_us"]
        base = base or (reader, mean["broker_us"])
        print(f"  {label:<{width}} {mean['per_s']:>8,.0f} {mean['poll_us']:>12.2f} {mean['fetch_us']:>11.2f} "
              f"{reader:>8.2f} {reader / base[0]:>7.2f} {mean['broker_us']:>13.2f} {mean['broker_us'] / base[1]:>7.2f}   "
              + ", ".join(f"{run['poll_us']:.2f}" for run in runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
