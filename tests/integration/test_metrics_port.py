"""The metrics port (SMARTGRID_METRICS_PORT, the chart's layout): each service answers /healthz,
/readyz and /metrics there only, and its own routes on the HTTP port only, so a NetworkPolicy can
open the metrics port to Prometheus alone. Real processes, the real stack."""

from __future__ import annotations

import httpx
import pytest

from aggregator.testing import free_port, http_ok, start_service, wait_until
from ingest_harness import INFLUX

pytestmark = pytest.mark.integration

HEALTH = ("/healthz", "/readyz", "/metrics")


def assert_split(http_url: str, metrics_url: str, metric: str, own_routes: tuple[str, ...]) -> None:
    wait_until(lambda: http_ok(f"{metrics_url}/readyz"), 60, what="readiness on the metrics port")
    for path in HEALTH:
        assert httpx.get(metrics_url + path, timeout=10).status_code == 200, path
        assert httpx.get(http_url + path, timeout=10).status_code == 404, path
    assert metric in httpx.get(f"{metrics_url}/metrics", timeout=10).text
    for path in own_routes:
        assert httpx.get(http_url + path, timeout=10).status_code == 200, path
        assert httpx.get(metrics_url + path, timeout=10).status_code == 404, path


@pytest.mark.parametrize("service", ["aggregator", "writer"])
def test_aggregator_and_writer_serve_health_and_metrics_on_the_metrics_port_only(service, prefix, tmp_path):
    port, metrics_port = free_port(), free_port()
    env = {"SMARTGRID_REDIS_PREFIX": prefix, "SMARTGRID_HTTP_PORT": str(port), "SMARTGRID_HTTP_HOST": "127.0.0.1",
           "SMARTGRID_METRICS_PORT": str(metrics_port), "INFLUXDB_URL": INFLUX}
    process = start_service(service, env, str(tmp_path / f"{service}.log"))
    try:
        routes = ("/", "/api/status") if service == "aggregator" else ()
        metric = "smartgrid_region_meters" if service == "aggregator" else "writer_rollups_written_total"
        assert_split(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}", metric, routes)
    finally:
        process.terminate()
        assert process.wait(15) == 0


def test_ingest_serves_health_metrics_and_stats_on_the_metrics_port_only(ingest):
    metrics_port = free_port()
    process = ingest(SMARTGRID_METRICS_PORT=str(metrics_port))
    metrics_url = f"http://127.0.0.1:{metrics_port}"
    assert_split(process.url, metrics_url, "smartgrid_ingest_consumed_total", ())
    assert httpx.get(f"{metrics_url}/stats", timeout=10).json()["totals"]["consumed"] == 0
    assert httpx.get(f"{process.url}/stats", timeout=10).status_code == 404
