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


class Cluster:
    """A cluster's /write as MockTransport: refuses the lines holding ``conflict`` with a 500
    ``partial write: ... dropped=N``, stores the rest; ``lies`` of its answers to a body holding
    refused lines are a 204 that stores nothing: InfluxDB Cluster at consistency one answered so to
    parts of a refused body (its first answer, a 500, was true)."""

    def __init__(self, lies: int) -> None:
        self.lies = lies
        self.stored: set[bytes] = set()
        self.requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        lines = [line for line in request.content.split(b"\n") if line]
        refused = [line for line in lines if b"conflict" in line]
        if refused and self.lies and self.requests > 1:
            self.lies -= 1
            return httpx.Response(204)
        self.stored.update(line for line in lines if line not in refused)
        if refused:
            return answer(500, f'write failed: partial write: field type conflict: input field "v" on measurement "m" '
                               f"is type float, already exists as type string dropped={len(refused)}")
        return httpx.Response(204)


def client_of(cluster: Cluster):
    from smartgrid_common.influx import InfluxClient
    from smartgrid_common.settings import InfluxSettings

    client = InfluxClient(InfluxSettings(INFLUXDB_URL="http://node-1:8086"))
    client.nodes[0].http = httpx.Client(base_url="http://node-1:8086", transport=httpx.MockTransport(cluster))
    return client


BODY = b"".join(b"m,id=%d v=1 %d\n" % (i, i) for i in range(40)).replace(b"id=7 ", b"id=7conflict ").replace(b"id=30 ", b"id=30conflict ")


@pytest.mark.parametrize("lies", [0, 1, 2])
def test_every_refused_line_is_found_even_when_the_cluster_accepts_a_part_holding_one(lies):
    cluster = Cluster(lies)
    rejected = client_of(cluster).write(BODY, "raw_data")
    assert [item.index for item in rejected] == [7, 30]
    assert all("field type conflict" in item.reason for item in rejected)
    assert len(cluster.stored) == 38


def test_answers_that_keep_contradicting_the_refusal_are_a_failure_to_retry_not_a_success():
    from smartgrid_common.influx import InfluxUnavailable

    with pytest.raises(InfluxUnavailable, match="refused 2 of 40 points but accepted the parts holding them"):
        client_of(Cluster(lies=1000)).write(BODY, "raw_data")
