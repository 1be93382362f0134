"""Freshness: produce -> visible in the live API (/api/live), at a fixed load, on the real stack.

Starts ingest + aggregator (+ writer) as real processes on a fresh 32-partition topic, Redis
prefix and InfluxDB database, produces simulated readings at a fixed rate with event time = now,
and polls the aggregator's `/api/live` every `--poll` seconds from a separate process (spawned, so
the producer's GIL does not delay the polls; both stamp with time.time(), same host). For each event
second S it finds the first poll at which S's reading count equalled everything produced for S,
and reports that time minus the time the last reading of S was handed to the producer (so it
includes the producer's linger, ingest's batch timeout and InfluxDB write, the summary, the fold
and the poll's resolution). A second, finer figure does the same per produced batch (first poll at
which S's count reached the cumulative count produced for S up to that batch). Run on purpose,
with the stack up (`scripts/stack up`):

    uv run --no-sync python bench/bench_freshness.py [--rate 50000] [--seconds 30]

Ingest throughput with aggregations on vs off is measured by bench/bench_ingest.py; all three
figures in one run: bench/bench_aggregations.py (which calls :func:`run`).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import signal
import statistics
import sys
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


def _poll_loop(api: str, ingest_url: str, interval: float, parent: int, target, started, seen_all, stop, results) -> None:
    """The poller process: GET /api/live every ``interval`` s until ``stop`` is set (or ``parent`` is gone).

    Keeps (time.time() at send, {second: reading_count}) snapshots and, every 5th tick, (time,
    ingest's committed total). Sets ``seen_all`` once a snapshot shows ``target`` = [second, count]
    (set by the parent after producing). Puts everything on ``results`` when stopped.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent stops us
    client = httpx.Client(timeout=2)
    snapshots: list[tuple[float, dict[int, int]]] = []
    committed: list[tuple[float, int]] = []
    request_ms: list[float] = []
    errors = 0
    started.set()
    began = time.monotonic()
    tick = 0
    while not stop.is_set() and os.getppid() == parent:
        sent = time.time()
        try:
            # The last 60 s: what a live chart shows; a second later than that counts as never complete.
            body = client.get(f"{api}/api/live", params={"seconds": 60}).json()
            seen = time.time()
            request_ms.append((seen - sent) * 1000)
            counts = {p["second"]: p["reading_count"] for p in body["points"]}
            snapshots.append((sent, counts))
            if target[1] > 0 and counts.get(target[0], 0) >= target[1]:
                seen_all.set()
        except (httpx.HTTPError, ValueError, KeyError):
            errors += 1
        if tick % 5 == 0:
            try:
                committed.append((time.time(), client.get(f"{ingest_url}/stats").json()["totals"].get("committed", 0)))
            except (httpx.HTTPError, ValueError, KeyError):
                committed.append((time.time(), 0))
        tick += 1
        time.sleep(max(0.0, began + tick * interval - time.monotonic()))
    client.close()
    results.put({"snapshots": snapshots, "committed": committed, "request_ms": request_ms, "errors": errors})


class Poller:
    """Runs :func:`_poll_loop` in a spawned process; ``finish()`` stops it and loads its data."""

    def __init__(self, api: str, interval: float, ingest: IngestProcess) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.target = ctx.Array("q", [0, 0])  # [event second, reading count] that means "all visible"
        self.started, self.seen_all, self.stop = ctx.Event(), ctx.Event(), ctx.Event()
        self.results = ctx.Queue()
        self.process = ctx.Process(
            target=_poll_loop, name="freshness-poller", daemon=True,
            args=(api, ingest.url, interval, os.getpid(), self.target, self.started, self.seen_all, self.stop, self.results),
        )
        self.committed: list[tuple[float, int]] = []  # (time, ingest's committed total): where the lag is
        self.snapshots: list[tuple[float, dict[int, int]]] = []
        self.errors = 0
        self.request_ms: list[float] = []

    def start(self, timeout: float = 60) -> None:
        self.process.start()
        if not self.started.wait(timeout):
            raise RuntimeError("the poller process did not start")

    def wait_visible(self, second: int, count: int, timeout: float) -> bool:
        """Until a poll shows ``count`` readings for ``second``; False after ``timeout`` s."""
        self.target[0], self.target[1] = second, count
        return self.seen_all.wait(timeout)

    def finish(self, timeout: float = 30) -> None:
        self.stop.set()
        try:
            data = self.results.get(timeout=timeout)  # before join: the queue's feeder must drain
        except queue.Empty:
            data = None
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        if data is None:
            raise RuntimeError("the poller process sent no results")
        self.snapshots, self.committed = data["snapshots"], data["committed"]
        self.request_ms, self.errors = data["request_ms"], data["errors"]

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)

    def interval(self) -> float:
        """Effective time between two successful polls (s)."""
        if len(self.snapshots) < 2:
            return float("nan")
        return (self.snapshots[-1][0] - self.snapshots[0][0]) / (len(self.snapshots) - 1)


def pregenerate(rate: int, seconds: float, batch: int, meters: int) -> tuple[list, float]:
    """Every batch the timed phase will send, generated now, stamped with the time it will be sent.

    The simulator costs ~0.3 CPU at 50k readings/s; generating during the timed phase would take
    that from the system under test on a 2-CPU machine. Returns (batches, planned start time).
    """
    interval = batch / rate
    count = max(1, int(seconds / interval))
    probe = ReadingGenerator(SimulationConfig(meters=meters, seed=2))
    began = time.perf_counter()
    probe.next_batch(batch)
    start = time.time() + 2.0 + 1.3 * count * (time.perf_counter() - began)  # when sending begins
    index = [0]
    generator = ReadingGenerator(SimulationConfig(meters=meters, seed=1),
                                 clock=lambda: start + index[0] * interval)
    batches = []
    for index[0] in range(count):
        out = generator.next_batch(batch)
        batches.append((out.keys, out.values, out.event_ms))
    return batches, start


def produce_at_rate(sink: KafkaSink, rate: int, seconds: float, batch: int, meters: int, live_generate: bool = False):
    """``rate`` readings/s for ``seconds``, event time = send time; returns per-batch (second, cum
    count, send time). Batches are generated beforehand unless ``live_generate``."""
    interval = batch / rate
    sent: list[tuple[int, int, float]] = []
    per_second: dict[int, int] = {}
    if live_generate:
        generator = ReadingGenerator(SimulationConfig(meters=meters, seed=1))
        count = max(1, int(seconds / interval))
        source = ((out.keys, out.values, out.event_ms) for out in (generator.next_batch(batch) for _ in range(count)))
        start = time.time()
    else:
        batches, start = pregenerate(rate, seconds, batch, meters)
        source = iter(batches)
        time.sleep(max(0.0, start - time.time()))
    began = time.monotonic()
    for index, (keys, values, event_ms) in enumerate(source):
        sink.send(keys, values)
        stamp = time.time()
        second = event_ms // 1000
        per_second[second] = per_second.get(second, 0) + len(values)
        sent.append((second, per_second[second], stamp))
        time.sleep(max(0.0, began + (index + 1) * interval - time.monotonic()))
    return sent, per_second, time.monotonic() - began


def first_seen(snapshots: list[tuple[float, dict[int, int]]], second: int, count: int, after: float) -> float | None:
    for stamp, counts in snapshots:
        if stamp >= after and counts.get(second, 0) >= count:
            return stamp
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=50_000, help="readings/s produced (default 50,000)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to produce (default 30)")
    parser.add_argument("--warmup", type=float, default=3.0, help="first seconds left out of the figures (default 3)")
    parser.add_argument("--batch", type=int, default=2_500, help="readings per producer call (default 2,500)")
    parser.add_argument("--meters", type=int, default=50_000, help="distinct meters (default 50,000)")
    parser.add_argument("--poll", type=float, default=0.1, help="API poll interval in s (default 0.1)")
    parser.add_argument("--live-generate", action="store_true",
                        help="generate readings while producing (costs the machine ~0.3 CPU at 50k/s) "
                             "instead of before the timed phase")
    parser.add_argument("--drain", type=float, default=240.0, help="how long to wait for the backlog after producing (s)")
    parser.add_argument("--no-writer", action="store_true", help="do not run the writer")
    return parser


def exit_on_sigterm() -> None:
    """SIGTERM (kill, timeout) exits through ``finally`` blocks, so the services we started are stopped."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def main() -> int:
    args = build_parser().parse_args()
    exit_on_sigterm()
    run(args.rate, args.seconds, args.warmup, args.batch, args.meters, args.poll, args.drain, writer=not args.no_writer,
        live_generate=args.live_generate)
    return 0


def run(rate: int = 50_000, seconds: float = 30.0, warmup: float = 3.0, batch: int = 2_500, meters: int = 50_000,
        poll: float = 0.1, drain: float = 240.0, writer: bool = True, live_generate: bool = False) -> dict:
    """One freshness run (prints the report); returns its figures (latencies in ms, ``met`` for the
    p99 <= 1 s target per event second)."""
    args = argparse.Namespace(rate=rate, seconds=seconds, warmup=warmup, batch=batch, meters=meters, poll=poll,
                              drain=drain, no_writer=not writer, live_generate=live_generate)
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
    ingest = poller = None
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
        sent, per_second, elapsed = produce_at_rate(sink, args.rate, args.seconds, args.batch, args.meters,
                                                    args.live_generate)
        sink.flush(60)
        total = sum(per_second.values())
        last_second = max(per_second)
        if not poller.wait_visible(last_second, per_second[last_second], args.drain):
            print(f"  WARNING: timed out after {args.drain:.0f}s waiting for the last second to be visible; reporting what was seen")
        time.sleep(0.5)
        poller.finish()

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
              f"first {args.warmup:.0f} s left out, readings generated "
              f"{'while producing' if args.live_generate else 'before the timed phase'}")
        # Service settings taken from this environment (e.g. PROCESSOR_QUEUE_SIZE=20000 ...).
        inherited = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items())
                             if k.startswith(("PROCESSOR_", "INFLUXDB_", "KAFKA_", "SMARTGRID_")) and k not in ingest_env)
        print(f"  settings: KAFKA_BATCH_TIMEOUT={ingest_env['KAFKA_BATCH_TIMEOUT']} INFLUXDB_BATCH_TIMEOUT={ingest_env['INFLUXDB_BATCH_TIMEOUT']} "
              f"{inherited + ' ' if inherited else ''}(others default)")
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
        polled_for = poller.snapshots[-1][0] - poller.snapshots[0][0] if poller.snapshots else 0.0
        request_p50 = statistics.median(poller.request_ms) if poller.request_ms else float("nan")
        print(f"  API polls: {len(poller.snapshots)} in {polled_for:.1f} s (poller process), effective interval "
              f"{poller.interval() * 1000:.0f} ms (asked {args.poll * 1000:.0f} ms), errors {poller.errors}, "
              f"request p50 {request_p50:.0f} ms, p99 {percentile(poller.request_ms, 99):.0f} ms")
        met = bool(per_second_latency) and percentile(per_second_latency, 99) <= 1.0 and not missing
        print(f"  target p99 <= 1 s (per event second): {'met' if met else 'NOT met'}")
        print(f"  logs: {logs}")

        def ms(values: list[float], q: float) -> float | None:  # as describe(): p50 is the median
            if not values:
                return None
            return (statistics.median(values) if q == 50 else percentile(values, q)) * 1000

        return {
            "rate_target": args.rate, "seconds": args.seconds, "warmup": args.warmup, "batch": args.batch,
            "meters": args.meters, "writer": not args.no_writer, "poll_s": args.poll,
            "produced": total, "produce_seconds": elapsed, "achieved_per_s": total / elapsed,
            "ingest_committed": totals.get("committed", 0), "ingest_written": totals.get("written", 0),
            "aggregator_applied": stats.get("applied", 0),
            "per_second": {"n": len(per_second_latency), "p50_ms": ms(per_second_latency, 50),
                           "p99_ms": ms(per_second_latency, 99), "max_ms": max(per_second_latency) * 1000 if per_second_latency else None,
                           "never_complete": len(missing)},
            "per_batch": {"n": len(per_batch_latency), "p50_ms": ms(per_batch_latency, 50),
                          "p99_ms": ms(per_batch_latency, 99), "max_ms": max(per_batch_latency) * 1000 if per_batch_latency else None},
            "committed_all_after_ms": (committed_all - produced_end) * 1000 if committed_all else None,
            "api_all_after_ms": (api_all - produced_end) * 1000 if api_all else None,
            "polls": len(poller.snapshots), "poll_interval_ms": poller.interval() * 1000, "poll_errors": poller.errors,
            "request_p50_ms": request_p50,
            "met": met, "logs": str(logs),
        }
    finally:
        if poller is not None:
            poller.kill()
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
