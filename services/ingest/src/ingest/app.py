"""The ingest pod's HTTP process: health, readiness, metrics, and the worker supervisor."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import REGISTRY
from smartgrid_common.health import create_app

from .settings import IngestSettings
from .stats import COUNTERS, WorkersCollector
from .supervisor import Supervisor


def build_app(settings: IngestSettings) -> FastAPI:
    """The app; its lifespan starts the workers and, on shutdown, drains them."""
    collector = WorkersCollector()
    REGISTRY.register(collector)
    supervisor = Supervisor(settings, collector)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        supervisor.start()
        yield
        supervisor.stop(settings.shutdown_timeout)

    # /healthz fails once the supervisor thread has died: its workers stop with it, and only a
    # restart of the container (the liveness probe) starts them again.
    app = create_app("ingest", supervisor.ready, lifespan, alive=supervisor.alive)
    app.state.supervisor = supervisor
    app.state.collector = collector

    @app.get("/stats", tags=["health"])
    def stats() -> dict:
        """Totals over all workers (what /metrics exposes, as JSON)."""
        return {
            "totals": {name: collector.total(name) for name in COUNTERS},
            "workers": collector.latest,
        }

    return app
