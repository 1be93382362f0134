"""End to end on a kind cluster: build and load the images, install the chart with the demo
values (Kafka, Redis, InfluxDB, a SmartGridConsumer, the simulator), then check that points reach
InfluxDB and that the dashboard API answers with data.

Needs a Docker engine, kind, kubectl and helm; everywhere else it skips with a one-line reason.
The same chart and operator assertions run without Docker in tests/k8s/ (local control plane).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

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


def kubectl(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return run("kubectl", "--context", CONTEXT, "-n", NAMESPACE, *args, **kwargs)


def wait_for(check, timeout: float, what: str, interval: float = 5.0):
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            last = check()
        except AssertionError as error:
            last = str(error)[-500:]
        if last and not isinstance(last, str):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def _diagnostics() -> str:
    parts = [kubectl("get", "all,sgc", "-o", "wide", check=False).stdout]
    parts.append(kubectl("get", "events", "--sort-by=.lastTimestamp", check=False).stdout)
    for component in ("operator", "ingest", "aggregator", "writer", "simulator"):
        parts.append(f"----- logs {component} -----")
        parts.append(
            kubectl(
                "logs", "-l", f"app.kubernetes.io/component={component}", "--tail=80", "--all-containers", check=False
            ).stdout
        )
    return "\n".join(parts)


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
        print(_diagnostics())
        raise
    finally:
        if os.environ.get("SMARTGRID_KIND_KEEP") != "1":
            run("helm", "uninstall", RELEASE, "--kube-context", CONTEXT, "-n", NAMESPACE, check=False)
            if created:
                run("kind", "delete", "cluster", "--name", CLUSTER, check=False)


@pytest.fixture(scope="module")
def dashboard(release) -> Iterator[str]:
    """The aggregator's port, forwarded to localhost."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    forward = subprocess.Popen(
        ["kubectl", "--context", CONTEXT, "-n", NAMESPACE, "port-forward", "svc/demo-aggregator", f"{port}:80"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(3)
        yield f"http://127.0.0.1:{port}"
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def test_the_consumer_becomes_ready_with_the_planned_replicas(release):
    def ready():
        body = json.loads(kubectl("get", "sgc", "demo", "-o", "json").stdout)
        status = body.get("status", {})
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        return status if conditions.get("Ready") == "True" else None

    status = wait_for(ready, 600, "SmartGridConsumer demo Ready")
    assert status["replicas"] == 2  # 8 partitions, 4 per replica (ci/demo-values.yaml)
    assert status["readyReplicas"] == 2


def test_simulated_readings_reach_influxdb(release):
    def points():
        result = kubectl(
            "exec",
            "statefulset/e2e-smartgrid-influxdb",
            "--",
            "influx",
            "-database",
            "smart_grid_monitoring",
            "-format",
            "json",
            "-execute",
            'SELECT COUNT(*) FROM "raw_data"."energy_consumption"',
            check=False,
        )
        return result.returncode == 0 and '"values"' in result.stdout and result.stdout

    assert wait_for(points, 600, "points in InfluxDB")


def test_the_dashboard_api_serves_live_data(dashboard):
    import httpx

    def live():
        response = httpx.get(f"{dashboard}/api/live", params={"seconds": 60}, timeout=10)
        body = response.json() if response.status_code == 200 else {}
        return body if body.get("end") is not None and body.get("points") else None

    assert wait_for(live, 300, "live consumption on /api/live")
    assert httpx.get(f"{dashboard}/api/status", timeout=10).status_code == 200
    assert httpx.get(f"{dashboard}/", timeout=10).status_code == 200
