"""Dashboard views shared by every viewer: each view is computed at most once per interval,
whatever the number of clients, and every SSE stream pushes the same snapshot.

No network here: the computations are passed in (``app.py`` gives coroutines that read Redis).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

log = logging.getLogger("aggregator.viewcache")

T = TypeVar("T")


@dataclass(slots=True)
class _Entry(Generic[T]):
    started: float  # clock when its computation began: the data is at least this fresh
    ttl: float
    value: T


class ViewCache:
    """Single-flight cache of computed views, each one fresh for ``ttl`` seconds (or the ``ttl``
    given with the key).

    Callers of a key whose value is missing or stale share ONE computation: the first one starts
    it, the others await the same result. A fresh value is returned without computing. A failed
    computation is not cached: everyone waiting on it gets the error, the next call tries again.
    ``ttl <= 0`` turns the cache off: every call computes (the old per-request path, kept as the
    benchmark's baseline).
    """

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = 512,
        clock: Callable[[], float] = time.monotonic,
        on_compute: Callable[[Hashable], None] | None = None,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._on_compute = on_compute
        self._entries: dict[Hashable, _Entry[Any]] = {}
        self._flights: dict[Hashable, asyncio.Future[Any]] = {}

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[T]], ttl: float | None = None) -> T:
        """The value of ``key``: cached if computed less than ``ttl`` (default: the cache's) ago,
        else computed once for every concurrent caller."""
        if self.ttl <= 0:
            self._counted(key)
            return await compute()
        entry = self._entries.get(key)
        if entry is not None and self._clock() - entry.started < entry.ttl:
            return entry.value
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(self._compute(key, compute, self.ttl if ttl is None else ttl))
            # Nobody may be left to await a failed flight (all its callers disconnected): retrieve
            # the error here so asyncio does not log "exception was never retrieved".
            flight.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._flights[key] = flight
        # shield: a caller that goes away (a client disconnecting) must not cancel the
        # computation the other callers wait for.
        return await asyncio.shield(flight)

    async def _compute(self, key: Hashable, compute: Callable[[], Awaitable[T]], ttl: float) -> T:
        started = self._clock()
        self._counted(key)
        try:
            value = await compute()
        finally:
            del self._flights[key]
        self._store(key, _Entry(started, ttl, value))
        return value

    def _counted(self, key: Hashable) -> None:
        if self._on_compute is not None:
            self._on_compute(key)

    def _store(self, key: Hashable, entry: _Entry[Any]) -> None:
        self._entries[key] = entry
        if len(self._entries) <= self.max_entries:
            return
        # Views with arbitrary parameters (filters, pages) must not grow the cache without bound:
        # stale entries are worth nothing (the next call recomputes anyway), then the oldest go.
        now = self._clock()
        for stale in [k for k, e in self._entries.items() if now - e.started >= e.ttl]:
            del self._entries[stale]
        while len(self._entries) > self.max_entries:
            del self._entries[min(self._entries, key=lambda k: self._entries[k].started)]


class Broadcast:
    """One payload per ``interval`` for every listener.

    While anyone listens, a single producer task calls ``produce`` once per interval; every
    listener gets the same bytes (a new listener gets the current payload at once, then each new
    one). A listener that falls behind skips to the newest payload: nothing queues up per client.
    When ``produce`` fails, listeners get ``error_payload`` for that interval and the stream goes
    on. The producer stops when the last listener leaves; :meth:`finish` ends every stream.
    """

    def __init__(self, interval: float, produce: Callable[[], Awaitable[bytes]], error_payload: bytes) -> None:
        self.interval = interval
        self._produce = produce
        self._error_payload = error_payload
        self._listeners = 0
        self._task: asyncio.Task[None] | None = None
        self._payload = b""
        self._version = 0
        self._changed = asyncio.Event()
        self._finished = False

    @property
    def listeners(self) -> int:
        """Streams listening right now."""
        return self._listeners

    async def listen(self) -> AsyncIterator[bytes]:
        """Payloads as they are produced, the current one first, until :meth:`finish`."""
        if self._finished:
            return
        self._listeners += 1
        if self._task is None or self._task.done():
            self._version = 0  # a payload of an earlier run may be arbitrarily old
            self._task = asyncio.create_task(self._run())
        try:
            seen = 0
            while True:
                while self._version == seen and not self._finished:
                    await self._changed.wait()
                if self._finished:
                    return
                seen = self._version
                yield self._payload
        finally:
            self._listeners -= 1

    def finish(self) -> None:
        """End every stream (the server is stopping: it waits for open responses to end)."""
        self._finished = True
        self._changed.set()

    async def close(self) -> None:
        """Stop the producer (application shutdown)."""
        self.finish()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while self._listeners and not self._finished:
            try:
                payload = await self._produce()
            except Exception:  # Redis hiccup: tell the pages, keep the streams open
                log.warning("dashboard stream update failed", exc_info=True)
                payload = self._error_payload
            self._payload = payload
            self._version += 1
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()
            # Fixed rate (the old per-stream loop drifted by each update's own time); after a
            # slow update, start again from now rather than catching up with a burst.
            due = max(due + self.interval, loop.time())
            await asyncio.sleep(due - loop.time())
