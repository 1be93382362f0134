"""A worker process: its entry point, its reports to the supervisor, and its tie to the supervisor's
life (a worker never runs on as an orphan)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

from smartgrid_common.logs import setup_logging
from smartgrid_common.settings import load_settings

from .assignment import format_ranges
from .priority import PR_SET_PDEATHSIG, name_os_thread, prctl
from .settings import IngestSettings
from .stats import WorkerStats

log = logging.getLogger(__name__)


def exit_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux ``PR_SET_PDEATHSIG``).

    A worker whose supervisor was killed (``kill -9``, the OOM killer) must not run on as an
    orphan, consuming and writing next to the workers of a restarted ingest. Its uncommitted
    records are replayed by the next owner, so a hard exit loses nothing. The signal comes when
    the *thread* that started the worker ends, which is why the supervisor thread outlives its
    workers. Where prctl is missing (not Linux), a thread polls the parent id instead.
    """
    try:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError as error:
        log.warning("no parent-death signal; watching the parent process instead", extra={"error": str(error)})
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="parent-watch").start()
    # The parent may have died before prctl: then no signal will come.
    if os.getppid() != parent_pid:
        _parent_gone(parent_pid)


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    _parent_gone(parent_pid)


def _parent_gone(parent_pid: int) -> None:
    log.error("parent process %s is gone: worker exiting, its uncommitted records will be replayed", parent_pid)
    sys.stdout.flush()
    os._exit(70)


def worker_main(worker: int, partitions: list[int] | None, reports, stop, hard_stop, parent_pid: int) -> None:
    """Entry point of a worker process."""
    from .pipeline import Worker  # imported here: only worker processes load the Kafka pipeline

    settings = load_settings(IngestSettings)
    setup_logging("ingest", settings.log_level)
    exit_with_parent(parent_pid)
    name_os_thread(f"worker-{worker}")  # the worker thread (and the process, as ps shows it)
    # The HTTP process decides when to stop (Ctrl-C reaches the whole process group).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    local_stop, local_hard_stop = threading.Event(), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: local_stop.set())
    stats = WorkerStats(worker)

    def report() -> None:
        name_os_thread()
        # Mirror the supervisor's process-shared events into thread events. Only is_set() is used
        # on the shared ones: waiting on them from a process that may die wedges Event.set().
        while not local_hard_stop.is_set():
            if stop.is_set():
                local_stop.set()
            if hard_stop.is_set():
                local_stop.set()
                local_hard_stop.set()
            reports.put(stats.snapshot())
            time.sleep(0.5)

    threading.Thread(target=report, daemon=True, name="report").start()
    log.info(
        "worker started",
        extra={"worker": worker, "partitions": format_ranges(partitions) if partitions is not None else "group"},
    )
    Worker(settings, partitions, stats, local_stop, local_hard_stop).run()
    reports.put(stats.snapshot())
