"""What a point costs influxd, by the shape of the writes that carry it.

The same N points (the product's own lines for N simulator records, ``--meters`` meters) are
written into a fresh database of the stack's InfluxDB in ``--batch``-point bodies by two writers,
in two orders:

- **one point per series**: the records in the order they were made, a round of every meter at a
  time, so each body holds ``--batch`` series with one point each. This is what every write looks
  like at scale, where a write covers less time than a meter's reporting interval, and what
  Telegraf's bodies look like in ``bench_peers.py`` (its consumer interleaves the partitions);
- **by partition**: the records grouped by partition (keyed by meter id, as Kafka does), so a body
  holds consecutive readings of a partition's meters: several points per series. This is what the
  product's bodies look like when it catches up on a backlog of few meters, as in
  ``bench_peers.py``.

For each it prints the series per body, influxd's CPU per point during the writes (from /proc)
and with 3 s of settling after them (cache snapshots), the rate, and the ratio to the first
shape. Shapes alternate for ``--rounds`` rounds; figures are medians. Much of influxd's work is
per series and field of a write (a cache entry to find, a key in the WAL record, values grouped
per key), so the first shape costs it more per point. Run on purpose:

    uv run --no-sync python bench/bench_influx_shapes.py [--records 300000] [--meters 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

import bench_ingest  # noqa: E402
import benchlib  # noqa: E402
from ingest._hotpath import convert_one  # noqa: E402
from ingest_harness import BROKERS, INFLUX, REDIS  # noqa: E402
from simulator import generate  # noqa: E402
from smartgrid_common.influx import InfluxClient  # noqa: E402
from smartgrid_common.settings import InfluxSettings  # noqa: E402

PARTITIONS = 32
SHAPES = ("one point per series", "by partition")


def bodies_of(records: list[tuple[bytes, bytes]], shape: str, batch: int) -> list[bytes]:
    if shape == "by partition":  # stable: a partition's records keep their order
        records = sorted(records, key=lambda record: zlib.crc32(record[0]) % PARTITIONS)
    lines = []
    for _, value in records:
        line, error = convert_one(value, "ms", False)
        if error:
            raise SystemExit(f"a simulator record was refused: {error}")
        lines.append(line.encode())  # ends with its newline
    return [b"".join(lines[start:start + batch]) for start in range(0, len(lines), batch)]


def series_per_body(body: bytes) -> int:
    return len({line.rsplit(b" ", 2)[0] for line in body.splitlines()})


def write_all(url: str, database: str, bodies: list[bytes], influxd: benchlib.CpuAccount, writers: int,
              settle: float) -> tuple[float, float, float]:
    """Write ``bodies`` into a fresh ``database``; (influxd CPU s during the writes, with the
    settling after them, wall s of the writes). The database is dropped after."""
    client = InfluxClient(InfluxSettings.model_validate({"INFLUXDB_URL": url, "INFLUXDB_DATABASE": database}))
    client.ensure_schema()  # as the product ships it: no gzip
    try:
        time.sleep(1.0)
        cpu0, began = influxd.snapshot()["influxd"], time.monotonic()
        with ThreadPoolExecutor(writers) as pool:
            for rejected in pool.map(lambda body: client.write(body, "raw_data"), bodies):
                if rejected:
                    raise SystemExit(f"influxd refused lines: {rejected[:3]}")
        cpu1, wall = influxd.snapshot()["influxd"], time.monotonic() - began
        time.sleep(settle)
        cpu2 = influxd.snapshot()["influxd"]
        stored = bench_ingest.count_points(client)
        expected = sum(body.count(b"\n") for body in bodies)
        if stored != expected:
            raise SystemExit(f"{database}: {stored:,} points stored of {expected:,}")
        return cpu1 - cpu0, cpu2 - cpu0, wall
    finally:
        bench_ingest.drop_database(client)
        client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=300_000, help="points per run (default 300,000)")
    parser.add_argument("--meters", type=int, default=100_000, help="distinct meters (series) in them (default 100,000)")
    parser.add_argument("--batch", type=int, default=10_000, help="points per write (default 10,000, INFLUXDB_BATCH_SIZE)")
    parser.add_argument("--writers", type=int, default=2, help="concurrent writes (default 2, SMARTGRID_INFLUXDB_CONCURRENCY)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, shapes alternating (default 3)")
    parser.add_argument("--settle", type=float, default=3.0, help="s counted after the last write (default 3)")
    args = parser.parse_args()
    server = benchlib.stack_servers(BROKERS, INFLUX, REDIS)["influxd"]
    influxd = benchlib.CpuAccount({"influxd": (server, False)})
    influxd.start()
    records = generate(args.records, meters=args.meters, seed=11, start_ms=int(time.time() * 1000) - 600_000)
    bodies = {shape: bodies_of(records, shape, args.batch) for shape in SHAPES}
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dt%H%M%Sz")
    print(f"influx shapes: {args.records:,} points of {args.meters:,} meters, {args.batch:,}-point writes, "
          f"{args.writers} writers, {args.rounds} rounds; influxd: {benchlib.go_gc(server)}", flush=True)
    runs: dict[str, list[tuple[float, float, float]]] = {shape: [] for shape in SHAPES}
    try:
        for round_index in range(args.rounds):
            for index, shape in enumerate(SHAPES):
                database = f"bench_shapes_{stamp}_{round_index}_{index}"
                during, settled, wall = write_all(INFLUX, database, bodies[shape], influxd, args.writers, args.settle)
                runs[shape].append((during / args.records * 1e6, settled / args.records * 1e6, args.records / wall))
                print(f"  round {round_index + 1} {shape:<22} {runs[shape][-1][0]:6.1f} µs/point, {runs[shape][-1][1]:6.1f} "
                      f"with settling, {runs[shape][-1][2]:8,.0f} points/s", flush=True)
    finally:
        influxd.close()
    print(f"\n== influxd CPU per point by the shape of the writes (medians of {args.rounds}) ==")
    print(f"  {'shape':<22} {'series/body':>11} {'pts/series':>10} {'µs/point':>9} {'settled':>8} {'points/s':>9} {'x first':>8}")
    base = None
    for shape in SHAPES:
        series = statistics.median(series_per_body(body) for body in bodies[shape][:-1] or bodies[shape])
        during, settled, rate = (statistics.median(run[k] for run in runs[shape]) for k in range(3))
        base = base or settled
        print(f"  {shape:<22} {series:>11,.0f} {args.batch / series:>10.2f} {during:>9.1f} {settled:>8.1f} {rate:>9,.0f} {settled / base:>8.2f}")
    print("  µs/point: influxd's CPU during the writes; settled: with the next --settle s (cache snapshots); x first: settled, ratio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
