"""Every service refuses to start on a Redis that may evict keys, and says what to set."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import redis
from aggregator.testing import free_port, start_service, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def evicting_redis(tmp_path):
    """A second, real Redis on a free port with an evicting policy (as a cache would be set up)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: run scripts/stack install")
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    wait_until(lambda: client.ping(), 10, what="the evicting Redis")
    yield f"redis://127.0.0.1:{port}/0", client
    server.terminate()
    server.wait(10)


@pytest.mark.expected_log_errors(r"maxmemory-policy allkeys-lru")
@pytest.mark.parametrize("service", ["ingest", "aggregator", "writer"])
def test_a_service_refuses_to_start_on_a_redis_that_may_evict_keys(service, evicting_redis, tmp_path):
    url, client = evicting_redis
    log = tmp_path / f"{service}.log"
    env = {"SMARTGRID_REDIS_URL": url, "SMARTGRID_HTTP_PORT": str(free_port()), "SMARTGRID_HTTP_HOST": "127.0.0.1",
           "KAFKA_TOPIC": "policy-check-never-consumed", "INFLUXDB_DATABASE": "policy_check_never_written"}
    process = start_service(service, env, str(log))
    assert process.wait(60) != 0
    output = log.read_text()
    assert "has maxmemory-policy allkeys-lru" in output and "Set maxmemory-policy noeviction" in output, output
    assert "docs/operations.md" in output
    # Nothing was written before it refused.
    assert client.dbsize() == 0

    client.config_set("maxmemory-policy", "noeviction")
    process = start_service(service, env, str(tmp_path / f"{service}-after.log"))
    try:
        wait_until(lambda: "redis eviction policy checked" in (tmp_path / f"{service}-after.log").read_text(), 60,
                   what=f"{service} to accept the noeviction Redis")
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(30)
