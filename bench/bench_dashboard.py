"""The dashboard under many viewers: API response times and the fold rate, with and without viewers.

A real aggregator process (``python -m aggregator``) folds summaries from its stream in the real
Redis while a feeder keeps a backlog in the stream (so the fold runs as fast as it can: the fold
rate is the aggregator's capacity). Viewers, in a process of their own: ``--api-clients`` (200)
HTTP clients, each sending one request every ``--api-interval`` (1 s) on its own keep-alive
connection, cycling through the page's endpoints (``/api/live?seconds=3600`` and ``=60``,
``/api/status``, ``/api/regions``, ``/api/trend``, ``/api/meters``), plus ``--sse`` (50) SSE
streams of ``/api/stream``. Phases of ``--phase`` seconds alternate, in the same run:

    idle, viewers, idle, viewers           the aggregator as shipped (views shared per interval)
    viewers                                the same aggregator with the view cache off
                                           (``build_app(view_ttl=0)``: one computation per request)

Printed: per phase the fold rate (summaries/s and readings/s, from the fold's ``applied`` counter),
the aggregator's CPU, API p50/p99 (overall and per endpoint) and SSE updates per stream; then the
fold rate without viewers (mean of the idle phases) against with them (mean of the viewer phases)
and whether it drops more than 10% (target: it must not), and API p99 with the cache against
without. Also the cost of one 3,600-second view the old way (3,600 pipelined HGETALLs and FastAPI's
encoding) against now (window script, orjson), on the same Redis. Needs Redis (``scripts/stack
up``; SMARTGRID_REDIS_URL); writes bench/results/dashboard-<timestamp>.json and deletes its Redis
keys. About 3 minutes with the defaults. Run on purpose:

    uv run --no-sync python bench/bench_dashboard.py [--api-clients 200] [--sse 50] [--phase 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx
import orjson
import psutil
from redis import Redis
from smartgrid_common.contracts import summary_stream

from aggregator.testing import free_port, http_ok, make_readings, make_summaries, start_service

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
REDIS_URL = os.environ.get("SMARTGRID_REDIS_URL", "redis://127.0.0.1:6379/0")
PATHS = (
    "/api/live?seconds=3600",
    "/api/live?seconds=60",
    "/api/status",
    "/api/regions",
    "/api/trend",
    "/api/meters?page=1&page_size=15",
)
DROP_LIMIT = 10.0  # percent: the fold rate may not drop more than this with viewers
CONSUMER = "bench-dashboard"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-clients", type=int, default=200, help="concurrent API clients (default 200)")
    parser.add_argument("--api-interval", type=float, default=1.0,
                        help="seconds between two requests of one client (default 1; 0: back to back)")
    parser.add_argument("--sse", type=int, default=50, help="concurrent SSE streams (default 50)")
    parser.add_argument("--paths", default=",".join(PATHS),
                        help="comma-separated endpoints the API clients cycle through (default: the page's)")
    parser.add_argument("--phase", type=float, default=15.0, help="seconds measured per phase (default 15)")
    parser.add_argument("--pairs", type=int, default=3,
                        help="viewer phases with the cache on, each between two idle phases (default 3)")
    parser.add_argument("--meters", type=int, default=20_000, help="meters in the folded readings (default 20,000)")
    parser.add_argument("--partitions", type=int, default=32, help="partitions the summaries chain over (default 32)")
    parser.add_argument("--window", type=int, default=30, help="event seconds in one cycle of summaries (default 30)")
    parser.add_argument("--per-second", type=int, default=4,
                        help="summaries per partition per event second (default 4: a 250 ms summary interval)")
    parser.add_argument("--no-baseline", action="store_true", help="leave out the phase with the view cache off")
    parser.add_argument("--serve-uncached", action="store_true", help=argparse.SUPPRESS)
    return parser


# -- the aggregator under test ---------------------------------------------------------------------


def serve_uncached() -> None:
    """``python -m aggregator`` with the view cache off (every request computes its view)."""
    from smartgrid_common.health import serve
    from smartgrid_common.logs import setup_logging
    from smartgrid_common.settings import load_settings

    from aggregator.app import build_app
    from aggregator.settings import AggregatorSettings

    settings = load_settings(AggregatorSettings)
    setup_logging("aggregator", settings.log_level)
    serve(build_app(settings, view_ttl=0), settings.http_host, settings.http_port)


def start_aggregator(prefix: str, port: int, log: Path, cached: bool) -> subprocess.Popen:
    env = {"SMARTGRID_REDIS_URL": REDIS_URL, "SMARTGRID_REDIS_PREFIX": prefix, "SMARTGRID_HTTP_PORT": str(port),
           "SMARTGRID_HTTP_HOST": "127.0.0.1", "SMARTGRID_AGGREGATOR_CONSUMER": CONSUMER}
    if cached:
        process = start_service("aggregator", env, str(log))
    else:
        handle = open(log, "ab")  # noqa: SIM115 - the child owns it
        process = subprocess.Popen([sys.executable, __file__, "--serve-uncached"], env={**os.environ, **env},
                                   stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if http_ok(f"http://127.0.0.1:{port}/readyz"):
                return process
        except (httpx.HTTPError, OSError):
            pass
        if process.poll() is not None:
            raise RuntimeError(f"the aggregator exited ({process.returncode}); see {log}")
        time.sleep(0.2)
    raise RuntimeError(f"the aggregator did not get ready; see {log}")


def stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


# -- the summaries: a backlog kept full ------------------------------------------------------------


def summary_cycle(args) -> tuple[list[tuple[bytes, bytes]], int]:
    """One cycle of summaries as JSON, split where the topic goes (``--window`` event seconds,
    chained per partition), and the readings it represents. Each cycle is fed under a topic of its own, so its
    chains start afresh and fold into the same event seconds: the fold's work per summary stays
    that of the steady state, and feeding costs the bench a bytes concatenation per summary."""
    readings_per_second = args.meters * 0.9  # make_readings leaves out ~10% per second
    batch = max(1, round(readings_per_second / args.partitions / args.per_second))
    readings = make_readings(args.meters, args.window, int(time.time()) - args.window - 30, seed=11, late_share=0.01)
    summaries = make_summaries(readings, args.partitions, batch, topic="t")
    topic = b'"topic":"t"'
    bodies = []
    for summary in summaries:
        before, found, after = summary.to_json().partition(topic)
        assert found, "no topic in a summary's JSON"
        bodies.append((before, after))
    return bodies, len(readings)


class Feeder(threading.Thread):
    """Keeps ``low``..``high`` summaries waiting in the stream (fed minus applied)."""

    def __init__(self, redis: Redis, prefix: str, bodies: list[tuple[bytes, bytes]], low: int = 1500,
                 high: int = 3000) -> None:
        super().__init__(name="feeder", daemon=True)
        self.redis, self.prefix, self.bodies = redis, prefix, bodies
        self.low, self.high = low, high
        self.fed = 0
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def applied(self) -> int:
        return int(self.redis.hget(f"{self.prefix}:agg:stats", "applied") or 0)

    def run(self) -> None:
        stream = summary_stream(self.prefix)
        cycle, index = 0, 0
        try:
            while not self.stopping.is_set():
                if self.fed - self.applied() > self.low:
                    time.sleep(0.02)
                    continue
                pipe = self.redis.pipeline(transaction=False)
                while self.fed - self.applied() < self.high and len(pipe) < 500:
                    for _ in range(100):
                        before, after = self.bodies[index]
                        pipe.xadd(stream, {"data": before + b'"topic":"c%d"' % cycle + after})
                        self.fed += 1
                        index += 1
                        if index == len(self.bodies):
                            cycle, index = cycle + 1, 0
                    pipe.execute()
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            self.error = error


# -- the viewers (a process of their own) ---------------------------------------------------------


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> int:
    writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: bench\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def _api_client(port: int, paths: list[str], interval: float, stop: asyncio.Event, rows: list, inflight: dict,
                      index: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    rng = random.Random(index)
    position = rng.randrange(len(paths))
    loop = asyncio.get_running_loop()
    due = loop.time() + rng.uniform(0, interval)  # clients spread over the interval, as viewers are
    await asyncio.sleep(due - loop.time())
    while not stop.is_set():
        path = paths[position % len(paths)]
        position += 1
        began = time.monotonic()
        inflight[index] = (path, began)
        status = await _get(reader, writer, path)
        rows.append((path, began, time.monotonic() - began, status))
        del inflight[index]
        due = max(due + interval, loop.time())
        await asyncio.sleep(due - loop.time())
    writer.close()


async def _sse_client(port: int, arrivals: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /api/stream HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
    await reader.readuntil(b"\r\n\r\n")
    token = b"event: update"
    tail = b""
    while chunk := await reader.read(1 << 16):
        data = tail + chunk
        arrivals.extend([time.monotonic()] * data.count(token))
        tail = data[-(len(token) - 1):]  # a token cut in two is counted once, with the second part


async def _viewers(port: int, paths: list[str], api_clients: int, interval: float, sse: int, ready, stop_flag) -> dict:
    stop = asyncio.Event()
    rows: list = []
    inflight: dict = {}
    arrivals: list[list[float]] = [[] for _ in range(sse)]
    tasks = [asyncio.create_task(_sse_client(port, arrivals[i])) for i in range(sse)]
    tasks += [asyncio.create_task(_api_client(port, paths, interval, stop, rows, inflight, i))
              for i in range(api_clients)]
    ready.set()
    while not stop_flag.is_set():
        await asyncio.sleep(0.05)
        failed = [task for task in tasks if task.done() and task.exception()]
        if failed:
            raise failed[0].exception()
    stopped = time.monotonic()
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    # Requests still waiting count with the time they had waited (a lower bound).
    unfinished = [(path, began, stopped - began, 0) for path, began in inflight.values()]
    return {"rows": rows, "unfinished": unfinished, "arrivals": arrivals}


def viewers_process(port: int, paths: list[str], api_clients: int, interval: float, sse: int, ready, stop_flag,
                    results) -> None:
    """Entry point of the viewers' process: runs until ``stop_flag``, then sends its measurements."""
    results.put(asyncio.run(_viewers(port, paths, api_clients, interval, sse, ready, stop_flag)))


# -- measurement -----------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def computations(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("aggregator_view_computations_total{"):
            view = line.split('view="', 1)[1].split('"', 1)[0]
            out[view] = float(line.rsplit(" ", 1)[1])
    return out


def phase(name: str, args, feeder: Feeder, aggregator: subprocess.Popen, port: int, viewers: bool) -> dict:
    """One measured phase: the fold's applied counter, the aggregator's CPU and (with viewers) the
    viewers' response times, over ``--phase`` seconds."""
    ctx = multiprocessing.get_context("spawn")
    process = None
    if viewers:
        ready, stop_flag, results = ctx.Event(), ctx.Event(), ctx.Queue()
        process = ctx.Process(target=viewers_process, name="viewers", daemon=True,
                              args=(port, args.paths.split(","), args.api_clients, args.api_interval, args.sse, ready,
                                    stop_flag, results))
        process.start()
        if not ready.wait(60):
            raise RuntimeError("the viewers' process did not start")
        time.sleep(3.0)  # connections open, every view computed once
    proc = psutil.Process(aggregator.pid)
    views_before = computations(port)
    cpu_before, applied_before, began = sum(proc.cpu_times()[:2]), feeder.applied(), time.monotonic()
    time.sleep(args.phase)
    cpu_after, applied_after, ended = sum(proc.cpu_times()[:2]), feeder.applied(), time.monotonic()
    views_after = computations(port)
    if feeder.error:
        raise RuntimeError(f"the feeder failed: {feeder.error!r}")
    if feeder.fed - applied_after < 100:
        print(f"  warning: the backlog ran dry in phase {name}: the fold rate is the feeder's", flush=True)
    elapsed = ended - began
    out = {"phase": name, "viewers": viewers, "seconds": elapsed,
           "summaries_per_s": (applied_after - applied_before) / elapsed,
           "aggregator_cpu": (cpu_after - cpu_before) / elapsed,
           "view_computations_per_s": {view: (views_after.get(view, 0) - views_before.get(view, 0)) / elapsed
                                       for view in views_after}}
    if process is not None:
        stop_flag.set()
        data = results.get(timeout=120)
        process.join(30)
        in_window = [row for row in data["rows"] + data["unfinished"] if began <= row[1] < ended]
        out["requests"] = len(in_window)
        out["errors"] = sum(1 for row in in_window if row[3] not in (200, 0))
        out["unfinished"] = sum(1 for row in data["unfinished"] if began <= row[1] < ended)
        times = [row[2] for row in in_window]
        out["api_ms"] = {"p50": 1000 * percentile(times, 0.50), "p99": 1000 * percentile(times, 0.99),
                         "max": 1000 * max(times, default=float("nan"))}
        out["_times"] = times  # pooled over phases by main(), not written out
        out["_by_path"] = {path: [row[2] for row in in_window if row[0] == path] for path in args.paths.split(",")}
        out["api_ms_by_path"] = {path: {"n": len(path_times), "p50": 1000 * percentile(path_times, 0.50),
                                        "p99": 1000 * percentile(path_times, 0.99)}
                                 for path, path_times in out["_by_path"].items()}
        per_stream = [[t for t in stream if began <= t < ended] for stream in data["arrivals"]]
        gaps = [b - a for stream in per_stream for a, b in zip(stream, stream[1:])]
        out["sse"] = {"updates_per_stream_per_s": statistics.mean(len(s) for s in per_stream) / elapsed if per_stream else 0.0,
                      "gap_p99_ms": 1000 * percentile(gaps, 0.99)}
    return out


def old_and_new_view_cost(prefix: str) -> dict:
    """Milliseconds to build one ``/api/live?seconds=3600`` body, best of 5: the old way (3,600
    pipelined HGETALLs, FastAPI's encoding) and now (window script, orjson), on the bench's Redis."""
    from fastapi.encoders import jsonable_encoder
    from redis.asyncio import Redis as AsyncRedis

    from aggregator import views
    from aggregator.fold import FoldConfig
    from aggregator.keys import Keys
    from aggregator.store import LiveStore

    async def measure() -> dict:
        redis = AsyncRedis.from_url(REDIS_URL)
        store, keys = LiveStore(redis, prefix, FoldConfig(86400, 3600, 300)), Keys(prefix)
        end = await store.latest_second()
        old, new = [], []
        for _ in range(5):
            began = time.perf_counter()
            pipe = redis.pipeline(transaction=False)
            for second in range(end - 3599, end + 1):
                pipe.hgetall(keys.second(second))
            rows = await pipe.execute()
            json.dumps(jsonable_encoder(views.live_view(end, 3600, rows)), separators=(",", ":"))
            old.append(time.perf_counter() - began)
            began = time.perf_counter()
            rows = await store.seconds(end - 3599, end)
            orjson.dumps(views.live_view(end, 3600, rows, views.newest_complete_second(end, time.time())))
            new.append(time.perf_counter() - began)
        await redis.aclose()
        return {"old_ms": 1000 * min(old), "new_ms": 1000 * min(new)}

    return asyncio.run(measure())


def cleanup(redis: Redis, prefix: str) -> None:
    batch = []
    for key in redis.scan_iter(f"{prefix}:*", count=2000):
        batch.append(key)
        if len(batch) == 1000:
            redis.delete(*batch)
            batch = []
    if batch:
        redis.delete(*batch)


def main() -> int:
    args = build_parser().parse_args()
    if args.serve_uncached:
        serve_uncached()
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # through the finally blocks
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    redis = Redis.from_url(REDIS_URL)
    prefix = f"bench-dash-{uuid.uuid4().hex[:8]}"
    began = time.perf_counter()
    bodies, readings = summary_cycle(args)
    per_summary = readings / len(bodies)
    print(f"dashboard bench: {len(bodies):,} summaries per cycle ({args.window} event seconds, {args.meters:,} meters, "
          f"{args.partitions} partitions, ~{per_summary:.0f} readings each; built in {time.perf_counter() - began:.1f} s), "
          f"a backlog kept in the stream; viewers: {args.api_clients} API clients (a request each every "
          f"{args.api_interval:g} s, cycling {len(args.paths.split(','))} endpoints) + {args.sse} SSE streams; {args.phase:g} s per phase; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    aggregator = None
    feeder = Feeder(redis, prefix, bodies)
    phases: list[dict] = []
    log = RESULTS / f"dashboard-{stamp}-aggregator.log"
    # Viewer phases bracketed by idle ones: each is compared with the idle phases on either side,
    # which takes out the drift of a shared machine (other work starting or stopping).
    plan = [("idle 1", True, False)]
    for pair in range(1, args.pairs + 1):
        plan += [(f"viewers {pair}", True, True), (f"idle {pair + 1}", True, False)]
    if not args.no_baseline:
        plan += [("viewers, cache off", False, True), ("idle, cache off", False, False)]
    try:
        port = free_port()
        aggregator = start_aggregator(prefix, port, log, cached=True)
        feeder.start()
        time.sleep(5.0)  # the fold at its pace, the stream trimmed once
        cached = True
        print(f"  {'phase':<20} {'summaries/s':>11} {'readings/s':>11} {'agg. CPU':>8} {'requests':>8} "
              f"{'p50 ms':>7} {'p99 ms':>8} {'SSE/s':>6}  views computed/s", flush=True)
        for name, want_cached, viewers in plan:
            if want_cached != cached:
                stop(aggregator)
                port = free_port()
                aggregator = start_aggregator(prefix, port, log, cached=want_cached)
                cached = want_cached
                time.sleep(5.0)
            result = phase(name, args, feeder, aggregator, port, viewers)
            result["cache"] = cached
            result["readings_per_s"] = result["summaries_per_s"] * per_summary
            phases.append(result)
            api = result.get("api_ms", {})
            rates = ", ".join(f"{view} {rate:.1f}" for view, rate in sorted(result["view_computations_per_s"].items()))
            print(f"  {name:<20} {result['summaries_per_s']:>11,.0f} {result['readings_per_s']:>11,.0f} "
                  f"{result['aggregator_cpu']:>8.2f} {result.get('requests', 0):>8,} "
                  f"{api.get('p50', float('nan')):>7.1f} {api.get('p99', float('nan')):>8.1f} "
                  f"{result.get('sse', {}).get('updates_per_stream_per_s', float('nan')):>6.2f}  {rates}", flush=True)
            if result.get("errors") or result.get("unfinished"):
                print(f"  {'':<20} errors {result['errors']}, unfinished at the end {result['unfinished']}")
    finally:
        feeder.stopping.set()
        feeder.join(10)
        stop(aggregator)

    try:
        cost = old_and_new_view_cost(prefix)
    finally:
        cleanup(redis, prefix)

    for index, result in enumerate(phases):
        if result["viewers"]:
            around = [p["summaries_per_s"] for p in (phases[index - 1], phases[index + 1])]
            result["idle_around"] = statistics.mean(around)
            result["drop_percent"] = 100.0 * (1 - result["summaries_per_s"] / result["idle_around"])
    shared = [p for p in phases if p["viewers"] and p["cache"]]
    baseline = next((p for p in phases if p["viewers"] and not p["cache"]), None)
    drop = statistics.median(p["drop_percent"] for p in shared)
    without = statistics.median(p["summaries_per_s"] for p in phases if not p["viewers"] and p["cache"])
    with_viewers = statistics.median(p["summaries_per_s"] for p in shared)
    on_times = [t for p in shared for t in p.pop("_times")]
    shared_by_path = [p.pop("_by_path") for p in shared]
    on_by_path = {path: [t for by_path in shared_by_path for t in by_path[path]] for path in args.paths.split(",")}
    off_times = baseline.pop("_times") if baseline else []
    off_by_path = baseline.pop("_by_path") if baseline else {}

    def ms(times: list[float], share: float) -> float:
        return 1000 * percentile(times, share)

    print(f"\n  API response times by endpoint, p50 / p99 ms: views shared (viewer phases pooled)"
          f"{'   |   one computation per request' if baseline else ''}")
    for path in args.paths.split(","):
        line = f"    {path:<34} {ms(on_by_path[path], 0.5):>8.1f} / {ms(on_by_path[path], 0.99):>8.1f}"
        if baseline:
            line += f"   |   {ms(off_by_path[path], 0.5):>8.1f} / {ms(off_by_path[path], 0.99):>8.1f}"
        print(line)
    print(f"\n  one /api/live?seconds=3600 body: old way (3,600 pipelined HGETALLs + FastAPI encoding) "
          f"{cost['old_ms']:.1f} ms, now (window script + orjson) {cost['new_ms']:.1f} ms (best of 5)")
    print("\n== Summary ==")
    print(f"  fold rate without viewers (median of idle phases)       {without:>8,.0f} summaries/s "
          f"{without * per_summary:>10,.0f} readings/s")
    print(f"  fold rate with {args.api_clients} API + {args.sse} SSE viewers (median)     {with_viewers:>8,.0f} summaries/s "
          f"{with_viewers * per_summary:>10,.0f} readings/s")
    per_phase = ", ".join(f"{p['drop_percent']:.1f}" for p in shared)
    verdict = "met" if drop <= DROP_LIMIT else "NOT met"
    print(f"  fold rate drop with viewers (median; per phase: {per_phase} %)  {drop:.1f} %  "
          f"(target <= {DROP_LIMIT:.0f} %: {verdict})")
    on_p50, on_p99 = ms(on_times, 0.5), ms(on_times, 0.99)
    print(f"  API p50 / p99, views shared                             {on_p50:>8.1f} / {on_p99:.1f} ms "
          f"({len(on_times):,} requests)")
    out_baseline = None
    if baseline:
        off_p50, off_p99 = ms(off_times, 0.5), ms(off_times, 0.99)
        print(f"  API p50 / p99, one computation per request (cache off)  {off_p50:>8.1f} / {off_p99:.1f} ms "
              f"({len(off_times):,} requests; p99 x{off_p99 / on_p99:.1f} of the shared views')")
        print(f"  fold rate drop with viewers, cache off                  {baseline['drop_percent']:>8.1f} %")
        out_baseline = {"api_p50_ms": off_p50, "api_p99_ms": off_p99, "drop_percent": baseline["drop_percent"]}
    out = {"timestamp": stamp, "cpus": os.cpu_count(), "settings": vars(args), "readings_per_summary": per_summary,
           "phases": phases, "old_and_new_view_cost": cost, "fold_without_viewers": without,
           "fold_with_viewers": with_viewers, "drop_percent": drop, "api_p50_ms": on_p50, "api_p99_ms": on_p99,
           "cache_off": out_baseline, "met": drop <= DROP_LIMIT}
    path = RESULTS / f"dashboard-{stamp}.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"\n  wrote {path.relative_to(ROOT)}")
    return 0 if drop <= DROP_LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
