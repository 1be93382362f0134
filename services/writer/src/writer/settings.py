"""Writer settings: Redis (rollups stream), InfluxDB, batching."""

from __future__ import annotations

import socket

from smartgrid_common.settings import Duration, InfluxSettings, RedisSettings, ServiceSettings, env


class WriterSettings(ServiceSettings, RedisSettings, InfluxSettings):
    """Everything ``python -m writer`` reads from the environment."""

    # Consumer group on the rollups stream (shared by every writer replica).
    group: str = env("SMARTGRID_WRITER_GROUP", "writer", min_length=1)
    # This replica's consumer name in the group; defaults to the hostname (the pod name).
    consumer: str = env("SMARTGRID_WRITER_CONSUMER", socket.gethostname(), min_length=1)
    # Rollup messages read (and written as one InfluxDB batch) per round.
    batch: int = env("SMARTGRID_WRITER_BATCH", 200, gt=0)
    # Longest XREADGROUP blocks waiting for rollups (bounds how long a partial batch waits).
    block: Duration = env("SMARTGRID_WRITER_BLOCK", 0.5)
    # A rollup pending this long at another consumer (presumably dead) is claimed.
    claim_idle: Duration = env("SMARTGRID_WRITER_CLAIM_IDLE", 30.0)
    # After a write InfluxDB did not answer in time (it may still store it, late), the aggregator
    # is asked to emit its seconds again (their current state, written last) this long after
    # InfluxDB took it: longer than a data node holds a write (a cluster's write-timeout, 10 s).
    reemit_after: Duration = env("SMARTGRID_WRITER_REEMIT_AFTER", 20.0, gt=0)
    # Fault injection for tests only: pause between InfluxDB's ack and the XACK (0 = off).
    ack_delay: Duration = env("SMARTGRID_WRITER_ACK_DELAY", 0.0)
