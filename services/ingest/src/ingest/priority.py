"""The worker's threads as the OS sees them: named as in Python, and the InfluxDB path's at a
lower priority than the live path's; ``prctl``, which names them (and gives a worker its
parent-death signal)."""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import threading

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_PR_SET_NAME = 15


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def prctl(option: int, argument: int | bytes) -> None:
    """Linux ``prctl(option, argument)`` for the calling thread; OSError when it fails or where
    there is no ``prctl`` (not Linux)."""
    try:
        call = _libc().prctl
    except AttributeError as error:
        raise OSError(f"no prctl here: {error}") from None
    if call(option, argument, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def name_os_thread(name: str | None = None) -> None:
    """Give the calling thread ``name`` (default: its Python name) in the OS, cut to 15 bytes, so
    that ``top -H``, ``perf`` and the benchmarks' per-thread figures tell the threads apart (they
    all show "python" otherwise). Linux only; a no-op elsewhere."""
    try:
        prctl(_PR_SET_NAME, (name or threading.current_thread().name).encode()[:15])
    except OSError:
        pass


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
