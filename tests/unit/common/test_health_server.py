"""The services' HTTP server loop: it wakes seldom, and a stop signal ends it at once."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import uvicorn
from fastapi import FastAPI
from smartgrid_common import health


def test_a_stop_signal_ends_the_server_loop_at_once_not_at_its_next_tick(monkeypatch):
    monkeypatch.setattr(health, "TICK_S", 30.0)
    server = health._Server(uvicorn.Config(FastAPI(), log_config=None))
    server.server_state = uvicorn.server.ServerState()

    async def run() -> float:
        loop = asyncio.create_task(server.main_loop())
        await asyncio.sleep(0.2)
        assert not loop.done()  # idle: it waits for its tick
        asked = time.monotonic()
        server.handle_exit(signal.SIGTERM, None)
        await asyncio.wait_for(loop, 5)
        return time.monotonic() - asked

    assert asyncio.run(run()) < 1.0
    assert server.server_state.default_headers  # the first tick set the date header


def test_the_server_loop_wakes_every_tick_s_and_refreshes_its_date_header_once_a_second():
    server = health._Server(uvicorn.Config(FastAPI(), log_config=None))
    server.server_state = uvicorn.server.ServerState()
    ticks = []
    original = server.on_tick

    async def on_tick(counter: int) -> bool:
        ticks.append((counter, time.monotonic()))
        return await original(counter) or len(ticks) >= 3

    server.on_tick = on_tick
    asyncio.run(asyncio.wait_for(server.main_loop(), 5))
    # uvicorn refreshes the date header when counter % 10 == 0: at 0 and 10, once a second.
    assert [counter for counter, _ in ticks] == [0, 5, 10]
    assert ticks[2][1] - ticks[0][1] >= 2 * health.TICK_S - 0.05


# A service whose stop signal comes while uvicorn builds its event loop, before uvicorn's own
# handlers are installed: it must still start, shut down gracefully and exit 0, with no traceback.
SIGNALLED_WHILE_THE_LOOP_IS_BUILT = """
import contextlib, os, signal, sys
import uvicorn
from fastapi import FastAPI
from smartgrid_common import health

@contextlib.asynccontextmanager
async def lifespan(app):
    print("started", flush=True)
    yield
    print("shut down", flush=True)

original = uvicorn.Config.get_loop_factory

def get_loop_factory(self):
    build = original(self) or __import__("asyncio").new_event_loop
    def signalled_while_built():
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs inside the loop's constructor
        return build()
    return signalled_while_built

uvicorn.Config.get_loop_factory = get_loop_factory
health.serve(FastAPI(lifespan=lifespan), "127.0.0.1", 0)
print("not reached", flush=True)
"""


def test_a_stop_signal_before_uvicorn_handles_signals_still_shuts_down_gracefully_and_exits_0():
    done = subprocess.run([sys.executable, "-X", "dev", "-c", SIGNALLED_WHILE_THE_LOOP_IS_BUILT],
                          capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr and "never awaited" not in done.stderr, done.stderr
    assert done.stdout.split() == ["started", "shut", "down"], (done.stdout, done.stderr)
    assert done.returncode == 0, done.stderr
