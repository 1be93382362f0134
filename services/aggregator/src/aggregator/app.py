"""The aggregator's HTTP face: health, metrics, the dashboard API, its SSE stream and the page.

The lifespan starts the fold and emit loops; the routes only read Redis and shape with views.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import orjson
from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from smartgrid_common.health import create_app

from aggregator import views
from aggregator.fold import FoldConfig
from aggregator.settings import AggregatorSettings
from aggregator.store import LiveStore
from aggregator.worker import Aggregator, Metrics

log = logging.getLogger("aggregator.app")

STATIC = resources.files("aggregator").joinpath("static")
REGION_WINDOW_S = 60
TREND_MINUTES = 24 * 60


def connect(settings: AggregatorSettings) -> Redis:
    """A Redis client for the configured URL (password from its Secret, if any)."""
    password = settings.redis_password.get_secret_value() or None
    return Redis.from_url(settings.redis_url, password=password, socket_timeout=10, health_check_interval=30)


def build_app(settings: AggregatorSettings, run_worker: bool = True) -> FastAPI:
    """The FastAPI app; ``run_worker=False`` serves the dashboard without folding."""
    redis = connect(settings)
    config = FoldConfig(
        live_ttl=int(settings.live_retention),
        region_ttl=int(max(settings.region_retention, settings.late_window)),
        late_ttl=max(1, int(settings.late_window)),
    )
    store = LiveStore(redis, settings.redis_prefix, config)
    registry = CollectorRegistry()
    worker = Aggregator(redis, store, settings, Metrics(registry))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tasks = []
        if run_worker:
            tasks = [asyncio.create_task(worker.run_fold()), asyncio.create_task(worker.run_emit())]
        else:
            worker.redis_ok = True
        log.info("aggregator started", extra={"consumer": settings.consumer, "prefix": settings.redis_prefix})
        try:
            yield
        finally:
            worker.stopping.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await redis.aclose()

    app = create_app("aggregator", worker.ready, lifespan=lifespan, registry=registry)
    app.state.store = store
    app.state.worker = worker

    async def live(seconds: int) -> dict[str, Any]:
        end = await store.latest_second()
        rows = [] if end is None else await store.seconds(end - seconds + 1, end)
        return views.live_view(end, seconds, rows)

    async def status() -> dict[str, Any]:
        return views.status_view(await store.status_counts())

    @app.get("/api/live", tags=["dashboard"])
    async def api_live(seconds: int = Query(60, ge=1, le=3600, description="How many seconds")) -> dict[str, Any]:
        """Consumption per event second for the last N seconds up to the newest folded second."""
        return await live(seconds)

    @app.get("/api/trend", tags=["dashboard"])
    async def api_trend() -> dict[str, Any]:
        """The 24-hour trend: one point per event minute (1440 points)."""
        end = await store.latest_second()
        if end is None:
            return views.trend_view(None, TREND_MINUTES, [])
        end_minute = end - end % 60
        rows = await store.minutes(end_minute - 60 * (TREND_MINUTES - 1), TREND_MINUTES)
        return views.trend_view(end_minute, TREND_MINUTES, rows)

    @app.get("/api/meters", tags=["dashboard"])
    async def api_meters(
        status: str | None = Query(None, description="Only meters in this status (fault, offline, ...)"),
        region: str | None = Query(None, description="Only meters in this region"),
        page: int = Query(1, ge=1),
        page_size: int = Query(50, ge=1, le=500),
    ) -> dict[str, Any]:
        """Faulty and offline meters (every status but ok), newest first, paginated."""
        total, records = await store.alerts(status or None, region or None, (page - 1) * page_size, page_size)
        return views.meters_view(total, page, page_size, records)

    @app.get("/api/regions", tags=["dashboard"])
    async def api_regions() -> list[dict[str, Any]]:
        """Regions for the map: centroid, consumption over the last minute, meters, rank."""
        end = await store.latest_second()
        window = [] if end is None else await store.region_seconds(end - REGION_WINDOW_S + 1, end)
        geo, known = await store.region_facts()
        rows = views.regions_view(window, geo, known, REGION_WINDOW_S)
        alerts = await store.alert_counts([row["region"] for row in rows])
        for row, count in zip(rows, alerts, strict=True):
            row["alerts"] = int(count)
        return rows

    @app.get("/api/status", tags=["dashboard"])
    async def api_status() -> dict[str, Any]:
        """Effective status counts over all meters."""
        return await status()

    @app.get("/api/stream", tags=["dashboard"])
    async def api_stream(request: Request) -> StreamingResponse:
        """Server-Sent Events: every second, the last 60 seconds of consumption and the status counts."""

        async def events() -> AsyncIterator[bytes]:
            while not await request.is_disconnected():
                try:
                    payload = {"live": await live(60), "status": await status()}
                    yield b"event: update\ndata: " + orjson.dumps(payload) + b"\n\n"
                except Exception:  # Redis hiccup: tell the page, keep the stream open
                    log.warning("sse update failed", exc_info=True)
                    yield b": redis unavailable\n\n"
                await asyncio.sleep(settings.sse_interval)

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(str(STATIC.joinpath("index.html")))

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app
