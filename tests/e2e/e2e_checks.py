"""Assertions of the end-to-end suites on real pods, shared by the kind suite (tests/e2e/kind) and
the local real node (tests/e2e/node): the chart installed with the demo values, checked through
kubectl (exec, logs, the API server's proxy to pods and services) only, so that both run them as
they are.

``kubectl`` is a callable that runs kubectl against the release's namespace and returns the
CompletedProcess (raising AssertionError with the output when ``check`` and it fails).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from typing import Any, Protocol

DATABASE = "smart_grid_monitoring"
PRODUCT_COMPONENTS = ("operator", "ingest", "aggregator", "writer", "simulator")
# A product pod that logs one of these failed, unless the line matches an expected pattern.
PROBLEM = re.compile(r"Traceback|\bERROR\b|\bCRITICAL\b")


class Kubectl(Protocol):
    def __call__(self, *args: str, check: bool = True, timeout: float = ...) -> subprocess.CompletedProcess: ...


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 3.0) -> Any:
    """Poll ``check`` until it returns something truthy (an AssertionError counts as not yet)."""
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


def get_json(kubectl: Kubectl, *args: str) -> dict[str, Any]:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def pods(kubectl: Kubectl, selector: str) -> list[dict[str, Any]]:
    return get_json(kubectl, "pods", "-l", selector)["items"]


def ready(pod: dict[str, Any]) -> bool:
    conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
    return pod.get("status", {}).get("phase") == "Running" and conditions.get("Ready") == "True"


def consumer_ready(kubectl: Kubectl, name: str, replicas: int, timeout: float = 600) -> dict[str, Any]:
    """The SmartGridConsumer reports Ready with ``replicas`` ready ingest replicas."""

    def check():
        status = get_json(kubectl, "sgc", name).get("status", {})
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        done = conditions.get("Ready") == "True" and status.get("readyReplicas") == replicas
        return status if done and status.get("replicas") == replicas else None

    return wait_for(check, timeout, f"SmartGridConsumer {name} Ready with {replicas} replicas")


def influx_query(kubectl: Kubectl, statefulset: str, query: str) -> list[dict[str, Any]]:
    """The series of an InfluxQL query, run by the `influx` CLI in the InfluxDB pod."""
    result = kubectl(
        "exec", f"statefulset/{statefulset}", "--", "influx", "-database", DATABASE, "-format", "json",
        "-execute", query, timeout=60,
    )
    body = json.loads(result.stdout or "{}")
    if body.get("error"):
        raise AssertionError(f"{query}: {body['error']}")
    return [series for r in body.get("results", []) for series in r.get("series", [])]


def count(kubectl: Kubectl, statefulset: str, query: str) -> int:
    series = influx_query(kubectl, statefulset, query)
    return int(series[0]["values"][0][1]) if series else 0


def raw_points_arrive(kubectl: Kubectl, statefulset: str, timeout: float = 600) -> int:
    query = 'SELECT COUNT("consumption_kwh") FROM "raw_data"."energy_consumption"'
    return wait_for(lambda: count(kubectl, statefulset, query), timeout, "raw points in InfluxDB")


def aggregates_arrive(kubectl: Kubectl, statefulset: str, timeout: float = 300) -> int:
    query = 'SELECT COUNT("total_kwh") FROM "aggregated_data"."energy_consumption_aggregate"'
    return wait_for(lambda: count(kubectl, statefulset, query), timeout, "the writer's aggregates in InfluxDB")


def proxy_get(kubectl: Kubectl, namespace: str, target: str, path: str) -> str:
    """GET through the API server's proxy: ``target`` is `services/NAME:PORT` or `pods/NAME:PORT`."""
    return kubectl("get", "--raw", f"/api/v1/namespaces/{namespace}/{target}/proxy{path}", timeout=30).stdout


def live_data(kubectl: Kubectl, namespace: str, service: str, timeout: float = 300) -> dict[str, Any]:
    """The aggregator's /api/live answers with data; /api/status and the dashboard answer too."""

    def live():
        body = json.loads(proxy_get(kubectl, namespace, f"services/{service}:80", "/api/live?seconds=60"))
        return body if body.get("end") is not None and body.get("points") else None

    body = wait_for(live, timeout, "live consumption on /api/live")
    assert json.loads(proxy_get(kubectl, namespace, f"services/{service}:80", "/api/status"))
    assert "<html" in proxy_get(kubectl, namespace, f"services/{service}:80", "/").lower()
    return body


def unexpected_log_lines(kubectl: Kubectl, expected: list[str] | tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Traceback/ERROR lines in the logs of the product's pods (and of their restarted containers)
    that match none of the ``expected`` regular expressions, by pod."""
    allowed = [re.compile(p) for p in expected]
    found: dict[str, list[str]] = {}
    for pod in get_json(kubectl, "pods")["items"]:
        labels = pod["metadata"].get("labels", {})
        if labels.get("app.kubernetes.io/component") not in PRODUCT_COMPONENTS:
            continue
        name = pod["metadata"]["name"]
        restarted = any(s.get("restartCount", 0) for s in pod.get("status", {}).get("containerStatuses", []))
        texts = [kubectl("logs", name, "--all-containers", check=False).stdout]
        if restarted:
            texts.append(kubectl("logs", name, "--all-containers", "--previous", check=False).stdout)
        bad = [
            line
            for text in texts
            for line in text.splitlines()
            if PROBLEM.search(line) and not any(a.search(line) for a in allowed)
        ]
        if bad:
            found[name] = bad[:20]
    return found


def diagnostics(kubectl: Kubectl) -> str:
    parts = [kubectl("get", "all,sgc", "-o", "wide", check=False).stdout]
    parts.append(kubectl("get", "events", "--sort-by=.lastTimestamp", check=False).stdout[-8000:])
    for component in PRODUCT_COMPONENTS:
        parts.append(f"----- logs {component} -----")
        parts.append(
            kubectl(
                "logs", "-l", f"app.kubernetes.io/component={component}", "--tail=80", "--all-containers",
                "--prefix", check=False,
            ).stdout
        )
    return "\n".join(parts)
