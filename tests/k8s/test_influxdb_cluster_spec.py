"""An external InfluxDB cluster in a SmartGridConsumer: validated by the API server, passed on by the chart."""

from __future__ import annotations

import json

import pytest
import yaml
from k8s_helpers import CHART

pytestmark = pytest.mark.k8s

NODES = ["http://influxdb-data-0:8086", "http://influxdb-data-1:8086"]


def _submit(cluster, namespace, influxdb):
    manifest = {
        "apiVersion": "smartgrid.io/v1alpha1",
        "kind": "SmartGridConsumer",
        "metadata": {"name": "influx", "namespace": namespace},
        "spec": {"kafka": {"bootstrapServers": "kafka:9092"}, "influxdb": influxdb, "redis": {"url": "redis://redis:6379/0"}},
    }
    return cluster.kubectl("create", "-f", "-", stdin=json.dumps(manifest), check=False)


def test_a_cluster_s_data_nodes_consistency_and_replication_are_accepted_and_defaulted(cluster, namespace):
    result = _submit(cluster, namespace, {"urls": NODES, "replication": 2})
    assert result.returncode == 0, result.stderr
    stored = cluster.get("sgc", "influx", namespace)["spec"]["influxdb"]
    assert stored["urls"] == NODES and stored["replication"] == 2 and stored["consistency"] == "one"
    cluster.kubectl("delete", "sgc", "influx", "-n", namespace)


@pytest.mark.parametrize(
    ("influxdb", "named"),
    [
        ({"urls": NODES, "consistency": "most"}, "spec.influxdb.consistency"),
        ({"urls": NODES, "replication": 0}, "spec.influxdb.replication"),
        ({"urls": ["influxdb-data-0:8086"]}, "spec.influxdb.urls[0]"),
        ({"urls": []}, "spec.influxdb.urls"),
        ({"url": "http://a:8086,http://b:8086"}, "spec.influxdb.url"),
        ({"url": "http://admin:secret@influxdb:8086"}, "spec.influxdb.url"),  # credentials: a Secret
        ({"urls": ["http://admin:secret@influxdb-data-0:8086"]}, "spec.influxdb.urls[0]"),
        ({"url": NODES[0], "urls": NODES}, "exactly one of influxdb.url"),
        ({"consistency": "one"}, "exactly one of influxdb.url"),
    ],
)
def test_an_invalid_influxdb_section_is_rejected_naming_the_field(cluster, namespace, influxdb, named):
    result = _submit(cluster, namespace, influxdb)
    assert result.returncode != 0, "the API server accepted an invalid resource"
    assert named in result.stderr, result.stderr


def test_the_chart_passes_the_cluster_values_to_the_consumer(cluster):
    rendered = cluster.helm(
        "template", "c", str(CHART), "-f", str(CHART / "ci/influxdb-cluster-values.yaml"),
        "--show-only", "templates/smartgridconsumer.yaml",
    ).stdout
    influxdb = yaml.safe_load(rendered)["spec"]["influxdb"]
    assert len(influxdb["urls"]) == 3 and "url" not in influxdb
    assert influxdb["consistency"] == "quorum" and influxdb["replication"] == 2
    assert influxdb["credentialsSecret"] == {"name": "smartgrid-influxdb"}
