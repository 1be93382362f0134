"""The API server itself rejects invalid SmartGridConsumers, naming the field (no operator needed)."""

from __future__ import annotations

import copy
import json

import pytest

pytestmark = pytest.mark.k8s

VALID = {
    "kafka": {"bootstrapServers": "kafka:9092"},
    "influxdb": {"url": "http://influxdb:8086"},
    "redis": {"url": "redis://redis:6379/0"},
}


def _submit(cluster, namespace, spec):
    manifest = {
        "apiVersion": "smartgrid.io/v1alpha1",
        "kind": "SmartGridConsumer",
        "metadata": {"name": "invalid", "namespace": namespace},
        "spec": spec,
    }
    return cluster.kubectl("create", "-f", "-", stdin=json.dumps(manifest), check=False)


def _with(path: str, value):
    """VALID with the dotted ``path`` set to ``value`` (None removes it)."""
    spec = copy.deepcopy(VALID)
    *parents, leaf = path.split(".")
    node = spec
    for part in parents:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return spec


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("ingest.partitionsPerReplica", 0),
        ("kafka.bootstrapServers", None),
        ("ingest.assignment", "roundrobin"),
        ("ingest.batchTimeout", "soon"),
        ("ingest.fetchWait", "a while"),
        ("ingest.shutdownTimeout", "forever"),
        ("influxdb.url", "influxdb:8086"),
        ("kafka.security", {"protocol": "SASL_SSL"}),
    ],
)
def test_an_invalid_consumer_is_rejected_with_a_message_naming_the_field(cluster, namespace, path, value):
    result = _submit(cluster, namespace, _with(path, value))
    assert result.returncode != 0, "the API server accepted an invalid resource"
    field = "spec." + (path if path != "kafka.security" else "kafka.security.saslMechanism")
    assert field in result.stderr, result.stderr


def test_a_valid_consumer_is_defaulted_by_the_api_server(cluster, namespace):
    result = _submit(cluster, namespace, VALID)
    assert result.returncode == 0, result.stderr
    body = cluster.get("sgc", "invalid", namespace)
    assert body["spec"]["ingest"]["partitionsPerReplica"] == 8
    assert body["spec"]["ingest"]["shutdownTimeout"] == "25s"
    assert body["spec"]["kafka"]["topic"] == "smart-grid-transactions"
    assert body["spec"]["kafka"]["security"]["protocol"] == "PLAINTEXT"
    assert body["spec"]["paused"] is False
    cluster.kubectl("delete", "sgc", "invalid", "-n", namespace)
