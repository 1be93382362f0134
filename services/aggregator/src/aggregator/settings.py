"""Aggregator settings: Redis, the late window, batch sizes, emission interval."""

from __future__ import annotations

import socket

from smartgrid_common.settings import Duration, EventTimeSettings, RedisSettings, ServiceSettings, env


class AggregatorSettings(ServiceSettings, RedisSettings, EventTimeSettings):
    """Everything ``python -m aggregator`` reads from the environment.

    ``late_window`` (from :class:`EventTimeSettings`) is also the TTL of the per-bucket
    distinct-meter sets: memory grows with it.
    """

    # Consumer group on the summaries stream (shared by every aggregator replica).
    group: str = env("SMARTGRID_AGGREGATOR_GROUP", "aggregator", min_length=1)
    # This replica's consumer name in the group; defaults to the hostname (the pod name).
    consumer: str = env("SMARTGRID_AGGREGATOR_CONSUMER", socket.gethostname(), min_length=1)
    # Summaries read per XREADGROUP call.
    batch: int = env("SMARTGRID_AGGREGATOR_BATCH", 100, gt=0)
    # Summaries folded per EVALSHA (each still checked against its own watermark).
    fold_group: int = env("SMARTGRID_AGGREGATOR_FOLD_GROUP", 20, gt=0)
    # Longest XREADGROUP blocks waiting for new summaries.
    block: Duration = env("SMARTGRID_AGGREGATOR_BLOCK", 0.5)
    # A pending summary idle this long (its replica presumably died) is claimed by another one.
    claim_idle: Duration = env("SMARTGRID_AGGREGATOR_CLAIM_IDLE", 30.0)
    # How long per-second totals and the per-minute trend are kept (event seconds older than the
    # newest minus this are dropped as too late).
    live_retention: Duration = env("SMARTGRID_LIVE_RETENTION", 86400.0, gt=0)
    # How long per-(second, region) rollups are kept (at least the late window).
    region_retention: Duration = env("SMARTGRID_REGION_RETENTION", 3600.0, gt=0)
    # Changed buckets are emitted to the rollups stream at most once per this interval.
    emit_interval: Duration = env("SMARTGRID_EMIT_INTERVAL", 1.0, gt=0)
    # Emit rollups for the writer (off when no writer runs: the rollups stream would only grow).
    emit_rollups: bool = env("SMARTGRID_EMIT_ROLLUPS", True)
    # Buckets (seconds) per rollup message.
    emit_chunk: int = env("SMARTGRID_EMIT_CHUNK", 200, gt=0)
    # Interval between two pushes of the dashboard's Server-Sent Events stream.
    sse_interval: Duration = env("SMARTGRID_SSE_INTERVAL", 1.0, gt=0)
    # Fold has not progressed for this long while summaries wait: /readyz turns false.
    stall_after: Duration = env("SMARTGRID_AGGREGATOR_STALL_AFTER", 60.0, gt=0)
