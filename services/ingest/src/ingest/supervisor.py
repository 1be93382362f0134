"""The pod's process tree: one HTTP process supervising PROCESSOR_WORKER_COUNT worker processes."""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable

from smartgrid_common.backoff import Backoff, influx_backoff
from smartgrid_common.influx import InfluxClient, InfluxUnavailable

from .assignment import format_ranges, split_among_workers
from .settings import IngestSettings
from .stats import WorkersCollector
from .topics import ensure_dead_letter_topic, plan_partitions, topic_partition_count
from .worker_process import worker_main

log = logging.getLogger(__name__)

_context = multiprocessing.get_context("spawn")

HARD_STOP_GRACE = 5.0
"""Seconds workers get to end after a hard stop (the shutdown timeout passed) before they are
killed. A pod's terminationGracePeriodSeconds must cover SMARTGRID_SHUTDOWN_TIMEOUT plus this."""


class RestartBackoff:
    """Delays before restarting a worker that crashed: exponential, forgiven once it ran well.

    A worker that crashes at start-up (a bad setting, a dependency that refuses it) is restarted
    after ``first`` seconds, then twice as long each time up to ``maximum``; one that ran for
    ``healthy_after`` seconds before it crashed starts again from ``first``. Pure: the caller says
    how long the worker ran, so the policy is tested without processes. The delays are the shared
    :class:`~smartgrid_common.backoff.Backoff`; a run that long counts as its success (the reset).
    """

    def __init__(self, first: float = 1.0, factor: float = 2.0, maximum: float = 60.0, healthy_after: float = 60.0) -> None:
        self.backoff = Backoff(first, maximum, factor)
        self.healthy_after = healthy_after

    def delay(self, ran_for: float) -> float:
        """Seconds to wait before the next start, after a run of ``ran_for`` seconds that crashed."""
        if ran_for >= self.healthy_after:
            self.backoff.reset()
        return self.backoff.next()


class Supervisor:
    """Plans partitions, runs and restarts workers, aggregates their stats and readiness.

    One thread (the supervisor thread) owns the worker processes from start to end: it starts
    them, restarts crashed ones with :class:`RestartBackoff`, re-plans, and on :meth:`stop`
    drains them. Workers die with the thread that started them (:func:`.worker_process.exit_with_parent`), so it
    ends only after they have.
    """

    def __init__(self, settings: IngestSettings, collector: WorkersCollector) -> None:
        self.settings = settings
        self.collector = collector
        self.reports = _context.Queue()
        self.stop_event = _context.Event()
        self.hard_stop = _context.Event()
        self.processes: dict[int, multiprocessing.Process] = {}
        self.shares: list[list[int] | None] = []
        self.partition_count: int | None = None
        self.state = "starting"
        self.failure: str | None = None  # why the supervisor thread died, if it did
        self._started_at: dict[int, float] = {}  # worker -> when its process started (monotonic)
        self._backoffs: dict[int, RestartBackoff] = {}
        self._restart_at: dict[int, float] = {}  # crashed worker -> when it starts again (monotonic)
        self._stopping = threading.Event()
        self._stop_deadline = float("inf")  # when a requested stop turns hard (monotonic)
        self._thread = threading.Thread(target=self._main, daemon=True, name="supervisor")

    def start(self) -> None:
        """Begin planning and running workers in the background."""
        self._thread.start()

    def alive(self) -> tuple[bool, str]:
        """False once the supervisor thread has died: nothing restarts workers any more (/healthz)."""
        if self.failure is not None:
            return False, self.failure
        if self._thread.ident is not None and not self._thread.is_alive() and not self._stopping.is_set():
            return False, "the supervisor thread has ended"
        return True, self.state

    def ready(self) -> tuple[bool, str]:
        """Ready when every worker reports ready and recently."""
        processes = list(self.processes)  # the supervisor thread changes the dict meanwhile
        if not processes:
            return False, self.state
        now = time.time()
        for worker in processes:
            restart_at = self._restart_at.get(worker)
            if restart_at is not None:
                return False, f"worker {worker} exited; restarting in {max(0.0, restart_at - time.monotonic()):.0f}s"
            snapshot = self.collector.latest.get(worker)
            if snapshot is None:
                return False, f"worker {worker} starting"
            if now - snapshot["sent_at"] > 10:
                return False, f"worker {worker} not reporting"
            if not snapshot["ready"]:
                return False, f"worker {worker}: {snapshot['reason']}"
        # Ready, but some InfluxDB nodes are left out (the others take the writes): say which.
        degraded = [f"worker {w}: {d}" for w in processes if (d := self.collector.latest[w].get("degraded"))]
        return True, "; ".join([self.state, *degraded])

    def _plan(self) -> list[list[int] | None] | None:
        settings = self.settings
        workers = settings.processor_worker_count
        if settings.assignment == "group":
            return [None] * workers
        if not settings.partitions:
            self.partition_count = topic_partition_count(settings)
            if self.partition_count is None:
                self.state = f"waiting for topic {settings.kafka_topic} at {settings.kafka_brokers}"
                return None
        partitions = plan_partitions(settings, self.partition_count)
        if not partitions:
            self.state = f"replica {settings.replica} has no partitions (topic has {self.partition_count})"
            return []
        return split_among_workers(partitions, workers)

    def _ensure_schema(self) -> None:
        client = InfluxClient(self.settings)
        backoff = influx_backoff(self.settings)  # INFLUXDB_RETRY_INTERVAL doubling to 30 s
        try:
            while not self._stopping.is_set():
                try:
                    client.ensure_schema()
                    log.info("influxdb schema ready", extra={"database": self.settings.influxdb_database})
                    return
                except InfluxUnavailable as error:
                    self.state = f"InfluxDB not ready: {error}"
                    delay = backoff.next()
                    log.warning("influxdb schema not ready, retrying", extra={"error": str(error), "retry_in_s": delay})
                    self._stopping.wait(delay)
        finally:
            client.close()

    def _main(self) -> None:
        try:
            self._run()
        except BaseException as error:  # noqa: BLE001 - reported by /healthz, which restarts the pod
            self.failure = f"supervisor failed: {error!r}"
            log.exception("supervisor failed: /healthz fails from now on so that the pod is restarted")
            drain_until = time.monotonic() + self.settings.shutdown_timeout
            try:
                self._stop_workers(lambda: min(drain_until, self._stop_deadline))
            except BaseException:  # noqa: BLE001 - the workers die with this thread anyway
                log.exception("workers could not be stopped; they end with the supervisor thread")

    def _run(self) -> None:
        self._ensure_schema()
        plan = None
        while plan is None and not self._stopping.is_set():
            plan = self._plan()
            if plan is None:
                log.warning("cannot plan partitions yet", extra={"reason": self.state})
                self._stopping.wait(2.0)
        while (problem := ensure_dead_letter_topic(self.settings, self.partition_count)) and not self._stopping.is_set():
            self.state = problem
            log.error("dead-letter topic not ready", extra={"reason": problem})
            self._stopping.wait(5.0)
        if self._stopping.is_set():
            return
        self.shares = plan
        self.state = "consuming"
        log.info(
            "partitions planned",
            extra={
                "replica": self.settings.replica,
                "workers": [format_ranges(s) if s is not None else "group" for s in plan],
            },
        )
        for worker in range(len(plan)):
            self._spawn(worker)
        last_check = time.monotonic()
        while not self._stopping.is_set():
            self._collect_reports(0.5)
            self._restart_crashed()
            if time.monotonic() - last_check > 30 and self.settings.assignment == "static" and not self.settings.partitions:
                last_check = time.monotonic()
                count = topic_partition_count(self.settings)
                if count is not None and count != self.partition_count:
                    log.warning("topic partition count changed: re-planning", extra={"was": self.partition_count, "now": count})
                    self.partition_count = count
                    self._replan()
        self._stop_workers(lambda: self._stop_deadline)

    def _collect_reports(self, wait: float) -> None:
        """Take the workers' stat snapshots (waiting up to ``wait`` for the first). Also while
        workers stop: a worker whose report queue is full cannot exit."""
        try:
            self.collector.update(self.reports.get(timeout=wait))
            while True:
                self.collector.update(self.reports.get_nowait())
        except queue.Empty:
            pass

    def _restart_crashed(self) -> None:
        """Restart workers that exited on their own, each after its backoff delay."""
        now = time.monotonic()
        for worker, process in list(self.processes.items()):
            if worker in self._restart_at:
                if now >= self._restart_at[worker]:
                    del self._restart_at[worker]
                    self._spawn(worker)
            elif not process.is_alive():
                ran_for = now - self._started_at[worker]
                delay = self._backoffs.setdefault(worker, RestartBackoff()).delay(ran_for)
                self._restart_at[worker] = now + delay
                log.error(
                    "worker exited, restarting it after a delay",
                    extra={"worker": worker, "exitcode": process.exitcode, "ran_for": round(ran_for, 1), "delay": delay},
                )

    def _replan(self) -> None:
        """Take a new partition plan: workers finish and commit, then restart on their new shares."""
        plan = self._plan()
        if plan is None or plan == self.shares:
            return
        drain_until = time.monotonic() + self.settings.shutdown_timeout
        self._stop_workers(lambda: min(drain_until, self._stop_deadline))
        if self._stopping.is_set():
            return
        self.stop_event.clear()
        self.hard_stop.clear()
        self.processes.clear()
        self._restart_at.clear()
        self.shares = plan
        log.info("partitions re-planned", extra={"workers": [format_ranges(s) if s is not None else "group" for s in plan]})
        for worker in range(len(plan)):
            self._spawn(worker)

    def _spawn(self, worker: int) -> None:
        # Only from the supervisor thread: a worker dies when the thread that started it ends.
        process = _context.Process(
            target=worker_main,
            args=(worker, self.shares[worker], self.reports, self.stop_event, self.hard_stop, os.getpid()),
            name=f"ingest-worker-{worker}",
        )
        process.start()
        self.processes[worker] = process
        self._started_at[worker] = time.monotonic()

    def _stop_workers(self, deadline: Callable[[], float]) -> None:
        """Workers finish and commit what is in flight until ``deadline()`` (monotonic; asked
        again while waiting, a stop request can bring it forward); then a hard stop, and after
        :data:`HARD_STOP_GRACE` seconds more, the ones still running are killed."""
        self._restart_at.clear()
        self.stop_event.set()
        if self._wait_for_workers(deadline):
            return
        log.warning("workers still running after the shutdown timeout: hard stop")
        self.hard_stop.set()
        hard_deadline = time.monotonic() + HARD_STOP_GRACE
        if self._wait_for_workers(lambda: hard_deadline):
            return
        for worker, process in self.processes.items():
            if process.is_alive():
                log.error("worker did not stop after the hard stop: killed", extra={"worker": worker})
                process.kill()
                process.join(1.0)

    def _wait_for_workers(self, deadline: Callable[[], float]) -> bool:
        """True once every worker has exited, False when ``deadline()`` passed first."""
        while any(process.is_alive() for process in self.processes.values()):
            if time.monotonic() >= deadline():
                return False
            self._collect_reports(0.1)
        self._collect_reports(0.0)
        return True

    def stop(self, timeout: float) -> None:
        """Graceful: workers finish and commit in-flight batches; after ``timeout``, hard stop;
        :data:`HARD_STOP_GRACE` seconds later, what still runs is killed. Returns within about
        ``timeout + HARD_STOP_GRACE`` seconds."""
        self._stop_deadline = time.monotonic() + timeout
        self._stopping.set()
        if self._thread.ident is None:
            return  # never started
        self._thread.join(timeout + HARD_STOP_GRACE + 2.0)
        if self._thread.is_alive():
            log.error("the supervisor did not stop in time: killing the workers")
            for process in list(self.processes.values()):
                if process.is_alive():
                    process.kill()
        log.info("ingest stopped", extra={"exitcodes": {w: p.exitcode for w, p in list(self.processes.items())}})
