"""Integration fixtures: the real stack must be running (`scripts/stack up`).

Every test here fails when a service it started logged an ERROR line or a traceback it did not
declare (``service_logs``): a stop path that crashes, or a worker thread that dies, is a failure
even when the test's own assertions pass.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
import redis as redis_client

from aggregator.testing import free_port, http_ok, start_service, wait_until
from ingest_harness import INFLUX, REDIS, IngestProcess, Names
from service_logs import ServiceLogs


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers",
        "expected_log_errors(*patterns): ERROR lines or tracebacks (regular expressions) the test "
        "provokes in service logs on purpose",
    )


@pytest.fixture(autouse=True)
def service_logs(request, tmp_path):
    """Fails the test when a service log holds an ERROR line or a traceback it did not expect.

    Scans every ``*.log`` under the test's ``tmp_path`` (where the tests' service helpers write)
    and the logs given to ``service_logs.watch``, at teardown: autouse, so it is set up first and
    torn down last, after the fixtures that stop the services. Expected problems come from the
    ``expected_log_errors`` marker and ``service_logs.expect``.
    """
    logs = ServiceLogs(tmp_path)
    for marker in request.node.iter_markers("expected_log_errors"):
        logs.expect(*marker.args)
    yield logs
    unexpected = logs.unexpected()
    if unexpected:
        shown = "\n\n".join(str(problem) for problem in unexpected[:10])
        more = f"\n\n... and {len(unexpected) - 10} more" if len(unexpected) > 10 else ""
        pytest.fail(
            f"{len(unexpected)} unexpected ERROR line(s) or traceback(s) in service logs (a bug, or "
            f"declare it with @pytest.mark.expected_log_errors(<regex>)):\n\n{shown}{more}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def stack() -> None:
    try:
        httpx.get(f"{INFLUX}/ping", timeout=3).raise_for_status()
        redis_client.Redis.from_url(REDIS).ping()
    except Exception as error:  # noqa: BLE001
        pytest.fail(f"the local stack is not running: start it with `scripts/stack up` ({error})")


@pytest.fixture
def redis(stack) -> redis_client.Redis:
    """A client of the stack's Redis (``stack`` fails the test, saying what to start, if it is down)."""
    return redis_client.Redis.from_url(REDIS)


@pytest.fixture
def prefix(redis):
    """A Redis key prefix of the test's own; its keys are deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    for key in redis.scan_iter(f"{name}:*", count=1000):
        redis.delete(key)


@pytest.fixture
def names(stack, request):
    """The test's topic, database, Redis prefix and group; ``@pytest.mark.partitions(n)`` sizes the topic."""
    marker = request.node.get_closest_marker("partitions")
    created = Names(partitions=marker.args[0]) if marker else Names()
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


@pytest.fixture
def aggregator(prefix, tmp_path):
    """Starts ``python -m aggregator`` processes over the test's Redis prefix, each on a free port
    (settings as keywords); returns its base URL once ready. ``aggregator.processes[url]`` is its
    process; each logs to ``aggregator-<n>.log`` in ``tmp_path``."""
    started: dict[str, object] = {}

    def start(**settings: str) -> str:
        port = free_port()
        env = {"SMARTGRID_REDIS_PREFIX": prefix, "SMARTGRID_HTTP_PORT": str(port), "SMARTGRID_HTTP_HOST": "127.0.0.1",
               **settings}
        url = f"http://127.0.0.1:{port}"
        started[url] = start_service("aggregator", env, str(tmp_path / f"aggregator-{len(started)}.log"))
        wait_until(lambda: http_ok(f"{url}/readyz"), 30, what="the aggregator")
        return url

    start.processes = started
    yield start
    for process in started.values():
        process.terminate()
        process.wait(10)
