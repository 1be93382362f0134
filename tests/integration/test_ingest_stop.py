"""Ingest's stop and crash paths against the real stack: a SIGTERM runs every step of every
worker's stop path without an error."""

from __future__ import annotations

import json
import time

import pytest
from simulator import generate_labelled, produce

from ingest_harness import BROKERS
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
