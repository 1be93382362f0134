"""The HTTP shell every service shares: ``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import uvicorn
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

ReadyCheck = Callable[[], tuple[bool, str]]
"""Returns (ready, reason); the reason is shown by /readyz."""


def create_app(
    service: str,
    ready: ReadyCheck,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[Any]] | None = None,
    registry: CollectorRegistry = REGISTRY,
    alive: ReadyCheck | None = None,
    **fastapi_kwargs: Any,
) -> FastAPI:
    """A FastAPI app with the health, readiness and metrics endpoints already mounted.

    ``alive`` (optional) says whether the service can still work at all, for a part that can die
    while the HTTP server answers (a supervisor thread): ``/healthz`` then answers 503 with its
    reason, and Kubernetes restarts the container.
    """
    app = FastAPI(title=f"smartgrid {service}", lifespan=lifespan, **fastapi_kwargs)

    @app.get("/healthz", tags=["health"])
    def healthz(response: Response) -> dict[str, str]:
        """Alive: the process answers (and its ``alive`` check, if any, passes)."""
        if alive is not None:
            is_alive, reason = alive()
            if not is_alive:
                response.status_code = 503
                return {"status": "failed", "reason": reason, "service": service}
        return {"status": "ok", "service": service}

    @app.get("/readyz", tags=["health"])
    def readyz(response: Response) -> dict[str, Any]:
        """Ready: dependencies answer and the service is making progress."""
        is_ready, reason = ready()
        if not is_ready:
            response.status_code = 503
        return {"ready": is_ready, "reason": reason, "service": service}

    @app.get("/metrics", tags=["health"])
    def metrics() -> Response:
        """Prometheus text format."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def serve(app: FastAPI, host: str, port: int) -> None:
    """Run the app with uvicorn, logs going through our JSON logging.

    A SIGTERM or SIGINT shuts down gracefully (lifespan shutdown runs) and the process exits 0:
    uvicorn re-raises the signal after its shutdown, and the handler installed here turns that
    into a normal exit, which is what Kubernetes and process supervisors expect.
    """
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda *_: sys.exit(0))
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, lifespan="on")
