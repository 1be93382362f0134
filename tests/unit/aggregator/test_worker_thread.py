"""The fold and emit loops on a thread of their own (worker_thread.py): started, stopped, and
reported dead to /healthz. The loops here are stand-ins for Aggregator's (no Redis involved)."""

from __future__ import annotations

import asyncio
import time

from aggregator.worker_thread import WorkerThread


class Loops:
    """Aggregator's surface as WorkerThread uses it; ``run_fold`` fails when told to."""

    def __init__(self, fail: bool = False) -> None:
        self.stopping = asyncio.Event()
        self.fail = fail
        self.folding = False
        self.cancelled = 0

    async def run_fold(self) -> None:
        self.folding = True
        if self.fail:
            raise SystemExit("not an Exception: escapes run_fold's own retry loop")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def run_emit(self) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


class Client:
    closed = False

    async def aclose(self) -> None:
        self.closed = True


def test_the_loops_run_on_their_own_thread_until_stopped():
    loops, client = Loops(), Client()
    thread = WorkerThread(loops, client)
    thread.start()
    deadline = time.monotonic() + 5
    while not loops.folding and time.monotonic() < deadline:
        time.sleep(0.01)
    assert loops.folding and thread.alive() == (True, "folding")
    thread.stop(5)
    assert not thread.is_alive()
    assert loops.stopping.is_set() and loops.cancelled == 2 and client.closed


def test_healthz_learns_when_the_loops_die():
    thread = WorkerThread(Loops(fail=True), Client())
    thread.start()
    thread.join(5)
    alive, reason = thread.alive()
    assert not alive and "stopped" in reason


def test_stopping_a_thread_never_started_returns_at_once():
    thread = WorkerThread(Loops(), Client())
    began = time.monotonic()
    thread.stop(0.2)
    assert time.monotonic() - began < 1 and thread.alive()[0]
