"""The supervisor: restart backoff, /healthz when its thread dies, bounded stops.

No server is needed: the supervisor thread is made to fail by replacing its own loop (the fault
injected is in our code, not in Kafka, InfluxDB or Redis), and the bounded stop runs on a real
process that ignores the stop request.
"""

from __future__ import annotations

import multiprocessing
import time

import pytest
from fastapi.testclient import TestClient
from ingest import supervisor as supervisor_module
from ingest.app import build_app
from ingest.settings import IngestSettings
from ingest.stats import WorkersCollector
from ingest.supervisor import RestartBackoff, Supervisor
from prometheus_client import REGISTRY


def test_restart_delays_double_from_one_second_up_to_the_maximum():
    backoff = RestartBackoff(first=1.0, factor=2.0, maximum=60.0, healthy_after=60.0)
    assert [backoff.delay(ran_for=0.5) for _ in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_a_worker_that_ran_well_before_it_crashed_is_restarted_after_the_first_delay_again():
    backoff = RestartBackoff(first=1.0, factor=2.0, maximum=60.0, healthy_after=60.0)
    assert [backoff.delay(ran_for=2.0) for _ in range(4)] == [1, 2, 4, 8]
    assert backoff.delay(ran_for=60.0) == 1
    assert backoff.delay(ran_for=59.0) == 2  # a short run after that counts as a failure again


def test_restart_delays_follow_the_given_policy():
    backoff = RestartBackoff(first=0.5, factor=3.0, maximum=10.0, healthy_after=5.0)
    assert [backoff.delay(ran_for=0.0) for _ in range(4)] == [0.5, 1.5, 4.5, 10.0]
    assert backoff.delay(ran_for=5.0) == 0.5


@pytest.fixture
def app_factory():
    """build_app, with the metrics collector it registers taken out again afterwards."""
    built = []

    def build(settings: IngestSettings):
        app = build_app(settings)
        built.append(app)
        return app

    yield build
    for app in built:
        REGISTRY.unregister(app.state.collector)


def test_healthz_fails_with_the_reason_once_the_supervisor_thread_has_died(monkeypatch, app_factory):
    def crash(self) -> None:
        raise RuntimeError("planning exploded")

    monkeypatch.setattr(Supervisor, "_run", crash)
    app = app_factory(IngestSettings())
    with TestClient(app) as client:
        supervisor = app.state.supervisor
        supervisor._thread.join(5)
        response = client.get("/healthz")
        assert response.status_code == 503
        assert "planning exploded" in response.json()["reason"]


def test_healthz_is_ok_while_the_supervisor_thread_runs(monkeypatch, app_factory):
    monkeypatch.setattr(Supervisor, "_run", lambda self: self._stopping.wait())
    app = app_factory(IngestSettings())
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert app.state.supervisor._thread.is_alive()


def test_a_worker_that_ignores_the_stop_is_killed_after_the_hard_stop_grace(monkeypatch):
    monkeypatch.setattr(supervisor_module, "HARD_STOP_GRACE", 0.5)
    supervisor = Supervisor(IngestSettings(), WorkersCollector())
    stubborn = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(3600,))
    stubborn.start()
    supervisor.processes[0] = stubborn
    started = time.monotonic()
    supervisor._stop_workers(lambda: started + 0.5)
    assert not stubborn.is_alive()
    assert time.monotonic() - started < 3.0
    assert supervisor.stop_event.is_set() and supervisor.hard_stop.is_set()


def test_ready_with_influxdb_nodes_left_out_says_which_and_the_metrics_show_them():
    collector = WorkersCollector()
    supervisor = Supervisor(IngestSettings(), collector)
    supervisor.processes[0] = object()  # a worker process (only its id matters to readiness)
    supervisor.processes[1] = object()
    nodes = {"http://data1:8086": (1, 0, 40), "http://data2:8086": (0, 3, 12)}
    for worker, degraded in ((0, "degraded: 1 of 2 InfluxDB nodes left out: http://data2:8086 (unreachable)"), (1, None)):
        collector.update({
            "worker": worker, "counters": {}, "latency_buckets": [], "latency_sum": 0.0, "in_flight": {}, "lag": {},
            "ready": True, "reason": "consuming", "paused": False, "degraded": degraded,
            "influx_nodes": nodes if worker == 0 else {}, "under_replicated": 2 if worker == 0 else 0, "sent_at": time.time(),
        })
    ready, reason = supervisor.ready()
    assert ready
    assert "worker 0: degraded: 1 of 2 InfluxDB nodes left out: http://data2:8086" in reason
    assert "worker 1" not in reason
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in collector._influx_nodes() for s in family.samples
    }
    assert samples[("smartgrid_influxdb_node_up", (("node", "http://data2:8086"), ("worker", "0")))] == 0
    assert samples[("smartgrid_influxdb_node_up", (("node", "http://data1:8086"), ("worker", "0")))] == 1
    assert samples[("smartgrid_influxdb_node_failures_total", (("node", "http://data2:8086"), ("worker", "0")))] == 3
    assert samples[("smartgrid_influxdb_under_replicated_writes_total", (("worker", "0"),))] == 2
