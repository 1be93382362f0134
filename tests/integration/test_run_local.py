"""The README's run command (`make run` = scripts/run-local): it starts the services, prints the
dashboard address, and Ctrl-C stops them and exits 0. Servers of the stack that were running
before it started are left running (the test suite's stack is); the ones it started itself are
stopped too, which is checked by hand (it would stop the suite's stack here)."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ingest_harness import REPO

pytestmark = pytest.mark.integration

STATE = Path(os.environ.get("SMARTGRID_STATE_DIR", REPO / ".state"))  # where scripts/run-local logs


def three_free_ports() -> int:
    """A port P with P, P+1 and P+2 free (dashboard, ingest, writer), below the ephemeral range so
    that no client connection takes one of them meanwhile."""
    for _ in range(200):
        base = random.randrange(20_000, 32_000)
        try:
            for port in (base, base + 1, base + 2):
                with socket.socket() as sock:
                    sock.bind(("0.0.0.0", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no three consecutive free ports")


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_ctrl_c_stops_the_services_and_leaves_a_stack_it_did_not_start(service_logs):
    for name in ("ingest", "aggregator", "writer"):  # what this run appends to them is scanned
        service_logs.watch(STATE / "logs" / f"{name}.log")
    before = subprocess.run([str(REPO / "scripts" / "stack"), "status"], capture_output=True, text=True)
    assert before.returncode == 0, before.stdout  # the suite's stack is up
    port = three_free_ports()
    process = subprocess.Popen(
        [sys.executable, "scripts/run-local", "--no-simulator", "--dashboard-port", str(port)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # As a shell without job control starts `cmd &` (a CI script): SIGINT ignored. Ctrl-C still stops it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    lines = []
    try:
        deadline = time.monotonic() + 180
        for line in process.stdout:
            lines.append(line)
            if "Dashboard:" in line or time.monotonic() > deadline:
                break
        assert f"Dashboard: http://127.0.0.1:{port}/" in "".join(lines), "".join(lines)
        assert answers(f"http://127.0.0.1:{port}/api/status")
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 0, rest
    for name in ("ingest", "aggregator", "writer"):
        assert f"stopped {name}" in rest
    for service_port in (port, port + 1, port + 2):
        assert not answers(f"http://127.0.0.1:{service_port}/readyz")
    after = subprocess.run([str(REPO / "scripts" / "stack"), "status"], capture_output=True, text=True)
    assert after.returncode == 0 and after.stdout == before.stdout.replace("starting", "running")
    assert "stopped pid" not in rest  # no server of the stack was stopped
