"""The HTTP shell every service shares: ``/healthz``, ``/readyz`` and ``/metrics``.

With ``SMARTGRID_METRICS_PORT`` set (the chart's layout: 9102), those endpoints (every route
tagged ``health``) answer on that port only, and the service's own routes (the dashboard and its
API) on ``SMARTGRID_HTTP_PORT`` only: a NetworkPolicy can then open the metrics port to Prometheus
alone. One server serves both ports (one event loop, one lifespan).
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import uvicorn
from fastapi import FastAPI, Response
from fastapi.routing import APIRoute
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.config import STARTUP_FAILURE
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

ReadyCheck = Callable[[], tuple[bool, str]]
"""Returns (ready, reason); the reason is shown by /readyz."""
HTTP_SHUTDOWN_TIMEOUT_S = 3.0
"""How long a stopping service lets open HTTP requests finish (a browser's SSE stream never does)."""


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
    # Set by serve() when the server starts stopping, before it waits for the open requests:
    # responses that never end by themselves (event streams) end on it.
    app.state.stopping = asyncio.Event()

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


HEALTH_TAG = "health"
"""Routes with this tag (health, readiness, metrics, stats) move to the metrics port."""


def ops_paths(app: FastAPI) -> frozenset[str]:
    """The paths of the app's routes tagged ``health``."""
    return frozenset(route.path for route in app.routes if isinstance(route, APIRoute) and HEALTH_TAG in route.tags)


class PortSplit:
    """ASGI middleware: ``paths`` answer on ``metrics_port`` only, everything else anywhere but there (404)."""

    def __init__(self, app: ASGIApp, metrics_port: int, paths: frozenset[str]) -> None:
        self.app = app
        self.metrics_port = metrics_port
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            server = scope.get("server")
            on_metrics_port = server is not None and server[1] == self.metrics_port
            if (scope["path"] in self.paths) != on_metrics_port:
                if scope["type"] == "http":
                    await PlainTextResponse("not found on this port", 404)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free one), as uvicorn would open it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        sys.exit(f"cannot listen on {host}:{port} ({error.strerror}): free the port or set another one")
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(app: FastAPI, host: str, port: int, metrics_port: int | None = None) -> None:
    """Run the app with uvicorn, logs going through our JSON logging.

    ``metrics_port`` (None or ``port``: one port for everything): the port of the health,
    readiness and metrics routes, which then answer there only (:class:`PortSplit`).

    A SIGTERM or SIGINT shuts down gracefully (lifespan shutdown runs) and the process exits 0,
    which is what Kubernetes and process supervisors expect, whenever it comes: uvicorn handles it
    while it serves, and the handler installed here before (and after: uvicorn re-raises the
    signal once it is done) only marks the server as stopping. It raises nothing: a signal that
    comes while uvicorn builds its event loop, before its own handlers exist, must not break the
    loop's construction; uvicorn then starts, sees the mark and shuts down at once. Open requests
    are told by ``app.state.stopping``; any still open ``HTTP_SHUTDOWN_TIMEOUT_S`` later are
    cancelled (uvicorn would otherwise wait for them without end).
    """
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=HTTP_SHUTDOWN_TIMEOUT_S)
    server = _Server(config)
    stop_signals: list[int] = []

    def stop(sig: int, frame: Any) -> None:
        stop_signals.append(sig)
        server.should_exit = True

    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, stop)
    if metrics_port is None or metrics_port == port:
        server.run()
    else:
        sockets = [bind(host, port), bind(host, metrics_port)]
        app.add_middleware(PortSplit, metrics_port=sockets[1].getsockname()[1], paths=ops_paths(app))
        server.run(sockets=sockets)
    if stop_signals:
        sys.exit(0)
    if not server.started:  # as uvicorn.run: the port was taken, or the lifespan startup failed
        sys.exit(STARTUP_FAILURE)


TICK_S = 0.5
"""How often the server's loop wakes when nothing asks it to (uvicorn: every 0.1 s, which costs an
idle service 2.3 ms of CPU a second on the machines measured; 0.5 s: 0.7 ms). A stop signal wakes
it at once."""


class _Server(uvicorn.Server):
    """uvicorn's server, telling the app (``app.state.stopping``) when it starts stopping, and
    waking every ``TICK_S`` instead of every 0.1 s (a stop signal still ends it at once)."""

    _loop: asyncio.AbstractEventLoop | None = None
    _woken: asyncio.Event | None = None

    async def main_loop(self) -> None:
        """uvicorn's loop (its date header refreshed once a second, its exit checks), at
        ``TICK_S``, woken by ``handle_exit``."""
        self._loop, self._woken = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            # on_tick refreshes the date header when counter % 10 == 0: once a second.
            counter = (counter + round(TICK_S * 10)) % 864000
            try:
                await asyncio.wait_for(self._woken.wait(), TICK_S)
            except TimeoutError:
                pass
            should_exit = await self.on_tick(counter)

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None and self._woken is not None:
            self._loop.call_soon_threadsafe(self._woken.set)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        stopping = getattr(self.config.app.state, "stopping", None)
        if stopping is not None:
            stopping.set()
        await super().shutdown(sockets)
