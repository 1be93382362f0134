"""The InfluxDB path's threads run at a lower priority than the live path's."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def thread_ids() -> set[int]:
    """Kernel ids of this process's threads (Linux; empty elsewhere)."""
    try:
        return {int(tid) for tid in os.listdir("/proc/self/task")}
    except OSError:
        return set()


def lower_priority(thread_ids: set[int], increment: int) -> None:
    """Raise these threads' nice value by ``increment`` (per thread on Linux; no privilege needed).

    The InfluxDB path is throughput work with a backlog to absorb; the live path is latency work.
    When the host is short of CPU (InfluxDB catching up on the same nodes), the scheduler then
    gives the live path's threads the CPU first and the InfluxDB path the rest.
    """
    if increment <= 0:
        return
    for tid in thread_ids:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
        except ProcessLookupError:
            continue  # a short-lived thread that has ended
        except OSError as error:
            log.warning("could not lower the InfluxDB path's priority", extra={"tid": tid, "error": str(error)})
            return
