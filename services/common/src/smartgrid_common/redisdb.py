"""Redis as the product needs it: a store whose keys are never evicted.

Exactly-once rests on keys that must outlive any memory pressure: the aggregator's applied-offset
watermarks, ingest's published offsets and meter-state checkpoints, the streams' pending entries.
A Redis that may evict keys (any ``maxmemory-policy`` but ``noeviction``) could silently drop one,
and a dropped watermark folds a partition twice. So every service that uses Redis checks the
policy before it starts, and refuses to start on such a Redis with what to set.
"""

from __future__ import annotations

import logging
import time

import redis
from redis._parsers import Encoder
from redis.connection import PythonRespSerializer

from .settings import ConfigError, RedisSettings

log = logging.getLogger(__name__)

SAFE_POLICY = "noeviction"


LARGE_ARGUMENT = 64 * 1024
"""Bytes above which an argument is sent as it is, not copied into the packed command."""


class LargeArgumentsUncopied:
    """A redis-py command packer for clients that send large values (ingest's meter-state
    checkpoints, megabytes each): a command with an argument over ``LARGE_ARGUMENT`` bytes is
    packed by redis-py's Python serializer, which sends such an argument as it is; any other
    command by hiredis's, the fastest for small arguments. hiredis's copies every argument into
    the packed command, three times over: 26 ms of CPU for an 11 MB checkpoint, against 4 ms
    (measured with a throwaway script, 20 calls each way, 2026-12-03). Pass it as
    ``redis.Redis(..., command_packer=LargeArgumentsUncopied())``.
    """

    def __init__(self) -> None:
        # Only used for commands with an argument over LARGE_ARGUMENT, which it sends as it is.
        self._python = PythonRespSerializer(LARGE_ARGUMENT, Encoder("utf-8", "strict", False).encode)
        self._small = redis.connection.HiredisRespSerializer() if redis.connection.HIREDIS_AVAILABLE else self._python

    def pack(self, *args):
        if any(isinstance(arg, (bytes, memoryview)) and len(arg) > LARGE_ARGUMENT for arg in args):
            return self._python.pack(*args)
        return self._small.pack(*args)


def redis_address(settings: RedisSettings) -> str:
    """host:port/db of the configured Redis, without credentials (safe to log)."""
    kwargs = redis.connection.parse_url(settings.redis_url)
    return f"{kwargs.get('host', kwargs.get('path', '?'))}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def eviction_problem(policy: str | None, address: str) -> str | None:
    """What to do about a ``maxmemory-policy`` that may evict keys, or None when it is safe."""
    if policy in (None, SAFE_POLICY):
        return None
    return (
        f"Redis at {address} has maxmemory-policy {policy}: it may evict keys, and the pipeline's "
        "exactly-once state (offset watermarks, published offsets, meter checkpoints) must never be "
        f"evicted. Set maxmemory-policy {SAFE_POLICY} on that Redis (CONFIG SET maxmemory-policy "
        f"{SAFE_POLICY}, or the managed service's parameter; see docs/operations.md, 'Redis')"
    )


def require_no_eviction(settings: RedisSettings, retry_every: float = 2.0) -> None:
    """Wait for Redis to answer, then stop start-up (:class:`ConfigError`) if it may evict keys.

    The policy is read from ``INFO memory``, which managed services that disable ``CONFIG`` serve.
    """
    address = redis_address(settings)
    client = redis.Redis.from_url(
        settings.redis_url,
        password=settings.redis_password.get_secret_value() or None,
        socket_timeout=5,
        socket_connect_timeout=5,
    )
    try:
        attempts = 0
        while True:
            try:
                policy = client.info("memory").get("maxmemory_policy")
                break
            except redis.RedisError as error:
                if attempts % 5 == 0:
                    log.warning("waiting for Redis to check its eviction policy", extra={"redis": address, "error": str(error)})
                attempts += 1
                time.sleep(retry_every)
    finally:
        client.close()
    problem = eviction_problem(policy, address)
    if problem:
        log.error(problem)
        raise ConfigError(problem)
    log.info("redis eviction policy checked", extra={"redis": address, "maxmemory_policy": policy})
