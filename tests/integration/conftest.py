"""Integration fixtures: the real stack must be running (`scripts/stack up`)."""

from __future__ import annotations

import httpx
import pytest
import redis as redis_client

from ingest_harness import INFLUX, REDIS, IngestProcess, Names


@pytest.fixture(scope="session")
def stack() -> None:
    try:
        httpx.get(f"{INFLUX}/ping", timeout=3).raise_for_status()
        redis_client.Redis.from_url(REDIS).ping()
    except Exception as error:  # noqa: BLE001
        pytest.fail(f"the local stack is not running: start it with `scripts/stack up` ({error})")


@pytest.fixture
def names(stack, request):
    created = Names()
    yield created
    created.cleanup()
    client = redis_client.Redis.from_url(REDIS)
    for key in client.scan_iter(f"{created.prefix}:*", count=1000):
        client.delete(key)


@pytest.fixture
def ingest(names, tmp_path, request):
    """Start ingest processes; on failure their logs are printed."""
    started: list[IngestProcess] = []

    def start(**extra: str) -> IngestProcess:
        process = IngestProcess(names.env(**extra), tmp_path / f"ingest-{len(started)}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        for process in started:
            print(f"---- {process.log} ----")
            print(process.log.read_text()[-6000:])


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
