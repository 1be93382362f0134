"""The fold and emit loops on an event loop of their own, in a thread, apart from the HTTP server's.

Why: the fold is a chain of Redis round trips (read, fold script, acknowledge), each step resumed
by its event loop. On the HTTP server's loop every step waited behind the dashboard requests queued
before it: 200 API clients polling once a second cut the fold rate by 27% (bench/bench_dashboard.py)
while neither the CPUs nor Redis were busy. On a loop of its own the fold shares only the GIL, which
Python hands over at every blocking call and at least every 5 ms; and the dashboard no longer waits
while a fold parses its summaries.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from typing import Any

from redis.asyncio import Redis

from aggregator.worker import Aggregator

log = logging.getLogger("aggregator.worker_thread")


class WorkerThread(threading.Thread):
    """Runs ``worker.run_fold()`` and ``worker.run_emit()`` (and the loops of ``companions``,
    e.g. the region watch: their ``tasks()``, ended by their ``stopping`` event, then ``close()``)
    until :meth:`stop`.

    ``worker`` and its ``redis`` client are used by this thread's loop only (a redis.asyncio client
    belongs to the loop that opened its connections); the dashboard has a client of its own.
    """

    def __init__(self, worker: Aggregator, redis: Redis, companions: tuple[Any, ...] = ()) -> None:
        super().__init__(name="aggregator-worker", daemon=True)
        self.worker = worker
        self.redis = redis
        self.companions = companions
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._running = threading.Event()

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException:  # logged here; /healthz reports the dead thread (alive())
            log.exception("the fold and emit loops stopped unexpectedly")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self._running.set()
        tasks = [asyncio.create_task(self.worker.run_fold()), asyncio.create_task(self.worker.run_emit())]
        tasks += [asyncio.create_task(loop) for companion in self.companions for loop in companion.tasks()]
        try:
            await self._stop_event.wait()
        finally:
            self.worker.stopping.set()
            for companion in self.companions:
                companion.stopping.set()
            # As on the server's loop before: a fold in flight is cancelled (the script is atomic
            # in Redis; a summary not acknowledged yet is read again after a restart).
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for companion in self.companions:
                await companion.close()
            await self.redis.aclose()

    def stop(self, timeout: float) -> None:
        """Stop both loops and wait (at most ``timeout`` seconds) for the thread to end."""
        if self.ident is None:  # never started (the app served without folding)
            return
        if self._running.wait(timeout) and self._loop is not None and self._stop_event is not None:
            try:
                self._loop.call_soon_threadsafe(self._stop_event.set)
            except RuntimeError:  # the loop has already ended
                pass
        self.join(timeout)

    def alive(self) -> tuple[bool, str]:
        """For ``/healthz``: false once the thread has died (the container must be restarted)."""
        if self._running.is_set() and not self.is_alive():
            return False, "the fold and emit loops have stopped"
        return True, "folding"
