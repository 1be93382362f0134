"""Ingest's stop and crash paths against the real stack: a SIGTERM runs every step of every
worker's stop path without an error, workers never outlive a main process killed with -9, and a
worker that keeps crashing is restarted less and less often, and a stop while InfluxDB is down
ends within the pod's grace period."""

from __future__ import annotations

import json
import time

import psutil
import pytest
from simulator import generate_labelled, produce

from smartgrid_operator.builders import ingest_termination_grace_seconds

from ingest_harness import BROKERS, stack_command, wait_until
from service_logs import log_problems

pytestmark = pytest.mark.integration


def records(count: int, meters: int) -> list[tuple[bytes, bytes]]:
    start_ms = int(time.time() * 1000) - 600_000
    return [(r.key, r.value) for r in generate_labelled(count, meters=meters, seed=11, start_ms=start_ms, step_ms=1000)]


def log_entries(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_sigterm_with_aggregations_on_runs_every_stop_step_of_every_worker_without_an_error(names, ingest):
    readings = records(20_000, meters=2_000)
    produce(readings, BROKERS, names.topic)
    service = ingest(PROCESSOR_ENABLE_AGGREGATIONS="true", PROCESSOR_WORKER_COUNT="2")
    service.wait_committed(len(readings))
    assert service.terminate() == 0
    entries = log_entries(service.log.read_text())
    # "worker stopped" is the last line of a worker's stop path: the live path finished, the
    # Kafka consumer closed, the producer flushed, the InfluxDB client closed before it.
    stopped = [entry for entry in entries if entry["msg"] == "worker stopped"]
    assert sorted(entry["worker"] for entry in stopped) == [0, 1], [e["msg"] for e in entries]
    assert sum(entry["committed"] for entry in stopped) == len(readings)
    assert [str(problem) for problem in log_problems(service.log)] == []


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_workers_exit_within_seconds_when_the_main_process_is_killed_with_9(names, ingest):
    produce(records(5_000, meters=500), BROKERS, names.topic)
    service = ingest(PROCESSOR_WORKER_COUNT="2")
    service.wait_ready()
    assert len(service.worker_pids()) == 2
    started = service.descendants()
    service.kill9_main()
    killed_at = time.monotonic()
    wait_until(lambda: not any(alive(process) for process in started), 10, "every worker to exit after its parent died")
    print(f"all {len(started)} child processes gone {time.monotonic() - killed_at:.1f}s after the kill")
    assert time.monotonic() - killed_at < 5


@pytest.mark.expected_log_errors("worker exited, restarting it after a delay")
def test_a_worker_that_keeps_crashing_is_restarted_with_growing_delays(names, ingest):
    service = ingest(PROCESSOR_WORKER_COUNT="1")
    service.wait_ready()
    delays = []
    for crash in range(3):
        worker = service.worker_pids()
        assert len(worker) == 1
        psutil.Process(worker[0]).kill()
        wait_until(lambda: len(restarts(service)) == crash + 1, 10, "the supervisor to see the crash")
        delays = [entry["delay"] for entry in restarts(service)]
        wait_until(lambda: service.worker_pids() not in ([], worker), 30, "the worker restarted")
    assert delays == [1.0, 2.0, 4.0]  # it never ran a minute: each crash doubles the delay
    service.wait_ready()
    assert service.get("/healthz").status_code == 200
    assert service.terminate() == 0


def restarts(service) -> list[dict]:
    return [entry for entry in log_entries(service.log.read_text()) if entry["msg"] == "worker exited, restarting it after a delay"]


def test_sigterm_while_influxdb_is_down_ends_within_the_pods_grace_period(names, ingest):
    service = ingest(SMARTGRID_SHUTDOWN_TIMEOUT="3s", INFLUXDB_RETRY_INTERVAL="200ms", SMARTGRID_INFLUXDB_TIMEOUT="2s")
    service.wait_ready()
    stack_command("stop-server", "influxdb")
    try:
        produce(records(20_000, meters=2_000), BROKERS, names.topic)
        wait_until(lambda: service.totals().get("influx_retries", 0) > 0, 60, "writes retrying while InfluxDB is down")
        started = time.monotonic()
        assert service.terminate() == 0
        elapsed = time.monotonic() - started
    finally:
        stack_command("start-server", "influxdb")
    print(f"SIGTERM to exit with InfluxDB down: {elapsed:.1f}s (SMARTGRID_SHUTDOWN_TIMEOUT=3s)")
    # What the operator sets as terminationGracePeriodSeconds for this timeout.
    assert elapsed < ingest_termination_grace_seconds("3s"), f"the drain took {elapsed:.1f}s"
    text = service.log.read_text()
    assert "workers still running after the shutdown timeout: hard stop" in text
    assert "stopped with uncommitted records; they will be replayed" in text
    assert len([entry for entry in log_entries(text) if entry["msg"] == "worker stopped"]) == 1
