"""Freshness: produce -> visible in the live API (/api/live), at a fixed load, on the real stack.

Starts ingest + aggregator (+ writer) as real processes on a fresh 32-partition topic, Redis
prefix and InfluxDB database, produces simulated readings at a fixed rate with event time = now,
and polls the aggregator's `/api/live` every `--poll` seconds from a second thread. For each event
second S it finds the first poll at which S's reading count equalled everything produced for S,
and reports that time minus the time the last reading of S was handed to the producer (so it
includes the producer's linger, ingest's batch timeout and InfluxDB write, the summary, the fold
and the poll's resolution). A second, finer figure does the same per produced batch (first poll at
which S's count reached the cumulative count produced for S up to that batch). Run on purpose,
with the stack up (`scripts/stack up`):

    uv run --no-sync python bench/bench_freshness.py [--rate 50000] [--seconds 30]

Ingest throughput with aggregations on vs off is measured by bench/bench_ingest.py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from tempfile import mkdtemp

import httpx
import redis as redis_client

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from aggregator.testing import free_port, start_service  # noqa: E402
from ingest_harness import BROKERS, REDIS, IngestProcess, Names, wait_until  # noqa: E402
from simulator.generator import ReadingGenerator, SimulationConfig  # noqa: E402
from simulator.kafka import KafkaSink  # noqa: E402
from smartgrid_common.contracts import summary_stream  # noqa: E402


def describe(values: list[float]) -> str:
    if not values:
        return "no samples"
    return (f"p50 {statistics.median(values) * 1000:.0f} ms, p99 {percentile(values, 99) * 1000:.0f} ms, "
            f"max {max(values) * 1000:.0f} ms")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))  # nearest rank
    return ordered[index]


class Poller(threading.Thread):
    """GET /api/live every ``interval`` s; keeps (time, {second: count}) snapshots."""

    def __init__(self, api: str, interval: float, ingest: IngestProcess) -> None:
        super().__init__(daemon=True)
        self.api, self.interval, self.ingest = api, interval, ingest
        self.committed: list[tuple[float, int]] = []  # (time, ingest's committed total): where the lag is
        self.snapshots: list[tuple[float, dict[int, int]]] = []
        self.stop = threading.Event()
        self.errors = 0
        self.request_ms: list[float] = []

    def run(self) -> None:
        client = httpx.Client(timeout=2)
        began = time.monotonic()
        tick = 0
        while not self.stop.is_set():
            sent = time.time()
            try:
                body = client.get(f"{self.api}/api/live", params={"seconds": 120}).json()
                seen = time.time()
                self.request_ms.append((seen - sent) * 1000)
                self.snapshots.append((sent, {p["second"]: p["reading_count"] for p in body["points"]}))
            except (httpx.HTTPError, ValueError, KeyError):
                self.errors += 1
            if tick % 5 == 0:
                self.committed.append((time.time(), self.ingest.totals().get("committed", 0)))
            tick += 1
            time.sleep(max(0.0, began + tick * self.interval - time.monotonic()))


def produce_at_rate(sink: KafkaSink, rate: int, seconds: float, batch: int, meters: int):
    """``rate`` readings/s for ``seconds``, event time = now; returns per-batch (second, cum count, send time)."""
    generator = ReadingGenerator(SimulationConfig(meters=meters, seed=1))
    interval = batch / rate
    sent: list[tuple[int, int, float]] = []
    per_second: dict[int, int] = {}
    began = time.monotonic()
    index = 0
    while time.monotonic() - began < seconds:
        out = generator.next_batch(batch)
        sink.send(out.keys, out.values)
        stamp = time.time()
        second = out.event_ms // 1000
        per_second[second] = per_second.get(second, 0) + len(out.values)
        sent.append((second, per_second[second], stamp))
        index += 1
        time.sleep(max(0.0, began + index * interval - time.monotonic()))
    return sent, per_second, time.monotonic() - began


def first_seen(snapshots: list[tuple[float, dict[int, int]]], second: int, count: int, after: float) -> float | None:
    for stamp, counts in snapshots:
        if stamp >= after and counts.get(second, 0) >= count:
            return stamp
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=50_000, help="readings/s produced (default 50,000)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to produce (default 30)")
    parser.add_argument("--warmup", type=float, default=3.0, help="first seconds left out of the figures (default 3)")
    parser.add_argument("--batch", type=int, default=2_500, help="readings per producer call (default 2,500)")
    parser.add_argument("--meters", type=int, default=50_000, help="distinct meters (default 50,000)")
    parser.add_argument("--poll", type=float, default=0.1, help="API poll interval in s (default 0.1)")
    parser.add_argument("--drain", type=float, default=240.0, help="how long to wait for the backlog after producing (s)")
    parser.add_argument("--no-writer", action="store_true", help="do not run the writer")
    args = parser.parse_args()

    names = Names()
    logs = Path(mkdtemp(prefix="bench-freshness-"))
    ingest_env = names.env(PROCESSOR_ENABLE_AGGREGATIONS="true")
    api_port = free_port()
    service_env = {
        "SMARTGRID_REDIS_PREFIX": names.prefix,
        "INFLUXDB_DATABASE": names.database,
        "SMARTGRID_HTTP_HOST": "127.0.0.1",
    }
    processes = []
    ingest = None
    try:
        aggregator = start_service("aggregator", {**service_env, "SMARTGRID_HTTP_PORT": str(api_port)}, str(logs / "aggregator.log"))
        processes.append(aggregator)
        if not args.no_writer:
            processes.append(start_service("writer", {**service_env, "SMARTGRID_HTTP_PORT": str(free_port())}, str(logs / "writer.log")))
        ingest = IngestProcess(ingest_env, logs / "ingest.log")
        api = f"http://127.0.0.1:{api_port}"
        wait_until(lambda: _up(api), 60, "the aggregator API")
        ingest.wait_ready(90)

        sink = KafkaSink(BROKERS, names.topic)
        poller = Poller(api, args.poll, ingest)
        poller.start()
        sent, per_second, elapsed = produce_at_rate(sink, args.rate, args.seconds, args.batch, args.meters)
        sink.flush(60)
        total = sum(per_second.values())
        last_second = max(per_second)
        try:
            wait_until(lambda: bool(poller.snapshots) and poller.snapshots[-1][1].get(last_second, 0) >= per_second[last_second],
                       args.drain, "the last second to be visible")
        except AssertionError as error:
            print(f"  WARNING: {error}; reporting what was seen")
        time.sleep(0.5)
        poller.stop.set()
        poller.join(5)

        cutoff = sent[0][2] + args.warmup
        last_send = {}
        for second, _, stamp in sent:
            last_send[second] = stamp
        per_second_latency, missing = [], []
        for second, count in sorted(per_second.items()):
            if last_send[second] < cutoff:
                continue
            seen = first_seen(poller.snapshots, second, count, last_send[second])
            if seen is None:
                missing.append(second)
            else:
                per_second_latency.append(max(0.0, seen - last_send[second]))
        per_batch_latency = []
        for second, cumulative, stamp in sent:
            if stamp < cutoff:
                continue
            seen = first_seen(poller.snapshots, second, cumulative, stamp)
            if seen is not None:
                per_batch_latency.append(max(0.0, seen - stamp))

        totals = ingest.totals()
        r = redis_client.Redis.from_url(REDIS)
        stats = {k.decode(): int(v) for k, v in r.hgetall(f"{names.prefix}:agg:stats").items()}
        print(f"freshness bench: {args.rate:,} readings/s target for {args.seconds:.0f} s, {args.meters:,} meters, "
              f"{32} partitions, writer {'off' if args.no_writer else 'on'}, poll every {args.poll * 1000:.0f} ms, "
              f"first {args.warmup:.0f} s left out")
        print(f"  settings: KAFKA_BATCH_TIMEOUT={ingest_env['KAFKA_BATCH_TIMEOUT']} INFLUXDB_BATCH_TIMEOUT={ingest_env['INFLUXDB_BATCH_TIMEOUT']} "
              f"(others default)")
        print(f"  produced: {total:,} readings in {elapsed:.1f} s = {total / elapsed:,.0f} readings/s achieved")
        print(f"  ingest: committed {totals.get('committed', 0):,}, written {totals.get('written', 0):,}; "
              f"aggregator: applied {stats.get('applied', 0):,} summaries ({r.xlen(summary_stream(names.prefix)):,} in the stream)")
        print(f"  per event second (last reading produced -> second complete in /api/live), n={len(per_second_latency)}: "
              f"{describe(per_second_latency)}; never complete: {len(missing)}")
        print(f"  per produced batch of {args.batch:,} (batch produced -> its second's count reached it), n={len(per_batch_latency)}: "
              f"{describe(per_batch_latency)}")
        produced_end = sent[-1][2]
        committed_all = next((t for t, c in poller.committed if c >= total), None)
        api_all = first_seen(poller.snapshots, last_second, per_second[last_second], produced_end)
        print(f"  after the last reading was produced: ingest had committed everything at "
              f"+{(committed_all - produced_end) * 1000 if committed_all else float('nan'):.0f} ms (500 ms resolution), "
              f"the API showed everything at +{(api_all - produced_end) * 1000 if api_all else float('nan'):.0f} ms")
        print(f"  API polls: {len(poller.snapshots)}, errors {poller.errors}, request p50 {statistics.median(poller.request_ms):.0f} ms")
        verdict = "met" if per_second_latency and percentile(per_second_latency, 99) <= 1.0 and not missing else "NOT met"
        print(f"  target p99 <= 1 s (per event second): {verdict}")
        print(f"  logs: {logs}")
        return 0
    finally:
        if ingest is not None:
            ingest.stop()
        for proc in processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        names.cleanup()
        client = redis_client.Redis.from_url(REDIS)
        for key in client.scan_iter(f"{names.prefix}:*", count=1000):
            client.delete(key)


def _up(api: str) -> bool:
    try:
        return httpx.get(f"{api}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    sys.exit(main())
