"""Fixtures of the tests against the local control plane (helpers: k8s_helpers.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from k8s_helpers import CRDS, KAFKA, KUBECONFIG, Cluster, OperatorProcess, _binary, wait_for


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The running local control plane, or a skip that says how to start it."""
    kubectl = _binary("kubectl")
    if not KUBECONFIG.exists() or not kubectl:
        pytest.skip(f"no local control plane ({KUBECONFIG} missing): run scripts/k8s install && scripts/k8s up")
    c = Cluster(kubectl, _binary("helm"))
    if c.kubectl("version", "-o", "json", check=False, timeout=15).returncode != 0:
        pytest.skip("local control plane not answering: run scripts/k8s up")
    c.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    c.kubectl("wait", "--for=condition=Established", "crd/smartgridconsumers.smartgrid.io", "--timeout=60s")
    yield c
    for namespace in c.namespaces:
        c.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace; on failure its events are printed."""
    name = cluster.create_namespace("sg-test")
    yield name
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"\n----- kubectl get events -n {name} -----\n{cluster.events(name)}")


@pytest.fixture
def operator(
    cluster: Cluster, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[OperatorProcess]:
    """The operator watching ``namespace``; its log is printed when the test fails.

    Parametrized indirectly, the parameter is extra environment for the operator process.
    """
    process = OperatorProcess(namespace, tmp_path / "operator.log", getattr(request, "param", None))
    try:
        wait_for(lambda: process.healthy() or process.process.poll() is not None, 60, "operator liveness")
        if process.process.poll() is not None:
            raise AssertionError(f"operator exited:\n{process.logs()}")
        yield process
    finally:
        process.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(f"\n----- operator log -----\n{process.logs()}")


@pytest.fixture(scope="session")
def kafka_admin():
    """An AdminClient on the local Kafka (`scripts/stack up`), or a skip."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": KAFKA, "socket.timeout.ms": 5000})
    try:
        admin.list_topics(timeout=5)
    except Exception as error:  # noqa: BLE001 - any failure means "no Kafka here"
        pytest.skip(f"no Kafka at {KAFKA} ({error}): run scripts/stack up")
    return admin


@pytest.fixture
def topic(kafka_admin) -> Iterator[str]:
    """A fresh topic of our own with 32 partitions (never the shared smart-grid-transactions)."""
    from confluent_kafka.admin import NewTopic

    name = f"k8s-test-{uuid.uuid4().hex[:8]}"
    kafka_admin.create_topics([NewTopic(name, num_partitions=32, replication_factor=1)])[name].result(timeout=30)
    wait_for(lambda: len(kafka_admin.list_topics(name, timeout=5).topics[name].partitions) == 32, 30, "topic metadata")
    yield name
    kafka_admin.delete_topics([name])[name].result(timeout=30)
