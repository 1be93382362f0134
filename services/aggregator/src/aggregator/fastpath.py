"""The dashboard's polled endpoints answered straight from the shared views, in front of FastAPI.

Why: a shared view costs nothing to compute per request, so what a request costs is the HTTP
machinery, and on the aggregator it is taken from the fold (the same process, the same GIL).
FastAPI's routing and parameter resolution were about a third of it: with 200 clients polling
every second the aggregator spent ~0.19 CPU on serving with them and ~0.13 without them
(bench/bench_dashboard.py). Only the plain, valid forms of the queries are answered here; anything
else (a parameter out of range or given twice, another method) goes on to FastAPI, which
validates and answers as documented in /docs (422 ...).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

Params = dict[str, str]
Handler = Callable[[Params], Awaitable[bytes | None]]
ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]], Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]


def plain_params(query_string: bytes, allowed: frozenset[str]) -> Params | None:
    """The query's parameters when each one is known and given once; None otherwise (the app
    decides what such a query means)."""
    try:
        pairs = parse_qsl(query_string.decode("ascii"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        return None
    params = dict(pairs)
    if len(params) != len(pairs) or not params.keys() <= allowed:
        return None
    return params


def int_param(params: Params, name: str, default: int, low: int, high: int) -> int | None:
    """``name`` as a plain decimal within ``low..high`` (``default`` when absent); None otherwise."""
    raw = params.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or (len(raw) > 1 and raw[0] == "0"):
        return None
    value = int(raw)
    return value if low <= value <= high else None


class SharedViewsFastPath:
    """ASGI middleware: ``GET <path>`` for the paths of ``handlers`` is answered with the JSON the
    handler returns; a handler returning None (a query it does not take) passes the request on."""

    def __init__(self, app: ASGIApp, handlers: Mapping[str, Handler], params: Mapping[str, frozenset[str]]) -> None:
        self.app = app
        self.handlers = handlers
        self.params = params

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        handler = self.handlers.get(scope.get("path", "")) if scope["type"] == "http" else None
        if handler is not None and scope["method"] == "GET":
            params = plain_params(scope["query_string"], self.params[scope["path"]])
            body = None if params is None else await handler(params)
            if body is not None:
                await send({"type": "http.response.start", "status": 200, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
