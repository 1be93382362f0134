"""The dashboard under many viewers: API response times and the fold rate, with and without viewers.

A real aggregator process (``python -m aggregator``) folds summaries from its stream in the real
Redis. Viewers, in a process of their own: ``--api-clients`` (200) HTTP clients, each sending one
request every ``--api-interval`` (1 s) on its own keep-alive connection, cycling through the page's
endpoints (``/api/live?seconds=3600`` and ``=60``, ``/api/status``, ``/api/regions``, ``/api/trend``,
``/api/meters``), plus ``--sse`` (50) SSE streams of ``/api/stream``. Phases of ``--phase`` seconds,
in one run, each viewer phase between two idle ones (which takes out the drift of a shared machine):

1. capacity: a feeder keeps a backlog in the stream, so the fold runs as fast as it can; the fold
   rate (summaries/s from the fold's ``applied`` counter) without viewers against with them, for
   ``--pairs`` viewer phases; target: the drop (median over the viewer phases) at most 10%;
   1b. control: the same viewers on a second, dashboard-only aggregator process (``build_app(
   run_worker=False)``, same Redis) while the first one folds: the drop then is the CPU the
   viewers and the serving take from the machine, not the fold waiting for the dashboard;
2. a steady stream at ``--steady-rate`` readings/s (50,000: the design load): the fold keeps up
   either way; the figure is the summaries' age when folded (stream entry to fold, from the
   aggregator's ``aggregator_summary_age_seconds``), without viewers against with them;
3. baseline: the same aggregator with the view cache off (``build_app(view_ttl=0)``: one
   computation per request, each serialized on its own), viewers on a backlog as in 1.

Printed per phase: fold rate, CPU of the aggregator, of the viewers' process and of Redis, API
p50/p99, SSE updates per stream, views computed per second; then API p50/p99 per endpoint with the
views shared against the baseline, the cost of one 3,600-second view the old way (3,600 pipelined
HGETALLs, FastAPI's encoding) against now (window script, orjson), and a summary with the verdict.
Everything shares the machine's CPUs (Redis, the aggregator, the viewers, the feeder): on 2 CPUs
the viewers' own process takes CPU the fold would otherwise get. Needs Redis (``scripts/stack up``;
SMARTGRID_REDIS_URL); writes bench/results/dashboard-<timestamp>.json and deletes its Redis keys.
About 6 minutes with the defaults. Run on purpose:

    uv run --no-sync python bench/bench_dashboard.py [--api-clients 200] [--sse 50] [--phase 15] [--pairs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import queue
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

import benchlib
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
    parser.add_argument("--steady-rate", type=float, default=50_000,
                        help="readings/s of the steady stream of part 2 (default 50,000; 0 leaves part 2 out)")
    parser.add_argument("--steady-pairs", type=int, default=2, help="viewer phases of part 2 (default 2)")
    parser.add_argument("--no-baseline", action="store_true", help="leave out part 3 (the view cache off)")
    parser.add_argument("--no-control", action="store_true",
                        help="leave out part 1b (the viewers on a dashboard-only process while the other folds)")
    parser.add_argument("--serve", choices=["uncached", "dashboard"], help=argparse.SUPPRESS)
    return parser


# -- the aggregator under test ---------------------------------------------------------------------


def serve_variant(variant: str) -> None:
    """``python -m aggregator`` with the view cache off (``uncached``: every request computes its
    view), or serving the dashboard without folding (``dashboard``)."""
    from smartgrid_common.health import serve
    from smartgrid_common.logs import setup_logging
    from smartgrid_common.settings import load_settings

    from aggregator.app import build_app
    from aggregator.settings import AggregatorSettings

    settings = load_settings(AggregatorSettings)
    setup_logging("aggregator", settings.log_level)
    app = build_app(settings, view_ttl=0) if variant == "uncached" else build_app(settings, run_worker=False)
    serve(app, settings.http_host, settings.http_port)


def start_aggregator(prefix: str, port: int, log: Path, variant: str | None = None) -> subprocess.Popen:
    """``python -m aggregator`` (``variant`` None) or one of :func:`serve_variant`'s, ready."""
    env = {"SMARTGRID_REDIS_URL": REDIS_URL, "SMARTGRID_REDIS_PREFIX": prefix, "SMARTGRID_HTTP_PORT": str(port),
           "SMARTGRID_HTTP_HOST": "127.0.0.1", "SMARTGRID_AGGREGATOR_CONSUMER": CONSUMER}
    if variant is None:
        process = start_service("aggregator", env, str(log))
    else:
        handle = open(log, "ab")  # noqa: SIM115 - the child owns it
        process = subprocess.Popen([sys.executable, __file__, "--serve", variant], env={**os.environ, **env},
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
    stop(process)  # not handed to the caller: it would outlive the run
    raise RuntimeError(f"the aggregator did not get ready; see {log}")


def stop(process: subprocess.Popen | None) -> None:
    benchlib.stop_process(process, timeout=15)


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
    """Feeds the summaries stream: keeps ``low``..``high`` summaries waiting (fed minus applied),
    or, with ``rate``, adds ``rate`` summaries per second whatever the fold does."""

    def __init__(self, redis: Redis, prefix: str, bodies: list[tuple[bytes, bytes]], rate: float | None = None,
                 low: int = 1500, high: int = 3000, first_cycle: int = 0) -> None:
        super().__init__(name="feeder", daemon=True)
        self.redis, self.prefix, self.bodies, self.rate = redis, prefix, bodies, rate
        self.base = self._applied_total()  # folded before this feeder started
        self.low, self.high = low, high
        self.cycle = first_cycle
        self.fed = 0
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self._index = 0

    def _applied_total(self) -> int:
        return int(self.redis.hget(f"{self.prefix}:agg:stats", "applied") or 0)

    def applied(self) -> int:
        """Summaries folded since this feeder started (earlier feeders' are folded by then)."""
        return self._applied_total() - self.base

    def _add(self, pipe, count: int) -> None:
        for _ in range(count):
            before, after = self.bodies[self._index]
            pipe.xadd(summary_stream(self.prefix), {"data": before + b'"topic":"c%d"' % self.cycle + after})
            self.fed += 1
            self._index += 1
            if self._index == len(self.bodies):
                self.cycle, self._index = self.cycle + 1, 0

    def run(self) -> None:
        try:
            if self.rate:
                began = time.monotonic()
                while not self.stopping.is_set():
                    due = int((time.monotonic() - began) * self.rate) - self.fed
                    if due > 0:
                        pipe = self.redis.pipeline(transaction=False)
                        self._add(pipe, due)
                        pipe.execute()
                    time.sleep(0.02)
                return
            applied = self.applied()
            while not self.stopping.is_set():
                if self.fed - applied > self.low:
                    time.sleep(0.02)
                    applied = self.applied()
                    continue
                pipe = self.redis.pipeline(transaction=False)
                self._add(pipe, self.high - (self.fed - applied))
                pipe.execute()
                applied = self.applied()
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
        try:
            status = await _get(reader, writer, path)
        except (OSError, asyncio.IncompleteReadError):
            # The server closed the connection (e.g. its keep-alive timeout raced the request):
            # counted as an error; a browser would reconnect, and so does this client.
            status = -1
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        rows.append((path, began, time.monotonic() - began, status))
        del inflight[index]
        due = max(due + interval, loop.time())
        await asyncio.sleep(due - loop.time())
    writer.close()


async def _sse_client(port: int, arrivals: list) -> None:
    token = b"event: update"
    while True:  # a stream the server ends is opened again, as EventSource does
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/stream HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        tail = b""
        while chunk := await reader.read(1 << 16):
            data = tail + chunk
            arrivals.extend([time.monotonic()] * data.count(token))
            tail = data[-(len(token) - 1):]  # a token cut in two is counted once, with the second part
        writer.close()


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


def scrape(port: int) -> tuple[dict[str, float], dict[float, float]]:
    """(views computed so far by view, summary-age histogram: upper bound -> count) from /metrics."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    views: dict[str, float] = {}
    ages: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("aggregator_view_computations_total{"):
            views[line.split('view="', 1)[1].split('"', 1)[0]] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("aggregator_summary_age_seconds_bucket{"):
            ages[float(line.split('le="', 1)[1].split('"', 1)[0])] = float(line.rsplit(" ", 1)[1])
    return views, ages


def age_percentile(before: dict[float, float], after: dict[float, float], share: float) -> float:
    """Upper bound (s) of the histogram bucket holding the ``share`` percentile of the phase's folds."""
    counts = sorted((bound, after[bound] - before.get(bound, 0.0)) for bound in after)
    total = counts[-1][1] if counts else 0.0
    for bound, cumulative in counts:
        if total and cumulative >= share * total:
            return bound
    return float("nan")


def redis_cpu(redis: Redis) -> float:
    info = redis.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def phase(name: str, args, feeder: Feeder, aggregator: subprocess.Popen, port: int, viewers: bool,
          redis: Redis, dashboard: tuple[subprocess.Popen, int] | None = None) -> dict:
    """One measured phase of ``--phase`` seconds: the fold's applied counter and the summaries' age,
    CPU of the aggregator, the viewers and Redis, and (with viewers) their response times. With
    ``dashboard`` (process, port) the viewers go to that process instead of the folding one."""
    target = dashboard[1] if dashboard else port
    ctx = multiprocessing.get_context("spawn")
    process = None
    if viewers:
        ready, stop_flag, results = ctx.Event(), ctx.Event(), ctx.Queue()
        process = ctx.Process(target=viewers_process, name="viewers", daemon=True,
                              args=(target, args.paths.split(","), args.api_clients, args.api_interval, args.sse,
                                    ready, stop_flag, results))
        process.start()
        if not ready.wait(60):
            raise RuntimeError("the viewers' process did not start")
        time.sleep(5.0)  # connections open, every view computed once, the first bursts over
    parties = {"aggregator": psutil.Process(aggregator.pid)}
    if dashboard:
        parties["dashboard"] = psutil.Process(dashboard[0].pid)
    if process is not None:
        parties["viewers"] = psutil.Process(process.pid)
    views_before, ages_before = scrape(port)
    dash_views_before = scrape(dashboard[1])[0] if dashboard else {}
    cpu_before = {who: sum(proc.cpu_times()[:2]) for who, proc in parties.items()}
    redis_before, applied_before, began = redis_cpu(redis), feeder.applied(), time.monotonic()
    time.sleep(args.phase)
    cpu_after = {who: sum(proc.cpu_times()[:2]) for who, proc in parties.items()}
    redis_after, applied_after, ended = redis_cpu(redis), feeder.applied(), time.monotonic()
    views_after, ages_after = scrape(port)
    if dashboard:
        views_before, views_after = dash_views_before, scrape(dashboard[1])[0]
    if feeder.error:
        raise RuntimeError(f"the feeder failed: {feeder.error!r}")
    if not feeder.rate and feeder.fed - applied_after < 100:
        print(f"  warning: the backlog ran dry in phase {name}: the fold rate is the feeder's", flush=True)
    elapsed = ended - began
    out = {"phase": name, "viewers": viewers, "seconds": elapsed,
           "summaries_per_s": (applied_after - applied_before) / elapsed,
           "cpu": {who: (cpu_after[who] - cpu_before[who]) / elapsed for who in parties},
           "redis_cpu": (redis_after - redis_before) / elapsed,
           "summary_age_s": {"p50": age_percentile(ages_before, ages_after, 0.50),
                             "p99": age_percentile(ages_before, ages_after, 0.99)},
           "view_computations_per_s": {view: (views_after.get(view, 0) - views_before.get(view, 0)) / elapsed
                                       for view in views_after}}
    if process is not None:
        stop_flag.set()
        deadline = time.monotonic() + 120
        while True:
            try:
                data = results.get(timeout=1)
                break
            except queue.Empty:
                if not process.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the viewers' process failed (its traceback is above)") from None
        process.join(30)
        in_window = [row for row in data["rows"] + data["unfinished"] if began <= row[1] < ended]
        out["requests"] = len(in_window)
        out["errors"] = sum(1 for row in in_window if row[3] not in (200, 0))  # 0: still waiting at the end
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
    if args.serve:
        serve_variant(args.serve)
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
          f"viewers: {args.api_clients} API clients (a request each every "
          f"{args.api_interval:g} s, cycling {len(args.paths.split(','))} endpoints) + {args.sse} SSE streams; {args.phase:g} s per phase; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    aggregator = None
    feeder = None
    phases: list[dict] = []
    log = RESULTS / f"dashboard-{stamp}-aggregator.log"
    steady = args.steady_rate / per_summary  # summaries/s of part 2

    def bracketed(part: str, pairs: int) -> list[tuple[str, bool]]:
        plan = [(f"{part} idle 1", False)]
        for pair in range(1, pairs + 1):
            plan += [(f"{part} viewers {pair}", True), (f"{part} idle {pair + 1}", False)]
        return plan

    def run_part(part: str, plan: list[tuple[str, bool]], cache: bool,
                 dashboard: tuple[subprocess.Popen, int] | None = None) -> None:
        for name, viewers in plan:
            result = phase(name, args, feeder, aggregator, port, viewers, redis, dashboard)
            result.update(part=part, cache=cache, readings_per_s=result["summaries_per_s"] * per_summary)
            phases.append(result)
            api = result.get("api_ms", {})
            rates = ", ".join(f"{view} {rate:.1f}" for view, rate in sorted(result["view_computations_per_s"].items()))
            age = result["summary_age_s"]
            print(f"  {name:<24} {result['summaries_per_s']:>7,.0f} {result['readings_per_s']:>9,.0f} "
                  f"{age['p50']:>5g}/{age['p99']:<5g} {result['cpu']['aggregator']:>5.2f} "
                  f"{result['cpu'].get('dashboard', 0.0):>5.2f} {result['cpu'].get('viewers', 0.0):>5.2f} "
                  f"{result['redis_cpu']:>5.2f} {result.get('requests', 0):>6,} "
                  f"{api.get('p50', float('nan')):>6.1f} {api.get('p99', float('nan')):>7.1f} "
                  f"{result.get('sse', {}).get('updates_per_stream_per_s', float('nan')):>5.2f}  {rates}", flush=True)
            if result.get("errors") or result.get("unfinished"):
                print(f"  {'':<24} errors {result['errors']}, unfinished at the end {result['unfinished']}")

    def new_feeder(rate: float | None) -> Feeder:
        nonlocal feeder
        cycle = 0
        if feeder is not None:
            feeder.stopping.set()
            feeder.join(10)
            cycle = feeder.cycle + 1  # new chains: a half-fed cycle is never continued
            deadline = time.monotonic() + 120
            while feeder.applied() < feeder.fed and time.monotonic() < deadline:
                time.sleep(0.2)  # the backlog folded first
        feeder = Feeder(redis, prefix, bodies, rate=rate, first_cycle=cycle)
        feeder.start()
        time.sleep(5.0)  # the fold at its pace, the stream trimmed once
        return feeder

    header = (f"  {'phase':<24} {'sum./s':>7} {'readings/s':>9} {'age p50/p99 s':>11} {'CPU: agg':>5} {'dash.':>5} "
              f"{'view.':>5} "
              f"{'redis':>5} {'req.':>6} {'p50 ms':>6} {'p99 ms':>7} {'SSE/s':>5}  views computed/s")
    try:
        port = free_port()
        aggregator = start_aggregator(prefix, port, log)
        print("\n== 1. Capacity: a backlog in the stream, the fold as fast as it goes ==", flush=True)
        print(header, flush=True)
        new_feeder(None)
        run_part("capacity", bracketed("capacity", args.pairs), cache=True)
        if not args.no_control:
            print("\n== 1b. Control: the same viewers on a dashboard-only process (no fold in it), a backlog as in 1 ==",
                  flush=True)
            print(header, flush=True)
            dash_port = free_port()
            dash = start_aggregator(prefix, dash_port, log, "dashboard")
            try:
                run_part("control", [("control viewers", True), ("control idle", False)], cache=True,
                         dashboard=(dash, dash_port))
            finally:
                stop(dash)
        if args.steady_rate:
            print(f"\n== 2. A steady stream: {args.steady_rate:,.0f} readings/s ({steady:,.0f} summaries/s) ==", flush=True)
            print(header, flush=True)
            new_feeder(steady)
            run_part("steady", bracketed("steady", args.steady_pairs), cache=True)
        if not args.no_baseline:
            print("\n== 3. Baseline: the view cache off, a backlog as in 1 ==", flush=True)
            print(header, flush=True)
            stop(aggregator)
            port = free_port()
            aggregator = start_aggregator(prefix, port, log, "uncached")
            new_feeder(None)
            run_part("baseline", [("cache off, viewers", True), ("cache off, idle", False)], cache=False)
    finally:
        if feeder is not None:
            feeder.stopping.set()
            feeder.join(10)
        stop(aggregator)

    try:
        cost = old_and_new_view_cost(prefix)
    finally:
        cleanup(redis, prefix)

    for index, result in enumerate(phases):
        if result["viewers"]:
            # the idle phases on either side (the control's first neighbour is capacity's last idle)
            same = (result["part"], "capacity" if result["part"] == "control" else result["part"])
            before = phases[index - 1] if index and phases[index - 1]["part"] in same else None
            after = phases[index + 1] if index + 1 < len(phases) and phases[index + 1]["part"] in same else None
            around = [p["summaries_per_s"] for p in (before, after) if p is not None]
            result["idle_around"] = statistics.mean(around)
            result["drop_percent"] = 100.0 * (1 - result["summaries_per_s"] / result["idle_around"])
    capacity = [p for p in phases if p["part"] == "capacity"]
    shared = [p for p in capacity if p["viewers"]]
    baseline = next((p for p in phases if p["part"] == "baseline" and p["viewers"]), None)
    drop = statistics.median(p["drop_percent"] for p in shared)
    without = statistics.median(p["summaries_per_s"] for p in capacity if not p["viewers"])
    with_viewers = statistics.median(p["summaries_per_s"] for p in shared)
    viewer_phases = [p for p in phases if p["viewers"] and p["part"] in ("capacity", "steady")]
    on_times = [t for p in viewer_phases for t in p.pop("_times")]
    on_by_path_all = [p.pop("_by_path") for p in viewer_phases]
    on_by_path = {path: [t for by_path in on_by_path_all for t in by_path[path]] for path in args.paths.split(",")}
    off_times = baseline.pop("_times") if baseline else []
    off_by_path = baseline.pop("_by_path") if baseline else {}

    def ms(times: list[float], share: float) -> float:
        return 1000 * percentile(times, share)

    print(f"\n  API response times by endpoint, p50 / p99 ms: views shared (every viewer phase of 1 and 2)"
          f"{'   |   cache off (3)' if baseline else ''}")
    for path in args.paths.split(","):
        line = f"    {path:<34} {ms(on_by_path[path], 0.5):>8.1f} / {ms(on_by_path[path], 0.99):>8.1f}"
        if baseline:
            line += f"   |   {ms(off_by_path[path], 0.5):>8.1f} / {ms(off_by_path[path], 0.99):>8.1f}"
        print(line)
    print(f"\n  one /api/live?seconds=3600 body: old way (3,600 pipelined HGETALLs + FastAPI encoding) "
          f"{cost['old_ms']:.1f} ms, now (window script + orjson) {cost['new_ms']:.1f} ms (best of 5)")
    print("\n== Summary ==")
    print(f"  1. fold rate without viewers (median of idle phases)    {without:>8,.0f} summaries/s "
          f"{without * per_summary:>10,.0f} readings/s")
    print(f"     fold rate with {args.api_clients} API + {args.sse} SSE viewers (median)  {with_viewers:>8,.0f} summaries/s "
          f"{with_viewers * per_summary:>10,.0f} readings/s")
    per_phase = ", ".join(f"{p['drop_percent']:.1f}" for p in shared)
    verdict = "met" if drop <= DROP_LIMIT else "NOT met"
    print(f"     fold rate drop with viewers (median of {per_phase} %)   {drop:.1f} %  "
          f"(target <= {DROP_LIMIT:.0f} %: {verdict})")
    control = next((p for p in phases if p["part"] == "control" and p["viewers"]), None)
    if control:
        print(f"  1b. fold rate drop with the same viewers on a dashboard-only process   {control['drop_percent']:.1f} %  "
              f"(the share of the drop that is CPU taken on this machine, not the fold waiting for the dashboard)")
    steady_out = None
    if args.steady_rate:
        part = [p for p in phases if p["part"] == "steady"]
        idle = [p for p in part if not p["viewers"]]
        busy = [p for p in part if p["viewers"]]
        steady_out = {
            "fed_summaries_per_s": steady,
            "idle_summaries_per_s": statistics.median(p["summaries_per_s"] for p in idle),
            "viewers_summaries_per_s": statistics.median(p["summaries_per_s"] for p in busy),
            "idle_age_p99_s": max(p["summary_age_s"]["p99"] for p in idle),
            "viewers_age_p99_s": max(p["summary_age_s"]["p99"] for p in busy),
        }
        print(f"  2. steady {args.steady_rate:,.0f} readings/s: folded {steady_out['idle_summaries_per_s']:,.0f} summaries/s "
              f"without viewers, {steady_out['viewers_summaries_per_s']:,.0f} with them (fed {steady:,.0f}); "
              f"summary age p99 <= {steady_out['idle_age_p99_s']:g} s without, <= {steady_out['viewers_age_p99_s']:g} s with")
    on_p50, on_p99 = ms(on_times, 0.5), ms(on_times, 0.99)
    print(f"  API p50 / p99, views shared                             {on_p50:>8.1f} / {on_p99:.1f} ms "
          f"({len(on_times):,} requests)")
    out_baseline = None
    if baseline:
        off_p50, off_p99 = ms(off_times, 0.5), ms(off_times, 0.99)
        print(f"  API p50 / p99, cache off (one computation per request)  {off_p50:>8.1f} / {off_p99:.1f} ms "
              f"({len(off_times):,} requests; p50 x{off_p50 / on_p50:.1f}, p99 x{off_p99 / on_p99:.1f})")
        print(f"  3. fold rate drop with viewers, cache off               {baseline['drop_percent']:>8.1f} %")
        out_baseline = {"api_p50_ms": off_p50, "api_p99_ms": off_p99, "drop_percent": baseline["drop_percent"]}
    out = {"timestamp": stamp, "cpus": os.cpu_count(), "settings": vars(args), "readings_per_summary": per_summary,
           "phases": phases, "old_and_new_view_cost": cost, "fold_without_viewers": without,
           "fold_with_viewers": with_viewers, "drop_percent": drop, "api_p50_ms": on_p50, "api_p99_ms": on_p99,
           "control_drop_percent": control["drop_percent"] if control else None,
           "steady": steady_out, "cache_off": out_baseline, "met": drop <= DROP_LIMIT}
    path = RESULTS / f"dashboard-{stamp}.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"\n  wrote {path.relative_to(ROOT)}")
    return 0 if drop <= DROP_LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
