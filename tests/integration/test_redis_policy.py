"""Redis as the services use it: every service refuses to start on a Redis that may evict keys, and
says what to set; ingest sends its large checkpoints without copying them."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import redis
from aggregator.testing import free_port, start_service, wait_until
from ingest_harness import REDIS

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


def test_a_checkpoint_sized_argument_is_sent_as_it_is_and_small_commands_still_round_trip(prefix):
    """Ingest's publisher packs a command with a large argument without copying it (its
    checkpoints are megabytes): the packed command holds the very object; Redis stores it whole."""
    from smartgrid_common.redisdb import LARGE_ARGUMENT, LargeArgumentsUncopied

    packer = LargeArgumentsUncopied()
    large, small = b"\x00\xff" * LARGE_ARGUMENT, b"v" * 100
    assert any(chunk is large for chunk in packer.pack("SET", "k", large))
    client = redis.Redis.from_url(REDIS, command_packer=packer)
    key = f"{prefix}:large-argument"
    assert client.pipeline().set(key, large).get(key).execute() == [True, large]
    assert client.set(key, small) and client.get(key) == small
    script = client.register_script("redis.call('SET', KEYS[1], ARGV[1]) return redis.call('STRLEN', KEYS[1])")
    assert script(keys=[key], args=[large]) == len(large)
