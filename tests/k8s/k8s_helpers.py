"""Helpers of the tests against the local control plane (`scripts/k8s up`).

The control plane is a real kube-apiserver + etcd + controller-manager + scheduler, with kwok
faking the nodes (pods are scheduled and reported Running/Ready, no container runs). The Kafka is
the real one of `scripts/stack up`. On failure every test prints the namespace's events and the
operator's log.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm/smartgrid"
CRDS = CHART / "crds"
K8S_BIN = Path(os.environ.get("SMARTGRID_CACHE_DIR", Path.home() / ".cache/smartgrid")) / "k8s/bin"
KUBECONFIG = Path(os.environ.get("SMARTGRID_KUBECONFIG", REPO / ".state/k8s/kubeconfig"))
KAFKA = os.environ.get("SMARTGRID_TEST_KAFKA", "127.0.0.1:9092")


def _binary(name: str) -> str | None:
    cached = K8S_BIN / name
    if cached.exists():
        return str(cached)
    return shutil.which(name)


class Cluster:
    """kubectl and helm against the local control plane, with JSON helpers and waits."""

    def __init__(self, kubectl: str, helm: str | None) -> None:
        self.kubectl_bin = kubectl
        self.helm_bin = helm
        self.env = {**os.environ, "KUBECONFIG": str(KUBECONFIG), "PATH": f"{K8S_BIN}:{os.environ['PATH']}"}
        self.namespaces: list[str] = []

    def run(
        self, *args: str, check: bool = True, stdin: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        """Run a command with the cluster's KUBECONFIG; on failure the error shows its output."""
        result = subprocess.run(args, env=self.env, input=stdin, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def kubectl(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess:
        return self.run(self.kubectl_bin, *args, **kwargs)

    def helm(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess:
        if not self.helm_bin:
            pytest.skip("helm not found: run scripts/k8s install")
        return self.run(self.helm_bin, *args, **kwargs)

    def apply(self, manifest: dict[str, Any], check: bool = True) -> subprocess.CompletedProcess:
        return self.kubectl("apply", "-f", "-", stdin=json.dumps(manifest), check=check)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        result = self.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            raise AssertionError(result.stderr)
        return json.loads(result.stdout)

    def names(self, kind: str, namespace: str, selector: str) -> list[str]:
        result = self.kubectl("get", kind, "-n", namespace, "-l", selector, "-o", "json")
        return [item["metadata"]["name"] for item in json.loads(result.stdout)["items"]]

    def create_namespace(self, prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.kubectl("create", "namespace", name)
        self.namespaces.append(name)
        return name

    def events(self, namespace: str) -> str:
        return self.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 1.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OperatorProcess:
    """`python -m smartgrid_operator` as a process, limited to one namespace.

    ``extra_env`` is added to its environment (e.g. credentials it must not use).
    """

    def __init__(self, namespace: str, log_path: Path, extra_env: dict[str, str] | None = None) -> None:
        self.namespace = namespace
        self.log_path = log_path
        self.port = _free_port()
        env = {
            **os.environ,
            **(extra_env or {}),
            "KUBECONFIG": str(KUBECONFIG),
            "SMARTGRID_OPERATOR_NAMESPACES": namespace,
            "SMARTGRID_OPERATOR_RESYNC_SECONDS": "3",
            "SMARTGRID_HTTP_PORT": str(self.port),
        }
        self.log = log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "smartgrid_operator"], env=env, stdout=self.log, stderr=subprocess.STDOUT
        )

    def healthy(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-20000:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
