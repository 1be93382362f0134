"""Idle cost: CPU and wake-ups per second of each service's threads with no traffic.

At a low rate, what a service spends per second whatever the rate (its loops' ticks, empty
fetches, stats reports) is a large share of its CPU per reading: at 20k readings/s, 10 ms of CPU
a second is 0.5 µs per reading. This starts ingest (32 partitions of a fresh topic assigned, as
shipped: aggregations on), the aggregator and the writer on the local stack, waits until ingest
is ready, then reads each thread's CPU time and voluntary context switches (its wake-ups) from
/proc over ``--seconds``. Prints them per process and per thread (threads named where the service
names them), and removes what it created. Run with the stack up (``scripts/stack up``):

    uv run --no-sync python bench/bench_idle.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from tempfile import mkdtemp

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

import benchlib  # noqa: E402
from aggregator.testing import free_port, start_service  # noqa: E402
from ingest_harness import INFLUX, REDIS, IngestProcess, Names  # noqa: E402

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    names = Names()
    logs = Path(mkdtemp(prefix="bench-idle-"))
    common = {"SMARTGRID_REDIS_URL": REDIS, "SMARTGRID_REDIS_PREFIX": names.prefix, "INFLUXDB_URL": INFLUX,
              "INFLUXDB_DATABASE": names.database, "SMARTGRID_HTTP_HOST": "127.0.0.1"}
    ingest = IngestProcess({**names.env(), "INFLUXDB_BATCH_TIMEOUT": "1s", "KAFKA_BATCH_TIMEOUT": "500ms"},
                           logs / "ingest.log")
    others = {
        module: start_service(module, {**common, "SMARTGRID_HTTP_PORT": str(free_port())}, str(logs / f"{module}.log"))
        for module in ("aggregator", "writer")
    }
    try:
        ingest.wait_ready()
        time.sleep(5)  # past start-up: the first checkpoints, the schema
        roots = {"ingest": ingest.process.pid, **{module: proc.pid for module, proc in others.items()}}
        groups = {
            service: [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
            for service, pid in roots.items()
        }
        every = [pid for pids in groups.values() for pid in pids]
        before = benchlib.thread_times(every)
        time.sleep(args.seconds)
        after = benchlib.thread_times(every)
        print(f"idle cost over {args.seconds:.0f} s, no traffic (ingest: 32 partitions assigned); "
              f"per second: CPU in ms, wake-ups (voluntary context switches)")
        for service, pids in groups.items():
            rows = [(name, pid, tid, cpu / args.seconds * 1000, switches / args.seconds)
                    for name, pid, tid, cpu, switches in benchlib.thread_rows(before, after, pids)]
            total_cpu, total_wakeups = sum(r[3] for r in rows), sum(r[4] for r in rows)
            print(f"  {service:<12} {total_cpu:6.2f} ms/s  {total_wakeups:6.1f} wake-ups/s")
            for name, pid, tid, cpu, wakeups in rows:
                if cpu > 0 or wakeups >= 1:
                    print(f"      {name:<16} pid {pid:<7} tid {tid:<7} {cpu:6.2f} ms/s  {wakeups:6.1f} wake-ups/s")
        print(f"  (CPU time is counted in ticks of {1000 / benchlib.TICK:.0f} ms: below {1000 / benchlib.TICK / args.seconds:.2f} ms/s "
              f"a thread shows 0)")
    finally:
        ingest.process.terminate()
        ingest.process.wait(30)
        for proc in others.values():
            proc.terminate()
            proc.wait(30)
        names.cleanup()


if __name__ == "__main__":
    main()
