"""How the client reads InfluxDB's error answers: a refusal of points, a write stored below the
consistency asked, or a node problem. The bodies are the ones InfluxDB Cluster 1.8.11-c1.2.0 and
InfluxDB 1.8.10 gave here (docs/scaling.md); the servers themselves are in the integration tests."""

from __future__ import annotations

import httpx
import pytest
from smartgrid_common.influx import _partial_write, _reason


def answer(status: int, error: str) -> httpx.Response:
    return httpx.Response(status, json={"error": error})


@pytest.mark.parametrize(
    "error",
    [
        'write failed: partial write: field type conflict: input field "v" on measurement "m" is type string, already exists as type float dropped=1',
        'write failed: error code 1: write shard 2: partial write: field type conflict: input field "v" on measurement "m" is type string, already exists as type float dropped=1',
        "write failed: field type conflict",
        "partial write: max-values-per-tag limit exceeded (100000/100000): measurement=m tag=t value=x dropped=3",
    ],
)
def test_a_cluster_500_about_points_is_a_refusal_of_those_points(error):
    assert _partial_write(answer(500, error)) == "refused"


def test_a_bare_partial_write_is_a_write_stored_below_the_consistency():
    assert _partial_write(answer(500, "partial write")) == "under-replicated"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, 'Post "http://127.0.0.1:8091/execute": dial tcp 127.0.0.1:8091: connect: connection refused'),
        (500, "timeout"),
        (503, "service unavailable"),
        (400, "partial write: points beyond retention policy dropped=1"),  # a 4xx: read as one node's
        (404, 'database not found: "x"'),
    ],
)
def test_other_answers_are_neither(status, error):
    assert _partial_write(answer(status, error)) is None


def test_a_reason_never_carries_a_url_s_userinfo():
    response = answer(500, 'Post "http://admin:s3cret@meta:8091/execute": connection refused')
    assert "s3cret" not in _reason(response) and "http://meta:8091/execute" in _reason(response)
    assert "s3cret" not in _reason(httpx.Response(502, text="bad gateway http://u:s3cret@node:8086"))
