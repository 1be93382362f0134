"""End to end on a kind cluster: build and load the images, install the chart with the demo
values (Kafka, Redis, InfluxDB, a SmartGridConsumer, the simulator), then check that points reach
InfluxDB and that the dashboard API answers with data (assertions shared with the real-node suite,
tests/e2e/e2e_checks.py).

Needs a Docker engine, kind, kubectl and helm; everywhere else it skips with a one-line reason.
The same chart and operator assertions run without Docker in tests/k8s/ (local control plane).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import e2e_checks as checks
import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[3]
CLUSTER = os.environ.get("SMARTGRID_KIND_CLUSTER", "smartgrid")
CONTEXT = f"kind-{CLUSTER}"
NAMESPACE = "smartgrid-e2e"
RELEASE = "e2e"
TAG = "e2e"
IMAGES = {
    "ingest": "services/ingest/Dockerfile",
    "aggregator": "services/aggregator/Dockerfile",
    "writer": "services/writer/Dockerfile",
    "simulator": "services/simulator/Dockerfile",
    "operator": "operator/Dockerfile",
}


def _docker_engine_answers() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


if not _docker_engine_answers():
    pytest.skip("kind e2e needs a Docker engine (docker info fails here)", allow_module_level=True)
_missing = [tool for tool in ("kind", "kubectl", "helm") if not shutil.which(tool)]
if _missing:
    pytest.skip(f"kind e2e needs {', '.join(_missing)} on PATH", allow_module_level=True)


def run(*args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def kubectl(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    return run("kubectl", "--context", CONTEXT, "-n", NAMESPACE, *args, check=check, timeout=timeout)


@pytest.fixture(scope="module")
def release() -> Iterator[None]:
    """A kind cluster with the images loaded and the demo release installed."""
    clusters = run("kind", "get", "clusters").stdout.split()
    created = CLUSTER not in clusters
    if created:
        run("kind", "create", "cluster", "--name", CLUSTER, "--wait", "180s")
    try:
        for name, dockerfile in IMAGES.items():
            image = f"ghcr.io/smartgrid/{name}:{TAG}"
            run("docker", "build", "-f", dockerfile, "-t", image, ".", timeout=3600)
            run("kind", "load", "docker-image", image, "--name", CLUSTER)
        sets = [f"images.{n}.tag={TAG}" for n in ("ingest", "aggregator", "writer", "simulator")]
        sets += [f"operator.image.tag={TAG}", "images.pullPolicy=Never", "operator.image.pullPolicy=Never"]
        run(
            "helm",
            "upgrade",
            "--install",
            RELEASE,
            "helm/smartgrid",
            "--kube-context",
            CONTEXT,
            "-n",
            NAMESPACE,
            "--create-namespace",
            "-f",
            "helm/smartgrid/ci/demo-values.yaml",
            *[arg for s in sets for arg in ("--set", s)],
            "--wait",
            "--timeout",
            "10m",
        )
        yield
    except AssertionError:
        print(checks.diagnostics(kubectl))
        raise
    finally:
        if os.environ.get("SMARTGRID_KIND_KEEP") != "1":
            run("helm", "uninstall", RELEASE, "--kube-context", CONTEXT, "-n", NAMESPACE, check=False)
            if created:
                run("kind", "delete", "cluster", "--name", CLUSTER, check=False)


def test_the_consumer_becomes_ready_with_the_planned_replicas(release):
    # 8 partitions, 4 per replica (ci/demo-values.yaml)
    status = checks.consumer_ready(kubectl, "demo", replicas=2)
    assert status["partitions"] == 8


def test_simulated_readings_reach_influxdb(release):
    assert checks.raw_points_arrive(kubectl, f"{RELEASE}-smartgrid-influxdb") > 0


def test_the_dashboard_api_serves_live_data(release):
    assert checks.live_data(kubectl, NAMESPACE, "demo-aggregator")["points"]


def test_the_writer_writes_aggregates(release):
    assert checks.aggregates_arrive(kubectl, f"{RELEASE}-smartgrid-influxdb") > 0


def test_the_product_pods_logged_no_error(release):
    assert not checks.unexpected_log_lines(kubectl)
