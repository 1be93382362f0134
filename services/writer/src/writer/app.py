"""The writer's HTTP face (health, readiness, metrics) and the lifespan that runs its loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from smartgrid_common.health import create_app
from smartgrid_common.influx import InfluxClient, InfluxNodeMetrics

from writer.settings import WriterSettings
from writer.worker import Metrics, Writer

log = logging.getLogger("writer.app")


def build_app(settings: WriterSettings) -> FastAPI:
    """The writer app; its lifespan starts and stops the write loop."""
    password = settings.redis_password.get_secret_value() or None
    redis = Redis.from_url(settings.redis_url, password=password, socket_timeout=10, health_check_interval=30)
    influx = InfluxClient(settings)
    registry = CollectorRegistry()
    registry.register(InfluxNodeMetrics(influx))  # per node: up, failures, writes
    writer = Writer(redis, influx, settings, Metrics(registry))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(writer.run())
        log.info("writer started", extra={"consumer": settings.consumer, "database": settings.influxdb_database})
        try:
            yield
        finally:
            writer.stop.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await redis.aclose()
            influx.close()

    app = create_app("writer", writer.ready, lifespan=lifespan, registry=registry)
    app.state.writer = writer
    return app
