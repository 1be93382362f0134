"""The aggregator's HTTP face: health, metrics, the dashboard API, its SSE stream and the page.

The lifespan starts the fold and emit loops (in a thread of their own: ``worker_thread``); the
routes only read Redis and shape with views. Each dashboard view is computed once per quarter of
the SSE interval for every client asking for it (``viewcache``), serialized once, and the SSE
streams all push the same snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from importlib import resources
from typing import Any

import orjson
from fastapi import FastAPI, Query
from fastapi.responses import FileResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.asyncio import Redis
from smartgrid_common.health import create_app

from aggregator import views
from aggregator.auth import TokenAuth
from aggregator.fastpath import SharedViewsFastPath, int_param
from aggregator.fold import FoldConfig
from aggregator.notifier import RegionStatusCollector, RegionWatch
from aggregator.settings import AggregatorSettings, parse_region_places
from aggregator.store import LiveStore
from aggregator.viewcache import Broadcast, ViewCache
from aggregator.worker import Aggregator, Metrics
from aggregator.worker_thread import WorkerThread

log = logging.getLogger("aggregator.app")

STATIC = resources.files("aggregator").joinpath("static")
REGION_WINDOW_S = 60
TREND_MINUTES = 24 * 60
SSE_WINDOW_S = 60
# Views are recomputed at most this many times per SSE interval (default: every 250 ms, the
# ingest's summary interval, so new data is no later than it arrives anyway): API pollers see at
# most a quarter interval of extra delay, and 200 clients cost what one does. The long views (live
# windows beyond SSE_WINDOW_S, the 24-hour trend) cost up to 60 times more to compute, and no one
# reads an hour-long chart to the quarter second: those are recomputed once per interval.
VIEW_REFRESHES_PER_INTERVAL = 4


def connect(settings: AggregatorSettings) -> Redis:
    """A Redis client for the configured URL (password from its Secret, if any)."""
    password = settings.redis_password.get_secret_value() or None
    return Redis.from_url(settings.redis_url, password=password, socket_timeout=10, health_check_interval=30)


def build_app(settings: AggregatorSettings, run_worker: bool = True, view_ttl: float | None = None) -> FastAPI:
    """The FastAPI app; ``run_worker=False`` serves the dashboard without folding.

    ``view_ttl``: how long a computed dashboard view serves every request (default a quarter of
    ``SMARTGRID_SSE_INTERVAL``, a whole one for the long views; 0 computes one per request: the
    benchmark's baseline).
    """
    redis = connect(settings)
    config = FoldConfig(
        live_ttl=int(settings.live_retention),
        region_ttl=int(max(settings.region_retention, settings.late_window)),
        late_ttl=max(1, int(settings.late_window)),
        max_clock_skew=int(settings.max_clock_skew),
    )
    store = LiveStore(redis, settings.redis_prefix, config)
    registry = CollectorRegistry()
    # The fold runs on its own loop and Redis client (worker_thread.py); ``store`` serves the pages.
    fold_redis = connect(settings)
    fold_store = LiveStore(fold_redis, settings.redis_prefix, config)
    worker = Aggregator(fold_redis, fold_store, settings, Metrics(registry))
    # The region gauges and alerts (notifier.py) run on the fold's thread, with its client.
    region_status = RegionStatusCollector()
    registry.register(region_status)
    watch = RegionWatch(fold_redis, fold_store, settings, registry, region_status)
    worker_thread = WorkerThread(worker, fold_redis, companions=(watch,))
    computed = Counter(
        "aggregator_view_computations_total",
        "Dashboard views computed from Redis (each one serves every request of its interval)",
        ["view"], registry=registry,
    )
    served = Counter("aggregator_view_requests_total", "Dashboard views served", ["view"], registry=registry)
    ttl = settings.sse_interval / VIEW_REFRESHES_PER_INTERVAL if view_ttl is None else view_ttl
    long_ttl = settings.sse_interval if view_ttl is None else view_ttl
    cache = ViewCache(ttl, on_compute=lambda key: computed.labels(key[0]).inc())
    places = parse_region_places(settings.region_places)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if run_worker:
            worker_thread.start()
        else:
            worker.redis_ok = True
        # The server waits for open responses before it stops: end the event streams when it starts.
        finisher = asyncio.create_task(finish_streams_on_stop())
        log.info("aggregator started", extra={"consumer": settings.consumer, "prefix": settings.redis_prefix})
        try:
            yield
        finally:
            await stream.close()
            finisher.cancel()
            if run_worker:
                await asyncio.to_thread(worker_thread.stop, 10.0)
            else:
                await fold_redis.aclose()
            await redis.aclose()

    async def finish_streams_on_stop() -> None:
        await app.state.stopping.wait()
        stream.finish()

    def ready() -> tuple[bool, str]:
        alive, reason = worker_thread.alive()
        return worker.ready() if alive else (False, reason)

    app = create_app("aggregator", ready, lifespan=lifespan, registry=registry, alive=worker_thread.alive)
    app.state.store = store
    app.state.worker = worker
    app.state.region_watch = watch

    async def shared(key: Hashable, compute: Callable[[], Awaitable[Any]], long: bool = False) -> bytes:
        """The JSON of a view, computed and serialized once for every request of its interval
        (``long``: a view that is kept for a whole interval)."""
        served.labels(key[0]).inc()

        async def serialized() -> bytes:
            return orjson.dumps(await compute())

        return await cache.get(key, serialized, long_ttl if long else ttl)

    def json_response(body: bytes) -> Response:
        # Already serialized: FastAPI's per-request encoding of a 3,600-point view cost ~90 ms.
        return Response(body, media_type="application/json")

    async def live(seconds: int) -> bytes:
        async def compute() -> dict[str, Any]:
            end = await store.latest_second()
            rows = [] if end is None else await store.seconds(end - seconds + 1, end)
            return views.live_view(end, seconds, rows, views.newest_complete_second(end, time.time()))

        return await shared(("live", seconds), compute, long=seconds > SSE_WINDOW_S)

    async def status() -> bytes:
        async def compute() -> dict[str, Any]:
            return views.status_view(await store.status_counts())

        return await shared(("status",), compute)

    async def trend() -> bytes:
        async def compute() -> dict[str, Any]:
            end = await store.latest_second()
            if end is None:
                return views.trend_view(None, TREND_MINUTES, [])
            end_minute = end - end % 60
            rows = await store.minutes(end_minute - 60 * (TREND_MINUTES - 1), TREND_MINUTES)
            return views.trend_view(end_minute, TREND_MINUTES, rows, views.newest_complete_second(end, time.time()))

        return await shared(("trend",), compute, long=True)

    async def meters(status: str | None, region: str | None, page: int, page_size: int) -> bytes:
        async def compute() -> dict[str, Any]:
            total, records = await store.alerts(status, region, (page - 1) * page_size, page_size)
            return views.meters_view(total, page, page_size, records)

        return await shared(("meters", status, region, page, page_size), compute)

    async def regions() -> bytes:
        async def compute() -> list[dict[str, Any]]:
            end = await store.latest_second()
            window = [] if end is None else await store.region_seconds(end - REGION_WINDOW_S + 1, end)
            geo, known = await store.region_facts()
            rows = views.regions_view(window, geo, known, REGION_WINDOW_S, places)
            alerts = await store.alert_counts([row["region"] for row in rows])
            for row, count in zip(rows, alerts, strict=True):
                row["alerts"] = int(count)
            return rows

        return await shared(("regions",), compute)

    @app.get("/api/live", tags=["dashboard"], response_model=dict[str, Any])
    async def api_live(seconds: int = Query(60, ge=1, le=3600, description="How many seconds")) -> Response:
        """Consumption per event second for the last N seconds up to the newest folded second.

        ``complete`` is the newest complete second: the ones after it are still being filled.
        """
        return json_response(await live(seconds))

    @app.get("/api/trend", tags=["dashboard"], response_model=dict[str, Any])
    async def api_trend() -> Response:
        """The 24-hour trend: one point per event minute (1440 points); ``complete``: the newest
        complete minute."""
        return json_response(await trend())

    @app.get("/api/meters", tags=["dashboard"], response_model=dict[str, Any])
    async def api_meters(
        status: str | None = Query(None, description="Only meters in this status (fault, offline, clock_skew, ...)"),
        region: str | None = Query(None, description="Only meters in this region"),
        page: int = Query(1, ge=1),
        page_size: int = Query(50, ge=1, le=500),
    ) -> Response:
        """Faulty and offline meters (every status but ok), newest first, paginated."""
        return json_response(await meters(status or None, region or None, page, page_size))

    @app.get("/api/regions", tags=["dashboard"], response_model=list[dict[str, Any]])
    async def api_regions() -> Response:
        """Regions for the map: centroid, consumption over the last minute, meters, rank."""
        return json_response(await regions())

    @app.get("/api/status", tags=["dashboard"], response_model=dict[str, Any])
    async def api_status() -> Response:
        """Effective status counts over all meters."""
        return json_response(await status())

    async def update() -> bytes:
        # The two views are JSON already (and shared with /api/live?seconds=60 and /api/status).
        live_json, status_json = await live(SSE_WINDOW_S), await status()
        return b'event: update\ndata: {"live":' + live_json + b',"status":' + status_json + b"}\n\n"

    # One update per interval for every stream; a Redis hiccup is told to the pages as a comment.
    stream = Broadcast(settings.sse_interval, update, error_payload=b": redis unavailable\n\n")
    app.state.stream = stream
    Gauge("aggregator_sse_streams", "Open dashboard SSE streams", registry=registry).set_function(
        lambda: stream.listeners
    )

    @app.get("/api/stream", tags=["dashboard"])
    async def api_stream() -> StreamingResponse:
        """Server-Sent Events: every interval, the last 60 seconds of consumption and the status
        counts; every stream gets the same snapshot."""
        # Starlette ends the generator when the client disconnects (it listens for it).
        return StreamingResponse(stream.listen(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(str(STATIC.joinpath("index.html")))

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    # The polled endpoints' plain queries skip FastAPI's per-request machinery (fastpath.py); the
    # routes above stay for everything else and for /docs. Same views, same bytes.
    async def fast_live(params: dict[str, str]) -> bytes | None:
        seconds = int_param(params, "seconds", 60, 1, 3600)
        return None if seconds is None else await live(seconds)

    async def fast_meters(params: dict[str, str]) -> bytes | None:
        page = int_param(params, "page", 1, 1, 2**31)
        page_size = int_param(params, "page_size", 50, 1, 500)
        if page is None or page_size is None:
            return None
        return await meters(params.get("status") or None, params.get("region") or None, page, page_size)

    async def fast_status(_: dict[str, str]) -> bytes:
        return await status()

    async def fast_trend(_: dict[str, str]) -> bytes:
        return await trend()

    async def fast_regions(_: dict[str, str]) -> bytes:
        return await regions()

    app.add_middleware(
        SharedViewsFastPath,
        handlers={"/api/live": fast_live, "/api/meters": fast_meters, "/api/status": fast_status,
                  "/api/trend": fast_trend, "/api/regions": fast_regions},
        params={"/api/live": frozenset({"seconds"}), "/api/meters": frozenset({"status", "region", "page", "page_size"}),
                "/api/status": frozenset(), "/api/trend": frozenset(), "/api/regions": frozenset()},
    )
    # Outermost (added last): the fast path answers only requests that passed the token check.
    token = settings.api_token.get_secret_value()
    if token:
        app.add_middleware(TokenAuth, token=token)
    return app
