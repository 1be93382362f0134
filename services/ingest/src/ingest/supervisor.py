"""The pod's process tree: one HTTP process supervising PROCESSOR_WORKER_COUNT worker processes."""

from __future__ import annotations

import logging
import multiprocessing
import queue
import signal
import threading
import time

from confluent_kafka import Consumer
from smartgrid_common.influx import InfluxClient, InfluxUnavailable
from smartgrid_common.logs import setup_logging
from smartgrid_common.settings import load_settings

from .assignment import (
    format_ranges,
    parse_partition_list,
    partitions_per_replica,
    replica_range,
    split_among_workers,
)
from .settings import IngestSettings
from .stats import WorkersCollector, WorkerStats

log = logging.getLogger(__name__)

_context = multiprocessing.get_context("spawn")


def plan_partitions(settings: IngestSettings, partition_count: int | None) -> list[int]:
    """This replica's partitions: SMARTGRID_PARTITIONS, else its static range of the topic."""
    if settings.partitions:
        return parse_partition_list(settings.partitions)
    assert partition_count is not None
    per_replica = settings.partitions_per_replica or partitions_per_replica(
        settings.kafka_consumer_count, partition_count
    )
    return replica_range(settings.replica, per_replica, partition_count)


def topic_partition_count(settings: IngestSettings, timeout: float = 10.0) -> int | None:
    """Partitions of KAFKA_TOPIC, or None when Kafka does not answer or the topic is missing."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_brokers, "group.id": settings.kafka_group_id, **settings.kafka_security()})
    try:
        metadata = consumer.list_topics(settings.kafka_topic, timeout=timeout)
        topic = metadata.topics.get(settings.kafka_topic)
        if topic is None or topic.error is not None or not topic.partitions:
            return None
        return len(topic.partitions)
    except Exception as error:  # noqa: BLE001 - any client error means "not reachable yet"
        log.warning("kafka metadata unavailable", extra={"error": str(error)})
        return None
    finally:
        consumer.close()


def ensure_dead_letter_topic(settings: IngestSettings, partition_count: int | None) -> str | None:
    """Create the dead-letter topic when it is missing; returns an error message, or None when it exists."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": settings.kafka_brokers, **settings.kafka_security()})
    topic = settings.dead_letter_topic
    try:
        if topic in admin.list_topics(timeout=10).topics:
            return None
        partitions = max(1, min(partition_count or 1, 8))
        future = admin.create_topics([NewTopic(topic, num_partitions=partitions)])[topic]
        future.result(timeout=30)
        log.info("dead-letter topic created", extra={"topic": topic, "partitions": partitions})
        return None
    except Exception as error:  # noqa: BLE001 - reported as not-ready with what to do
        if "TOPIC_ALREADY_EXISTS" in str(error):
            return None
        return (
            f"dead-letter topic {topic} is missing and could not be created ({error}): "
            "create it, or set SMARTGRID_DLQ_TOPIC to an existing topic"
        )


def worker_main(worker: int, partitions: list[int] | None, reports, stop, hard_stop) -> None:
    """Entry point of a worker process."""
    from .pipeline import Worker  # imported here: only worker processes load the Kafka pipeline

    settings = load_settings(IngestSettings)
    setup_logging("ingest", settings.log_level)
    # The HTTP process decides when to stop (Ctrl-C reaches the whole process group).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    local_stop, local_hard_stop = threading.Event(), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: local_stop.set())
    stats = WorkerStats(worker)

    def report() -> None:
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


class Supervisor:
    """Plans partitions, runs and restarts workers, aggregates their stats and readiness."""

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
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="supervisor")

    def start(self) -> None:
        """Begin planning and running workers in the background."""
        self._thread.start()

    def ready(self) -> tuple[bool, str]:
        """Ready when every worker reports ready and recently."""
        if not self.processes:
            return False, self.state
        now = time.time()
        for worker in self.processes:
            snapshot = self.collector.latest.get(worker)
            if snapshot is None:
                return False, f"worker {worker} starting"
            if now - snapshot["sent_at"] > 10:
                return False, f"worker {worker} not reporting"
            if not snapshot["ready"]:
                return False, f"worker {worker}: {snapshot['reason']}"
        return True, self.state

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
        try:
            while not self._stopping.is_set():
                try:
                    client.ensure_schema()
                    log.info("influxdb schema ready", extra={"database": self.settings.influxdb_database})
                    return
                except InfluxUnavailable as error:
                    self.state = f"InfluxDB not ready: {error}"
                    log.warning("influxdb schema not ready, retrying", extra={"error": str(error)})
                    self._stopping.wait(2.0)
        finally:
            client.close()

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
            try:
                self.collector.update(self.reports.get(timeout=0.5))
            except queue.Empty:
                pass
            for worker, process in list(self.processes.items()):
                if not process.is_alive() and not self._stopping.is_set():
                    log.error("worker exited, restarting", extra={"worker": worker, "exitcode": process.exitcode})
                    time.sleep(1.0)
                    self._spawn(worker)
            if time.monotonic() - last_check > 30 and self.settings.assignment == "static" and not self.settings.partitions:
                last_check = time.monotonic()
                count = topic_partition_count(self.settings)
                if count is not None and count != self.partition_count:
                    log.warning("topic partition count changed: re-planning", extra={"was": self.partition_count, "now": count})
                    self.partition_count = count
                    self._replan()

    def _replan(self) -> None:
        """Take a new partition plan: workers finish and commit, then restart on their new shares."""
        plan = self._plan()
        if plan is None or plan == self.shares:
            return
        self.stop_event.set()
        for process in self.processes.values():
            process.join()
        self.stop_event.clear()
        self.processes.clear()
        self.shares = plan
        log.info("partitions re-planned", extra={"workers": [format_ranges(s) if s is not None else "group" for s in plan]})
        for worker in range(len(plan)):
            self._spawn(worker)

    def _spawn(self, worker: int) -> None:
        process = _context.Process(
            target=worker_main,
            args=(worker, self.shares[worker], self.reports, self.stop_event, self.hard_stop),
            name=f"ingest-worker-{worker}",
        )
        process.start()
        self.processes[worker] = process

    def stop(self, timeout: float) -> None:
        """Graceful: workers finish and commit in-flight batches; after ``timeout``, hard stop."""
        self._stopping.set()
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            process.join(max(0.1, deadline - time.monotonic()))
        if any(p.is_alive() for p in self.processes.values()):
            log.warning("workers still running after the shutdown timeout: hard stop")
            self.hard_stop.set()
            for process in self.processes.values():
                process.join(5)
                if process.is_alive():
                    process.kill()
        self.hard_stop.set()
        while True:
            try:
                self.collector.update(self.reports.get_nowait())
            except queue.Empty:
                break
        log.info("ingest stopped", extra={"exitcodes": {w: p.exitcode for w, p in self.processes.items()}})
